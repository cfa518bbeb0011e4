/* What the C extension's files share: gearmgr/_speedups.c (the codec steps, the socket's read
 * and write, the module), gearmgr/_slots.c (the scoreboard's stores) and gearmgr/_serve.c (the
 * loop of a busy worker). */
#ifndef GEARMGR_SPEEDUPS_H
#define GEARMGR_SPEEDUPS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#define HEADER_SIZE 12
/* Bytes asked of one recv() (gearmgr.worker.reading.RECV_SIZE). */
#define RECV_SIZE 65536
/* Bytes of the handle and of the unique id kept in a slot's job in hand (scoreboard.HAND). */
#define HAND_BYTES 128
/* "\0REQ" + GRAB_JOB_UNIQ (30) + an empty body: gearmgr.wire.session.GRAB */
#define GRAB_PACKET "\0REQ\0\0\0\x1e\0\0\0\0"

/* A slot's words for the end of a job (SlotWriter.job_end): indexes into the words. */
typedef struct {
    Py_ssize_t state, done, failed;
    uint64_t idle;
} gm_end;

/* One function's counters (SlotWriter.counter_words); on = 0: counted in the totals only. */
typedef struct {
    int on;
    Py_ssize_t done, duration, bucket;
} gm_func;

/* A slot's words for the start of a job of one function (SlotWriter.job_start). */
typedef struct {
    Py_ssize_t state, hand;
    uint64_t busy, number;
} gm_start;

PyObject *gm_parse_assign(const char *p, Py_ssize_t n, PyObject *functions);
char *gm_take_buffer(void);
void gm_give_buffer(char *buf);
int gm_alone(void);
ssize_t gm_recv(int fd, char *buf, size_t size, int *err);
int gm_send_all(int fd, const char *buf, Py_ssize_t total);
int gm_send_complete(int fd, PyObject *handle, PyObject *result, PyObject *then);
void gm_fill_complete(char *o, PyObject *handle, PyObject *result, PyObject *then);
int gm_fd(PyObject *o, const char *what);
int gm_words(PyObject *words, Py_buffer *view);
int gm_end_slot(PyObject *slot, Py_ssize_t n, gm_end *out);
int gm_counters(PyObject *counters, Py_ssize_t n, gm_func *out);
void gm_count(uint64_t *w, const gm_end *e, const gm_func *f, uint64_t jobs, int failed,
              double duration);
int gm_start_slot(PyObject *slot, Py_ssize_t n, gm_start *out);
void gm_job_start(uint64_t *w, const gm_start *s, PyObject *handle, PyObject *unique);
PyObject *gm_serve(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *gm_count_job(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *gm_start_job(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *gm_set_buckets(PyObject *module, PyObject *arg);

#endif
