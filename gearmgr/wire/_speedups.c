/* The worker's job path in C: the two codec steps a busy worker runs for every job.
 *
 * gearmgr/wire/protocol.py holds the reference implementation of both functions in Python
 * (_py_assigned_job, _py_work_complete) and uses these when this module was built (setup.py
 * builds it as an optional extension: without a C compiler the package stays pure Python).
 * tests/test_speedups.py checks that both implementations agree on any input.
 *
 *   assigned_job(data, functions) -> (handle, value, unique, workload) | None
 *   work_complete(handle, result, then) -> bytes
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define HEADER_SIZE 12

/* "\0RES" + JOB_ASSIGN_UNIQ (31) and "\0REQ" + WORK_COMPLETE (13), big-endian */
static const char ASSIGN_HEAD[8] = {0, 'R', 'E', 'S', 0, 0, 0, 31};
static const char COMPLETE_HEAD[8] = {0, 'R', 'E', 'Q', 0, 0, 0, 13};

static PyObject *
assigned_job(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "assigned_job(data: bytes, functions: dict)");
        return NULL;
    }
    const char *p = PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
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
    PyObject *name = PyBytes_FromStringAndSize(h + 1, f - h - 1);
    if (name == NULL)
        return NULL;
    PyObject *value = PyDict_GetItemWithError(args[1], name);  /* borrowed */
    Py_DECREF(name);
    if (value == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
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
work_complete(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[1]) ||
        !PyBytes_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "work_complete(handle: bytes, result: bytes, then: bytes)");
        return NULL;
    }
    Py_ssize_t hl = PyBytes_GET_SIZE(args[0]), rl = PyBytes_GET_SIZE(args[1]);
    Py_ssize_t tl = PyBytes_GET_SIZE(args[2]);
    Py_ssize_t body = hl + 1 + rl;
    if (body > 0xFFFFFFFFLL) {
        PyErr_SetString(PyExc_OverflowError, "a packet's body is limited to 4 GiB");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, HEADER_SIZE + body + tl);
    if (out == NULL)
        return NULL;
    char *o = PyBytes_AS_STRING(out);
    memcpy(o, COMPLETE_HEAD, 8);
    o[8] = (char)(body >> 24);
    o[9] = (char)(body >> 16);
    o[10] = (char)(body >> 8);
    o[11] = (char)body;
    o += HEADER_SIZE;
    memcpy(o, PyBytes_AS_STRING(args[0]), hl);
    o[hl] = 0;
    memcpy(o + hl + 1, PyBytes_AS_STRING(args[1]), rl);
    memcpy(o + body, PyBytes_AS_STRING(args[2]), tl);
    return out;
}

static PyMethodDef methods[] = {
    {"assigned_job", (PyCFunction)(void (*)(void))assigned_job, METH_FASTCALL,
     "(handle, functions[name], unique, workload) of one whole JOB_ASSIGN_UNIQ with a non-empty "
     "ASCII handle and a function in ``functions``; else None."},
    {"work_complete", (PyCFunction)(void (*)(void))work_complete, METH_FASTCALL,
     "WORK_COMPLETE for ``handle`` with ``result``, followed by ``then``."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "gearmgr.wire._speedups",
    "The worker's job path in C (see gearmgr/wire/protocol.py).", 0, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
