/* A no-op libgearman worker: the C reference of the throughput benchmarks.
 *
 *   cworker HOST PORT FUNCTION
 *
 * Registers FUNCTION and answers every job with an empty result, with the plain
 * gearman_worker_work() loop a C worker uses. Compiled by bench/common.py with
 *   gcc -O2 -Wall -o cworker cworker.c -lgearman
 */
#include <libgearman/gearman.h>
#include <stdio.h>
#include <stdlib.h>

static void *noop(gearman_job_st *job, void *context, size_t *result_size, gearman_return_t *ret_ptr)
{
    (void)job;
    (void)context;
    *result_size = 0;
    *ret_ptr = GEARMAN_SUCCESS;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s HOST PORT FUNCTION\n", argv[0]);
        return 2;
    }
    gearman_worker_st *worker = gearman_worker_create(NULL);
    if (worker == NULL) {
        fprintf(stderr, "cworker: gearman_worker_create failed\n");
        return 1;
    }
    if (gearman_worker_add_server(worker, argv[1], (in_port_t)atoi(argv[2])) != GEARMAN_SUCCESS ||
        gearman_worker_add_function(worker, argv[3], 0, noop, NULL) != GEARMAN_SUCCESS) {
        fprintf(stderr, "cworker: %s\n", gearman_worker_error(worker));
        return 1;
    }
    for (;;) {
        gearman_return_t ret = gearman_worker_work(worker);
        if (ret != GEARMAN_SUCCESS && ret != GEARMAN_IO_WAIT && ret != GEARMAN_NO_JOBS) {
            fprintf(stderr, "cworker: %s\n", gearman_worker_error(worker));
        }
    }
    return 0;
}
