/*
 * AWS Signature Version 4.
 *
 * The canonical request follows the SigV4 rules for every service but S3: each path segment is
 * URI-encoded once more on top of what the URL carries, dot segments and repeated slashes are
 * removed, query parameters are decoded, re-encoded with the RFC 3986 unreserved set and sorted,
 * header values are trimmed with inner runs of spaces folded, and repeated headers are joined
 * with commas in the order given.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

#include "d2o/buf.h"
#include "d2o/sigv4.h"
#include "d2o/util.h"

#define SHA256_LEN 32
#define MAX_HEADERS 64
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct d2o_sigv4_signer {
    char *region;
    char *service;
    /* The derived key of one (date, secret): the day's key is reused by every request. */
    char key_date[9];
    char *secret; /* the secret the key was derived from; cleansed on change and free */
    unsigned char key[SHA256_LEN];
    bool have_key;
    unsigned long derivations; /* for tests: how often the key chain ran */
};

struct hdr {
    char *name;  /* lower case */
    char *value; /* trimmed, folded, joined */
};

struct qparam {
    char *key; /* encoded */
    char *value;
};

static void set_err(char *errstr, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *errstr, size_t n, const char *fmt, ...)
{
    va_list ap;

    if (!errstr || n == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(errstr, n, fmt, ap);
    va_end(ap);
}

static void drop_secret(struct d2o_sigv4_signer *s)
{
    if (s->secret) {
        OPENSSL_cleanse(s->secret, strlen(s->secret));
        free(s->secret);
        s->secret = NULL;
    }
}

struct d2o_sigv4_signer *d2o_sigv4_signer_new(const char *region, const char *service)
{
    struct d2o_sigv4_signer *s;

    if (!region || !service || !*region || !*service) {
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        return NULL;
    }
    s->region = strdup(region);
    s->service = strdup(service);
    if (!s->region || !s->service) {
        d2o_sigv4_signer_free(s);
        return NULL;
    }
    return s;
}

void d2o_sigv4_signer_free(struct d2o_sigv4_signer *s)
{
    if (!s) {
        return;
    }
    OPENSSL_cleanse(s->key, sizeof(s->key));
    drop_secret(s);
    free(s->region);
    free(s->service);
    free(s);
}

unsigned long d2o_sigv4_signer_derivations(const struct d2o_sigv4_signer *s)
{
    return s->derivations;
}

void d2o_sigv4_out_free(struct d2o_sigv4_out *out)
{
    size_t i;

    if (!out) {
        return;
    }
    for (i = 0; i < out->n_lines; i++) {
        free(out->lines[i]);
    }
    free(out->canonical_request);
    free(out->string_to_sign);
    free(out->signature);
    memset(out, 0, sizeof(*out));
}

/*
 * OpenSSL 3 looks algorithms up by name on every implicit use (EVP_sha256(), HMAC()), which
 * costs more than the hashing of a small request. The process fetches SHA-256 and HMAC once and
 * reuses one digest and one MAC context (each process is single-threaded).
 */
static struct {
    EVP_MD *md;
    EVP_MD_CTX *dctx;
    EVP_MAC *mac;
    EVP_MAC_CTX *mctx;
} crypto;

static int crypto_init(void)
{
    OSSL_PARAM params[2];

    if (crypto.mctx) {
        return 0;
    }
    crypto.md = EVP_MD_fetch(NULL, "SHA256", NULL);
    crypto.dctx = EVP_MD_CTX_new();
    crypto.mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    crypto.mctx = crypto.mac ? EVP_MAC_CTX_new(crypto.mac) : NULL;
    params[0] = OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    if (!crypto.md || !crypto.dctx || !crypto.mctx ||
        !EVP_MAC_CTX_set_params(crypto.mctx, params)) {
        EVP_MAC_CTX_free(crypto.mctx);
        EVP_MAC_free(crypto.mac);
        EVP_MD_CTX_free(crypto.dctx);
        EVP_MD_free(crypto.md);
        memset(&crypto, 0, sizeof(crypto));
        return -EIO;
    }
    return 0;
}

/* The SHA-256 of the pieces one after the other. */
static int sha256_parts(const struct iovec *parts, size_t n, unsigned char out[SHA256_LEN])
{
    unsigned int len = 0;
    size_t i;

    if (crypto_init() < 0 || !EVP_DigestInit_ex(crypto.dctx, crypto.md, NULL)) {
        return -EIO;
    }
    for (i = 0; i < n; i++) {
        if (!EVP_DigestUpdate(crypto.dctx, parts[i].iov_base, parts[i].iov_len)) {
            return -EIO;
        }
    }
    if (!EVP_DigestFinal_ex(crypto.dctx, out, &len)) {
        return -EIO;
    }
    return 0;
}

static int sha256(const void *p, size_t n, unsigned char out[SHA256_LEN])
{
    const struct iovec one = {.iov_base = (void *)p, .iov_len = n};

    return sha256_parts(&one, 1, out);
}

static int hmac(const void *key, size_t key_len, const void *msg, size_t msg_len,
                unsigned char out[SHA256_LEN])
{
    size_t len = 0;

    if (crypto_init() < 0 || !EVP_MAC_init(crypto.mctx, key, key_len, NULL) ||
        !EVP_MAC_update(crypto.mctx, msg, msg_len) ||
        !EVP_MAC_final(crypto.mctx, out, &len, SHA256_LEN)) {
        return -EIO;
    }
    return 0;
}

static void hex(const unsigned char *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 0xf];
    }
    out[2 * n] = '\0';
}

