/* The worker's job path in C: the codec steps and the scoreboard stores a busy worker runs for
 * every job. Each function has its reference implementation in Python, used when this module
 * was not built (setup.py builds it as an optional extension: without a C compiler the package
 * stays pure Python); tests/test_speedups.py checks that both agree.
 *
 *   assigned_job(data, functions) -> (handle, value, unique, workload) | None
 *       gearmgr/wire/protocol.py: _py_assigned_job
 *   recv_job(fd, functions) -> (handle, value, unique, workload) | bytes
 *       gearmgr/worker/reading.py: the Python reader (socket.recv, then assigned_job)
 *   work_complete(handle, result, then) -> bytes
 *       gearmgr/wire/protocol.py: _py_work_complete
 *   send_complete(fd, handle, result, then) -> None
 *       socket.sendall(work_complete(handle, result, then)) (gearmgr/worker/reading.py)
 *   count((words, state, idle, done, failed), counters, jobs, job_failed, duration) -> None
 *   set_buckets(bounds)
 *       gearmgr/scoreboard.py: SlotWriter.job_end
 *   job_start((words, state, busy, hand, number), handle, unique) -> None
 *       gearmgr/scoreboard.py: SlotWriter._py_job_start
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>

#define HEADER_SIZE 12

/* "\0RES" + JOB_ASSIGN_UNIQ (31) and "\0REQ" + WORK_COMPLETE (13), big-endian */
static const char ASSIGN_HEAD[8] = {0, 'R', 'E', 'S', 0, 0, 0, 31};
static const char COMPLETE_HEAD[8] = {0, 'R', 'E', 'Q', 0, 0, 0, 13};

/* The fields of the whole JOB_ASSIGN_UNIQ of ours in p[:n], or None (a new reference). */
static PyObject *
parse_assign(const char *p, Py_ssize_t n, PyObject *functions)
{
    if (n <= HEADER_SIZE || memcmp(p, ASSIGN_HEAD, 8) != 0)
        Py_RETURN_NONE;
    const unsigned char *s = (const unsigned char *)p + 8;
    uint32_t size = ((uint32_t)s[0] << 24) | ((uint32_t)s[1] << 16) | ((uint32_t)s[2] << 8) | s[3];
    if ((Py_ssize_t)size != n - HEADER_SIZE)
        Py_RETURN_NONE;
    const char *body = p + HEADER_SIZE, *end = p + n;
    const char *h = memchr(body, 0, end - body);
    if (h == NULL || h == body)  /* no NUL, or an empty handle */
        Py_RETURN_NONE;
    const char *f = memchr(h + 1, 0, end - h - 1);
    if (f == NULL)
        Py_RETURN_NONE;
    const char *u = memchr(f + 1, 0, end - f - 1);
    if (u == NULL)
        Py_RETURN_NONE;
    for (const char *c = body; c < h; c++)
        if (*c & 0x80)  /* not ASCII: the session checks it */
            Py_RETURN_NONE;
    PyObject *value = NULL; /* borrowed */
    Py_ssize_t name_size = f - h - 1;
    if (PyDict_GET_SIZE(functions) <= 8) {
        /* A worker serves a few functions: comparing the names costs less than hashing. */
        Py_ssize_t pos = 0;
        PyObject *key, *item;
        while (PyDict_Next(functions, &pos, &key, &item)) {
            if (!PyBytes_CheckExact(key)) {
                value = NULL;
                goto lookup;
            }
            if (PyBytes_GET_SIZE(key) == name_size &&
                memcmp(PyBytes_AS_STRING(key), h + 1, name_size) == 0)
                value = item;
        }
        if (value == NULL)
            Py_RETURN_NONE;
    }
    else {
    lookup:;
        PyObject *name = PyBytes_FromStringAndSize(h + 1, name_size);
        if (name == NULL)
            return NULL;
        value = PyDict_GetItemWithError(functions, name);
        Py_DECREF(name);
        if (value == NULL) {
            if (PyErr_Occurred())
                return NULL;
            Py_RETURN_NONE;
        }
    }
    PyObject *out = PyTuple_New(4);
    if (out == NULL)
        return NULL;
    PyObject *handle = PyBytes_FromStringAndSize(body, h - body);
    PyObject *unique = PyBytes_FromStringAndSize(f + 1, u - f - 1);
    PyObject *workload = PyBytes_FromStringAndSize(u + 1, end - u - 1);
    if (handle == NULL || unique == NULL || workload == NULL) {
        Py_XDECREF(handle);
        Py_XDECREF(unique);
        Py_XDECREF(workload);
        Py_DECREF(out);
        return NULL;
    }
    Py_INCREF(value);
    PyTuple_SET_ITEM(out, 0, handle);
    PyTuple_SET_ITEM(out, 1, value);
    PyTuple_SET_ITEM(out, 2, unique);
    PyTuple_SET_ITEM(out, 3, workload);
    return out;
}

