/*
 * libFuzzer target: SigV4 canonicalisation of arbitrary requests. The input is split on NUL bytes
 * into method, URL, header name/value pairs and a body; whatever it holds, signing either
 * succeeds with a well-formed result or fails with a message, and never crashes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/sigv4.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct d2o_aws_creds creds = {"AKIDFUZZ", "fuzz-secret", "fuzz-token"};
    char *copy = malloc(size + 1);
    char *fields[20];
    size_t n = 0, i;
    char *p, *end;
    struct d2o_sigv4_header hdrs[8];
    struct d2o_sigv4_request req = {0};
    struct d2o_sigv4_signer *s = d2o_sigv4_signer_new("us-east-1", "kinesis");
    struct d2o_sigv4_out out;
    char err[256] = "";
    int r;

    if (!copy || !s) {
        abort();
    }
    memcpy(copy, data, size);
    copy[size] = '\0';
    p = copy;
    end = copy + size;
    while (n < 20 && p <= end) {
        fields[n++] = p;
        p += strlen(p) + 1;
    }
    req.method = n > 0 ? fields[0] : NULL;
    req.url = n > 1 ? fields[1] : NULL;
    for (i = 2; i + 1 < n && req.n_headers < 8; i += 2) {
        hdrs[req.n_headers].name = fields[i];
        hdrs[req.n_headers].value = fields[i + 1];
        req.n_headers++;
    }
    req.headers = hdrs;
    if (n > 2 && (n % 2) == 1) {
        req.body = fields[n - 1];
        req.body_len = strlen(fields[n - 1]);
    }
    r = d2o_sigv4_sign(s, &creds, &req, (time_t)1764000000, (unsigned)(size & 7), &out, err,
                       sizeof(err));
    if (r == 0) {
        int auth = 0;

        for (i = 0; i < out.n_lines; i++) {
            auth += strncmp(out.lines[i], "Authorization: AWS4-HMAC-SHA256 ", 32) == 0;
        }
        if (!out.signature || strlen(out.signature) != 64 || !out.canonical_request || auth != 1) {
            abort();
        }
        d2o_sigv4_out_free(&out);
    } else if (err[0] == '\0' || out.signature != NULL) {
        abort();
    }
    d2o_sigv4_signer_free(s);
    free(copy);
    return 0;
}
