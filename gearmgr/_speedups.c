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
 *   count(...), set_buckets(bounds), job_start(...): the scoreboard's stores (gearmgr/_slots.c)
 *   serve(fd, functions, ctx, jobs, refresh_at, seen): a busy worker's loop (gearmgr/_serve.c)
 */
#include "_speedups.h"

/* "\0RES" + JOB_ASSIGN_UNIQ (31) and "\0REQ" + WORK_COMPLETE (13), big-endian */
static const char ASSIGN_HEAD[8] = {0, 'R', 'E', 'S', 0, 0, 0, 31};
static const char COMPLETE_HEAD[8] = {0, 'R', 'E', 'Q', 0, 0, 0, 13};

/* The fields of the whole JOB_ASSIGN_UNIQ of ours in p[:n], or None (a new reference). */
PyObject *
gm_parse_assign(const char *p, Py_ssize_t n, PyObject *functions)
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
    return gm_parse_assign(PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]), args[1]);
}

/* True when no other thread can want the GIL while this one waits in recv() or send(): the
   only thread state of the only interpreter (a Python thread has its state before it starts).
   A busy worker without a timeout watchdog is in that case, and skips the GIL's release and
   retake around its two system calls per job (about 1,300 instructions: take_gil, its mutexes
   and condition variable). A thread that C code makes and attaches meanwhile waits for the GIL
   until the call returns, at most the socket's timeout (SO_RCVTIMEO, SO_SNDTIMEO). Builds
   without a GIL always detach. */
int
gm_alone(void)
{
#ifdef Py_GIL_DISABLED
    return 0;
#else
    PyThreadState *ts = PyThreadState_Get();
    PyInterpreterState *interp = PyThreadState_GetInterpreter(ts);
    return PyInterpreterState_Head() == interp && PyInterpreterState_Next(interp) == NULL &&
           PyInterpreterState_ThreadHead(interp) == ts && PyThreadState_Next(ts) == NULL;
#endif
}

/* recv() and send() around which the GIL is released unless alone() */
ssize_t
gm_recv(int fd, char *buf, size_t size, int *err)
{
    ssize_t got;
    if (gm_alone()) {
        got = recv(fd, buf, size, 0);
        *err = errno;
        return got;
    }
    Py_BEGIN_ALLOW_THREADS
    got = recv(fd, buf, size, 0);
    *err = errno;
    Py_END_ALLOW_THREADS
    return got;
}

static ssize_t
send_gil(int fd, const char *buf, size_t size, int *err)
{
    ssize_t n;
    if (gm_alone()) {
        n = send(fd, buf, size, MSG_NOSIGNAL);
        *err = errno;
        return n;
    }
    Py_BEGIN_ALLOW_THREADS
    n = send(fd, buf, size, MSG_NOSIGNAL);
    *err = errno;
    Py_END_ALLOW_THREADS
    return n;
}

/* Bytes asked of one recv() (gearmgr.worker.reading.RECV_SIZE), read into a buffer kept for the
   process: no allocation of 64 KiB per read. A second thread reading meanwhile gets its own. */
static char recv_buffer[RECV_SIZE];
static int recv_buffer_taken;

char *
gm_take_buffer(void)
{
    if (recv_buffer_taken)
        return PyMem_RawMalloc(RECV_SIZE);
    recv_buffer_taken = 1;
    return recv_buffer;
}

void
gm_give_buffer(char *buf)
{
    if (buf == recv_buffer)
        recv_buffer_taken = 0;
    else
        PyMem_RawFree(buf);
}

/* One read of a blocking socket's fd: the fields of a whole JOB_ASSIGN_UNIQ of ours (as
   assigned_job), or the bytes read (b"": closed); OSError as socket.recv raises it. */
static PyObject *
recv_job(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyLong_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "recv_job(fd: int, functions: dict)");
        return NULL;
    }
    int fd = gm_fd(args[0], "recv_job");
    if (fd < 0)
        return NULL;
    char *buf = gm_take_buffer();
    if (buf == NULL)
        return PyErr_NoMemory();
    PyObject *out = NULL;
    ssize_t got;
    int err;
    for (;;) {
        got = gm_recv(fd, buf, RECV_SIZE, &err);
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
    out = gm_parse_assign(buf, got, args[1]);
    if (out == Py_None) {
        Py_DECREF(out);
        out = PyBytes_FromStringAndSize(buf, got);
    }
done:
    gm_give_buffer(buf);
    return out;
}

