/* The scoreboard's per-job stores in C: what SlotWriter.job_start and SlotWriter.job_end
 * (gearmgr/scoreboard.py) store for every job, as module functions and as the steps the loop of
 * gearmgr/_serve.c calls. tests/test_speedups.py checks that they store what Python stores.
 *
 *   count((words, state, idle, done, failed), counters, jobs, job_failed, duration) -> None
 *   set_buckets(bounds)
 *       gearmgr/scoreboard.py: SlotWriter._py_job_end
 *   job_start((words, state, busy, hand, number), handle, unique) -> None
 *       gearmgr/scoreboard.py: SlotWriter._py_job_start
 */
#include "_speedups.h"

/* The job duration histogram's upper bounds (scoreboard.BUCKETS), given once by set_buckets. */
#define MAX_BUCKETS 64
static double bounds[MAX_BUCKETS];
static Py_ssize_t nbounds = -1;

PyObject *
gm_set_buckets(PyObject *module, PyObject *arg)
{
    PyObject *seq = PySequence_Fast(arg, "set_buckets(bounds: a sequence of floats)");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > MAX_BUCKETS) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "too many buckets");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        double b = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
        if (b == -1.0 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return NULL;
        }
        bounds[i] = b;
    }
    nbounds = n;
    Py_DECREF(seq);
    Py_RETURN_NONE;
}

static int
word_index(PyObject *o, Py_ssize_t n, Py_ssize_t *out)
{
    Py_ssize_t i = PyLong_AsSsize_t(o);
    if (i == -1 && PyErr_Occurred())
        return -1;
    if (i < 0 || i >= n) {
        PyErr_SetString(PyExc_IndexError, "scoreboard word out of range");
        return -1;
    }
    *out = i;
    return 0;
}

int
gm_words(PyObject *words, Py_buffer *view)
{
    if (PyObject_GetBuffer(words, view, PyBUF_WRITABLE) < 0)
        return -1;
    if ((uintptr_t)view->buf % sizeof(uint64_t) != 0) { /* a uint64 store there is undefined */
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "scoreboard words must start on an 8-byte boundary");
        return -1;
    }
    return 0;
}

int
gm_end_slot(PyObject *slot, Py_ssize_t n, gm_end *out)
{
    /* (words, state, idle, done, failed): the words were taken by the caller */
    if (!PyTuple_Check(slot) || PyTuple_GET_SIZE(slot) != 5) {
        PyErr_SetString(PyExc_TypeError, "slot: (words, state, idle, done, failed)");
        return -1;
    }
    PyObject *const *t = &PyTuple_GET_ITEM(slot, 0);
    if (nbounds < 0) {
        PyErr_SetString(PyExc_RuntimeError, "set_buckets() was not called");
        return -1;
    }
    if ((out->idle = PyLong_AsUnsignedLongLong(t[2])) == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    if (word_index(t[1], n, &out->state) < 0 || word_index(t[3], n, &out->done) < 0 ||
        word_index(t[4], n, &out->failed))
        return -1;
    return 0;
}

int
gm_counters(PyObject *counters, Py_ssize_t n, gm_func *out)
{
    out->on = counters != Py_None;
    if (!out->on)
        return 0;
    if (!PyTuple_Check(counters) || PyTuple_GET_SIZE(counters) != 3) {
        PyErr_SetString(PyExc_TypeError, "counters: (done, duration, first bucket) or None");
        return -1;
    }
    if (word_index(PyTuple_GET_ITEM(counters, 0), n - 1, &out->done) < 0 ||
        word_index(PyTuple_GET_ITEM(counters, 1), n, &out->duration) < 0 ||
        word_index(PyTuple_GET_ITEM(counters, 2), n - nbounds + 1, &out->bucket) < 0)
        return -1;
    return 0;
}

void
gm_count(uint64_t *w, const gm_end *e, const gm_func *f, uint64_t jobs, int failed,
         double duration)
{
    /* The same stores, in the same order, as SlotWriter._py_job_end. */
    w[e->done] = jobs;
    if (failed)
        w[e->failed] += 1;
    if (f->on) {
        w[f->done + failed] += 1;
        double sum;
        memcpy(&sum, &w[f->duration], sizeof sum);
        sum += duration;
        memcpy(&w[f->duration], &sum, sizeof sum);
        Py_ssize_t bucket = 0; /* the first bound not below the duration (bisect_left) */
        while (bucket < nbounds && bounds[bucket] < duration)
            bucket++;
        if (bucket < nbounds)
            w[f->bucket + bucket] += 1;
    }
    w[e->state] = e->idle;
}

/* One finished job in a worker's slot: what SlotWriter.job_end does, in one call. */
PyObject *
gm_count_job(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    /* (words, state, idle, done, failed) come as one tuple: functools.partial binds it, and
       five arguments in all fit the small stack of a vectorcall (no allocation per call). */
    if (nargs != 5 || !PyTuple_Check(args[0]) || PyTuple_GET_SIZE(args[0]) != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "count((words, state, idle, done, failed), counters, jobs, job_failed, "
                        "duration)");
        return NULL;
    }
    Py_buffer view;
    if (gm_words(PyTuple_GET_ITEM(args[0], 0), &view) < 0)
        return NULL;
    Py_ssize_t n = view.len / 8;
    gm_end e;
    gm_func f;
    /* Each conversion is checked before the next: none may run (Python code) with an error set. */
    unsigned long long jobs;
    int job_failed;
    double duration;
    if (gm_end_slot(args[0], n, &e) < 0)
        goto error;
    if ((jobs = PyLong_AsUnsignedLongLong(args[2])) == (unsigned long long)-1 && PyErr_Occurred())
        goto error;
    if ((job_failed = PyObject_IsTrue(args[3])) < 0)
        goto error;
    if ((duration = PyFloat_AsDouble(args[4])) == -1.0 && PyErr_Occurred())
        goto error;
    if (gm_counters(args[1], n, &f) < 0)
        goto error;
    gm_count((uint64_t *)view.buf, &e, &f, jobs, job_failed, duration);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
error:
    PyBuffer_Release(&view);
    return NULL;
}