static bool unreserved(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Appends s (n bytes) URI-encoded: unreserved bytes as is, everything else %XX (upper case). */
static int uri_encode(struct d2o_buf *b, const char *s, size_t n, bool keep_slash)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t i;
    int r = d2o_buf_reserve(b, n * 3);

    if (r < 0) {
        return r;
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (unreserved(c) || (keep_slash && c == '/')) {
            b->data[b->len++] = (char)c;
        } else {
            b->data[b->len++] = '%';
            b->data[b->len++] = digits[c >> 4];
            b->data[b->len++] = digits[c & 0xf];
        }
    }
    b->data[b->len] = '\0';
    return 0;
}

/* Decodes %XX escapes of s (n bytes) into a new string. -EINVAL on a broken escape. */
static int uri_decode(const char *s, size_t n, char **out)
{
    char *d = malloc(n + 1);
    size_t i, j = 0;

    if (!d) {
        return -ENOMEM;
    }
    for (i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(s[i + 2]) : -1;

            if (hi < 0 || lo < 0) {
                free(d);
                return -EINVAL;
            }
            d[j++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            d[j++] = s[i];
        }
    }
    d[j] = '\0';
    *out = d;
    return 0;
}

/* Splits url into host (with port), path and query (without '?'). Pointers into url. */
static int split_url(const char *url, const char **host, size_t *host_len, const char **path,
                     size_t *path_len, const char **query, size_t *query_len)
{
    const char *p = strstr(url, "://"), *end;

    if (!p || p == url) {
        return -EINVAL;
    }
    p += 3;
    end = p + strcspn(p, "/?#");
    if (end == p) {
        return -EINVAL;
    }
    /* Drop user info if any. */
    {
        const char *at = memchr(p, '@', (size_t)(end - p));

        if (at) {
            p = at + 1;
        }
    }
    *host = p;
    *host_len = (size_t)(end - p);
    p = end;
    *path = p;
    *path_len = strcspn(p, "?#");
    p += *path_len;
    if (*p == '?') {
        p++;
        *query = p;
        *query_len = strcspn(p, "#");
    } else {
        *query = p;
        *query_len = 0;
    }
    return 0;
}

/* Host header value: the URL's authority without a default port. */
static char *host_value(const char *url, const char *host, size_t host_len)
{
    const char *colon = memchr(host, ':', host_len);

    if (colon && host[0] != '[') {
        const char *port = colon + 1;
        size_t plen = host_len - (size_t)(port - host);

        if ((strncmp(url, "https:", 6) == 0 && plen == 3 && memcmp(port, "443", 3) == 0) ||
            (strncmp(url, "http:", 5) == 0 && plen == 2 && memcmp(port, "80", 2) == 0)) {
            host_len = (size_t)(colon - host);
        }
    }
    return strndup(host, host_len);
}