/* WORK_COMPLETE for handle with result, then ``then`` (NULL: nothing), written at o: the sizes
   were checked by the caller (the body fits 32 bits, o holds it all). */
void
gm_fill_complete(char *o, PyObject *handle, PyObject *result, PyObject *then)
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
    gm_fill_complete(PyBytes_AS_STRING(out), args[0], args[1], nargs == 3 ? args[2] : NULL);
    return out;
}

int
gm_send_all(int fd, const char *buf, Py_ssize_t total)
{
    Py_ssize_t sent = 0;
    while (sent < total) {
        int err;
        ssize_t n = send_gil(fd, buf + sent, total - sent, &err);
        if (n >= 0) {
            sent += n;
            continue;
        }
        if (err == EINTR) { /* PEP 475: retried unless a signal handler raised */
            if (PyErr_CheckSignals() < 0)
                return -1;
            continue;
        }
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

/* WORK_COMPLETE for handle with result, then ``then`` (bytes, b"": nothing), sent whole on a
   blocking socket's fd (as socket.sendall: OSError on failure), built in a buffer on the stack
   when it fits. */
int
gm_send_complete(int fd, PyObject *handle, PyObject *result, PyObject *then)
{
    Py_ssize_t hl = PyBytes_GET_SIZE(handle), rl = PyBytes_GET_SIZE(result);
    Py_ssize_t tl = PyBytes_GET_SIZE(then), body = hl + 1 + rl;
    if (body > 0xFFFFFFFFLL) {
        PyErr_SetString(PyExc_OverflowError, "a packet's body is limited to 4 GiB");
        return -1;
    }
    Py_ssize_t total = HEADER_SIZE + body + tl;
    char small[2048], *buf = small;
    if (total > (Py_ssize_t)sizeof small && (buf = PyMem_RawMalloc(total)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    gm_fill_complete(buf, handle, result, then);
    int rc = gm_send_all(fd, buf, total);
    if (buf != small)
        PyMem_RawFree(buf);
    return rc;
}

int
gm_fd(PyObject *o, const char *what)
{
    long fd = PyLong_AsLong(o);
    if (fd == -1 && PyErr_Occurred())
        return -1;
    if (fd < 0 || fd > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "%s: not a file descriptor", what);
        return -1;
    }
    return (int)fd;
}

static PyObject *
send_complete(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyLong_Check(args[0]) || !PyBytes_Check(args[1]) ||
        !PyBytes_Check(args[2]) || !PyBytes_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "send_complete(fd: int, handle: bytes, result: bytes, then: bytes)");
        return NULL;
    }
    int fd = gm_fd(args[0], "send_complete");
    if (fd < 0 || gm_send_complete(fd, args[1], args[2], args[3]) < 0)
        return NULL;
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
    {"count", (PyCFunction)(void (*)(void))gm_count_job, METH_FASTCALL,
     "Count one finished job in a worker's scoreboard slot (SlotWriter.job_end)."},
    {"job_start", (PyCFunction)(void (*)(void))gm_start_job, METH_FASTCALL,
     "One job starting in a worker's scoreboard slot (SlotWriter.job_start)."},
    {"serve", (PyCFunction)(void (*)(void))gm_serve, METH_FASTCALL,
     "Serve the jobs that follow one another on a busy worker's connection (gearmgr/_serve.c)."},
    {"set_buckets", (PyCFunction)gm_set_buckets, METH_O,
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
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    PyObject *grab = PyBytes_FromStringAndSize(GRAB_PACKET, HEADER_SIZE);
    if (grab == NULL || PyModule_AddObjectRef(m, "GRAB", grab) < 0) {
        Py_XDECREF(grab);
        Py_DECREF(m);
        return NULL;
    }
    Py_DECREF(grab);
    return m;
}