static PyObject *
assigned_job(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "assigned_job(data: bytes, functions: dict)");
        return NULL;
    }
    return parse_assign(PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]), args[1]);
}

/* Bytes asked of one recv() (gearmgr.worker.reading.RECV_SIZE), read into a buffer kept for the
   process: no allocation of 64 KiB per read. A second thread reading meanwhile gets its own. */
#define RECV_SIZE 65536
static char recv_buffer[RECV_SIZE];
static int recv_buffer_taken;

/* One read of a blocking socket's fd: the fields of a whole JOB_ASSIGN_UNIQ of ours (as
   assigned_job), or the bytes read (b"": closed); OSError as socket.recv raises it. */
static PyObject *
recv_job(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyLong_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "recv_job(fd: int, functions: dict)");
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "recv_job: not a file descriptor");
        return NULL;
    }
    char *buf = recv_buffer;
    if (recv_buffer_taken) {
        buf = PyMem_RawMalloc(RECV_SIZE);
        if (buf == NULL)
            return PyErr_NoMemory();
    }
    else
        recv_buffer_taken = 1;
    PyObject *out = NULL;
    ssize_t got;
    int err;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        got = recv((int)fd, buf, RECV_SIZE, 0);
        err = errno;
        Py_END_ALLOW_THREADS
        if (got >= 0)
            break;
        if (err != EINTR) { /* EAGAIN (SO_RCVTIMEO): BlockingIOError, as socket.recv */
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError);
            goto done;
        }
        if (PyErr_CheckSignals() < 0) /* PEP 475: a handler that raised ends the read */
            goto done;
    }
    out = parse_assign(buf, got, args[1]);
    if (out == Py_None) {
        Py_DECREF(out);
        out = PyBytes_FromStringAndSize(buf, got);
    }
done:
    if (buf == recv_buffer)
        recv_buffer_taken = 0;
    else
        PyMem_RawFree(buf);
    return out;
}

/* WORK_COMPLETE for handle with result, then ``then`` (NULL: nothing), written at o: the sizes
   were checked by the caller (the body fits 32 bits, o holds it all). */
static void
fill_complete(char *o, PyObject *handle, PyObject *result, PyObject *then)
{
    Py_ssize_t hl = PyBytes_GET_SIZE(handle), rl = PyBytes_GET_SIZE(result);
    Py_ssize_t body = hl + 1 + rl;
    memcpy(o, COMPLETE_HEAD, 8);
    o[8] = (char)(body >> 24);
    o[9] = (char)(body >> 16);
    o[10] = (char)(body >> 8);
    o[11] = (char)body;
    o += HEADER_SIZE;
    memcpy(o, PyBytes_AS_STRING(handle), hl);
    o[hl] = 0;
    memcpy(o + hl + 1, PyBytes_AS_STRING(result), rl);
    if (then != NULL && PyBytes_GET_SIZE(then))
        memcpy(o + body, PyBytes_AS_STRING(then), PyBytes_GET_SIZE(then));
}

static PyObject *
work_complete(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    /* then (what follows the packet in the same write) is optional, as in the Python version */
    if (nargs < 2 || nargs > 3 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[1]) ||
        (nargs == 3 && !PyBytes_Check(args[2]))) {
        PyErr_SetString(PyExc_TypeError,
                        "work_complete(handle: bytes, result: bytes, then: bytes = b'')");
        return NULL;
    }
    Py_ssize_t hl = PyBytes_GET_SIZE(args[0]), rl = PyBytes_GET_SIZE(args[1]);
    Py_ssize_t tl = nargs == 3 ? PyBytes_GET_SIZE(args[2]) : 0;
    Py_ssize_t body = hl + 1 + rl;
    if (body > 0xFFFFFFFFLL) {
        PyErr_SetString(PyExc_OverflowError, "a packet's body is limited to 4 GiB");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, HEADER_SIZE + body + tl);
    if (out == NULL)
        return NULL;
    fill_complete(PyBytes_AS_STRING(out), args[0], args[1], nargs == 3 ? args[2] : NULL);
    return out;
}

/* WORK_COMPLETE for handle with result, then ``then``, sent whole on a blocking socket's fd (as
   socket.sendall: OSError on failure), built in a buffer on the stack when it fits. */
