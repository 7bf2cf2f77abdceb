/*
 * The AWS credential provider chain (see include/d2o/creds.h for the order and the rules).
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/crypto.h>

#include "d2o/buf.h"
#include "d2o/creds.h"
#include "d2o/http.h"
#include "d2o/log.h"
#include "d2o/util.h"

extern char **environ;

enum provider { P_ENV, P_WEB_IDENTITY, P_SHARED, P_ECS, P_IMDS, P_COUNT };

static const char *const provider_names[P_COUNT] = {"environment", "web-identity", "shared-files",
                                                    "ecs", "imds"};

enum creds_state { S_EMPTY, S_VALID, S_REFRESHING, S_FAILED };

struct owned_creds {
    char *key_id;
    char *secret;
    char *token;
    time_t expiration; /* 0 = long-term */
};

struct d2o_creds {
    struct d2o_http *http;
    char *const *envp;
    char *region;
    char *sts_endpoint;
    char *ecs_endpoint;
    char *imds_endpoint;
    int64_t refresh_ahead_s;
    int64_t metadata_timeout_ms;
    enum creds_state state;
    int provider; /* -1 until resolved */
    struct owned_creds cur;
    struct d2o_aws_creds view;
    bool force_refresh;
    unsigned long fetches;
    struct creds_refresh *refresh; /* d2o_creds_refresh_async's, on its way */
};