/* Canonical URI: dot segments and empty segments removed, each segment encoded. */
static int canonical_uri(struct d2o_buf *b, const char *path, size_t n, bool normalize)
{
    const char *seg[256];
    size_t seg_len[256], nseg = 0, i = 0, k;
    bool trailing;
    int r;

    if (n == 0) {
        return d2o_buf_putc(b, '/');
    }
    if (!normalize) {
        return uri_encode(b, path, n, true);
    }
    trailing = path[n - 1] == '/';
    while (i < n) {
        size_t start, len;

        while (i < n && path[i] == '/') {
            i++;
        }
        start = i;
        while (i < n && path[i] != '/') {
            i++;
        }
        len = i - start;
        if (len == 0 || (len == 1 && path[start] == '.')) {
            continue;
        }
        if (len == 2 && path[start] == '.' && path[start + 1] == '.') {
            if (nseg > 0) {
                nseg--;
            }
            continue;
        }
        if (nseg == D2O_ARRAY_SIZE(seg)) {
            return -E2BIG;
        }
        seg[nseg] = path + start;
        seg_len[nseg] = len;
        nseg++;
    }
    if (nseg == 0) {
        return d2o_buf_putc(b, '/');
    }
    for (k = 0; k < nseg; k++) {
        r = d2o_buf_putc(b, '/');
        if (r == 0) {
            r = uri_encode(b, seg[k], seg_len[k], false);
        }
        if (r < 0) {
            return r;
        }
    }
    return trailing ? d2o_buf_putc(b, '/') : 0;
}

static int cmp_qparam(const void *a, const void *b)
{
    const struct qparam *x = a, *y = b;
    int c = strcmp(x->key, y->key);

    return c ? c : strcmp(x->value, y->value);
}

static void free_params(struct qparam *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        free(p[i].key);
        free(p[i].value);
    }
    free(p);
}

/* Encodes one query component after decoding the URL's own escapes. */
static int encode_component(const char *s, size_t n, char **out)
{
    struct d2o_buf b = D2O_BUF_INIT;
    char *raw = NULL;
    int r = uri_decode(s, n, &raw);

    if (r < 0) {
        return r;
    }
    r = uri_encode(&b, raw, strlen(raw), false);
    if (r == 0 && !b.data) {
        r = d2o_buf_puts(&b, "");
    }
    free(raw);
    if (r < 0) {
        d2o_buf_free(&b);
        return r;
    }
    *out = d2o_buf_steal(&b);
    return 0;
}

static int canonical_query(struct d2o_buf *b, const char *q, size_t n)
{
    struct qparam *params = NULL;
    size_t count = 0, i = 0, k;
    int r = 0;

    /* Every '&'-separated piece counts, an empty one as "=" (as botocore and the SDKs sign). */
    while (n > 0 && i <= n) {
        size_t len = 0, klen;
        const char *eq;
        struct qparam *grown;

        while (i + len < n && q[i + len] != '&') {
            len++;
        }
        {
            eq = memchr(q + i, '=', len);
            klen = eq ? (size_t)(eq - (q + i)) : len;
            grown = realloc(params, (count + 1) * sizeof(*params));
            if (!grown) {
                r = -ENOMEM;
                goto out;
            }
            params = grown;
            params[count].key = NULL;
            params[count].value = NULL;
            count++;
            r = encode_component(q + i, klen, &params[count - 1].key);
            if (r == 0) {
                r = eq ? encode_component(eq + 1, len - klen - 1, &params[count - 1].value)
                       : encode_component("", 0, &params[count - 1].value);
            }
            if (r < 0) {
                goto out;
            }
        }
        i += len + 1;
    }
    if (count > 1) {
        qsort(params, count, sizeof(*params), cmp_qparam);
    }
    for (k = 0; k < count; k++) {
        r = d2o_buf_printf(b, "%s%s=%s", k ? "&" : "", params[k].key, params[k].value);
        if (r < 0) {
            goto out;
        }
    }
out:
    free_params(params, count);
    return r;
}

