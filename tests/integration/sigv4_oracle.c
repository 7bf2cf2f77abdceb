/*
 * Generates random requests, signs each with ddb2os's SigV4 signer at a fixed time, and prints one
 * JSON line per request for tests/integration/sigv4_botocore.py, which signs the same request with
 * botocore and compares.
 *
 * The requests vary the method, paths with spaces, unicode, reserved characters and dot segments,
 * repeated and empty query keys and values, header names in odd case with runs of spaces and tabs
 * in their values, repeated headers, session tokens, and empty, binary and large bodies.
 *
 * Queries are generated already in canonical percent-encoding: botocore sorts and signs the URL's
 * query pairs verbatim, while ddb2os decodes and re-encodes them, so the two only agree by
 * definition on canonically encoded queries (which is what ddb2os's clients send). Header names
 * botocore never signs (expect, user-agent, x-amzn-trace-id) are not generated.
 *
 * usage: sigv4_oracle COUNT SEED
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "d2o/buf.h"
#include "d2o/rand.h"
#include "d2o/sigv4.h"
#include "d2o/util.h"

#define FIXED_TIME ((time_t)1795568523) /* 2026-11-25T01:02:03Z */

static const char *pick(const char *const *v, size_t n)
{
    return v[d2o_rand_below(n)];
}

static int add_query_part(struct d2o_buf *b)
{
    static const char *const raw[] = {"a", "Z",   "x-y", "k_1", "~t", "v.2", "a b", "é",
                                      "ሴ", "q&r", "=",   "/",   "+",  "",    "1",   "%"};
    static const char digits[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)pick(raw, D2O_ARRAY_SIZE(raw));
    int r = 0;

    for (; *p && r == 0; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            r = d2o_buf_putc(b, (char)*p);
        } else {
            char esc[3] = {'%', digits[*p >> 4], digits[*p & 15]};

            r = d2o_buf_append(b, esc, 3);
        }
    }
    return r;
}

static int json_pair(struct d2o_buf *out, const char *k, const char *v, int comma)
{
    int r = d2o_buf_puts(out, comma ? ",[" : "[");

    r |= d2o_buf_json_str(out, k, strlen(k));
    r |= d2o_buf_putc(out, ',');
    r |= d2o_buf_json_str(out, v, strlen(v));
    r |= d2o_buf_putc(out, ']');
    return r;
}