static PyObject *
send_complete(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyLong_Check(args[0]) || !PyBytes_Check(args[1]) ||
        !PyBytes_Check(args[2]) || !PyBytes_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "send_complete(fd: int, handle: bytes, result: bytes, then: bytes)");
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "send_complete: not a file descriptor");
        return NULL;
    }
    Py_ssize_t hl = PyBytes_GET_SIZE(args[1]), rl = PyBytes_GET_SIZE(args[2]);
    Py_ssize_t tl = PyBytes_GET_SIZE(args[3]), body = hl + 1 + rl;
    if (body > 0xFFFFFFFFLL) {
        PyErr_SetString(PyExc_OverflowError, "a packet's body is limited to 4 GiB");
        return NULL;
    }
    Py_ssize_t total = HEADER_SIZE + body + tl;
    char small[2048], *buf = small;
    if (total > (Py_ssize_t)sizeof small && (buf = PyMem_RawMalloc(total)) == NULL)
        return PyErr_NoMemory();
    fill_complete(buf, args[1], args[2], args[3]);
    PyObject *out = Py_None;
    Py_ssize_t sent = 0;
    while (sent < total) {
        ssize_t n;
        int err;
        Py_BEGIN_ALLOW_THREADS
        n = send((int)fd, buf + sent, total - sent, MSG_NOSIGNAL);
        err = errno;
        Py_END_ALLOW_THREADS
        if (n >= 0) {
            sent += n;
            continue;
        }
        if (err == EINTR) { /* PEP 475: retried unless a signal handler raised */
            if (PyErr_CheckSignals() < 0) {
                out = NULL;
                break;
            }
            continue;
        }
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        out = NULL;
        break;
    }
    if (buf != small)
        PyMem_RawFree(buf);
    Py_XINCREF(out);
    return out;
}

/* The job duration histogram's upper bounds (scoreboard.BUCKETS), given once by set_buckets. */
#define MAX_BUCKETS 64
static double bounds[MAX_BUCKETS];
static Py_ssize_t nbounds = -1;

static PyObject *
set_buckets(PyObject *module, PyObject *arg)
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

/* One finished job in a worker's slot: what SlotWriter.job_end does, in one call. */
static PyObject *
count(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    /* (words, state, idle, done, failed) come as one tuple: functools.partial binds it, and
       five arguments in all fit the small stack of a vectorcall (no allocation per call). */
    if (nargs != 5 || !PyTuple_Check(args[0]) || PyTuple_GET_SIZE(args[0]) != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "count((words, state, idle, done, failed), counters, jobs, job_failed, "
                        "duration)");
        return NULL;
    }
    PyObject *const *slot = &PyTuple_GET_ITEM(args[0], 0);
    if (nbounds < 0) {
        PyErr_SetString(PyExc_RuntimeError, "set_buckets() was not called");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(slot[0], &view, PyBUF_WRITABLE) < 0)
        return NULL;
    if ((uintptr_t)view.buf % sizeof(uint64_t) != 0) { /* a uint64 store there is undefined */
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "scoreboard words must start on an 8-byte boundary");
        return NULL;
    }
    Py_ssize_t n = view.len / 8, state, done, failed_total, fdone = 0, fduration = 0, fbucket = 0;
    uint64_t *w = (uint64_t *)view.buf;
    PyObject *counters = args[1];
    int has_counters = counters != Py_None;
    /* Each conversion is checked before the next: none may run (Python code) with an error set. */
    unsigned long long idle, jobs;
    int job_failed;
    double duration;
    if ((idle = PyLong_AsUnsignedLongLong(slot[2])) == (unsigned long long)-1 && PyErr_Occurred())
        goto error;
    if ((jobs = PyLong_AsUnsignedLongLong(args[2])) == (unsigned long long)-1 && PyErr_Occurred())
        goto error;
    if ((job_failed = PyObject_IsTrue(args[3])) < 0)
        goto error;
    if ((duration = PyFloat_AsDouble(args[4])) == -1.0 && PyErr_Occurred())
        goto error;
    if (word_index(slot[1], n, &state) < 0 || word_index(slot[3], n, &done) < 0 ||
        word_index(slot[4], n, &failed_total) < 0)
        goto error;
    if (has_counters) {
        if (!PyTuple_Check(counters) || PyTuple_GET_SIZE(counters) != 3) {
            PyErr_SetString(PyExc_TypeError, "counters: (done, duration, first bucket) or None");
            goto error;
        }
        if (word_index(PyTuple_GET_ITEM(counters, 0), n - 1, &fdone) < 0 ||
            word_index(PyTuple_GET_ITEM(counters, 1), n, &fduration) < 0 ||
            word_index(PyTuple_GET_ITEM(counters, 2), n - nbounds + 1, &fbucket) < 0)
            goto error;
    }
    /* The same stores, in the same order, as SlotWriter._py_job_end. */
    w[done] = jobs;
    if (job_failed)
        w[failed_total] += 1;
    if (has_counters) {
        w[fdone + job_failed] += 1;
        double sum;
        memcpy(&sum, &w[fduration], sizeof sum);
        sum += duration;
        memcpy(&w[fduration], &sum, sizeof sum);
        Py_ssize_t bucket = 0; /* the first bound not below the duration (bisect_left) */
        while (bucket < nbounds && bounds[bucket] < duration)
            bucket++;
        if (bucket < nbounds)
            w[fbucket + bucket] += 1;
    }
    w[state] = idle;
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
error:
    PyBuffer_Release(&view);
    return NULL;
}