/* Trims and folds runs of white space into one space. Returns a new string. */
static char *fold_value(const char *v)
{
    size_t n = strlen(v), i, j = 0;
    char *out = malloc(n + 1);
    bool space = false;

    if (!out) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];

        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            space = j > 0;
            continue;
        }
        if (space) {
            out[j++] = ' ';
            space = false;
        }
        out[j++] = (char)c;
    }
    out[j] = '\0';
    return out;
}

static int cmp_hdr(const void *a, const void *b)
{
    return strcmp(((const struct hdr *)a)->name, ((const struct hdr *)b)->name);
}

/* Adds (or joins onto) a header. name is copied and lower-cased; value is folded. */
static int add_header(struct hdr *h, size_t *n, const char *name, const char *value)
{
    size_t i, nl = strlen(name);
    char *lname, *fv;

    if (nl == 0) {
        return -EINVAL;
    }
    for (i = 0; i < nl; i++) {
        unsigned char c = (unsigned char)name[i];

        if (c <= ' ' || c == ':' || c >= 0x7f) {
            return -EINVAL;
        }
    }
    fv = fold_value(value ? value : "");
    if (!fv) {
        return -ENOMEM;
    }
    for (i = 0; i < *n; i++) {
        if (strcasecmp(h[i].name, name) == 0) {
            size_t a = strlen(h[i].value), c = strlen(fv);
            char *joined = malloc(a + c + 2);

            if (!joined) {
                free(fv);
                return -ENOMEM;
            }
            memcpy(joined, h[i].value, a);
            joined[a] = ',';
            memcpy(joined + a + 1, fv, c + 1);
            free(h[i].value);
            free(fv);
            h[i].value = joined;
            return 0;
        }
    }
    if (*n == MAX_HEADERS) {
        free(fv);
        return -E2BIG;
    }
    lname = strdup(name);
    if (!lname) {
        free(fv);
        return -ENOMEM;
    }
    for (i = 0; i < nl; i++) {
        lname[i] = (char)tolower((unsigned char)lname[i]);
    }
    h[*n].name = lname;
    h[*n].value = fv;
    (*n)++;
    return 0;
}

static const char *find_header(const struct hdr *h, size_t n, const char *lname)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (strcmp(h[i].name, lname) == 0) {
            return h[i].value;
        }
    }
    return NULL;
}

static int derive_key(struct d2o_sigv4_signer *s, const char *date, const char *secret)
{
    unsigned char k1[SHA256_LEN], k2[SHA256_LEN], k3[SHA256_LEN];
    struct d2o_buf kin = D2O_BUF_INIT;
    int r;

    if (s->have_key && strcmp(s->key_date, date) == 0 && s->secret &&
        strcmp(s->secret, secret) == 0) {
        return 0;
    }
    s->have_key = false;
    drop_secret(s);
    r = d2o_buf_printf(&kin, "AWS4%s", secret);
    if (r == 0) {
        r = hmac(kin.data, kin.len, date, strlen(date), k1);
    }
    if (r == 0) {
        r = hmac(k1, SHA256_LEN, s->region, strlen(s->region), k2);
    }
    if (r == 0) {
        r = hmac(k2, SHA256_LEN, s->service, strlen(s->service), k3);
    }
    if (r == 0) {
        r = hmac(k3, SHA256_LEN, "aws4_request", 12, s->key);
    }
    if (r == 0) {
        s->secret = strdup(secret);
        r = s->secret ? 0 : -ENOMEM;
    }
    if (kin.data) {
        OPENSSL_cleanse(kin.data, kin.len);
    }
    d2o_buf_free(&kin);
    OPENSSL_cleanse(k1, sizeof(k1));
    OPENSSL_cleanse(k2, sizeof(k2));
    OPENSSL_cleanse(k3, sizeof(k3));
    if (r < 0) {
        return r;
    }
    memcpy(s->key_date, date, 9);
    s->have_key = true;
    s->derivations++;
    return 0;
}

static bool valid_amz_date(const char *v)
{
    size_t i;

    if (strlen(v) != 16 || v[8] != 'T' || v[15] != 'Z') {
        return false;
    }
    for (i = 0; i < 15; i++) {
        if (i != 8 && !isdigit((unsigned char)v[i])) {
            return false;
        }
    }
    return true;
}

