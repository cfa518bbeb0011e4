/* The loop of a busy worker in C: jobs that follow one another on one connection, each read,
 * run and answered here without going back to the interpreter's loop.
 *
 *   serve(fd, functions, ctx, jobs, refresh_at, seen, watch, until)
 *       gearmgr/worker/loop.py: Worker._receive's fast path and Worker._job
 *
 * Per job, the same steps as the Python path, in the same order: one recv() of a whole
 * JOB_ASSIGN_UNIQ of ours (gm_parse_assign), the job in hand stored in the slot (BUSY), a Job
 * with its slots filled in place, the function called, its result made bytes (None: b"",
 * anything else but bytes: ctx's to_bytes), the job counted in the slot (IDLE), WORK_COMPLETE and
 * the next GRAB_JOB_UNIQ in one send(). The worker calls it only where that is the whole job
 * path: the process already busy, no quarantined job published, no stop asked for
 * (gearmgr/worker/serving.py). With several servers (``watch``: the other connections' and the
 * wakeup pipe's (fd, events) for poll()), each read waits in poll() until our connection has
 * something, and it returns None as soon as another one has (or ``until``, the Python loop's
 * next deadline, comes), so that the Python loop serves every server in turn.
 *
 * It returns to Python as soon as anything else is due, with what Python has to finish:
 *   None                           several servers: another connection (or the wakeup pipe)
 *                                  has something, or ``until`` came
 *   bytes                          a read that is not a whole job of ours (b"": closed): the
 *                                  session decodes it
 *   (handle, entry, unique, data)  a job it did not start: a stop was asked for, the quarantine
 *                                  list changed, or the function has a timeout
 *   (handle, entry, job, outcome, start)
 *                                  a job that ran and is neither counted nor answered: outcome is
 *                                  its result (bytes) or what it raised; it failed, or a limit,
 *                                  a stop or the once-a-second refresh is due, or the
 *                                  function forked and this is the child
 *   (handle, exc)                  a job counted whose answer could not be sent (exc: OSError)
 * and raises what socket.recv raises (BlockingIOError when SO_RCVTIMEO ran out). Jobs it
 * counted are in the slot's "done" word, which Python reads back.
 *
 * ctx = (job_type, send_job, end_slot, flags, gen, max_jobs, deadline, to_bytes):
 *   job_type   gearmgr.worker.job.Job (its __slots__, filled by offset)
 *   send_job   what the Job's status/data calls write to (Connection.send_job)
 *   end_slot   (words, state, idle, done, failed), as for count()
 *   flags      a writable buffer; flags[0] != 0: a stop was asked for (Worker.stop);
 *              flags[1] != 0: this process is the child of a fork made by a job's function
 *   gen        the quarantine list's generation word (QuarantineView.gen), compared with seen
 *   max_jobs   0: none; deadline: max_lifetime's monotonic time, 0.0: none
 * A function's entry in functions (Worker._by_name) is (handler, name, timeout, counters,
 * job_start, start_slot), start_slot as for job_start().
 */
#include "_speedups.h"

#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <structmember.h>
#include <time.h>
#include <unistd.h>

/* time.monotonic(): the same clock, in seconds. */
static double
monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Job.__slots__ by offset, found once for the type given. */
static const char *const SLOT_NAMES[] = {"_handle", "_log", "_send", "_unique", "data", "function"};
enum { S_HANDLE, S_LOG, S_SEND, S_UNIQUE, S_DATA, S_FUNCTION, NSLOTS };
static PyTypeObject *slots_of;
static Py_ssize_t slot_offset[NSLOTS];

