/*
 * SigV4 signing cost per request: a small Kinesis GetRecords request, signed with the day's key
 * cached (one signer reused) and uncached (a fresh signer each time, so the HMAC key chain runs
 * for every request). Prints the best of 3 runs in ns per signature.
 *
 * usage: bench_sigv4 [ITERATIONS]   (default 200000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/clock.h"
#include "d2o/sigv4.h"
#include "d2o/util.h"

static const struct d2o_aws_creds creds = {"AKIDEXAMPLE",
                                           "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", NULL};
static const struct d2o_sigv4_header headers[] = {
    {"Content-Type", "application/x-amz-json-1.1"},
    {"X-Amz-Target", "Kinesis_20131202.GetRecords"},
};
static const char body[] = "{\"ShardIterator\":\"AAAAAAAAAAGx5mZ3s2J0xjKpYh3H0/5pQ0x9m0qLQ3xq9bD1"
                           "k8tq4kq2f0ycRkP9n3VZbqzqq8W6aJ2e0Ck2yq7fH1l9Wm==\",\"Limit\":10000}";

static double run(long iterations, int cached)
{
    struct d2o_sigv4_request req = {"POST",  "https://kinesis.us-east-1.amazonaws.com/",
                                    headers, D2O_ARRAY_SIZE(headers),
                                    body,    sizeof(body) - 1};
    struct d2o_sigv4_signer *shared = d2o_sigv4_signer_new("us-east-1", "kinesis");
    int64_t t0 = d2o_mono_us();
    long i;

    for (i = 0; i < iterations; i++) {
        struct d2o_sigv4_signer *s = cached ? shared : d2o_sigv4_signer_new("us-east-1", "kinesis");
        struct d2o_sigv4_out out;
        char err[128];

        if (d2o_sigv4_sign(s, &creds, &req, (time_t)1764032400, 0, &out, err, sizeof(err)) != 0) {
            fprintf(stderr, "bench_sigv4: %s\n", err);
            exit(1);
        }
        d2o_sigv4_out_free(&out);
        if (!cached) {
            d2o_sigv4_signer_free(s);
        }
    }
    d2o_sigv4_signer_free(shared);
    return (double)(d2o_mono_us() - t0) * 1000.0 / (double)iterations;
}

int main(int argc, char **argv)
{
    long iterations = 200000;
    double best[2] = {1e18, 1e18};
    int k, cached;

    if (argc > 1) {
        int64_t v;

        if (d2o_parse_i64(argv[1], 1, 100000000, &v) < 0) {
            fprintf(stderr, "usage: bench_sigv4 [ITERATIONS]\n");
            return 2;
        }
        iterations = (long)v;
    }
    for (k = 0; k < 3; k++) {
        for (cached = 0; cached < 2; cached++) {
            double ns = run(iterations, cached);

            if (ns < best[cached]) {
                best[cached] = ns;
            }
        }
    }
    printf("sigv4 uncached: %.0f ns/signature (%.0f/s)\n", best[0], 1e9 / best[0]);
    printf("sigv4 cached:   %.0f ns/signature (%.0f/s)\n", best[1], 1e9 / best[1]);
    return 0;
}
