/*
 * Backoff sleeps that wake up on shutdown.
 */
#include <errno.h>
#include <poll.h>
#include <time.h>

#include "d2o/clock.h"
#include "d2o/wait.h"

#define MAX_WAIT_MS (INT64_C(1000) * 86400 * 365)

int d2o_wait_ms(int64_t ms, const volatile sig_atomic_t *stop)
{
    int64_t deadline, left;
    struct timespec ts;
    int r;

    if (ms > MAX_WAIT_MS) {
        ms = MAX_WAIT_MS; /* keeps the deadline arithmetic far from overflow */
    }
    deadline = d2o_mono_ms() + (ms > 0 ? ms : 0);
    for (;;) {
        if (stop && *stop) {
            r = 1;
            goto out;
        }
        left = deadline - d2o_mono_ms();
        if (left <= 0) {
            r = 0;
            goto out;
        }
        ts.tv_sec = (time_t)(left / 1000);
        ts.tv_nsec = (long)(left % 1000) * 1000000L;
        if (ppoll(NULL, 0, &ts, NULL) < 0 && errno != EINTR) {
            r = -errno;
            goto out;
        }
    }
out:
    return r;
}