static int
find_slots(PyObject *type)
{
    if ((PyTypeObject *)type == slots_of)
        return 0;
    if (!PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "serve: job_type must be a class");
        return -1;
    }
    for (int i = 0; i < NSLOTS; i++) {
        PyObject *d = PyObject_GetAttrString(type, SLOT_NAMES[i]); /* the class's descriptor */
        int ok = d != NULL && Py_IS_TYPE(d, &PyMemberDescr_Type) &&
                 ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
        if (ok)
            slot_offset[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_XDECREF(d);
        if (!ok) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "serve: job_type has no slot %s", SLOT_NAMES[i]);
            return -1;
        }
    }
    /* kept alive: no other class can come to have its address while its offsets are here */
    Py_INCREF(type);
    Py_XSETREF(slots_of, (PyTypeObject *)type);
    return 0;
}

static PyObject *
new_job(PyTypeObject *type, PyObject *const *fields, PyObject *send, PyObject *name)
{
    PyObject *job = type->tp_alloc(type, 0);
    if (job == NULL)
        return NULL;
    PyObject *values[NSLOTS];
    values[S_HANDLE] = fields[0];
    values[S_LOG] = Py_None;
    values[S_SEND] = send;
    values[S_UNIQUE] = fields[2];
    values[S_DATA] = fields[3];
    values[S_FUNCTION] = name;
    for (int i = 0; i < NSLOTS; i++)
        *(PyObject **)((char *)job + slot_offset[i]) = Py_NewRef(values[i]);
    return job;
}

/* What the function raised, as an exception instance with its traceback. */
static PyObject *
raised(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

/* The entry's start slot when the job may run here (C stores; a timeout only with the
   watchdog's arm), else NULL. */
static PyObject *
runs_here(PyObject *entry, int watchdog)
{
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 6)
        return NULL;
    PyObject *timeout = PyTuple_GET_ITEM(entry, 2), *start = PyTuple_GET_ITEM(entry, 5);
    if (start == Py_None || !PyFloat_CheckExact(timeout) ||
        (PyFloat_AS_DOUBLE(timeout) != 0.0 && !watchdog) ||
        !PyUnicode_CheckExact(PyTuple_GET_ITEM(entry, 1)))
        return NULL;
    return start;
}

typedef struct {
    int fd;
    PyObject *functions, *job_type, *send_job, *to_bytes, *grab;
    PyObject *conn, *arm, *disarm, *lock; /* Py_None without a watchdog */
    unsigned char *flags;
    uint64_t *w, *gen, seen, jobs, max_jobs, max_memory;
    Py_ssize_t n, rss_word;
    double deadline, refresh_at;
    gm_end end;
} loop;

/* worker/limits.py's current_rss(): this process's resident set in bytes, 0 if unknown. */
static uint64_t
current_rss(void)
{
    static long page;
    if (page <= 0 && (page = sysconf(_SC_PAGESIZE)) <= 0)
        return 0;
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char b[128];
    ssize_t n = read(fd, b, sizeof b - 1);
    close(fd);
    if (n <= 0)
        return 0;
    b[n] = 0;
    char *p = strchr(b, ' '); /* "size resident shared ..." in pages */
    if (p == NULL)
        return 0;
    return strtoull(p + 1, NULL, 10) * (uint64_t)page;
}

/* lock.acquire() or lock.release() (the watchdog's lock): 0, or -1 with an exception. */
static int
call_lock(PyObject *lock, const char *method)
{
    PyObject *r = PyObject_CallMethod(lock, method, NULL);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* Several servers: the connections' and the wakeup pipe's (fd, events) pairs to watch beside
   ours, at most MAX_WATCH (more: the Python loop serves them). */
#define MAX_WATCH 64

static int
watch_list(PyObject *watch, struct pollfd *pfds, int *n)
{
    if (!PyTuple_Check(watch) || PyTuple_GET_SIZE(watch) > MAX_WATCH) {
        PyErr_SetString(PyExc_TypeError, "serve: watch is a tuple of at most 64 (fd, events)");
        return -1;
    }
    *n = (int)PyTuple_GET_SIZE(watch);
    for (int i = 0; i < *n; i++) {
        PyObject *pair = PyTuple_GET_ITEM(watch, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "serve: watch is a tuple of (fd, events)");
            return -1;
        }
        int fd = gm_fd(PyTuple_GET_ITEM(pair, 0), "serve");
        long events = PyLong_AsLong(PyTuple_GET_ITEM(pair, 1));
        if (fd < 0 || (events == -1 && PyErr_Occurred()))
            return -1;
        pfds[i + 1].fd = fd;
        pfds[i + 1].events = (short)events;
    }
    return 0;
}

