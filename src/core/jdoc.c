/*
 * A read-only JSON tree built by yajl's callbacks into reused arenas (see include/d2o/jdoc.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <yajl/yajl_parse.h>

#include "d2o/buf.h"
#include "d2o/jdoc.h"

/* ---- arena: bump allocation, reset keeps one block as large as everything used before ---- */

struct block {
    struct block *next;
    size_t size, used;
    max_align_t data[];
};

struct arena {
    struct block *head; /* the block allocations come from; older ones follow */
    size_t total;       /* bytes handed out since the last reset */
    size_t mallocs;     /* blocks allocated since the arena was made */
};

#define ARENA_MIN_BLOCK 16384
#define ALIGN(n) (((n) + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1))

static void arena_free(struct arena *a)
{
    struct block *b = a->head, *next;

    for (; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
    a->total = 0;
}

/* A block above this size is not kept for inputs that use less than a quarter of it: one huge
 * record does not leave its memory behind in every worker for good. */
#define ARENA_KEEP_MAX (1u << 20)

/* Forgets every allocation. If they needed more than one block, the next parse gets one block
 * that holds them all, so a steady stream of similar inputs settles on a single block. */
static void arena_reset(struct arena *a)
{
    struct block *b = a->head;

    if (b && !b->next && b->size > ARENA_KEEP_MAX && a->total < b->size / 4) {
        arena_free(a);
        b = NULL;
    }
    if (b && b->next) {
        size_t want = a->total + ARENA_MIN_BLOCK;

        arena_free(a);
        b = malloc(sizeof(*b) + want);
        a->mallocs++;
        if (b) {
            b->next = NULL;
            b->size = want;
        }
        a->head = b;
    }
    if (b) {
        b->used = 0;
    }
    a->total = 0;
}

static void *arena_alloc(struct arena *a, size_t n)
{
    struct block *b = a->head;
    void *p;

    n = ALIGN(n ? n : 1);
    if (!b || b->size - b->used < n) {
        size_t size = n > ARENA_MIN_BLOCK ? n : ARENA_MIN_BLOCK;

        if (b && size < b->size * 2) {
            size = b->size * 2;
        }
        b = malloc(sizeof(*b) + size);
        a->mallocs++;
        if (!b) {
            return NULL;
        }
        b->next = a->head;
        b->size = size;
        b->used = 0;
        a->head = b;
    }
    p = (char *)b->data + b->used;
    b->used += n;
    a->total += n;
    return p;
}

/* yajl's allocator on the scratch arena: each block remembers its size for realloc. */
static void *ya_malloc(void *ctx, size_t n)
{
    size_t *p = arena_alloc(ctx, n + sizeof(max_align_t));

    if (!p) {
        return NULL;
    }
    *p = n;
    return (char *)p + sizeof(max_align_t);
}

static void *ya_realloc(void *ctx, void *old, size_t n)
{
    void *p;
    size_t had;

    if (!old) {
        return ya_malloc(ctx, n);
    }
    had = *(size_t *)(void *)((char *)old - sizeof(max_align_t));
    if (n <= had) {
        return old;
    }
    p = ya_malloc(ctx, n);
    if (p) {
        memcpy(p, old, had);
    }
    return p;
}

static void ya_free(void *ctx, void *p)
{
    /* the arena is reset as a whole before the next parse */
}

/* ---- the document ---- */

struct frame {
    struct d2o_jnode *node; /* the open array or object */
    struct d2o_jnode *last; /* its last child so far */
};

struct d2o_jdoc {
    struct arena nodes;   /* the tree and unescaped strings */
    struct arena scratch; /* yajl's handle, lexer and stacks */
    unsigned max_depth;
    struct frame *stack; /* max_depth frames */
    unsigned depth;
    const char *input;
    size_t input_len;
    const char *key; /* the member name waiting for its value */
    size_t key_len;
    struct d2o_jnode *root;
    yajl_handle yh;
    enum d2o_jdoc_error error;
    size_t error_offset;
    char why[160]; /* a refusal found by a callback */
    bool oom;
    bool keep_duplicates;
    bool finishing;  /* inside yajl_complete_parse: offsets are no longer the input's */
    size_t root_end; /* offset just past the root value */
};

struct d2o_jdoc *d2o_jdoc_new(unsigned max_depth)
{
    struct d2o_jdoc *d = calloc(1, sizeof(*d));

    if (!d) {
        return NULL;
    }
    d->max_depth = max_depth ? max_depth : 1;
    d->stack = calloc(d->max_depth, sizeof(*d->stack));
    if (!d->stack) {
        free(d);
        return NULL;
    }
    return d;
}

void d2o_jdoc_keep_duplicates(struct d2o_jdoc *d, bool keep)
{
    d->keep_duplicates = keep;
}

void d2o_jdoc_free(struct d2o_jdoc *d)
{
    if (!d) {
        return;
    }
    arena_free(&d->nodes);
    arena_free(&d->scratch);
    free(d->stack);
    free(d);
}

const struct d2o_jnode *d2o_jdoc_root(const struct d2o_jdoc *d)
{
    return d->root;
}

static size_t arena_size(const struct arena *a)
{
    const struct block *b;
    size_t n = 0;

    for (b = a->head; b; b = b->next) {
        n += sizeof(*b) + b->size;
    }
    return n;
}

size_t d2o_jdoc_footprint(const struct d2o_jdoc *d)
{
    return arena_size(&d->nodes) + arena_size(&d->scratch);
}

size_t d2o_jdoc_mallocs(const struct d2o_jdoc *d)
{
    return d->nodes.mallocs + d->scratch.mallocs;
}

enum d2o_jdoc_error d2o_jdoc_error_kind(const struct d2o_jdoc *d)
{
    return d->error;
}

size_t d2o_jdoc_error_offset(const struct d2o_jdoc *d)
{
    return d->error_offset;
}

static size_t where(const struct d2o_jdoc *d)
{
    return d->yh ? yajl_get_bytes_consumed(d->yh) : 0;
}

/* Stops the parse with a refusal found by a callback; at is the offending byte. */
static int refuse(struct d2o_jdoc *d, enum d2o_jdoc_error kind, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int refuse(struct d2o_jdoc *d, enum d2o_jdoc_error kind, size_t at, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(d->why, sizeof(d->why), fmt, ap);
    va_end(ap);
    d->error = kind;
    d->error_offset = at;
    return 0; /* yajl: stop */
}

static unsigned hex4(const char *h)
{
    unsigned v = 0;
    int i;

    for (i = 0; i < 4; i++) {
        char c = h[i];

        v = v * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

/*
 * yajl unescaped the string token that ends at the current offset: refuses it if it holds a
 * \u escape of a UTF-16 surrogate that is not half of a pair. Such text is not Unicode (DynamoDB
 * refuses it), and yajl would turn it into '?' or into bytes that are not UTF-8.
 */
static int check_surrogates(struct d2o_jdoc *d)
{
    const char *in = d->input;
    size_t end = where(d), open, k;

    if (!in || end < 2 || end > d->input_len || in[end - 1] != '"') {
        return 1;
    }
    /* the opening quote is the first one before the closing quote not escaped by a backslash */
    for (open = end - 1; open > 0;) {
        size_t j;

        open--;
        if (in[open] != '"') {
            continue;
        }
        for (j = open; j > 0 && in[j - 1] == '\\'; j--) {
        }
        if ((open - j) % 2 == 0) {
            break;
        }
    }
    for (k = open + 1; k + 1 < end - 1; k++) {
        unsigned cp;

        if (in[k] != '\\') {
            continue;
        }
        if (in[k + 1] != 'u') {
            k++;
            continue;
        }
        cp = hex4(in + k + 2);
        if (cp >= 0xD800 && cp <= 0xDBFF && k + 11 < end && in[k + 6] == '\\' && in[k + 7] == 'u' &&
            hex4(in + k + 8) >= 0xDC00 && hex4(in + k + 8) <= 0xDFFF) {
            k += 11;
        } else if (cp >= 0xD800 && cp <= 0xDFFF) {
            return refuse(d, D2O_JDOC_E_UNICODE, k,
                          "\\u%04X at byte %zu is half of a UTF-16 surrogate pair without the "
                          "other half",
                          cp, k);
        } else {
            k += 5;
        }
    }
    return 1;
}

/* Bytes that yajl hands over point into the input unless it had to unescape them. */
static const char *keep(struct d2o_jdoc *d, const unsigned char *s, size_t n)
{
    const char *p = (const char *)s;
    char *copy;

    if (p >= d->input && p + n <= d->input + d->input_len) {
        return p;
    }
    if (d->input && !check_surrogates(d)) {
        return NULL;
    }
    copy = arena_alloc(&d->nodes, n + 1);
    if (!copy) {
        d->oom = true;
        return NULL;
    }
    memcpy(copy, p, n);
    copy[n] = '\0';
    return copy;
}

/* A new node, linked into the open container (or made the root). NULL stops the parse. */
static struct d2o_jnode *add(struct d2o_jdoc *d, enum d2o_jtype type)
{
    struct d2o_jnode *n = arena_alloc(&d->nodes, sizeof(*n));
    struct frame *f;

    if (!n) {
        d->oom = true;
        return NULL;
    }
    memset(n, 0, sizeof(*n));
    n->type = type;
    if (d->depth == 0) {
        d->root = n;
        d->root_end = d->finishing ? d->input_len : where(d);
        return n;
    }
    f = &d->stack[d->depth - 1];
    if (f->node->type == D2O_JOBJECT) {
        n->key = d->key;
        n->key_len = d->key_len;
    }
    if (f->last) {
        f->last->next = n;
    } else {
        f->node->first = n;
    }
    f->last = n;
    f->node->len++;
    return n;
}

static int on_null(void *ctx)
{
    return add(ctx, D2O_JNULL) != NULL;
}

static int on_boolean(void *ctx, int b)
{
    struct d2o_jnode *n = add(ctx, D2O_JBOOL);

    if (n) {
        n->boolean = b != 0;
    }
    return n != NULL;
}

static int text_node(struct d2o_jdoc *d, enum d2o_jtype type, const unsigned char *s, size_t len)
{
    struct d2o_jnode *n = add(d, type);

    if (!n) {
        return 0;
    }
    n->text = keep(d, s, len);
    n->len = len;
    return n->text != NULL;
}

static int on_number(void *ctx, const char *s, size_t len)
{
    return text_node(ctx, D2O_JNUMBER, (const unsigned char *)s, len);
}

static int on_string(void *ctx, const unsigned char *s, size_t len)
{
    return text_node(ctx, D2O_JSTRING, s, len);
}

static int on_key(void *ctx, const unsigned char *s, size_t len)
{
    struct d2o_jdoc *d = ctx;

    d->key = keep(d, s, len);
    d->key_len = len;
    return d->key != NULL;
}

static int open_container(struct d2o_jdoc *d, enum d2o_jtype type)
{
    struct d2o_jnode *n;

    if (d->depth >= d->max_depth) {
        return refuse(d, D2O_JDOC_E_DEPTH, where(d) - 1, "nested deeper than %u levels at byte %zu",
                      d->max_depth, where(d) - 1);
    }
    n = add(d, type);
    if (!n) {
        return 0;
    }
    d->stack[d->depth].node = n;
    d->stack[d->depth].last = NULL;
    d->depth++;
    return 1;
}

static int on_start_map(void *ctx)
{
    return open_container(ctx, D2O_JOBJECT);
}

static int on_start_array(void *ctx)
{
    return open_container(ctx, D2O_JARRAY);
}

/* Closes the innermost array or object. */
static void close_container(struct d2o_jdoc *d)
{
    d->depth--;
    if (d->depth == 0) {
        d->root_end = where(d);
    }
}

static int on_end_array(void *ctx)
{
    close_container(ctx);
    return 1;
}

static int key_cmp(const void *a, const void *b)
{
    const struct d2o_jnode *x = *(const struct d2o_jnode *const *)a;
    const struct d2o_jnode *y = *(const struct d2o_jnode *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);

    return c ? c : (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

static bool same_key(const struct d2o_jnode *x, const struct d2o_jnode *y)
{
    return x->key_len == y->key_len && memcmp(x->key, y->key, x->key_len) == 0;
}

/* Objects up to this size are checked for a repeated key pair by pair; larger ones sorted. */
#define DUP_PAIRWISE_MAX 16

static const struct d2o_jnode *duplicate_key(struct d2o_jdoc *d, const struct d2o_jnode *obj)
{
    const struct d2o_jnode *a, *b, **v;
    size_t i;

    if (obj->len <= DUP_PAIRWISE_MAX) {
        for (a = obj->first; a; a = a->next) {
            for (b = a->next; b; b = b->next) {
                if (same_key(a, b)) {
                    return b;
                }
            }
        }
        return NULL;
    }
    v = arena_alloc(&d->scratch, obj->len * sizeof(*v));
    if (!v) {
        d->oom = true;
        return NULL;
    }
    for (i = 0, a = obj->first; a; a = a->next) {
        v[i++] = a;
    }
    qsort(v, obj->len, sizeof(*v), key_cmp);
    for (i = 1; i < obj->len; i++) {
        if (same_key(v[i - 1], v[i])) {
            return v[i];
        }
    }
    return NULL;
}

static int on_end_map(void *ctx)
{
    struct d2o_jdoc *d = ctx;
    const struct d2o_jnode *dup =
        d->keep_duplicates ? NULL : duplicate_key(d, d->stack[d->depth - 1].node);

    if (d->oom) {
        return 0;
    }
    if (dup) {
        return refuse(d, D2O_JDOC_E_DUPLICATE, where(d) - 1,
                      "the key \"%.*s\" appears twice in the object that ends at byte %zu",
                      (int)(dup->key_len > 60 ? 60 : dup->key_len), dup->key, where(d) - 1);
    }
    close_container(d);
    return 1;
}

static const yajl_callbacks callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_boolean,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_key,
    .yajl_end_map = on_end_map,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end_array,
};

static void clear(struct d2o_jdoc *d)
{
    arena_reset(&d->nodes);
    arena_reset(&d->scratch);
    d->root = NULL;
    d->depth = 0;
    d->key = NULL;
    d->key_len = 0;
    d->error = D2O_JDOC_OK;
    d->error_offset = 0;
    d->why[0] = '\0';
    d->oom = false;
    d->yh = NULL;
    d->finishing = false;
    d->root_end = 0;
}

/*
 * Where yajl's acceptance is wider than JSON's, after a parse it took: an unterminated string
 * after the value (yajl keeps it as a token to be continued, and never sees its end), and
 * vertical tab or form feed, which yajl takes for white space (it refuses them unescaped in
 * strings, so any left are white space). Returns the offset of the first such byte, or len.
 */
static size_t not_json_at(const char *data, size_t len, size_t root_end)
{
    const char *vt = memchr(data, '\v', len), *ff = memchr(data, '\f', len);
    size_t i, at = len;

    for (i = root_end; i < len; i++) {
        if (data[i] != ' ' && data[i] != '\t' && data[i] != '\n' && data[i] != '\r') {
            at = i;
            break;
        }
    }
    if (vt && (size_t)(vt - data) < at) {
        at = (size_t)(vt - data);
    }
    if (ff && (size_t)(ff - data) < at) {
        at = (size_t)(ff - data);
    }
    return at;
}

/* yajl's words for a syntax error, without its trailing newline. */
static void yajl_words(struct d2o_jdoc *d, const char *data, size_t len, char *out, size_t n)
{
    unsigned char *s = yajl_get_error(d->yh, 0, (const unsigned char *)data, len);
    size_t k;

    snprintf(out, n, "%s", s ? (const char *)s : "parse error");
    k = strlen(out);
    while (k > 0 && (out[k - 1] == '\n' || out[k - 1] == ' ' || out[k - 1] == '.')) {
        out[--k] = '\0';
    }
    if (s) {
        yajl_free_error(d->yh, s);
    }
}

int d2o_jdoc_parse(struct d2o_jdoc *d, const char *data, size_t len, char *errstr,
                   size_t errstr_size)
{
    yajl_alloc_funcs af = {ya_malloc, ya_realloc, ya_free, &d->scratch};
    yajl_status st;
    size_t at;
    char words[160];

    clear(d);
    d->input = data;
    d->input_len = len;
    d->yh = yajl_alloc(&callbacks, &af, d);
    if (!d->yh) {
        snprintf(errstr, errstr_size, "out of memory");
        return -ENOMEM;
    }
    /* the defaults are what ddb2os wants: UTF-8 checked, no comments, one value, nothing after
     * it but white space */
    st = yajl_parse(d->yh, (const unsigned char *)data, len);
    at = yajl_get_bytes_consumed(d->yh);
    if (st == yajl_status_ok) {
        /* yajl's consumed count starts again here: an error now is at the end of the input */
        d->finishing = true;
        st = yajl_complete_parse(d->yh);
        at = len;
    }
    if (st == yajl_status_ok && d->depth == 0 && d->root) {
        at = not_json_at(data, len, d->root_end);
        if (at == len) {
            d->yh = NULL; /* freed with the scratch arena */
            return 0;
        }
        d->root = NULL;
        d->error = D2O_JDOC_E_SYNTAX;
        d->error_offset = at;
        snprintf(errstr, errstr_size, "%s at byte %zu",
                 at >= d->root_end ? "parse error: trailing garbage"
                                   : "lexical error: vertical tab or form feed outside a string",
                 at);
        d->yh = NULL;
        return -EINVAL;
    }
    d->root = NULL;
    if (d->oom) {
        snprintf(errstr, errstr_size, "out of memory");
        d->yh = NULL;
        return -ENOMEM;
    }
    if (d->error != D2O_JDOC_OK) {
        snprintf(errstr, errstr_size, "%s", d->why);
    } else {
        yajl_words(d, data, len, words, sizeof(words));
        d->error = D2O_JDOC_E_SYNTAX;
        d->error_offset = at;
        snprintf(errstr, errstr_size, "%s at byte %zu", words, at);
    }
    d->yh = NULL;
    return -EINVAL;
}

/* ---- reading ---- */

const struct d2o_jnode *d2o_jnode_getn(const struct d2o_jnode *obj, const char *key, size_t key_len)
{
    const struct d2o_jnode *m;

    if (!obj || obj->type != D2O_JOBJECT) {
        return NULL;
    }
    for (m = obj->first; m; m = m->next) {
        if (m->key_len == key_len && memcmp(m->key, key, key_len) == 0) {
            return m;
        }
    }
    return NULL;
}

bool d2o_jnode_is_integer(const struct d2o_jnode *n)
{
    return n && n->type == D2O_JNUMBER && !memchr(n->text, '.', n->len) &&
           !memchr(n->text, 'e', n->len) && !memchr(n->text, 'E', n->len);
}

int d2o_jnode_int64(const struct d2o_jnode *n, int64_t *out)
{
    size_t i = 0;
    bool neg;
    uint64_t v = 0, limit;

    *out = 0;
    if (!d2o_jnode_is_integer(n) || n->len == 0) {
        return -EINVAL;
    }
    neg = n->text[0] == '-';
    i = neg ? 1 : 0;
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n->len; i++) {
        unsigned digit = (unsigned)(n->text[i] - '0');

        if (digit > 9) {
            return -EINVAL;
        }
        if (v > (limit - digit) / 10) {
            *out = neg ? INT64_MIN : INT64_MAX;
            return -ERANGE;
        }
        v = v * 10 + digit;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

double d2o_jnode_double(const struct d2o_jnode *n)
{
    char tmp[64], *heap = NULL, *s = tmp;
    double v;

    if (!n || n->type != D2O_JNUMBER) {
        return 0;
    }
    if (n->len >= sizeof(tmp)) {
        heap = malloc(n->len + 1);
        if (!heap) {
            return 0;
        }
        s = heap;
    }
    memcpy(s, n->text, n->len);
    s[n->len] = '\0';
    v = strtod(s, NULL);
    free(heap);
    return v;
}

const char *d2o_jdoc_cstr(struct d2o_jdoc *d, const struct d2o_jnode *n)
{
    char *s;

    if (!n || (n->type != D2O_JSTRING && n->type != D2O_JNUMBER)) {
        return NULL;
    }
    s = arena_alloc(&d->nodes, n->len + 1);
    if (!s) {
        return NULL;
    }
    memcpy(s, n->text, n->len);
    s[n->len] = '\0';
    return s;
}

/* ---- writing ---- */

/* A number as json-c writes a parsed one: an integer from its int64 value (uint64 above
 * INT64_MAX, clamped at either end), anything else with its text as received. */
static int write_number(struct d2o_buf *out, const struct d2o_jnode *n)
{
    int64_t v;
    int r = d2o_jnode_int64(n, &v);
    char tmp[32];

    if (r == -EINVAL) {
        return d2o_buf_append(out, n->text, n->len);
    }
    if (r == -ERANGE && v == INT64_MAX) {
        unsigned long long u;

        /* beyond 20 digits it is beyond uint64 as well */
        snprintf(tmp, sizeof(tmp), "%.*s", (int)(n->len < 21 ? n->len : 21), n->text);
        errno = 0;
        u = strtoull(tmp, NULL, 10);
        if (errno == ERANGE || n->len > 20) {
            u = UINT64_MAX;
        }
        return d2o_buf_printf(out, "%llu", u);
    }
    return d2o_buf_put_i64(out, v);
}

int d2o_jdoc_write(struct d2o_buf *out, const struct d2o_jnode *n)
{
    const struct d2o_jnode *c;
    int r = 0;

    switch (n->type) {
    case D2O_JNULL:
        return d2o_buf_puts(out, "null");
    case D2O_JBOOL:
        return d2o_buf_puts(out, n->boolean ? "true" : "false");
    case D2O_JNUMBER:
        return write_number(out, n);
    case D2O_JSTRING:
        return d2o_buf_json_str(out, n->text, n->len);
    case D2O_JARRAY:
    case D2O_JOBJECT:
        break;
    }
    r = d2o_buf_putc(out, n->type == D2O_JARRAY ? '[' : '{');
    for (c = n->first; c && r == 0; c = c->next) {
        if (c != n->first) {
            r = d2o_buf_putc(out, ',');
        }
        if (r == 0 && n->type == D2O_JOBJECT) {
            r = d2o_buf_json_str(out, c->key, c->key_len);
            r = r < 0 ? r : d2o_buf_putc(out, ':');
        }
        r = r < 0 ? r : d2o_jdoc_write(out, c);
    }
    return r < 0 ? r : d2o_buf_putc(out, n->type == D2O_JARRAY ? ']' : '}');
}

/* ---- from json-c ---- */

static struct d2o_jnode *copy_tree(struct d2o_jdoc *d, struct json_object *o, const char *key)
{
    struct d2o_jnode *n = arena_alloc(&d->nodes, sizeof(*n)), *last = NULL, *c;
    size_t i, count;

    if (!n) {
        return NULL;
    }
    memset(n, 0, sizeof(*n));
    if (key) {
        n->key_len = strlen(key);
        n->key = keep(d, (const unsigned char *)key, n->key_len);
        if (!n->key) {
            return NULL;
        }
    }
    switch (json_object_get_type(o)) {
    case json_type_null:
        n->type = D2O_JNULL;
        return n;
    case json_type_boolean:
        n->type = D2O_JBOOL;
        n->boolean = json_object_get_boolean(o) != 0;
        return n;
    case json_type_int:
    case json_type_double:
        n->type = D2O_JNUMBER;
        break;
    case json_type_string:
        n->type = D2O_JSTRING;
        break;
    case json_type_array:
        n->type = D2O_JARRAY;
        count = json_object_array_length(o);
        for (i = 0; i < count; i++) {
            c = copy_tree(d, json_object_array_get_idx(o, i), NULL);
            if (!c) {
                return NULL;
            }
            *(last ? &last->next : &n->first) = c;
            last = c;
            n->len++;
        }
        return n;
    case json_type_object:
        n->type = D2O_JOBJECT;
        {
            json_object_object_foreach(o, k, v)
            {
                c = copy_tree(d, v, k);
                if (!c) {
                    return NULL;
                }
                *(last ? &last->next : &n->first) = c;
                last = c;
                n->len++;
            }
        }
        return n;
    }
    {
        /* numbers as json-c writes them, strings with their length (they may hold NUL) */
        size_t len = n->type == D2O_JSTRING ? (size_t)json_object_get_string_len(o) : 0;
        const char *s = n->type == D2O_JSTRING ? json_object_get_string(o)
                                               : json_object_to_json_string_ext(o, 0);

        if (n->type == D2O_JNUMBER) {
            len = strlen(s);
        }
        n->len = len;
        n->text = keep(d, (const unsigned char *)s, len);
        return n->text ? n : NULL;
    }
}

const struct d2o_jnode *d2o_jdoc_from_json_c(struct d2o_jdoc *d, struct json_object *o)
{
    clear(d);
    d->input = NULL;
    d->input_len = 0; /* keep() copies everything */
    d->root = copy_tree(d, o, NULL);
    return d->root;
}

struct d2o_jdoc *d2o_jdoc_copy_json_c(struct json_object *o)
{
    struct d2o_jdoc *d = d2o_jdoc_new(1);

    if (d && !d2o_jdoc_from_json_c(d, o)) {
        d2o_jdoc_free(d);
        return NULL;
    }
    return d;
}