/* Appends the strings up to the NULL: the request signer's texts are concatenations, and
 * printf's parsing of the format was half of a signature's cost (one per GetRecords call). */
__attribute__((sentinel)) static int cat(struct d2o_buf *b, ...)
{
    va_list ap;
    const char *p;
    int r = 0;

    va_start(ap, b);
    while (r == 0 && (p = va_arg(ap, const char *)) != NULL) {
        r = d2o_buf_puts(b, p);
    }
    va_end(ap);
    return r;
}

static int push_line(struct d2o_sigv4_out *out, const char *name, const char *value)
{
    struct d2o_buf b = D2O_BUF_INIT;
    int r;

    if (out->n_lines == D2O_ARRAY_SIZE(out->lines)) {
        return -E2BIG;
    }
    r = cat(&b, name, ": ", value, (char *)NULL);
    if (r < 0) {
        d2o_buf_free(&b);
        return r;
    }
    out->lines[out->n_lines++] = d2o_buf_steal(&b);
    return 0;
}

int d2o_sigv4_sign(struct d2o_sigv4_signer *s, const struct d2o_aws_creds *creds,
                   const struct d2o_sigv4_request *req, time_t now, unsigned flags,
                   struct d2o_sigv4_out *out, char *errstr, size_t errstr_size)
{
    struct hdr hdrs[MAX_HEADERS];
    size_t n_hdrs = 0, i;
    const char *host, *path, *query, *amz_date_hdr;
    size_t host_len, path_len, query_len;
    char amz_date[17], date[9], payload_hex[2 * SHA256_LEN + 1], creq_hex[2 * SHA256_LEN + 1];
    char sig_hex[2 * SHA256_LEN + 1];
    unsigned char digest[SHA256_LEN], sig[SHA256_LEN];
    struct d2o_buf creq = D2O_BUF_INIT, sts = D2O_BUF_INIT, signed_list = D2O_BUF_INIT,
                   auth = D2O_BUF_INIT;
    char *hostv = NULL;
    bool add_date = false, add_token = false, add_host = false;
    const char *payload;
    int r = 0;

    memset(out, 0, sizeof(*out));
    if (!s || !req || !creds) {
        set_err(errstr, errstr_size, "sigv4: no signer, request or credentials");
        return -EINVAL;
    }
    if (!creds->access_key_id || !*creds->access_key_id || !creds->secret_access_key ||
        !*creds->secret_access_key) {
        set_err(errstr, errstr_size, "sigv4: credentials lack an access key id or a secret key");
        return -EINVAL;
    }
    if (!req->method || !*req->method) {
        set_err(errstr, errstr_size, "sigv4: request has no method");
        return -EINVAL;
    }
    for (i = 0; req->method[i]; i++) {
        if (!isupper((unsigned char)req->method[i])) {
            set_err(errstr, errstr_size, "sigv4: method '%.16s' is not an upper-case token",
                    req->method);
            return -EINVAL;
        }
    }
    if (!req->url ||
        split_url(req->url, &host, &host_len, &path, &path_len, &query, &query_len) < 0) {
        set_err(errstr, errstr_size, "sigv4: URL '%.200s' has no scheme://host",
                req->url ? req->url : "(null)");
        return -EINVAL;
    }
    if (req->n_body_parts > 0) {
        size_t sum = d2o_iov_total(req->body_parts, req->n_body_parts);

        if (req->body || sum != req->body_len) {
            set_err(errstr, errstr_size,
                    "sigv4: a body in %zu pieces of %zu bytes%s, but body length %zu",
                    req->n_body_parts, sum, req->body ? " and a whole body too" : "",
                    req->body_len);
            return -EINVAL;
        }
    } else if (req->body_len && !req->body) {
        set_err(errstr, errstr_size, "sigv4: body length %zu with no body", req->body_len);
        return -EINVAL;
    }