/* With several servers: wait until our connection has something to read (1), or another
   connection or the wakeup pipe has (0: back to the Python loop's poll), or ``until`` came
   (0); -1 with an exception. */
static int
ours_ready(struct pollfd *pfds, int n, double until)
{
    for (;;) {
        int timeout = -1;
        if (until != INFINITY) {
            double left = ceil((until - monotonic()) * 1000.0);
            timeout = left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
        }
        int r, err;
        if (gm_alone()) {
            r = poll(pfds, n + 1, timeout);
            err = errno;
        }
        else {
            Py_BEGIN_ALLOW_THREADS
            r = poll(pfds, n + 1, timeout);
            err = errno;
            Py_END_ALLOW_THREADS
        }
        if (r < 0) {
            if (err != EINTR) {
                errno = err;
                PyErr_SetFromErrno(PyExc_OSError);
                return -1;
            }
            if (PyErr_CheckSignals() < 0)
                return -1;
            continue;
        }
        if (r == 0)
            return 0;
        for (int i = 1; i <= n; i++)
            if (pfds[i].revents)
                return 0;
        return 1;
    }
}

/* One job from the read of n bytes at buf; NULL with an exception, Py_None to go on, anything
   else is serve()'s answer. */
static PyObject *
one_job(loop *L, const char *buf, ssize_t got)
{
    PyObject *fields = gm_parse_assign(buf, got, L->functions);
    if (fields == NULL)
        return NULL;
    if (fields == Py_None) {
        Py_DECREF(fields);
        return PyBytes_FromStringAndSize(buf, got);
    }
    PyObject *const *f = &PyTuple_GET_ITEM(fields, 0);
    PyObject *entry = f[1], *start_slot = runs_here(entry, L->arm != Py_None);
    if (start_slot == NULL || L->flags[0] || L->gen[0] != L->seen)
        return fields; /* Python runs it */
    gm_start st;
    gm_func fc;
    if (gm_start_slot(start_slot, L->n, &st) < 0 ||
        gm_counters(PyTuple_GET_ITEM(entry, 3), L->n, &fc) < 0) {
        Py_DECREF(fields);
        return NULL;
    }
    double start = monotonic();
    gm_job_start(L->w, &st, f[0], f[2]);
    PyObject *job = new_job((PyTypeObject *)L->job_type, f, L->send_job, PyTuple_GET_ITEM(entry, 1));
    if (job == NULL) {
        Py_DECREF(fields);
        return NULL;
    }
    PyObject *timeout = PyTuple_GET_ITEM(entry, 2);
    int timed = PyFloat_AS_DOUBLE(timeout) != 0.0;
    if (timed) { /* the watchdog fails the job at start + timeout (Watchdog.arm) */
        PyObject *start_f = PyFloat_FromDouble(start), *armed = NULL;
        if (start_f != NULL) {
            PyObject *a[6] = {L->conn, f[0], start_f, timeout, PyTuple_GET_ITEM(entry, 1), job};
            armed = PyObject_Vectorcall(L->arm, a, 6, NULL);
            Py_DECREF(start_f);
        }
        if (armed == NULL) {
            Py_DECREF(job);
            Py_DECREF(fields);
            return NULL;
        }
        Py_DECREF(armed);
    }
    PyObject *result = PyObject_CallOneArg(PyTuple_GET_ITEM(entry, 0), job);
    if (result == Py_None) {
        Py_DECREF(result);
        result = PyBytes_FromStringAndSize(NULL, 0);
    }
    else if (result != NULL && !PyBytes_CheckExact(result)) {
        Py_SETREF(result, PyObject_CallOneArg(L->to_bytes, result));
        if (result != NULL && !PyBytes_Check(result)) {
            Py_SETREF(result, NULL);
            PyErr_SetString(PyExc_TypeError, "to_bytes did not return bytes");
        }
    }
    int failed = result == NULL;
    if (failed && (result = raised()) == NULL) { /* an error without an exception: cannot be */
        Py_DECREF(job);
        Py_DECREF(fields);
        return NULL;
    }
    if (L->flags[1]) { /* it forked and came back here in the child, which leaves (Python) */
        PyObject *out = Py_BuildValue("(OONNd)", f[0], entry, job, result, start);
        Py_DECREF(fields);
        return out;
    }
    if (timed) { /* in time: from here on the watchdog leaves the job alone */
        PyObject *r = PyObject_CallNoArgs(L->disarm);
        if (r == NULL) {
            Py_DECREF(result);
            Py_DECREF(job);
            Py_DECREF(fields);
            return NULL;
        }
        Py_DECREF(r);
    }
    double end = monotonic();
    uint64_t jobs = L->jobs + 1, rss = 0;
    if (L->max_memory && !failed) { /* Limits.check: the RSS after each job, in the slot too */
        rss = current_rss();
        if (rss)
            L->w[L->rss_word] = rss;
    }
    if (failed || L->flags[0] || (L->max_jobs && jobs >= L->max_jobs) ||
        (L->deadline > 0.0 && end >= L->deadline) || rss > L->max_memory ||
        end >= L->refresh_at) {
        PyObject *out = Py_BuildValue("(OONNd)", f[0], entry, job, result, start);
        Py_DECREF(fields);
        return out; /* Python counts and answers it (Worker._job with ran=) */
    }
    gm_count(L->w, &L->end, &fc, jobs, 0, end - start);
    L->jobs = jobs;
    Py_DECREF(job);
    PyObject *out = NULL;
    /* under the watchdog's lock when there is one: the job's own threads send too */
    int locked = L->lock != Py_None && call_lock(L->lock, "acquire") == 0;
    if (locked || L->lock == Py_None) {
        if (gm_send_complete(L->fd, f[0], result, L->grab) < 0) {
            PyObject *exc = raised();
            out = exc == NULL ? NULL : Py_BuildValue("(ON)", f[0], exc);
        }
        else
            out = Py_NewRef(Py_None);
    }
    if (locked && call_lock(L->lock, "release") < 0)
        Py_CLEAR(out);
    Py_DECREF(result);
    Py_DECREF(fields);
    return out;
}