int
gm_start_slot(PyObject *slot, Py_ssize_t n, gm_start *out)
{
    /* (words, state, busy, hand, number): the words were taken by the caller */
    if (!PyTuple_Check(slot) || PyTuple_GET_SIZE(slot) != 5) {
        PyErr_SetString(PyExc_TypeError, "slot: (words, state, busy, hand, number)");
        return -1;
    }
    PyObject *const *t = &PyTuple_GET_ITEM(slot, 0);
    out->busy = PyLong_AsUnsignedLongLong(t[2]);
    out->number = PyLong_AsUnsignedLongLong(t[4]);
    if (PyErr_Occurred() || word_index(t[1], n, &out->state) < 0 ||
        word_index(t[3], n - 2 * HAND_BYTES / 8, &out->hand) < 0)
        return -1;
    return 0;
}

void
gm_job_start(uint64_t *w, const gm_start *s, PyObject *handle, PyObject *unique)
{
    /* The same stores as SlotWriter._py_job_start: struct "<Q128s128s", then the state. */
    char *h = (char *)&w[s->hand + 1];
    Py_ssize_t lh = PyBytes_GET_SIZE(handle), lu = PyBytes_GET_SIZE(unique);
    if (lh > HAND_BYTES)
        lh = HAND_BYTES;
    if (lu > HAND_BYTES)
        lu = HAND_BYTES;
    unsigned char *num = (unsigned char *)&w[s->hand]; /* "<Q": little-endian on any machine */
    for (int i = 0; i < 8; i++)
        num[i] = (unsigned char)(s->number >> (8 * i));
    memcpy(h, PyBytes_AS_STRING(handle), lh);
    memset(h + lh, 0, HAND_BYTES - lh);
    memcpy(h + HAND_BYTES, PyBytes_AS_STRING(unique), lu);
    memset(h + HAND_BYTES + lu, 0, HAND_BYTES - lu);
    w[s->state] = s->busy;
}

/* One job starting in a worker's slot: the job in hand (its function's number, its handle and
   unique id NUL-padded or cut to HAND_BYTES each), then the state word says BUSY. */
PyObject *
gm_start_job(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyTuple_Check(args[0]) || PyTuple_GET_SIZE(args[0]) != 5 ||
        !PyBytes_Check(args[1]) || !PyBytes_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "job_start((words, state, busy, hand, number), handle: bytes, "
                        "unique: bytes)");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(PyTuple_GET_ITEM(args[0], 0), &view, PyBUF_WRITABLE) < 0)
        return NULL;
    gm_start st;
    if (gm_start_slot(args[0], view.len / 8, &st) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    gm_job_start((uint64_t *)view.buf, &st, args[1], args[2]);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}