    for (i = 0; i < req->n_headers; i++) {
        const struct d2o_sigv4_header *h = &req->headers[i];

        if (!h->name) {
            r = -EINVAL;
        } else if (strcasecmp(h->name, "authorization") == 0) {
            continue;
        } else {
            r = add_header(hdrs, &n_hdrs, h->name, h->value);
        }
        if (r < 0) {
            set_err(errstr, errstr_size, "sigv4: header %zu ('%.64s') %s", i,
                    h->name ? h->name : "(null)",
                    r == -E2BIG ? "is one too many" : "has an invalid name");
            goto out;
        }
    }
    if (!find_header(hdrs, n_hdrs, "host")) {
        hostv = host_value(req->url, host, host_len);
        if (!hostv) {
            r = -ENOMEM;
            goto out;
        }
        r = add_header(hdrs, &n_hdrs, "host", hostv);
        add_host = true;
        if (r < 0) {
            goto out;
        }
    }
    amz_date_hdr = find_header(hdrs, n_hdrs, "x-amz-date");
    if (amz_date_hdr) {
        if (!valid_amz_date(amz_date_hdr)) {
            set_err(errstr, errstr_size, "sigv4: X-Amz-Date '%.32s' is not YYYYMMDDTHHMMSSZ",
                    amz_date_hdr);
            r = -EINVAL;
            goto out;
        }
        memcpy(amz_date, amz_date_hdr, 17);
    } else {
        struct tm tm;

        if (!gmtime_r(&now, &tm) ||
            strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm) != 16) {
            set_err(errstr, errstr_size, "sigv4: cannot format the time %lld", (long long)now);
            r = -EINVAL;
            goto out;
        }
        r = add_header(hdrs, &n_hdrs, "x-amz-date", amz_date);
        add_date = true;
        if (r < 0) {
            goto out;
        }
    }
    memcpy(date, amz_date, 8);
    date[8] = '\0';
    if (creds->session_token && *creds->session_token &&
        !find_header(hdrs, n_hdrs, "x-amz-security-token")) {
        r = add_header(hdrs, &n_hdrs, "x-amz-security-token", creds->session_token);
        add_token = true;
        if (r < 0) {
            goto out;
        }
    }
    if (flags & D2O_SIGV4_UNSIGNED_PAYLOAD) {
        payload = "UNSIGNED-PAYLOAD";
    } else if (req->body_len == 0) {
        payload = EMPTY_SHA256;
    } else {
        r = req->n_body_parts > 0 ? sha256_parts(req->body_parts, req->n_body_parts, digest)
                                  : sha256(req->body, req->body_len, digest);
        if (r < 0) {
            goto out;
        }
        hex(digest, SHA256_LEN, payload_hex);
        payload = payload_hex;
    }
    if ((flags & D2O_SIGV4_CONTENT_SHA256_HEADER) &&
        !find_header(hdrs, n_hdrs, "x-amz-content-sha256")) {
        r = add_header(hdrs, &n_hdrs, "x-amz-content-sha256", payload);
        if (r < 0) {
            goto out;
        }
        r = push_line(out, "x-amz-content-sha256", payload);
        if (r < 0) {
            goto out;
        }
    }
    qsort(hdrs, n_hdrs, sizeof(hdrs[0]), cmp_hdr);

    /* Canonical request. */
    r = cat(&creq, req->method, "\n", (char *)NULL);
    if (r == 0) {
        r = canonical_uri(&creq, path, path_len, !(flags & D2O_SIGV4_NO_PATH_NORMALIZE));
    }
    if (r == 0) {
        r = d2o_buf_putc(&creq, '\n');
    }
    if (r == 0) {
        r = canonical_query(&creq, query, query_len);
    }
    if (r == -EINVAL) {
        set_err(errstr, errstr_size, "sigv4: URL '%.200s' has a broken %%-escape", req->url);
        goto out;
    }
    if (r == -E2BIG) {
        set_err(errstr, errstr_size, "sigv4: URL path has too many segments");
        r = -EINVAL;
        goto out;
    }
    if (r == 0) {
        r = d2o_buf_putc(&creq, '\n');
    }
    for (i = 0; r == 0 && i < n_hdrs; i++) {
        r = cat(&creq, hdrs[i].name, ":", hdrs[i].value, "\n", (char *)NULL);
        if (r == 0) {
            r = cat(&signed_list, i ? ";" : "", hdrs[i].name, (char *)NULL);
        }
    }
    if (r == 0) {
        r = cat(&creq, "\n", signed_list.data, "\n", payload, (char *)NULL);
    }
    if (r < 0) {
        goto out;
    }

    /* String to sign. */
    r = sha256(creq.data, creq.len, digest);
    if (r < 0) {
        goto out;
    }
    hex(digest, SHA256_LEN, creq_hex);
    r = cat(&sts, "AWS4-HMAC-SHA256\n", amz_date, "\n", date, "/", s->region, "/", s->service,
            "/aws4_request\n", creq_hex, (char *)NULL);
    if (r < 0) {
        goto out;
    }

    /* Signature with the day's key. */
    r = derive_key(s, date, creds->secret_access_key);
    if (r == 0) {
        r = hmac(s->key, SHA256_LEN, sts.data, sts.len, sig);
    }
    if (r < 0) {
        set_err(errstr, errstr_size, "sigv4: HMAC failed");
        goto out;
    }
    hex(sig, SHA256_LEN, sig_hex);
    r = cat(&auth, "AWS4-HMAC-SHA256 Credential=", creds->access_key_id, "/", date, "/", s->region,
            "/", s->service, "/aws4_request, SignedHeaders=", signed_list.data,
            ", Signature=", sig_hex, (char *)NULL);
    if (r == 0) {
        r = push_line(out, "Authorization", auth.data);
    }
    if (r == 0 && add_date) {
        r = push_line(out, "X-Amz-Date", amz_date);
    }
    if (r == 0 && add_token) {
        r = push_line(out, "X-Amz-Security-Token", creds->session_token);
    }
    if (r == 0 && add_host) {
        r = push_line(out, "Host", hostv);
    }
    if (r < 0) {
        goto out;
    }
    out->canonical_request = d2o_buf_steal(&creq);
    out->string_to_sign = d2o_buf_steal(&sts);
    out->signature = strdup(sig_hex);
    if (!out->signature) {
        r = -ENOMEM;
    }