PyObject *
gm_serve(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8 || !PyDict_Check(args[1]) || !PyTuple_Check(args[2]) ||
        PyTuple_GET_SIZE(args[2]) != 14) {
        PyErr_SetString(PyExc_TypeError,
                        "serve(fd, functions: dict, (job_type, send_job, end_slot, flags, gen, "
                        "max_jobs, deadline, to_bytes, conn, arm, disarm, lock, max_memory, "
                        "rss_word), jobs, refresh_at, seen, watch, until)");
        return NULL;
    }
    PyObject *const *ctx = &PyTuple_GET_ITEM(args[2], 0);
    loop L = {.functions = args[1], .job_type = ctx[0], .send_job = ctx[1], .to_bytes = ctx[7],
              .conn = ctx[8], .arm = ctx[9], .disarm = ctx[10], .lock = ctx[11]};
    if ((L.arm == Py_None) != (L.disarm == Py_None) || (L.arm == Py_None) != (L.lock == Py_None)) {
        PyErr_SetString(PyExc_TypeError, "serve: arm, disarm and lock are given together");
        return NULL;
    }
    if ((L.fd = gm_fd(args[0], "serve")) < 0 || find_slots(ctx[0]) < 0)
        return NULL;
    L.jobs = PyLong_AsUnsignedLongLong(args[3]);
    L.seen = PyLong_AsUnsignedLongLong(args[5]);
    L.max_jobs = PyLong_AsUnsignedLongLong(ctx[5]);
    L.max_memory = PyLong_AsUnsignedLongLong(ctx[12]);
    L.rss_word = PyLong_AsSsize_t(ctx[13]);
    L.deadline = PyFloat_AsDouble(ctx[6]);
    L.refresh_at = PyFloat_AsDouble(args[4]);
    double until = PyFloat_AsDouble(args[7]);
    if (PyErr_Occurred())
        return NULL;
    struct pollfd pfds[MAX_WATCH + 1];
    int nwatch;
    if (watch_list(args[6], pfds, &nwatch) < 0)
        return NULL;
    pfds[0].fd = L.fd;
    pfds[0].events = POLLIN;
    Py_buffer words, flags, gen;
    if (!PyTuple_Check(ctx[2]) || PyTuple_GET_SIZE(ctx[2]) != 5) {
        PyErr_SetString(PyExc_TypeError, "serve: end_slot is (words, state, idle, done, failed)");
        return NULL;
    }
    if (gm_words(PyTuple_GET_ITEM(ctx[2], 0), &words) < 0)
        return NULL;
    PyObject *out = NULL;
    char *buf = NULL;
    if (PyObject_GetBuffer(ctx[3], &flags, PyBUF_WRITABLE) < 0)
        goto no_flags;
    if (gm_words(ctx[4], &gen) < 0)
        goto no_gen;
    L.w = (uint64_t *)words.buf;
    L.n = words.len / 8;
    L.flags = (unsigned char *)flags.buf;
    L.gen = (uint64_t *)gen.buf;
    if (flags.len < 2 || gen.len < 8) {
        PyErr_SetString(PyExc_ValueError, "serve: flags or gen too short");
        goto done;
    }
    if (gm_end_slot(ctx[2], L.n, &L.end) < 0)
        goto done;
    if (L.rss_word < 0 || L.rss_word >= L.n) {
        PyErr_SetString(PyExc_IndexError, "serve: rss_word out of range");
        goto done;
    }
    static PyObject *grab; /* made once, kept for the process */
    if (grab == NULL && (grab = PyBytes_FromStringAndSize(GRAB_PACKET, HEADER_SIZE)) == NULL)
        goto done;
    L.grab = grab;
    if ((buf = gm_take_buffer()) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (;;) {
        if (nwatch) { /* several servers: read ours only while the others have nothing */
            int ready = ours_ready(pfds, nwatch, until);
            if (ready <= 0) {
                out = ready < 0 ? NULL : Py_NewRef(Py_None);
                break;
            }
        }
        int err;
        ssize_t got = gm_recv(L.fd, buf, RECV_SIZE, &err);
        if (got < 0) {
            if (err != EINTR) { /* EAGAIN (SO_RCVTIMEO): BlockingIOError, as socket.recv */
                errno = err;
                PyErr_SetFromErrno(PyExc_OSError);
                break;
            }
            if (PyErr_CheckSignals() < 0) /* PEP 475: a handler that raised ends the read */
                break;
            continue;
        }
        out = one_job(&L, buf, got);
        if (out != Py_None)
            break;
        Py_DECREF(out);
        out = NULL;
        /* a signal's Python handler (a stop) runs now, not at the next bytecode of a handler */
        if (PyErr_CheckSignals() < 0)
            break;
    }
done:
    if (buf != NULL)
        gm_give_buffer(buf);
    PyBuffer_Release(&gen);
no_gen:
    PyBuffer_Release(&flags);
no_flags:
    PyBuffer_Release(&words);
    return out;
}