#define HAND_BYTES 128

/* One job starting in a worker's slot: the job in hand (its function's number, its handle and
   unique id NUL-padded or cut to HAND_BYTES each), then the state word says BUSY. */
static PyObject *
job_start(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyTuple_Check(args[0]) || PyTuple_GET_SIZE(args[0]) != 5 ||
        !PyBytes_Check(args[1]) || !PyBytes_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "job_start((words, state, busy, hand, number), handle: bytes, "
                        "unique: bytes)");
        return NULL;
    }
    PyObject *const *slot = &PyTuple_GET_ITEM(args[0], 0);
    Py_buffer view;
    if (PyObject_GetBuffer(slot[0], &view, PyBUF_WRITABLE) < 0)
        return NULL;
    Py_ssize_t n = view.len / 8, state, hand;
    uint64_t *w = (uint64_t *)view.buf;
    unsigned long long busy = PyLong_AsUnsignedLongLong(slot[2]);
    unsigned long long number = PyLong_AsUnsignedLongLong(slot[4]);
    if (PyErr_Occurred() || word_index(slot[1], n, &state) < 0 ||
        word_index(slot[3], n - 2 * HAND_BYTES / 8, &hand) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    /* The same stores as SlotWriter._py_job_start: struct "<Q128s128s", then the state. */
    char *h = (char *)&w[hand + 1];
    Py_ssize_t lh = PyBytes_GET_SIZE(args[1]), lu = PyBytes_GET_SIZE(args[2]);
    if (lh > HAND_BYTES)
        lh = HAND_BYTES;
    if (lu > HAND_BYTES)
        lu = HAND_BYTES;
    unsigned char *num = (unsigned char *)&w[hand]; /* "<Q": little-endian on any machine */
    for (int i = 0; i < 8; i++)
        num[i] = (unsigned char)(number >> (8 * i));
    memcpy(h, PyBytes_AS_STRING(args[1]), lh);
    memset(h + lh, 0, HAND_BYTES - lh);
    memcpy(h + HAND_BYTES, PyBytes_AS_STRING(args[2]), lu);
    memset(h + HAND_BYTES + lu, 0, HAND_BYTES - lu);
    w[state] = busy;
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"assigned_job", (PyCFunction)(void (*)(void))assigned_job, METH_FASTCALL,
     "(handle, functions[name], unique, workload) of one whole JOB_ASSIGN_UNIQ with a non-empty "
     "ASCII handle and a function in ``functions``; else None."},
    {"recv_job", (PyCFunction)(void (*)(void))recv_job, METH_FASTCALL,
     "One recv() of a blocking socket's fd: assigned_job's fields of a whole job of ours, or the "
     "bytes read."},
    {"send_complete", (PyCFunction)(void (*)(void))send_complete, METH_FASTCALL,
     "work_complete(handle, result, then) sent whole on a blocking socket's fd (sendall)."},
    {"work_complete", (PyCFunction)(void (*)(void))work_complete, METH_FASTCALL,
     "WORK_COMPLETE for ``handle`` with ``result``, followed by ``then``."},
    {"count", (PyCFunction)(void (*)(void))count, METH_FASTCALL,
     "Count one finished job in a worker's scoreboard slot (SlotWriter.job_end)."},
    {"job_start", (PyCFunction)(void (*)(void))job_start, METH_FASTCALL,
     "One job starting in a worker's scoreboard slot (SlotWriter.job_start)."},
    {"set_buckets", (PyCFunction)set_buckets, METH_O,
     "The upper bounds of the job duration histogram, in seconds (scoreboard.BUCKETS)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "gearmgr._speedups",
    "The worker's job path in C (see gearmgr/wire/protocol.py, gearmgr/scoreboard.py).", 0, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