out:
    for (i = 0; i < n_hdrs; i++) {
        free(hdrs[i].name);
        free(hdrs[i].value);
    }
    free(hostv);
    d2o_buf_free(&creq);
    d2o_buf_free(&sts);
    d2o_buf_free(&signed_list);
    d2o_buf_free(&auth);
    OPENSSL_cleanse(sig, sizeof(sig));
    if (r < 0) {
        d2o_sigv4_out_free(out);
        if (r == -ENOMEM) {
            set_err(errstr, errstr_size, "sigv4: out of memory");
        }
    }
    return r;
}

int d2o_sigv4_presign(struct d2o_sigv4_signer *s, const struct d2o_aws_creds *creds,
                      const char *method, const char *url, const struct d2o_sigv4_header *params,
                      size_t n_params, time_t now, unsigned expires_s, char **out_url, char *errstr,
                      size_t errstr_size)
{
    const char *host, *path, *query;
    size_t host_len, path_len, query_len, i;
    char amz_date[17], date[9], creq_hex[2 * SHA256_LEN + 1], sig_hex[2 * SHA256_LEN + 1];
    unsigned char digest[SHA256_LEN], sig[SHA256_LEN];
    struct d2o_buf q = D2O_BUF_INIT, scope = D2O_BUF_INIT, creq = D2O_BUF_INIT, sts = D2O_BUF_INIT,
                   res = D2O_BUF_INIT;
    char *hostv = NULL;
    struct tm tm;
    int r = 0;

    if (out_url) {
        *out_url = NULL;
    }
    if (!s || !creds || !method || !*method || !url || !out_url || (n_params && !params)) {
        set_err(errstr, errstr_size, "sigv4: presign needs a signer, credentials, method and URL");
        return -EINVAL;
    }
    if (!creds->access_key_id || !*creds->access_key_id || !creds->secret_access_key ||
        !*creds->secret_access_key) {
        set_err(errstr, errstr_size, "sigv4: credentials lack an access key id or a secret key");
        return -EINVAL;
    }
    if (split_url(url, &host, &host_len, &path, &path_len, &query, &query_len) < 0 ||
        strpbrk(url, "?#")) {
        set_err(errstr, errstr_size, "sigv4: presign URL '%.200s' is not scheme://host/path", url);
        return -EINVAL;
    }
    if (expires_s < 1 || expires_s > 604800) {
        set_err(errstr, errstr_size, "sigv4: presign expiry %u s is not 1 to 604800", expires_s);
        return -EINVAL;
    }
    if (!gmtime_r(&now, &tm) || strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm) != 16) {
        set_err(errstr, errstr_size, "sigv4: cannot format the time %lld", (long long)now);
        return -EINVAL;
    }
    memcpy(date, amz_date, 8);
    date[8] = '\0';

    /* The query: the caller's parameters, then the authentication parameters, in botocore's order.
     */
    for (i = 0; r == 0 && i < n_params; i++) {
        if (!params[i].name || !*params[i].name || !params[i].value) {
            set_err(errstr, errstr_size, "sigv4: presign parameter %zu has no name or value", i);
            r = -EINVAL;
            goto out;
        }
        r = uri_encode(&q, params[i].name, strlen(params[i].name), false);
        r = r ? r : d2o_buf_putc(&q, '=');
        r = r ? r : uri_encode(&q, params[i].value, strlen(params[i].value), false);
        r = r ? r : d2o_buf_putc(&q, '&');
    }
    r = r ? r
          : d2o_buf_printf(&scope, "%s/%s/%s/%s/aws4_request", creds->access_key_id, date,
                           s->region, s->service);
    r = r ? r : d2o_buf_puts(&q, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=");
    r = r ? r : uri_encode(&q, scope.data, scope.len, false);
    r = r ? r
          : d2o_buf_printf(&q, "&X-Amz-Date=%s&X-Amz-Expires=%u&X-Amz-SignedHeaders=host", amz_date,
                           expires_s);
    if (r == 0 && creds->session_token && *creds->session_token) {
        r = d2o_buf_puts(&q, "&X-Amz-Security-Token=");
        r = r ? r : uri_encode(&q, creds->session_token, strlen(creds->session_token), false);
    }
    if (r < 0) {
        goto out;
    }
    hostv = host_value(url, host, host_len);
    if (!hostv) {
        r = -ENOMEM;
        goto out;
    }

    /* Canonical request: only Host is signed; the payload is empty. */
    r = d2o_buf_printf(&creq, "%s\n", method);
    r = r ? r : canonical_uri(&creq, path, path_len, true);
    r = r ? r : d2o_buf_putc(&creq, '\n');
    r = r ? r : canonical_query(&creq, q.data, q.len);
    r = r ? r : d2o_buf_printf(&creq, "\nhost:%s\n\nhost\n%s", hostv, EMPTY_SHA256);
    if (r == -EINVAL || r == -E2BIG) {
        set_err(errstr, errstr_size, "sigv4: presign URL '%.200s' has a path it cannot sign", url);
        r = -EINVAL;
        goto out;
    }
    r = r ? r : sha256(creq.data, creq.len, digest);
    if (r < 0) {
        goto out;
    }
    hex(digest, SHA256_LEN, creq_hex);
    r = d2o_buf_printf(&sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", amz_date, date,
                       s->region, s->service, creq_hex);
    r = r ? r : derive_key(s, date, creds->secret_access_key);
    r = r ? r : hmac(s->key, SHA256_LEN, sts.data, sts.len, sig);
    if (r < 0) {
        goto out;
    }
    hex(sig, SHA256_LEN, sig_hex);
    r = d2o_buf_printf(&res, "%s?%s&X-Amz-Signature=%s", url, q.data, sig_hex);
    if (r == 0) {
        *out_url = d2o_buf_steal(&res);
    }
out:
    free(hostv);
    d2o_buf_free(&q);
    d2o_buf_free(&scope);
    d2o_buf_free(&creq);
    d2o_buf_free(&sts);
    d2o_buf_free(&res);
    OPENSSL_cleanse(sig, sizeof(sig));
    if (r == -ENOMEM) {
        set_err(errstr, errstr_size, "sigv4: out of memory");
    }
    return r;
}
