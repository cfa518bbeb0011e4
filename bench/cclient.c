/* Foreground round trips with libgearman: the C reference of bench/roundtrip.py.
 *
 *   cclient HOST PORT FUNCTION COUNT
 *
 * Submits COUNT jobs one after the other with gearman_client_do() and prints one line:
 *   jobs seconds p50_us p90_us p99_us max_us
 */
#include <libgearman/gearman.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s HOST PORT FUNCTION COUNT\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[4]);
    double *lat = malloc(sizeof(double) * n);
    gearman_client_st *client = gearman_client_create(NULL);
    if (gearman_client_add_server(client, argv[1], (in_port_t)atoi(argv[2])) != GEARMAN_SUCCESS) {
        fprintf(stderr, "cclient: %s\n", gearman_client_error(client));
        return 1;
    }
    const char payload[] = "0123456789abcdef";
    double t0 = now();
    for (int i = 0; i < n; i++) {
        size_t size;
        gearman_return_t ret;
        double a = now();
        void *result = gearman_client_do(client, argv[3], NULL, payload, sizeof(payload) - 1, &size, &ret);
        lat[i] = now() - a;
        free(result);
        if (ret != GEARMAN_SUCCESS) {
            fprintf(stderr, "cclient: %s\n", gearman_client_error(client));
            return 1;
        }
    }
    double secs = now() - t0;
    qsort(lat, n, sizeof(double), cmp);
    printf("%d %.6f %.1f %.1f %.1f %.1f\n", n, secs, lat[n / 2] * 1e6, lat[(int)(n * 0.9)] * 1e6,
           lat[(int)(n * 0.99)] * 1e6, lat[n - 1] * 1e6);
    gearman_client_free(client);
    return 0;
}