static void reason(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void reason(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
}

static void cleanse_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static void owned_free(struct owned_creds *o)
{
    free(o->key_id);
    cleanse_free(o->secret);
    cleanse_free(o->token);
    memset(o, 0, sizeof(*o));
}

static const char *getenv_in(const struct d2o_creds *c, const char *name)
{
    char *const *e = c->envp ? c->envp : environ;
    size_t n = strlen(name), i;

    for (i = 0; e && e[i]; i++) {
        if (strncmp(e[i], name, n) == 0 && e[i][n] == '=') {
            return e[i][n + 1] ? e[i] + n + 1 : NULL;
        }
    }
    return NULL;
}

/* Takes the three strings (copies) and registers the secrets with the log redactor. */
static int owned_set(struct owned_creds *o, const char *id, const char *secret, const char *token,
                     time_t expiration)
{
    struct owned_creds n = {0};

    n.key_id = strdup(id);
    n.secret = strdup(secret);
    n.token = token && *token ? strdup(token) : NULL;
    n.expiration = expiration;
    if (!n.key_id || !n.secret || (token && *token && !n.token)) {
        owned_free(&n);
        return -ENOMEM;
    }
    d2o_log_add_secret(secret);
    if (n.token) {
        d2o_log_add_secret(n.token);
    }
    owned_free(o);
    *o = n;
    return 0;
}

int d2o_creds_parse_time(const char *s, time_t *out)
{
    struct tm tm = {0};
    int64_t v[6];
    static const size_t pos[6] = {0, 5, 8, 11, 14, 17};
    static const size_t len[6] = {4, 2, 2, 2, 2, 2};
    static const int64_t lo[6] = {1970, 1, 1, 0, 0, 0}, hi[6] = {9999, 12, 31, 23, 59, 60};
    size_t i, n = strlen(s);
    const char *tail;

    if (n < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') || s[13] != ':' ||
        s[16] != ':') {
        return -EINVAL;
    }
    for (i = 0; i < 6; i++) {
        if (d2o_parse_i64n(s + pos[i], len[i], lo[i], hi[i], &v[i]) < 0) {
            return -EINVAL;
        }
    }
    tail = s + 19;
    if (*tail == '.') {
        tail++;
        while (isdigit((unsigned char)*tail)) {
            tail++;
        }
    }
    if (strcmp(tail, "Z") != 0 && strcmp(tail, "+00:00") != 0) {
        return -EINVAL;
    }
    tm.tm_year = (int)v[0] - 1900;
    tm.tm_mon = (int)v[1] - 1;
    tm.tm_mday = (int)v[2];
    tm.tm_hour = (int)v[3];
    tm.tm_min = (int)v[4];
    tm.tm_sec = (int)v[5];
    *out = timegm(&tm);
    return 0;
}

/* ---- HTTP helpers ---- */

/*
 * A provider's network steps (web identity: one POST to STS; ECS: one GET; IMDS: the session
 * token, the role, the credentials), run synchronously (fetch_sync) or on the multi handle
 * (d2o_creds_refresh_async) by the same code: plan_begin sets up the first request,
 * plan_answer takes each answer and sets up the next one or yields the credentials.
 */
struct plan {
    int provider;
    int step;
    const char *method;
    char url[2048];
    struct d2o_http_header h[2];
    size_t nh;
    char *secret;        /* owned value of h[0] (a token), cleansed */
    struct d2o_buf body; /* owned request body (web identity's form), cleansed */
    const char *role;    /* web identity: AWS_ROLE_ARN, for the error text */
};

/* A refresh on the multi handle (d2o_creds_refresh_async). */
struct creds_refresh {
    struct d2o_creds *c; /* NULL once c is freed: the answer only frees this */
    struct plan plan;
    d2o_creds_refreshed_fn done;
    void *arg;
};

static void plan_free(struct plan *pl)
{
    cleanse_free(pl->secret);
    pl->secret = NULL;
    if (pl->body.data) {
        OPENSSL_cleanse(pl->body.data, pl->body.len);
    }
    d2o_buf_free(&pl->body);
}

static void plan_request(const struct d2o_creds *c, const struct plan *pl,
                         struct d2o_http_request *req)
{
    memset(req, 0, sizeof(*req));
    req->method = pl->method;
    req->url = pl->url;
    req->headers = pl->h;
    req->n_headers = pl->nh;
    req->body = pl->body.data;
    req->body_len = pl->body.len;
    req->timeout_ms = c->metadata_timeout_ms;
    req->max_response_bytes = 1 << 20;
}

/* 0 when resp is a 2xx answer, else -EIO with why. */
static int answer_check(const struct plan *pl, int r, const struct d2o_http_response *resp,
                        char *why, size_t wn)
{
    if (r < 0 || resp->err < 0 || resp->curl_code != CURLE_OK) {
        reason(why, wn, "%s %s: %s", pl->method, pl->url,
               resp->errstr[0] ? resp->errstr : "failed");
        return -EIO;
    }
    if (resp->status < 200 || resp->status > 299) {
        reason(why, wn, "%s %s: HTTP %ld", pl->method, pl->url, resp->status);
        if (pl->provider == P_WEB_IDENTITY && resp->status >= 400 && resp->status < 500) {
            size_t used = strlen(why);

            snprintf(why + used, wn - used, " (AssumeRoleWithWebIdentity for %s refused)",
                     pl->role);
        }
        return -EIO;
    }
    return 0;
}

/* Parses the JSON document ECS and IMDS answer with. */
static int parse_json_creds(const char *body, struct owned_creds *o, char *why, size_t wn)
{
    struct json_object *root = json_tokener_parse(body ? body : ""), *v;
    const char *id = NULL, *secret = NULL, *token = NULL, *exp = NULL;
    time_t expiration = 0;
    int r = -EIO;

    if (!root || !json_object_is_type(root, json_type_object)) {
        reason(why, wn, "the credentials document is not a JSON object");
        goto out;
    }
    if (json_object_object_get_ex(root, "Code", &v) &&
        strcmp(json_object_get_string(v), "Success") != 0) {
        reason(why, wn, "the credentials document says Code=%.64s", json_object_get_string(v));
        goto out;
    }
    if (json_object_object_get_ex(root, "AccessKeyId", &v)) {
        id = json_object_get_string(v);
    }
    if (json_object_object_get_ex(root, "SecretAccessKey", &v)) {
        secret = json_object_get_string(v);
    }
    if (json_object_object_get_ex(root, "Token", &v)) {
        token = json_object_get_string(v);
    }
    if (json_object_object_get_ex(root, "Expiration", &v)) {
        exp = json_object_get_string(v);
    }
    if (!id || !*id || !secret || !*secret) {
        reason(why, wn, "the credentials document lacks AccessKeyId or SecretAccessKey");
        goto out;
    }
    if (exp && d2o_creds_parse_time(exp, &expiration) < 0) {
        reason(why, wn, "the credentials document has an unreadable Expiration '%.40s'", exp);
        goto out;
    }
    r = owned_set(o, id, secret, token, expiration);
out:
    json_object_put(root);
    return r;
}

/* ---- providers ---- */

static int from_env(struct d2o_creds *c, struct owned_creds *o, char *why, size_t wn)
{
    const char *id = getenv_in(c, "AWS_ACCESS_KEY_ID");
    const char *secret = getenv_in(c, "AWS_SECRET_ACCESS_KEY");

    if (!id && !secret) {
        reason(why, wn, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set");
        return -ENOENT;
    }
    if (!id || !secret) {
        reason(why, wn, "%s is set but %s is not",
               id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
               id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
        return -EINVAL;
    }
    return owned_set(o, id, secret, getenv_in(c, "AWS_SESSION_TOKEN"), 0);
}

static char *read_small_file(const char *path, char *why, size_t wn)
{
    FILE *f = fopen(path, "re");
    struct d2o_buf b = D2O_BUF_INIT;
    char chunk[4096];
    size_t n;

    if (!f) {
        char eb[128];

        reason(why, wn, "cannot read %s: %s", path, d2o_strerror(errno, eb, sizeof(eb)));
        return NULL;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (b.len + n > (1 << 20) || d2o_buf_append(&b, chunk, n) < 0) {
            reason(why, wn, "%s is larger than 1 MiB", path);
            fclose(f);
            d2o_buf_free(&b);
            return NULL;
        }
    }
    fclose(f);
    if (!b.data && d2o_buf_puts(&b, "") < 0) {
        return NULL;
    }
    return d2o_buf_steal(&b);
}

/* Text of <tag>...</tag> in xml, with the five XML entities decoded. NULL if absent. */
static char *xml_text(const char *xml, const char *tag)
{
    char open[64], close[64];
    const char *a, *b;
    struct d2o_buf out = D2O_BUF_INIT;
    static const struct {
        const char *ent;
        char ch;
    } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};

    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    a = strstr(xml, open);
    if (!a) {
        return NULL;
    }
    a += strlen(open);
    b = strstr(a, close);
    if (!b) {
        return NULL;
    }
    while (a < b) {
        size_t i;
        bool done = false;

        if (*a == '&') {
            for (i = 0; i < D2O_ARRAY_SIZE(ents); i++) {
                size_t el = strlen(ents[i].ent);

                if ((size_t)(b - a) >= el && memcmp(a, ents[i].ent, el) == 0) {
                    done = d2o_buf_putc(&out, ents[i].ch) == 0;
                    a += el;
                    break;
                }
            }
        }
        if (!done) {
            if (d2o_buf_putc(&out, *a) < 0) {
                d2o_buf_free(&out);
                return NULL;
            }
            a++;
        }
    }
    if (!out.data && d2o_buf_puts(&out, "") < 0) {
        return NULL;
    }
    return d2o_buf_steal(&out);
}

static int form_append(struct d2o_buf *b, const char *key, const char *value)
{
    static const char digits[] = "0123456789ABCDEF";
    int r = d2o_buf_printf(b, "%s%s=", b->len ? "&" : "", key);
    const unsigned char *p;

    for (p = (const unsigned char *)value; r == 0 && *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            r = d2o_buf_putc(b, (char)*p);
        } else {
            char esc[3] = {'%', digits[*p >> 4], digits[*p & 15]};

            r = d2o_buf_append(b, esc, 3);
        }
    }
    return r;
}

static int web_identity_begin(struct d2o_creds *c, struct plan *pl, char *why, size_t wn)
{
    const char *token_file = getenv_in(c, "AWS_WEB_IDENTITY_TOKEN_FILE");
    const char *role = getenv_in(c, "AWS_ROLE_ARN");
    const char *session = getenv_in(c, "AWS_ROLE_SESSION_NAME");
    char *token = NULL;
    char session_buf[64];
    int r;

    if (!token_file && !role) {
        reason(why, wn, "AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN are not set");
        return -ENOENT;
    }
    if (!token_file || !role) {
        reason(why, wn, "%s is set but %s is not",
               token_file ? "AWS_WEB_IDENTITY_TOKEN_FILE" : "AWS_ROLE_ARN",
               token_file ? "AWS_ROLE_ARN" : "AWS_WEB_IDENTITY_TOKEN_FILE");
        return -EINVAL;
    }
    token = read_small_file(token_file, why, wn);
    if (!token) {
        return -EIO;
    }
    while (*token && isspace((unsigned char)token[strlen(token) - 1])) {
        token[strlen(token) - 1] = '\0';
    }
    d2o_log_add_secret(token);
    if (!session) {
        snprintf(session_buf, sizeof(session_buf), "ddb2os-%d", (int)getpid());
        session = session_buf;
    }
    r = form_append(&pl->body, "Action", "AssumeRoleWithWebIdentity");
    r |= form_append(&pl->body, "Version", "2011-06-15");
    r |= form_append(&pl->body, "RoleArn", role);
    r |= form_append(&pl->body, "RoleSessionName", session);
    r |= form_append(&pl->body, "WebIdentityToken", token);
    cleanse_free(token);
    if (r < 0) {
        return -ENOMEM;
    }
    pl->role = role;
    pl->h[0] = (struct d2o_http_header){"Content-Type", "application/x-www-form-urlencoded"};
    pl->h[1] = (struct d2o_http_header){"Accept", "application/xml"};
    pl->nh = 2;
    pl->method = "POST";
    snprintf(pl->url, sizeof(pl->url), "%s", c->sts_endpoint);
    return 0;
}

/* STS's answer: the credentials. */
static int web_identity_answer(const char *xml, struct owned_creds *o, char *why, size_t wn)
{
    char *id = xml_text(xml, "AccessKeyId"), *secret = xml_text(xml, "SecretAccessKey");
    char *stoken = xml_text(xml, "SessionToken"), *exp = xml_text(xml, "Expiration");
    time_t expiration = 0;
    int r;

    if (!id || !secret || !stoken || !exp || !*id || !*secret) {
        reason(why, wn,
               "the STS answer lacks AccessKeyId, SecretAccessKey, SessionToken or "
               "Expiration");
        r = -EIO;
    } else if (d2o_creds_parse_time(exp, &expiration) < 0) {
        reason(why, wn, "the STS answer has an unreadable Expiration '%.40s'", exp);
        r = -EIO;
    } else {
        r = owned_set(o, id, secret, stoken, expiration);
    }
    cleanse_free(secret);
    cleanse_free(stoken);
    free(id);
    free(exp);
    return r;
}

/* Looks up key in section of an INI text. Returns a malloc'd trimmed value or NULL. */
static char *ini_get(const char *text, const char *section, const char *key)
{
    const char *p = text;
    bool in = false;

    while (*p) {
        size_t n = strcspn(p, "\n");
        const char *line = p, *end = p + n;

        p = *end ? end + 1 : end;
        while (line < end && isspace((unsigned char)*line)) {
            line++;
        }
        while (end > line && isspace((unsigned char)end[-1])) {
            end--;
        }
        if (line == end || *line == '#' || *line == ';') {
            continue;
        }
        if (*line == '[') {
            const char *a = line + 1, *b = end;

            if (b > a && b[-1] == ']') {
                b--;
            }
            while (a < b && isspace((unsigned char)*a)) {
                a++;
            }
            while (b > a && isspace((unsigned char)b[-1])) {
                b--;
            }
            in = strlen(section) == (size_t)(b - a) && memcmp(a, section, (size_t)(b - a)) == 0;
            continue;
        }
        if (in) {
            const char *eq = memchr(line, '=', (size_t)(end - line));
            const char *kend, *v;

            if (!eq) {
                continue;
            }
            kend = eq;
            while (kend > line && isspace((unsigned char)kend[-1])) {
                kend--;
            }
            if ((size_t)(kend - line) != strlen(key) || memcmp(line, key, strlen(key)) != 0) {
                continue;
            }
            v = eq + 1;
            while (v < end && isspace((unsigned char)*v)) {
                v++;
            }
            return strndup(v, (size_t)(end - v));
        }
    }
    return NULL;
}

static int from_shared(struct d2o_creds *c, struct owned_creds *o, char *why, size_t wn)
{
    const char *profile = getenv_in(c, "AWS_PROFILE");
    const char *cred_file = getenv_in(c, "AWS_SHARED_CREDENTIALS_FILE");
    const char *conf_file = getenv_in(c, "AWS_CONFIG_FILE");
    const char *home = getenv_in(c, "HOME");
    char cred_path[1024], conf_path[1024], section[300], ignore[256];
    char *text = NULL, *id = NULL, *secret = NULL, *token = NULL;
    int r = -ENOENT, pass;

    if (!profile) {
        profile = "default";
    }
    if (!cred_file && !home && !conf_file) {
        reason(why, wn, "HOME, AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE are not set");
        return -ENOENT;
    }
    if (cred_file) {
        snprintf(cred_path, sizeof(cred_path), "%s", cred_file);
    } else {
        snprintf(cred_path, sizeof(cred_path), "%s/.aws/credentials", home ? home : "");
    }
    if (conf_file) {
        snprintf(conf_path, sizeof(conf_path), "%s", conf_file);
    } else {
        snprintf(conf_path, sizeof(conf_path), "%s/.aws/config", home ? home : "");
    }
    for (pass = 0; pass < 2 && r != 0; pass++) {
        const char *path = pass == 0 ? cred_path : conf_path;

        if (pass == 1 && !conf_file && !home) {
            break;
        }
        text = read_small_file(path, ignore, sizeof(ignore));
        if (!text) {
            continue;
        }
        if (pass == 0 || strcmp(profile, "default") == 0) {
            snprintf(section, sizeof(section), "%s", profile);
        } else {
            snprintf(section, sizeof(section), "profile %s", profile);
        }
        id = ini_get(text, section, "aws_access_key_id");
        secret = ini_get(text, section, "aws_secret_access_key");
        token = ini_get(text, section, "aws_session_token");
        if (id && secret && *id && *secret) {
            r = owned_set(o, id, secret, token, 0);
        } else if (id || secret) {
            reason(why, wn,
                   "profile '%s' in %s has only one of aws_access_key_id and "
                   "aws_secret_access_key",
                   profile, path);
            r = -EINVAL;
        }
        OPENSSL_cleanse(text, strlen(text));
        free(text);
        free(id);
        cleanse_free(secret);
        cleanse_free(token);
        text = id = secret = token = NULL;
        if (r == -EINVAL) {
            return r;
        }
    }
    if (r == -ENOENT) {
        reason(why, wn, "no keys for profile '%s' in %s or %s", profile, cred_path, conf_path);
    }
    return r;
}

static int ecs_begin(struct d2o_creds *c, struct plan *pl, char *why, size_t wn)
{
    const char *rel = getenv_in(c, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = getenv_in(c, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
    const char *tok = getenv_in(c, "AWS_CONTAINER_AUTHORIZATION_TOKEN");
    const char *tok_file = getenv_in(c, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");

    if (!rel && !full) {
        reason(why, wn, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and _FULL_URI are not set");
        return -ENOENT;
    }
    if (rel) {
        snprintf(pl->url, sizeof(pl->url), "%s%s", c->ecs_endpoint, rel);
    } else {
        snprintf(pl->url, sizeof(pl->url), "%s", full);
    }
    if (tok_file) {
        pl->secret = read_small_file(tok_file, why, wn);
        if (!pl->secret) {
            return -EIO;
        }
        while (*pl->secret && isspace((unsigned char)pl->secret[strlen(pl->secret) - 1])) {
            pl->secret[strlen(pl->secret) - 1] = '\0';
        }
        tok = pl->secret;
    }
    if (tok) {
        d2o_log_add_secret(tok);
        pl->h[0].name = "Authorization";
        pl->h[0].value = tok;
        pl->nh = 1;
    }
    pl->method = "GET";
    return 0;
}

static int imds_begin(struct d2o_creds *c, struct plan *pl, char *why, size_t wn)
{
    const char *disabled = getenv_in(c, "AWS_EC2_METADATA_DISABLED");

    if (disabled && d2o_streq_ci(disabled, "true")) {
        reason(why, wn, "AWS_EC2_METADATA_DISABLED is true");
        return -ENOENT;
    }
    snprintf(pl->url, sizeof(pl->url), "%s/latest/api/token", c->imds_endpoint);
    pl->h[0].name = "X-aws-ec2-metadata-token-ttl-seconds";
    pl->h[0].value = "21600";
    pl->nh = 1;
    pl->method = "PUT";
    return 0;
}

/* IMDS's answers: the session token, then the role, then the credentials (1: the next request
 * is set up; 0: the credentials are in o). */
static int imds_answer(struct d2o_creds *c, struct plan *pl, struct d2o_http_response *resp,
                       struct owned_creds *o, char *why, size_t wn)
{
    const char *body = resp->body.data;

    switch (pl->step) {
    case 0:
        pl->secret = d2o_buf_steal(&resp->body);
        if (!pl->secret || !*pl->secret) {
            reason(why, wn, "IMDSv2 returned an empty session token");
            return -EIO;
        }
        pl->h[0].name = "X-aws-ec2-metadata-token";
        pl->h[0].value = pl->secret;
        pl->method = "GET";
        snprintf(pl->url, sizeof(pl->url), "%s/latest/meta-data/iam/security-credentials/",
                 c->imds_endpoint);
        return 1;
    case 1:
        if (!body || !*body) {
            reason(why, wn, "the instance has no IAM role attached");
            return -ENOENT;
        }
        snprintf(pl->url, sizeof(pl->url), "%s/latest/meta-data/iam/security-credentials/%.*s",
                 c->imds_endpoint,
                 (int)strcspn(body, "\r\n") > 255 ? 255 : (int)strcspn(body, "\r\n"), body);
        return 1;
    default:
        return parse_json_creds(body, o, why, wn);
    }
}

/* The first request of provider p (a network provider). */
static int plan_begin(struct d2o_creds *c, int p, struct plan *pl, char *why, size_t wn)
{
    memset(pl, 0, sizeof(*pl));
    pl->body = (struct d2o_buf)D2O_BUF_INIT;
    pl->provider = p;
    return p == P_WEB_IDENTITY ? web_identity_begin(c, pl, why, wn)
           : p == P_ECS        ? ecs_begin(c, pl, why, wn)
                               : imds_begin(c, pl, why, wn);
}

/* Takes a 2xx answer: 1 when the next request is set up, 0 with the credentials in o, < 0. */
static int plan_answer(struct d2o_creds *c, struct plan *pl, struct d2o_http_response *resp,
                       struct owned_creds *o, char *why, size_t wn)
{
    int r;

    if (pl->provider == P_WEB_IDENTITY) {
        r = web_identity_answer(resp->body.data ? resp->body.data : "", o, why, wn);
    } else if (pl->provider == P_ECS) {
        r = parse_json_creds(resp->body.data, o, why, wn);
    } else {
        r = imds_answer(c, pl, resp, o, why, wn);
    }
    pl->step++;
    return r;
}

/* Provider p's steps, each waiting for its answer (resolving the chain before the loop). */
static int fetch_sync(struct d2o_creds *c, int p, struct owned_creds *o, char *why, size_t wn)
{
    struct plan pl;
    int r = plan_begin(c, p, &pl, why, wn);

    while (r == 0 || r == 1) {
        struct d2o_http_request req;
        struct d2o_http_response resp;

        plan_request(c, &pl, &req);
        memset(&resp, 0, sizeof(resp));
        r = answer_check(&pl, d2o_http_request_sync(c->http, &req, &resp), &resp, why, wn);
        if (r == 0) {
            r = plan_answer(c, &pl, &resp, o, why, wn);
            r = r == 0 ? 2 : r; /* 2: done */
        }
        d2o_http_response_free(&resp);
    }
    plan_free(&pl);
    return r == 2 ? 0 : r;
}

static int from_web_identity(struct d2o_creds *c, struct owned_creds *o, char *why, size_t wn)
{
    return fetch_sync(c, P_WEB_IDENTITY, o, why, wn);
}

static int from_ecs(struct d2o_creds *c, struct owned_creds *o, char *why, size_t wn)
{
    return fetch_sync(c, P_ECS, o, why, wn);
}

static int from_imds(struct d2o_creds *c, struct owned_creds *o, char *why, size_t wn)
{
    return fetch_sync(c, P_IMDS, o, why, wn);
}

typedef int (*provider_fn)(struct d2o_creds *c, struct owned_creds *o, char *why, size_t wn);

static const provider_fn providers[P_COUNT] = {from_env, from_web_identity, from_shared, from_ecs,
                                               from_imds};

/* ---- the chain ---- */

static char *dup_or(const char *v, const char *def)
{
    return strdup(v && *v ? v : def);
}

struct d2o_creds *d2o_creds_new(struct d2o_http *http, const struct d2o_creds_opts *opts)
{
    struct d2o_creds_opts none = {0};
    struct d2o_creds *c = calloc(1, sizeof(*c));
    char sts[256];
    const char *region, *imds_env;

    if (!c) {
        return NULL;
    }
    if (!opts) {
        opts = &none;
    }
    c->http = http;
    c->envp = opts->envp;
    c->provider = -1;
    region = opts->region;
    if (!region || !*region) {
        region = getenv_in(c, "AWS_REGION");
    }
    if (!region) {
        region = getenv_in(c, "AWS_DEFAULT_REGION");
    }
    c->region = dup_or(region, "us-east-1");
    snprintf(sts, sizeof(sts), "https://sts.%s.amazonaws.com/", c->region ? c->region : "");
    c->sts_endpoint = dup_or(opts->sts_endpoint, sts);
    c->ecs_endpoint = dup_or(opts->ecs_endpoint, "http://169.254.170.2");
    imds_env = getenv_in(c, "AWS_EC2_METADATA_SERVICE_ENDPOINT");
    c->imds_endpoint = dup_or(opts->imds_endpoint, imds_env ? imds_env : "http://169.254.169.254");
    c->refresh_ahead_s = opts->refresh_ahead_s > 0 ? opts->refresh_ahead_s : 300;
    c->metadata_timeout_ms = opts->metadata_timeout_ms > 0 ? opts->metadata_timeout_ms : 1000;
    if (!c->region || !c->sts_endpoint || !c->ecs_endpoint || !c->imds_endpoint) {
        d2o_creds_free(c);
        return NULL;
    }
    /* Endpoints given without a trailing slash work either way; drop one from ECS and IMDS. */
    if (c->ecs_endpoint[0] && c->ecs_endpoint[strlen(c->ecs_endpoint) - 1] == '/') {
        c->ecs_endpoint[strlen(c->ecs_endpoint) - 1] = '\0';
    }
    if (c->imds_endpoint[0] && c->imds_endpoint[strlen(c->imds_endpoint) - 1] == '/') {
        c->imds_endpoint[strlen(c->imds_endpoint) - 1] = '\0';
    }
    return c;
}

void d2o_creds_free(struct d2o_creds *c)
{
    if (!c) {
        return;
    }
    if (c->refresh) {
        c->refresh->c = NULL; /* its answer frees it */
    }
    owned_free(&c->cur);
    free(c->region);
    free(c->sts_endpoint);
    free(c->ecs_endpoint);
    free(c->imds_endpoint);
    free(c);
}

static void publish(struct d2o_creds *c)
{
    c->view.access_key_id = c->cur.key_id;
    c->view.secret_access_key = c->cur.secret;
    c->view.session_token = c->cur.token;
}

static int resolve(struct d2o_creds *c, char *errstr, size_t errstr_size)
{
    struct d2o_buf all = D2O_BUF_INIT;
    int p, r = -ENOENT;

    for (p = 0; p < P_COUNT; p++) {
        struct owned_creds o = {0};
        char why[512] = "";

        r = providers[p](c, &o, why, sizeof(why));
        c->fetches += r == 0;
        if (r == 0) {
            owned_free(&c->cur);
            c->cur = o;
            c->provider = p;
            d2o_buf_free(&all);
            return 0;
        }
        owned_free(&o);
        if (r == -ENOMEM) {
            snprintf(errstr, errstr_size, "credentials: out of memory");
            d2o_buf_free(&all);
            return r;
        }
        if (d2o_buf_printf(&all, "%s%s: %s", p ? "; " : "", provider_names[p],
                           why[0] ? why : "failed") < 0) {
            break;
        }
    }
    snprintf(errstr, errstr_size, "no AWS credentials found (tried %s)",
             all.data ? all.data : "every provider");
    d2o_log_redact(errstr);
    d2o_buf_free(&all);
    return -ENOENT;
}

int d2o_creds_get(struct d2o_creds *c, time_t now, const struct d2o_aws_creds **out, char *errstr,
                  size_t errstr_size)
{
    struct owned_creds o = {0};
    char why[512] = "";
    bool due;
    int r;

    if (c->state == S_REFRESHING) {
        /* A refresh is already running further up this stack: use what we have. */
        if (c->cur.key_id) {
            *out = &c->view;
            return 0;
        }
        snprintf(errstr, errstr_size, "credentials: a refresh is already in progress");
        return -EBUSY;
    }
    if (c->provider < 0) {
        c->state = S_REFRESHING;
        r = resolve(c, errstr, errstr_size);
        c->state = r == 0 ? S_VALID : S_FAILED;
        if (r < 0) {
            return r;
        }
        publish(c);
        d2o_info("creds_resolved", "AWS credentials from %s%s", provider_names[c->provider],
                 c->cur.expiration ? " (temporary)" : "");
        *out = &c->view;
        return 0;
    }
    due = c->force_refresh || (c->cur.expiration && now + c->refresh_ahead_s >= c->cur.expiration);
    if (!due) {
        *out = &c->view;
        return 0;
    }
    c->state = S_REFRESHING;
    r = providers[c->provider](c, &o, why, sizeof(why));
    if (r == 0) {
        c->fetches++;
        owned_free(&c->cur);
        c->cur = o;
        c->force_refresh = false;
        c->state = S_VALID;
        publish(c);
        *out = &c->view;
        return 0;
    }
    owned_free(&o);
    d2o_log_redact(why);
    if (c->cur.key_id && (!c->cur.expiration || now < c->cur.expiration)) {
        c->state = S_VALID;
        d2o_warn("creds_refresh_failed",
                 "refreshing AWS credentials from %s failed, the current "
                 "ones stay in use until they expire: %s",
                 provider_names[c->provider], why);
        *out = &c->view;
        return 0;
    }
    c->state = S_FAILED;
    snprintf(errstr, errstr_size, "AWS credentials from %s expired and could not be refreshed: %s",
             provider_names[c->provider], why);
    return -EIO;
}

/* A refresh is over: new credentials in o (r 0), or why it failed. */
static void refresh_finish(struct creds_refresh *q, int r, struct owned_creds *o, char *why,
                           bool cancelled)
{
    struct d2o_creds *c = q->c;

    c->refresh = NULL;
    if (r == 0) {
        c->fetches++;
        owned_free(&c->cur);
        c->cur = *o;
        c->force_refresh = false;
        c->state = S_VALID;
        publish(c);
        q->done(q->arg, &c->view);
    } else {
        owned_free(o);
        d2o_log_redact(why);
        c->state = c->cur.key_id && (!c->cur.expiration || time(NULL) < c->cur.expiration)
                       ? S_VALID
                       : S_FAILED;
        if (!cancelled) {
            d2o_warn("creds_refresh_failed",
                     "refreshing AWS credentials from %s failed, the current ones stay in use "
                     "until they expire%s: %s",
                     provider_names[c->provider], c->state == S_FAILED ? " (they have)" : "", why);
        }
    }
    plan_free(&q->plan);
    free(q);
}

static int refresh_send(struct creds_refresh *q);

static void refresh_answer(struct d2o_http_response *resp, void *arg)
{
    struct creds_refresh *q = arg;
    struct owned_creds o = {0};
    char why[512] = "";
    int r;

    if (!q->c) {
        plan_free(&q->plan);
        free(q);
        return;
    }
    r = answer_check(&q->plan, 0, resp, why, sizeof(why));
    if (r == 0) {
        r = plan_answer(q->c, &q->plan, resp, &o, why, sizeof(why));
        if (r == 1) {
            if (refresh_send(q) == 0) {
                return;
            }
            reason(why, sizeof(why), "cannot start the next request");
            r = -ENOMEM;
        }
    }
    refresh_finish(q, r, &o, why, resp->err == -ECANCELED);
}

static int refresh_send(struct creds_refresh *q)
{
    struct d2o_http_request req;

    plan_request(q->c, &q->plan, &req);
    return d2o_http_start(q->c->http, &req, refresh_answer, q, NULL);
}

int d2o_creds_refresh_async(struct d2o_creds *c, time_t now, d2o_creds_refreshed_fn done, void *arg)
{
    struct creds_refresh *q;
    struct owned_creds o = {0};
    char why[512] = "";
    int r;

    if (c->refresh) {
        return 1;
    }
    if (c->provider < 0 || c->state == S_REFRESHING ||
        !(c->force_refresh ||
          (c->cur.expiration && now + c->refresh_ahead_s >= c->cur.expiration))) {
        return 0;
    }
    if (c->provider == P_ENV || c->provider == P_SHARED) {
        /* files and the environment: nothing to wait for */
        const struct d2o_aws_creds *ac;

        if (d2o_creds_get(c, now, &ac, why, sizeof(why)) == 0) {
            done(arg, ac);
        }
        return 0;
    }
    q = calloc(1, sizeof(*q));
    if (!q) {
        return -ENOMEM;
    }
    q->c = c;
    q->done = done;
    q->arg = arg;
    c->refresh = q;
    c->state = S_REFRESHING;
    r = plan_begin(c, c->provider, &q->plan, why, sizeof(why));
    if (r == 0) {
        r = refresh_send(q);
        if (r < 0) {
            reason(why, sizeof(why), "cannot start the request");
        }
    }
    if (r < 0) {
        refresh_finish(q, r, &o, why, false);
        return r;
    }
    return 1;
}

int d2o_creds_cached(const struct d2o_creds *c, time_t now, const struct d2o_aws_creds **out,
                     char *errstr, size_t errstr_size)
{
    if (c->provider < 0 || !c->cur.key_id) {
        snprintf(errstr, errstr_size, "no AWS credentials were fetched yet");
        return -ENOENT;
    }
    if (c->cur.expiration && now >= c->cur.expiration) {
        snprintf(errstr, errstr_size,
                 "the AWS credentials from %s expired %lld s ago and no refresh has brought new "
                 "ones yet",
                 provider_names[c->provider], (long long)(now - c->cur.expiration));
        return -EKEYEXPIRED;
    }
    *out = &c->view;
    return 0;
}

void d2o_creds_invalidate(struct d2o_creds *c)
{
    c->force_refresh = true;
}

const char *d2o_creds_source(const struct d2o_creds *c)
{
    return c->provider >= 0 ? provider_names[c->provider] : NULL;
}

time_t d2o_creds_expiration(const struct d2o_creds *c)
{
    return c->cur.expiration;
}

unsigned long d2o_creds_fetches(const struct d2o_creds *c)
{
    return c->fetches;
}
