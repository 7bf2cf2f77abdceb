/*
 * Pure parsers of Kinesis JSON 1.1 responses, sequence-number helpers, hash-key arithmetic.
 * No I/O: every function takes bytes and fills structs, so the fuzz targets can drive them.
 */
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/kinesis.h"
#include "kinesis_json.h"
#include "d2o/util.h"
#include "d2o/yjson.h"

#define MALFORMED "MalformedResponse"

bool d2o_kinesis_seq_valid(const char *s)
{
    size_t i;

    if (!s || !s[0]) {
        return false;
    }
    if (s[0] == '0') {
        return s[1] == '\0';
    }
    for (i = 0; s[i]; i++) {
        if (s[i] < '0' || s[i] > '9' || i >= D2O_KINESIS_SEQ_MAX_DIGITS) {
            return false;
        }
    }
    return true;
}

int d2o_kinesis_seq_cmp(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int c;

    if (la != lb) {
        return la < lb ? -1 : 1;
    }
    c = memcmp(a, b, la);
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

static int parse_u128(const char *s, unsigned __int128 *out)
{
    unsigned __int128 v = 0, max = ~(unsigned __int128)0;
    size_t i;

    if (!s || !s[0] || (s[0] == '0' && s[1])) {
        return -EINVAL;
    }
    for (i = 0; s[i]; i++) {
        unsigned d;

        if (s[i] < '0' || s[i] > '9') {
            return -EINVAL;
        }
        d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10) {
            return -EINVAL;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int format_u128(unsigned __int128 v, char *out, size_t out_size)
{
    char tmp[48];
    size_t n = 0, i;

    do {
        tmp[n++] = (char)('0' + (unsigned)(v % 10));
        v /= 10;
    } while (v > 0);
    if (n + 1 > out_size) {
        return -EINVAL;
    }
    for (i = 0; i < n; i++) {
        out[i] = tmp[n - 1 - i];
    }
    out[n] = '\0';
    return 0;
}

int d2o_kinesis_hash_mid(const char *start, const char *end, char *out, size_t out_size)
{
    unsigned __int128 a, b;

    if (parse_u128(start, &a) < 0 || parse_u128(end, &b) < 0 || a >= b) {
        return -EINVAL;
    }
    return format_u128(a + (b - a) / 2 + 1, out, out_size);
}

void d2o_kjson_err(struct d2o_kinesis_err *err, const char *fmt, ...)
{
    va_list ap;

    memset(err, 0, sizeof(*err));
    err->action = D2O_ACT_RETRY;
    err->status = 200;
    err->curl_code = CURLE_OK;
    snprintf(err->code, sizeof(err->code), "%s", MALFORMED);
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}

/* The checks every answer passes before it is parsed. Returns 0 or D2O_KINESIS_E_FAILED. */
static int body_usable(const char *what, const char *body, size_t len, struct d2o_kinesis_err *err)
{
    if (!body || len == 0) {
        d2o_kjson_err(err, "%s response: empty body", what);
        return D2O_KINESIS_E_FAILED;
    }
    if (len > INT32_MAX) {
        d2o_kjson_err(err, "%s response: body too large to parse (%zu bytes)", what, len);
        return D2O_KINESIS_E_FAILED;
    }
    if (memchr(body, '\0', len)) {
        d2o_kjson_err(err, "%s response: NUL byte in the body", what);
        return D2O_KINESIS_E_FAILED;
    }
    return 0;
}

/* One tokener per process, reset for each response: its parse stack is allocated once. */
static json_tokener *shared_tok;

/* Parses body as one JSON object. Returns 0 or D2O_KINESIS_E_FAILED / -ENOMEM. */
int d2o_kjson_root(const char *what, const char *body, size_t len, json_object **out,
                   struct d2o_kinesis_err *err)
{
    json_tokener *tok;
    json_object *root = NULL;
    enum json_tokener_error jerr;
    size_t end;
    int r;

    *out = NULL;
    r = body_usable(what, body, len, err);
    if (r != 0) {
        goto out;
    }
    if (!shared_tok) {
        shared_tok = json_tokener_new();
        if (!shared_tok) {
            r = -ENOMEM;
            goto out;
        }
    }
    tok = shared_tok;
    json_tokener_reset(tok);
    root = json_tokener_parse_ex(tok, body, (int)len);
    jerr = json_tokener_get_error(tok);
    if (!root || jerr != json_tokener_success) {
        d2o_kjson_err(err, "%s response: invalid JSON (%s)", what,
                      jerr == json_tokener_continue ? "truncated" : json_tokener_error_desc(jerr));
        r = D2O_KINESIS_E_FAILED;
        goto out;
    }
    end = json_tokener_get_parse_end(tok);
    while (end < len &&
           (body[end] == ' ' || body[end] == '\n' || body[end] == '\r' || body[end] == '\t')) {
        end++;
    }
    if (end != len) {
        d2o_kjson_err(err, "%s response: unexpected data after the JSON object at byte %zu", what,
                      end);
        r = D2O_KINESIS_E_FAILED;
        goto out;
    }
    if (!json_object_is_type(root, json_type_object)) {
        d2o_kjson_err(err, "%s response: not a JSON object", what);
        r = D2O_KINESIS_E_FAILED;
        goto out;
    }
    *out = root;
    root = NULL;
    r = 0;
out:
    json_object_put(root);
    return r;
}

/*
 * Copies the string member key of obj into *out. A missing or null member gives NULL when
 * optional, an error when required; any other type is an error.
 */
int d2o_kjson_str(const char *what, json_object *obj, const char *key, bool required, char **out,
                  struct d2o_kinesis_err *err)
{
    json_object *v = NULL;

    *out = NULL;
    if (!json_object_object_get_ex(obj, key, &v) || !v) {
        if (required) {
            d2o_kjson_err(err, "%s: %s is missing", what, key);
            return D2O_KINESIS_E_FAILED;
        }
        return 0;
    }
    if (!json_object_is_type(v, json_type_string)) {
        d2o_kjson_err(err, "%s: %s is not a string", what, key);
        return D2O_KINESIS_E_FAILED;
    }
    *out = strdup(json_object_get_string(v));
    return *out ? 0 : -ENOMEM;
}

int d2o_kjson_seq(const char *what, json_object *obj, const char *key, bool required, char **out,
                  struct d2o_kinesis_err *err)
{
    return d2o_kjson_seq_checked(what, obj, key, required, d2o_kinesis_seq_valid, out, err);
}

int d2o_kjson_seq_checked(const char *what, json_object *obj, const char *key, bool required,
                          bool (*valid)(const char *), char **out, struct d2o_kinesis_err *err)
{
    int r = d2o_kjson_str(what, obj, key, required, out, err);

    if (r == 0 && *out && !valid(*out)) {
        d2o_kjson_err(err, "%s: %s is not a valid sequence number", what, key);
        free(*out);
        *out = NULL;
        r = D2O_KINESIS_E_FAILED;
    }
    return r;
}

/*
 * Looks up key in obj and checks its JSON type. Absent or null: an error when required,
 * otherwise 0 with *out = NULL.
 */
int d2o_kjson_member(const char *what, json_object *obj, const char *key, bool required,
                     json_type type, const char *type_text, json_object **out,
                     struct d2o_kinesis_err *err)
{
    json_object *v = NULL;

    *out = NULL;
    if (!json_object_object_get_ex(obj, key, &v) || !v) {
        if (required) {
            d2o_kjson_err(err, "%s: %s is missing", what, key);
            return D2O_KINESIS_E_FAILED;
        }
        return 0;
    }
    if (!json_object_is_type(v, type)) {
        d2o_kjson_err(err, "%s: %s is not %s", what, key, type_text);
        return D2O_KINESIS_E_FAILED;
    }
    *out = v;
    return 0;
}

/* An optional integer member; absent/null leaves *out unchanged. */
static int get_int(const char *what, json_object *obj, const char *key, bool required, int64_t *out,
                   struct d2o_kinesis_err *err)
{
    json_object *v;
    int r = d2o_kjson_member(what, obj, key, required, json_type_int, "an integer", &v, err);

    if (r == 0 && v) {
        *out = json_object_get_int64(v);
    }
    return r;
}

/* An optional array member; absent/null gives *out = NULL. */
static int get_array(const char *what, json_object *obj, const char *key, bool required,
                     json_object **out, struct d2o_kinesis_err *err)
{
    return d2o_kjson_member(what, obj, key, required, json_type_array, "an array", out, err);
}

static int get_object(const char *what, json_object *obj, const char *key, bool required,
                      json_object **out, struct d2o_kinesis_err *err)
{
    return d2o_kjson_member(what, obj, key, required, json_type_object, "an object", out, err);
}

/* Bytes of the base64 alphabet (padding aside): one table look-up per byte of Data. */
static const unsigned char b64_alphabet[256] = {
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
    ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1,
    ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1,
    ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['+'] = 1, ['/'] = 1,
};

/* Scans standard padded base64 (n bytes): 0; 1 when n is not a multiple of 4; 2 with *bad the
 * offset of a byte outside the alphabet. */
static int b64_scan(const unsigned char *in, size_t n, size_t *bad)
{
    size_t pad = 0, i;

    if (n % 4 != 0 || n > INT32_MAX) {
        return 1;
    }
    if (n > 0 && in[n - 1] == '=') {
        pad = (n > 1 && in[n - 2] == '=') ? 2 : 1;
    }
    n -= pad;
    /* eight look-ups a branch: Data is most of an answer's bytes */
    for (i = 0; i + 8 <= n; i += 8) {
        if (!(b64_alphabet[in[i]] & b64_alphabet[in[i + 1]] & b64_alphabet[in[i + 2]] &
              b64_alphabet[in[i + 3]] & b64_alphabet[in[i + 4]] & b64_alphabet[in[i + 5]] &
              b64_alphabet[in[i + 6]] & b64_alphabet[in[i + 7]])) {
            break;
        }
    }
    for (; i < n; i++) {
        if (!b64_alphabet[in[i]]) {
            *bad = i;
            return 2;
        }
    }
    return 0;
}

/* Decodes n bytes that passed b64_scan into buf (room for n / 4 * 3 + 1 bytes), NUL-terminated.
 * Returns 0 or -1. */
static int b64_decode_into(const unsigned char *in, size_t n, unsigned char *buf, size_t *out_len)
{
    size_t pad = n > 0 && in[n - 1] == '=' ? (n > 1 && in[n - 2] == '=' ? 2 : 1) : 0;
    int dec = n > 0 ? EVP_DecodeBlock(buf, in, (int)n) : 0;

    if (dec < 0 || (size_t)dec < pad) {
        return -1;
    }
    /* EVP_DecodeBlock counts the padding as decoded zero bytes */
    *out_len = (size_t)dec - pad;
    buf[*out_len] = '\0';
    return 0;
}

void d2o_kinesis_records_free(struct d2o_kinesis_records *r)
{
    size_t i, j;

    if (!r) {
        return;
    }
    /* The records' strings and data live in one block with the array (see parse_records). */
    free(r->records);
    for (i = 0; i < r->n_children; i++) {
        for (j = 0; j < r->children[i].n_parents; j++) {
            free(r->children[i].parents[j]);
        }
        free(r->children[i].parents);
        free(r->children[i].shard_id);
        free(r->children[i].hash_start);
        free(r->children[i].hash_end);
    }
    free(r->children);
    free(r->next_iterator);
    memset(r, 0, sizeof(*r));
    r->millis_behind_latest = -1;
}

static int parse_hash_range(const char *what, json_object *obj, char **start, char **end,
                            struct d2o_kinesis_err *err)
{
    json_object *hr = NULL;
    int r;

    r = get_object(what, obj, "HashKeyRange", true, &hr, err);
    if (r == 0) {
        r = d2o_kjson_str(what, hr, "StartingHashKey", true, start, err);
    }
    if (r == 0) {
        r = d2o_kjson_str(what, hr, "EndingHashKey", true, end, err);
    }
    return r;
}

static int parse_child(json_object *o, size_t i, struct d2o_kinesis_child_shard *c,
                       struct d2o_kinesis_err *err)
{
    char what[64];
    json_object *parents = NULL, *p;
    size_t j, n;
    int r;

    snprintf(what, sizeof(what), "GetRecords response: ChildShards[%zu]", i);
    if (!json_object_is_type(o, json_type_object)) {
        d2o_kjson_err(err, "%s is not an object", what);
        return D2O_KINESIS_E_FAILED;
    }
    r = d2o_kjson_str(what, o, "ShardId", true, &c->shard_id, err);
    if (r == 0) {
        r = get_array(what, o, "ParentShards", true, &parents, err);
    }
    if (r == 0) {
        r = parse_hash_range(what, o, &c->hash_start, &c->hash_end, err);
    }
    if (r != 0) {
        return r;
    }
    n = json_object_array_length(parents);
    if (n == 0) {
        d2o_kjson_err(err, "%s: ParentShards is empty", what);
        return D2O_KINESIS_E_FAILED;
    }
    c->parents = calloc(n, sizeof(*c->parents));
    if (!c->parents) {
        return -ENOMEM;
    }
    for (j = 0; j < n; j++) {
        p = json_object_array_get_idx(parents, j);
        if (!json_object_is_type(p, json_type_string)) {
            d2o_kjson_err(err, "%s: ParentShards[%zu] is not a string", what, j);
            return D2O_KINESIS_E_FAILED;
        }
        c->parents[j] = strdup(json_object_get_string(p));
        if (!c->parents[j]) {
            return -ENOMEM;
        }
        c->n_parents++;
    }
    return 0;
}

/* ---- GetRecords: yajl's callbacks fill the records as the answer goes by, no tree ---- */

/* What the parser expects next. */
enum gr_want {
    W_ROOT,    /* the answer itself */
    W_SKIP,    /* a member nobody reads */
    W_RECORDS, /* the answer's members */
    W_NSI,
    W_MBL,
    W_CHILDREN,
    W_ELEM, /* an element of Records */
    W_SEQ,  /* a record's members */
    W_PK,
    W_DATA,
    W_TS,
};

/* Errors rank as the checks ran when the answer was a tree: members of the answer in this order,
 * then the records (every check before any decoding), then the child shards. The first set wins. */
enum gr_slot { E_ROOT, E_RECORDS, E_NSI, E_MBL, E_CHILDREN, E_RECORD, E_DECODE, E_N };

/* How a member of the current record turned out. */
enum gr_member { M_ABSENT, M_TYPE, M_BAD, M_OK };

/* One good record: its texts as offsets into the arena (which may move while it grows). */
struct gr_rec {
    size_t seq, pk, data, data_len;
    int64_t arrival_ms;
};

struct gr {
    struct d2o_yjson y;
    enum gr_want want;
    int level; /* containers entered: 1 the answer, 2 Records, 3 a record */
    bool records_seen, capture_children, nomem;
    size_t children_at, children_end; /* the ChildShards array's text; end 0: none */
    size_t idx;                       /* the current element of Records */
    struct {
        enum gr_member seq, pk, data, ts;
        int data_why; /* M_BAD Data: 1 length, 2 bad character at bad_at, 3 decoding */
        size_t data_n, bad_at;
        struct gr_rec at;
    } cur;
    struct gr_rec *recs;
    size_t n, cap;
    unsigned char *arena; /* every record's texts, NUL-terminated */
    size_t used, arena_cap;
    char *next_iterator;
    int64_t millis_behind_latest;
    bool set[E_N];
    struct d2o_kinesis_err slot[E_N];
};

static void gr_fail(struct gr *p, enum gr_slot s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void gr_fail(struct gr *p, enum gr_slot s, const char *fmt, ...)
{
    struct d2o_kinesis_err *e = &p->slot[s];
    va_list ap;

    if (p->set[s]) {
        return;
    }
    p->set[s] = true;
    d2o_kjson_err(e, "%s", "");
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

/* Room for n more bytes in the arena. */
static bool gr_room(struct gr *p, size_t n)
{
    unsigned char *a;
    size_t cap;

    if (p->arena_cap - p->used >= n) {
        return true;
    }
    cap = p->arena_cap * 2 > p->used + n ? p->arena_cap * 2 : p->used + n;
    a = realloc(p->arena, cap);
    if (!a) {
        p->nomem = true;
        return false;
    }
    p->arena = a;
    p->arena_cap = cap;
    return true;
}

/* Copies s (n bytes) and a NUL into the arena; returns its offset, or SIZE_MAX without memory. */
static size_t gr_text(struct gr *p, const unsigned char *s, size_t n)
{
    size_t at = p->used;

    if (!gr_room(p, n + 1)) {
        return SIZE_MAX;
    }
    memcpy(p->arena + at, s, n);
    p->arena[at + n] = '\0';
    p->used += n + 1;
    return at;
}

/* A JSON number as json-c reads one: an integer (*i, true) or a double (*d, false). */
static bool gr_number(const unsigned char *s, size_t n, int64_t *i, double *d)
{
    char small[64], *copy = small;

    if (d2o_yjson_int((const char *)s, n, i)) {
        return true;
    }
    if (n >= sizeof(small)) {
        copy = malloc(n + 1);
    }
    if (!copy) {
        *d = NAN;
        return false;
    }
    memcpy(copy, s, n);
    copy[n] = '\0';
    *d = strtod(copy, NULL);
    if (copy != small) {
        free(copy);
    }
    return false;
}

static void gr_seq(struct gr *p, const unsigned char *s, size_t n)
{
    size_t at = gr_text(p, s, n);

    if (at == SIZE_MAX) {
        return;
    }
    p->cur.at.seq = at;
    p->cur.seq =
        !memchr(s, '\0', n) && d2o_kinesis_seq_valid((const char *)p->arena + at) ? M_OK : M_BAD;
}

static void gr_data(struct gr *p, const unsigned char *s, size_t n)
{
    int why = b64_scan(s, n, &p->cur.bad_at);

    p->cur.data = M_BAD;
    p->cur.data_why = why;
    p->cur.data_n = n;
    if (why != 0 || !gr_room(p, n / 4 * 3 + 1)) {
        return;
    }
    if (b64_decode_into(s, n, p->arena + p->used, &p->cur.at.data_len) != 0) {
        p->cur.data_why = 3;
        return;
    }
    p->cur.at.data = p->used;
    p->used += p->cur.at.data_len + 1;
    p->cur.data = M_OK;
}

static void gr_timestamp(struct gr *p, const unsigned char *s, size_t n)
{
    int64_t i;
    double ts;

    if (gr_number(s, n, &i, &ts)) {
        ts = (double)i;
    }
    if (!isfinite(ts) || ts < 0 || ts > 1e13) {
        p->cur.ts = M_BAD;
        return;
    }
    p->cur.ts = M_OK;
    p->cur.at.arrival_ms = (int64_t)llround(ts * 1000.0);
}

/* Keeps the current record (while no earlier one failed: then none is returned anyway). */
static void gr_keep(struct gr *p)
{
    if (p->set[E_RECORD] || p->set[E_DECODE]) {
        return;
    }
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        struct gr_rec *recs = realloc(p->recs, cap * sizeof(*recs));

        if (!recs) {
            p->nomem = true;
            return;
        }
        p->recs = recs;
        p->cap = cap;
    }
    p->recs[p->n++] = p->cur.at;
}

/* The end of Records[idx]: the checks in the order they always ran, then the record is kept. */
static void gr_record_end(struct gr *p)
{
    char what[64];
    size_t i = p->idx++;

    if (p->cur.seq == M_OK && p->cur.pk == M_OK && p->cur.data == M_OK &&
        (p->cur.ts == M_ABSENT || p->cur.ts == M_OK)) {
        gr_keep(p);
        return;
    }
    snprintf(what, sizeof(what), "GetRecords response: Records[%zu]", i);
    if (p->cur.seq != M_OK) {
        gr_fail(p, E_RECORD, "%s: SequenceNumber %s", what,
                p->cur.seq == M_ABSENT ? "is missing"
                : p->cur.seq == M_TYPE ? "is not a string"
                                       : "is not a valid sequence number");
    } else if (p->cur.pk != M_OK) {
        gr_fail(p, E_RECORD, "%s: PartitionKey %s", what,
                p->cur.pk == M_ABSENT ? "is missing" : "is not a string");
    } else if (p->cur.data == M_ABSENT || p->cur.data == M_TYPE) {
        gr_fail(p, E_RECORD, "%s: Data is missing or not a string", what);
    } else if (p->cur.data == M_BAD && p->cur.data_why == 1) {
        gr_fail(p, E_RECORD, "%s: Data is not base64 (length %zu is not a multiple of 4)", what,
                p->cur.data_n);
    } else if (p->cur.data == M_BAD && p->cur.data_why == 2) {
        gr_fail(p, E_RECORD, "%s: Data is not base64 (bad character at offset %zu)", what,
                p->cur.bad_at);
    } else if (p->cur.ts == M_TYPE) {
        gr_fail(p, E_RECORD, "%s: ApproximateArrivalTimestamp is not a number", what);
    } else if (p->cur.ts == M_BAD) {
        gr_fail(p, E_RECORD, "%s: ApproximateArrivalTimestamp is out of range", what);
    } else {
        gr_fail(p, E_DECODE, "%s: Data is not valid base64", what);
    }
}

/* A value starts (a scalar, or the opening of an object or an array). */
static int gr_value(void *ctx, enum d2o_yjson_kind k, const unsigned char *s, size_t n)
{
    struct gr *p = ctx;
    static const char what[] = "GetRecords response";

    switch (p->want) {
    case W_ROOT:
        if (k == D2O_YJ_MAP) {
            p->level = 1;
            return 1;
        }
        gr_fail(p, E_ROOT, "%s: not a JSON object", what);
        break;
    case W_RECORDS:
        if (k == D2O_YJ_ARR) {
            p->level = 2;
            p->want = W_ELEM;
            return 1;
        }
        gr_fail(p, E_RECORDS, "%s: Records %s", what,
                k == D2O_YJ_NULL ? "is missing" : "is not an array");
        break;
    case W_NSI:
        free(p->next_iterator);
        p->next_iterator = NULL;
        if (k == D2O_YJ_STR) {
            p->next_iterator = strndup((const char *)s, n);
            p->nomem = !p->next_iterator;
        } else if (k != D2O_YJ_NULL) {
            gr_fail(p, E_NSI, "%s: NextShardIterator is not a string", what);
        }
        break;
    case W_MBL:
        if (k == D2O_YJ_NUM) {
            double d;

            if (!gr_number(s, n, &p->millis_behind_latest, &d)) {
                gr_fail(p, E_MBL, "%s: MillisBehindLatest is not an integer", what);
            }
        } else if (k != D2O_YJ_NULL) {
            gr_fail(p, E_MBL, "%s: MillisBehindLatest is not an integer", what);
        }
        break;
    case W_CHILDREN:
        if (k == D2O_YJ_ARR) {
            p->capture_children = true;
        } else if (k != D2O_YJ_NULL) {
            gr_fail(p, E_CHILDREN, "%s: ChildShards is not an array", what);
        }
        break;
    case W_ELEM:
        if (k == D2O_YJ_MAP) {
            p->level = 3;
            memset(&p->cur, 0, sizeof(p->cur));
            return 1;
        }
        gr_fail(p, E_RECORD, "%s: Records[%zu] is not an object", what, p->idx++);
        return k >= D2O_YJ_MAP ? D2O_YJSON_SKIP : 1; /* the next element comes */
    case W_SEQ:
        p->cur.seq = k == D2O_YJ_STR ? M_BAD : k == D2O_YJ_NULL ? M_ABSENT : M_TYPE;
        if (k == D2O_YJ_STR) {
            gr_seq(p, s, n);
        }
        break;
    case W_PK:
        p->cur.pk = k == D2O_YJ_STR ? M_OK : k == D2O_YJ_NULL ? M_ABSENT : M_TYPE;
        if (k == D2O_YJ_STR) {
            p->cur.at.pk = gr_text(p, s, n);
        }
        break;
    case W_DATA:
        p->cur.data = M_TYPE;
        if (k == D2O_YJ_STR) {
            gr_data(p, s, n);
        }
        break;
    case W_TS:
        p->cur.ts = k == D2O_YJ_NUM ? M_BAD : k == D2O_YJ_NULL ? M_ABSENT : M_TYPE;
        if (k == D2O_YJ_NUM) {
            gr_timestamp(p, s, n);
        }
        break;
    case W_SKIP:
        break;
    }
    if (p->nomem) {
        return 0;
    }
    return k >= D2O_YJ_MAP ? D2O_YJSON_SKIP : 1; /* a container nobody reads here */
}

static bool key_is(const unsigned char *k, size_t n, const char *name, size_t name_len)
{
    return n == name_len && memcmp(k, name, n) == 0;
}
#define KEY_IS(k, n, lit) key_is((k), (n), (lit), sizeof(lit) - 1)

static int gr_key(void *ctx, const unsigned char *k, size_t n)
{
    struct gr *p = ctx;

    p->want = W_SKIP;
    if (p->level == 3) {
        if (KEY_IS(k, n, "Data")) {
            p->want = W_DATA;
        } else if (KEY_IS(k, n, "SequenceNumber")) {
            p->want = W_SEQ;
        } else if (KEY_IS(k, n, "PartitionKey")) {
            p->want = W_PK;
        } else if (KEY_IS(k, n, "ApproximateArrivalTimestamp")) {
            p->want = W_TS;
        }
    } else if (KEY_IS(k, n, "Records")) {
        /* a member given twice counts once, the last time, as in a tree */
        p->want = W_RECORDS;
        p->records_seen = true;
        p->n = 0;
        p->used = 0;
        p->idx = 0;
        p->set[E_RECORDS] = p->set[E_RECORD] = p->set[E_DECODE] = false;
    } else if (KEY_IS(k, n, "NextShardIterator")) {
        p->want = W_NSI;
        p->set[E_NSI] = false;
    } else if (KEY_IS(k, n, "MillisBehindLatest")) {
        p->want = W_MBL;
        p->set[E_MBL] = false;
    } else if (KEY_IS(k, n, "ChildShards")) {
        p->want = W_CHILDREN;
        p->set[E_CHILDREN] = false;
        p->children_end = 0;
    }
    return 1;
}

static int gr_end(void *ctx)
{
    struct gr *p = ctx;

    if (p->level == 3) {
        gr_record_end(p);
        p->want = W_ELEM;
    }
    p->level--;
    return !p->nomem;
}

/* The ChildShards array closed: its text is kept for gr_children. */
static void gr_skipped(void *ctx, size_t at, size_t end)
{
    struct gr *p = ctx;

    if (p->capture_children) {
        p->capture_children = false;
        p->children_at = at;
        p->children_end = end;
    }
}

static const struct d2o_yjson_handler gr_handler = {gr_value, gr_key, gr_end, gr_skipped};

/* ChildShards come once, in the last answer of a closed shard: json-c reads their text. */
static int gr_children(const char *text, size_t len, struct d2o_kinesis_records *res,
                       struct d2o_kinesis_err *err)
{
    json_tokener *tok = json_tokener_new();
    json_object *arr;
    size_t i, n;
    int r = 0;

    if (!tok) {
        return -ENOMEM;
    }
    arr = json_tokener_parse_ex(tok, text, (int)len);
    if (!arr || json_tokener_get_error(tok) != json_tokener_success) {
        d2o_kjson_err(err, "GetRecords response: ChildShards: invalid JSON (%s)",
                      json_tokener_error_desc(json_tokener_get_error(tok)));
        r = D2O_KINESIS_E_FAILED;
    }
    json_tokener_free(tok);
    n = r == 0 ? json_object_array_length(arr) : 0;
    if (n > 0) {
        res->children = calloc(n, sizeof(*res->children));
        r = res->children ? 0 : -ENOMEM;
    }
    for (i = 0; i < n && r == 0; i++) {
        res->n_children++;
        r = parse_child(json_object_array_get_idx(arr, i), i, &res->children[i], err);
    }
    json_object_put(arr);
    return r;
}

/* One block holds the record array and every record's texts (copied from the arena). */
static int gr_pack(struct gr *p, struct d2o_kinesis_records *res)
{
    char *base;
    size_t i, head;

    if (p->n == 0) {
        return 0;
    }
    head = p->n * sizeof(*res->records);
    res->records = malloc(head + p->used);
    if (!res->records) {
        return -ENOMEM;
    }
    base = (char *)res->records + head;
    memcpy(base, p->arena, p->used);
    for (i = 0; i < p->n; i++) {
        struct d2o_kinesis_record *rec = &res->records[i];

        rec->sequence_number = base + p->recs[i].seq;
        rec->partition_key = base + p->recs[i].pk;
        rec->data = (unsigned char *)base + p->recs[i].data;
        rec->data_len = p->recs[i].data_len;
        rec->arrival_ms = p->recs[i].arrival_ms;
    }
    res->n_records = p->n;
    return 0;
}

/*
 * yajl reads the answer once; each record's sequence number and partition key are copied, and
 * its Data decoded, into one arena as they go by, so the whole answer costs a few allocations
 * however many records it holds.
 */
int d2o_kinesis_parse_get_records(const char *body, size_t len, struct d2o_kinesis_records *out,
                                  struct d2o_kinesis_err *err)
{
    static const char what[] = "GetRecords response";
    struct d2o_kinesis_records res;
    struct gr *p;
    int r, s, i;

    memset(&res, 0, sizeof(res));
    res.millis_behind_latest = -1;
    memset(out, 0, sizeof(*out));
    out->millis_behind_latest = -1;
    r = body_usable("GetRecords", body, len, err);
    if (r != 0) {
        return r;
    }
    p = calloc(1, sizeof(*p));
    if (!p) {
        return -ENOMEM;
    }
    p->millis_behind_latest = -1;
    /* every text in the arena is shorter than its JSON string, quotes included */
    p->arena_cap = len + 1;
    p->arena = malloc(p->arena_cap);
    if (!p->arena) {
        r = -ENOMEM;
        goto out;
    }
    s = d2o_yjson_parse(&p->y, &gr_handler, p, body, len);
    if (s == D2O_YJSON_NOMEM || s == D2O_YJSON_CANCELED || p->nomem) {
        r = -ENOMEM;
        goto out;
    }
    r = D2O_KINESIS_E_FAILED;
    if (s == D2O_YJSON_TRUNCATED) {
        d2o_kjson_err(err, "%s: invalid JSON (truncated)", what);
        goto out;
    }
    if (s == D2O_YJSON_INVALID) {
        d2o_kjson_err(err, "%s: invalid JSON (%s at byte %zu)", what, p->y.why, p->y.at);
        goto out;
    }
    if (s == D2O_YJSON_TRAILING) {
        d2o_kjson_err(err, "%s: unexpected data after the JSON object at byte %zu", what, p->y.at);
        goto out;
    }
    if (!p->records_seen) {
        gr_fail(p, E_RECORDS, "%s: Records is missing", what);
    }
    for (i = 0; i < E_N; i++) {
        if (p->set[i]) {
            *err = p->slot[i];
            goto out;
        }
    }
    r = gr_pack(p, &res);
    if (r == 0 && p->children_end > 0) {
        r = gr_children(body + p->children_at, p->children_end - p->children_at, &res, err);
    }
    if (r != 0) {
        goto out;
    }
    res.next_iterator = p->next_iterator;
    p->next_iterator = NULL;
    res.millis_behind_latest = p->millis_behind_latest;
    *out = res;
    memset(&res, 0, sizeof(res));
out:
    d2o_kinesis_records_free(&res);
    free(p->next_iterator);
    free(p->recs);
    free(p->arena);
    free(p);
    return r;
}

void d2o_kinesis_shards_free(struct d2o_kinesis_shards *s)
{
    size_t i;

    if (!s) {
        return;
    }
    for (i = 0; i < s->n_shards; i++) {
        free(s->shards[i].shard_id);
        free(s->shards[i].parent_shard_id);
        free(s->shards[i].adjacent_parent_shard_id);
        free(s->shards[i].hash_start);
        free(s->shards[i].hash_end);
        free(s->shards[i].seq_start);
        free(s->shards[i].seq_end);
    }
    free(s->shards);
    free(s->next_token);
    free(s->stream_status);
    memset(s, 0, sizeof(*s));
}

static int parse_shard(const char *op, json_object *o, size_t i, struct d2o_kinesis_shard *s,
                       struct d2o_kinesis_err *err)
{
    char what[64];
    json_object *sr = NULL;
    int r;

    snprintf(what, sizeof(what), "%s response: Shards[%zu]", op, i);
    if (!json_object_is_type(o, json_type_object)) {
        d2o_kjson_err(err, "%s is not an object", what);
        return D2O_KINESIS_E_FAILED;
    }
    r = d2o_kjson_str(what, o, "ShardId", true, &s->shard_id, err);
    if (r == 0) {
        r = d2o_kjson_str(what, o, "ParentShardId", false, &s->parent_shard_id, err);
    }
    if (r == 0) {
        r = d2o_kjson_str(what, o, "AdjacentParentShardId", false, &s->adjacent_parent_shard_id,
                          err);
    }
    if (r == 0) {
        r = parse_hash_range(what, o, &s->hash_start, &s->hash_end, err);
    }
    if (r == 0) {
        r = get_object(what, o, "SequenceNumberRange", true, &sr, err);
    }
    if (r == 0) {
        r = d2o_kjson_seq(what, sr, "StartingSequenceNumber", true, &s->seq_start, err);
    }
    if (r == 0) {
        r = d2o_kjson_seq(what, sr, "EndingSequenceNumber", false, &s->seq_end, err);
    }
    return r;
}

static int parse_shard_array(const char *op, json_object *shards, struct d2o_kinesis_shards *res,
                             struct d2o_kinesis_err *err)
{
    size_t i, n = json_object_array_length(shards);
    int r;

    if (n > 0) {
        res->shards = calloc(n, sizeof(*res->shards));
        if (!res->shards) {
            return -ENOMEM;
        }
    }
    for (i = 0; i < n; i++) {
        res->n_shards++;
        r = parse_shard(op, json_object_array_get_idx(shards, i), i, &res->shards[i], err);
        if (r != 0) {
            return r;
        }
    }
    return 0;
}

int d2o_kinesis_parse_list_shards(const char *body, size_t len, struct d2o_kinesis_shards *out,
                                  struct d2o_kinesis_err *err)
{
    static const char what[] = "ListShards response";
    struct d2o_kinesis_shards res;
    json_object *root = NULL, *shards = NULL;
    int r;

    memset(&res, 0, sizeof(res));
    memset(out, 0, sizeof(*out));
    r = d2o_kjson_root("ListShards", body, len, &root, err);
    if (r == 0) {
        r = get_array(what, root, "Shards", true, &shards, err);
    }
    if (r == 0) {
        r = d2o_kjson_str(what, root, "NextToken", false, &res.next_token, err);
    }
    if (r == 0) {
        r = parse_shard_array("ListShards", shards, &res, err);
    }
    if (r != 0) {
        goto out;
    }
    *out = res;
    memset(&res, 0, sizeof(res));
out:
    d2o_kinesis_shards_free(&res);
    json_object_put(root);
    return r;
}

int d2o_kinesis_parse_describe_stream(const char *body, size_t len, struct d2o_kinesis_shards *out,
                                      struct d2o_kinesis_err *err)
{
    static const char what[] = "DescribeStream response";
    struct d2o_kinesis_shards res;
    json_object *root = NULL, *desc = NULL, *shards = NULL;
    int r;

    memset(&res, 0, sizeof(res));
    memset(out, 0, sizeof(*out));
    r = d2o_kjson_root("DescribeStream", body, len, &root, err);
    if (r == 0) {
        r = get_object(what, root, "StreamDescription", true, &desc, err);
    }
    if (r == 0) {
        r = d2o_kjson_str(what, desc, "StreamStatus", true, &res.stream_status, err);
    }
    if (r == 0) {
        r = get_array(what, desc, "Shards", true, &shards, err);
    }
    if (r == 0) {
        r = parse_shard_array("DescribeStream", shards, &res, err);
    }
    if (r != 0) {
        goto out;
    }
    *out = res;
    memset(&res, 0, sizeof(res));
out:
    d2o_kinesis_shards_free(&res);
    json_object_put(root);
    return r;
}

void d2o_kinesis_summary_free(struct d2o_kinesis_summary *s)
{
    if (!s) {
        return;
    }
    free(s->stream_name);
    free(s->stream_arn);
    free(s->stream_status);
    free(s->encryption_type);
    memset(s, 0, sizeof(*s));
}

int d2o_kinesis_parse_summary(const char *body, size_t len, struct d2o_kinesis_summary *out,
                              struct d2o_kinesis_err *err)
{
    static const char what[] = "DescribeStreamSummary response";
    struct d2o_kinesis_summary res;
    json_object *root = NULL, *d = NULL;
    int r;

    memset(&res, 0, sizeof(res));
    memset(out, 0, sizeof(*out));
    r = d2o_kjson_root("DescribeStreamSummary", body, len, &root, err);
    if (r == 0) {
        r = get_object(what, root, "StreamDescriptionSummary", true, &d, err);
    }
    if (r == 0) {
        r = d2o_kjson_str(what, d, "StreamName", true, &res.stream_name, err);
    }
    if (r == 0) {
        r = d2o_kjson_str(what, d, "StreamARN", false, &res.stream_arn, err);
    }
    if (r == 0) {
        r = d2o_kjson_str(what, d, "StreamStatus", true, &res.stream_status, err);
    }
    if (r == 0) {
        r = d2o_kjson_str(what, d, "EncryptionType", false, &res.encryption_type, err);
    }
    if (r == 0) {
        r = get_int(what, d, "OpenShardCount", false, &res.open_shard_count, err);
    }
    if (r == 0) {
        r = get_int(what, d, "RetentionPeriodHours", false, &res.retention_hours, err);
    }
    if (r != 0) {
        goto out;
    }
    *out = res;
    memset(&res, 0, sizeof(res));
out:
    d2o_kinesis_summary_free(&res);
    json_object_put(root);
    return r;
}

int d2o_kinesis_parse_shard_iterator(const char *body, size_t len, char **iterator,
                                     struct d2o_kinesis_err *err)
{
    json_object *root = NULL;
    int r;

    *iterator = NULL;
    r = d2o_kjson_root("GetShardIterator", body, len, &root, err);
    if (r == 0 && !json_object_object_get_ex(root, "ShardIterator", NULL)) {
        d2o_kjson_err(err, "GetShardIterator response: ShardIterator is missing");
        r = D2O_KINESIS_E_FAILED;
    }
    if (r == 0) {
        /* null or "": no iterator, which the caller takes as the end of the shard */
        r = d2o_kjson_str("GetShardIterator response", root, "ShardIterator", false, iterator, err);
    }
    if (r == 0 && *iterator && !**iterator) {
        free(*iterator);
        *iterator = NULL;
    }
    json_object_put(root);
    return r;
}

void d2o_kinesis_put_result_free(struct d2o_kinesis_put_result *p)
{
    size_t i;

    if (!p) {
        return;
    }
    for (i = 0; i < p->n_items; i++) {
        free(p->items[i].sequence_number);
        free(p->items[i].shard_id);
        free(p->items[i].error_code);
        free(p->items[i].error_message);
    }
    free(p->items);
    memset(p, 0, sizeof(*p));
}

int d2o_kinesis_parse_put_records(const char *body, size_t len, struct d2o_kinesis_put_result *out,
                                  struct d2o_kinesis_err *err)
{
    struct d2o_kinesis_put_result res;
    json_object *root = NULL, *recs = NULL, *o;
    struct d2o_kinesis_put_item *it;
    char what[64];
    int64_t failed = 0;
    size_t i, n;
    int r;

    memset(&res, 0, sizeof(res));
    memset(out, 0, sizeof(*out));
    r = d2o_kjson_root("PutRecords", body, len, &root, err);
    if (r == 0) {
        r = get_array("PutRecords response", root, "Records", true, &recs, err);
    }
    if (r == 0) {
        r = get_int("PutRecords response", root, "FailedRecordCount", false, &failed, err);
    }
    if (r != 0) {
        goto out;
    }
    n = json_object_array_length(recs);
    if (n > 0) {
        res.items = calloc(n, sizeof(*res.items));
        if (!res.items) {
            r = -ENOMEM;
            goto out;
        }
    }
    for (i = 0; i < n; i++) {
        it = &res.items[i];
        res.n_items++;
        o = json_object_array_get_idx(recs, i);
        snprintf(what, sizeof(what), "PutRecords response: Records[%zu]", i);
        if (!json_object_is_type(o, json_type_object)) {
            d2o_kjson_err(err, "%s is not an object", what);
            r = D2O_KINESIS_E_FAILED;
            goto out;
        }
        r = d2o_kjson_str(what, o, "ErrorCode", false, &it->error_code, err);
        if (r == 0) {
            r = d2o_kjson_str(what, o, "ErrorMessage", false, &it->error_message, err);
        }
        if (r == 0) {
            r = d2o_kjson_seq(what, o, "SequenceNumber", !it->error_code, &it->sequence_number,
                              err);
        }
        if (r == 0) {
            r = d2o_kjson_str(what, o, "ShardId", false, &it->shard_id, err);
        }
        if (r != 0) {
            goto out;
        }
        if (it->error_code) {
            res.failed_count++;
        }
    }
    if (failed != (int64_t)res.failed_count) {
        d2o_kjson_err(err,
                      "PutRecords response: FailedRecordCount %lld but %zu records carry an error",
                      (long long)failed, res.failed_count);
        r = D2O_KINESIS_E_FAILED;
        goto out;
    }
    *out = res;
    memset(&res, 0, sizeof(res));
    r = 0;
out:
    d2o_kinesis_put_result_free(&res);
    json_object_put(root);
    return r;
}

void d2o_kinesis_parse_error(long status, const char *error_type_header, const char *body,
                             size_t len, struct d2o_kinesis_err *err)
{
    json_object *root = NULL, *v = NULL;
    json_tokener *tok = NULL;
    const char *raw = NULL, *msg = NULL, *reason = NULL;
    struct d2o_buf text = D2O_BUF_INIT;
    char msgbuf[384];

    memset(err, 0, sizeof(*err));
    err->status = status;
    msgbuf[0] = '\0';
    if (body && len > 0 && len < INT32_MAX && !memchr(body, '\0', len)) {
        tok = json_tokener_new();
        if (tok) {
            root = json_tokener_parse_ex(tok, body, (int)len);
            json_tokener_free(tok);
        }
    }
    if (root && json_object_is_type(root, json_type_object)) {
        if ((json_object_object_get_ex(root, "__type", &v) ||
             json_object_object_get_ex(root, "code", &v)) &&
            json_object_is_type(v, json_type_string)) {
            raw = json_object_get_string(v);
        }
        if ((json_object_object_get_ex(root, "message", &v) ||
             json_object_object_get_ex(root, "Message", &v)) &&
            json_object_is_type(v, json_type_string)) {
            msg = json_object_get_string(v);
        }
    }
    if (error_type_header && error_type_header[0]) {
        raw = error_type_header;
    }
    d2o_classify_code_name(raw, err->code, sizeof(err->code));
    err->action = d2o_classify(CURLE_OK, status, err->code, &reason);
    if (msg) {
        snprintf(msgbuf, sizeof(msgbuf), "%s", msg);
    } else if (body && len > 0 && !root) {
        /* not JSON: show the beginning of the body */
        snprintf(msgbuf, sizeof(msgbuf), "%.*s", (int)(len < 200 ? len : 200), body);
    }
    if (d2o_buf_printf(&text, "HTTP %ld%s%s: %s%s%s", status, err->code[0] ? " " : "", err->code,
                       reason, msgbuf[0] ? ": " : "", msgbuf) == 0) {
        d2o_strlcpy(err->message, text.data, sizeof(err->message));
    } else {
        d2o_strlcpy(err->message, reason, sizeof(err->message));
    }
    d2o_buf_free(&text);
    json_object_put(root);
}