int main(int argc, char **argv)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"};
    static const char *const segments[] = {
        "idx", "_doc", "a b", "café", "ሴ",   ".",   "..", "x!y", "(p)", "a*b",   "o'k", "@",
        "c:d", "$",    "p+q", "a,b",  "s;t", "e=f", "~u", "%41", "",    "UPPER", "-_.", "sp  ace"};
    static const char *const hnames[] = {"Content-Type", "x-amz-target", "X-AMZ-META-Thing",
                                         "Accept",       "My-Header",    "x-custom"};
    static const char *const hvalues[] = {
        "application/json", "  lead", "trail  ", "a   b\tc",
        "\"q  u o\"",       "v1",     "",        "Kinesis_2013.Get"};
    int64_t count, seed;
    long i;

    if (argc != 3 || d2o_parse_i64(argv[1], 1, 1000000, &count) < 0 ||
        d2o_parse_i64(argv[2], 0, INT64_MAX, &seed) < 0) {
        fprintf(stderr, "usage: sigv4_oracle COUNT SEED\n");
        return 2;
    }
    d2o_rand_seed_fixed((uint64_t)seed);
    for (i = 0; i < count; i++) {
        struct d2o_buf url = D2O_BUF_INIT, out = D2O_BUF_INIT, body = D2O_BUF_INIT;
        struct d2o_sigv4_header hdrs[8];
        struct d2o_aws_creds creds = {"AKIDORACLE", "oracle/secret+KEY", NULL};
        struct d2o_sigv4_request req = {0};
        struct d2o_sigv4_signer *s = d2o_sigv4_signer_new("eu-west-1", i % 2 ? "es" : "kinesis");
        struct d2o_sigv4_out so;
        char err[256], *b64 = NULL;
        size_t nseg = d2o_rand_below(5), nq = d2o_rand_below(5), nh = d2o_rand_below(6), k;
        size_t blen;
        int r = 0;

        r |= d2o_buf_puts(&url, d2o_rand_below(2) ? "https://search.example.com"
                                                  : "http://127.0.0.1:9200");
        if (nseg == 0) {
            r |= d2o_buf_putc(&url, '/');
        }
        for (k = 0; k < nseg; k++) {
            r |= d2o_buf_putc(&url, '/');
            r |= d2o_buf_puts(&url, pick(segments, D2O_ARRAY_SIZE(segments)));
        }
        if (nseg && d2o_rand_below(3) == 0) {
            r |= d2o_buf_putc(&url, '/');
        }
        for (k = 0; k < nq; k++) {
            r |= d2o_buf_putc(&url, k ? '&' : '?');
            r |= add_query_part(&url);
            if (d2o_rand_below(4)) {
                r |= d2o_buf_putc(&url, '=');
                r |= add_query_part(&url);
            }
        }
        for (k = 0; k < nh; k++) {
            hdrs[k].name = pick(hnames, D2O_ARRAY_SIZE(hnames));
            hdrs[k].value = pick(hvalues, D2O_ARRAY_SIZE(hvalues));
        }
        switch (d2o_rand_below(4)) {
        case 0:
            break;
        case 1:
            r |= d2o_buf_puts(&body, "{\"StreamName\":\"s\",\"Limit\":10}");
            break;
        case 2:
            for (k = 0; k < 64; k++) {
                r |= d2o_buf_putc(&body, (char)d2o_rand_below(256));
            }
            break;
        default:
            for (k = 0; k < 200000; k++) {
                r |= d2o_buf_putc(&body, (char)('a' + k % 26));
            }
            break;
        }
        if (d2o_rand_below(3) == 0) {
            creds.session_token = "FwoGZXIvYXdzEOracleToken//+=";
        }
        if (r) {
            return 1;
        }
        req.method = pick(methods, D2O_ARRAY_SIZE(methods));
        req.url = url.data;
        req.headers = hdrs;
        req.n_headers = nh;
        req.body = body.data;
        req.body_len = body.len;
        if (d2o_sigv4_sign(s, &creds, &req, FIXED_TIME, 0, &so, err, sizeof(err)) != 0) {
            fprintf(stderr, "sigv4_oracle: request %ld: %s\n", i, err);
            return 1;
        }
        blen = 4 * ((body.len + 2) / 3) + 1;
        b64 = malloc(blen);
        if (!b64) {
            return 1;
        }
        EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)(body.data ? body.data : ""),
                        (int)body.len);
        r |= d2o_buf_printf(&out, "{\"i\":%ld,\"service\":\"%s\",\"method\":\"%s\",\"url\":", i,
                            i % 2 ? "es" : "kinesis", req.method);
        r |= d2o_buf_json_str(&out, url.data, url.len);
        r |= d2o_buf_puts(&out, ",\"headers\":[");
        for (k = 0; k < nh; k++) {
            r |= json_pair(&out, hdrs[k].name, hdrs[k].value, k > 0);
        }
        r |= d2o_buf_puts(&out, "],\"token\":");
        if (creds.session_token) {
            r |= d2o_buf_json_str(&out, creds.session_token, strlen(creds.session_token));
        } else {
            r |= d2o_buf_puts(&out, "null");
        }
        r |= d2o_buf_printf(&out, ",\"body_b64\":\"%s\",\"authorization\":", b64);
        r |= d2o_buf_json_str(&out, so.lines[0] + 15, strlen(so.lines[0] + 15));
        r |= d2o_buf_puts(&out, ",\"canonical\":");
        r |= d2o_buf_json_str(&out, so.canonical_request, strlen(so.canonical_request));
        r |= d2o_buf_puts(&out, "}\n");
        if (r) {
            return 1;
        }
        fwrite(out.data, 1, out.len, stdout);
        free(b64);
        d2o_sigv4_out_free(&so);
        d2o_sigv4_signer_free(s);
        d2o_buf_free(&url);
        d2o_buf_free(&out);
        d2o_buf_free(&body);
    }
    return 0;
}
