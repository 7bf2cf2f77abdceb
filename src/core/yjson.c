/* One JSON text through yajl's callback parser (see d2o/yjson.h). */
#include <stdbool.h>
#include <string.h>

#include "d2o/yjson.h"

static bool white(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

/* yajl's callbacks, each handed to the handler unless inside a skipped value */
static int on_scalar(struct d2o_yjson *y, enum d2o_yjson_kind k, const unsigned char *s, size_t n)
{
    return y->skip > 0 ? 1 : y->hd->value(y->ctx, k, s, n);
}

static int on_null(void *y)
{
    return on_scalar(y, D2O_YJ_NULL, NULL, 0);
}

static int on_bool(void *y, int v)
{
    return on_scalar(y, D2O_YJ_BOOL, (const unsigned char *)(v ? "true" : "false"), v ? 4 : 5);
}

static int on_number(void *y, const char *s, size_t n)
{
    return on_scalar(y, D2O_YJ_NUM, (const unsigned char *)s, n);
}

static int on_string(void *y, const unsigned char *s, size_t n)
{
    return on_scalar(y, D2O_YJ_STR, s, n);
}

static int on_open(struct d2o_yjson *y, enum d2o_yjson_kind k)
{
    int r;

    if (y->skip > 0) {
        y->skip++;
        return 1;
    }
    r = y->hd->value(y->ctx, k, NULL, 0);
    if (r == D2O_YJSON_SKIP) {
        y->skip = 1;
        y->skip_at = yajl_get_bytes_consumed(y->h) - 1;
        r = 1;
    }
    return r;
}

static int on_map(void *y)
{
    return on_open(y, D2O_YJ_MAP);
}

static int on_array(void *y)
{
    return on_open(y, D2O_YJ_ARR);
}

static int on_key(void *vy, const unsigned char *s, size_t n)
{
    struct d2o_yjson *y = vy;

    return y->skip > 0 ? 1 : y->hd->key(y->ctx, s, n);
}

static int on_end(void *vy)
{
    struct d2o_yjson *y = vy;

    if (y->skip == 0) {
        return y->hd->end(y->ctx);
    }
    if (--y->skip == 0 && y->hd->skipped) {
        y->hd->skipped(y->ctx, y->skip_at, yajl_get_bytes_consumed(y->h));
    }
    return 1;
}

static const yajl_callbacks callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_bool,
    .yajl_number = on_number, /* numbers as written: the handler reads them as it needs */
    .yajl_string = on_string,
    .yajl_start_map = on_map,
    .yajl_map_key = on_key,
    .yajl_end_map = on_end,
    .yajl_start_array = on_array,
    .yajl_end_array = on_end,
};

int d2o_yjson_parse(struct d2o_yjson *y, const struct d2o_yjson_handler *hd, void *ctx,
                    const char *body, size_t len)
{
    yajl_status st;
    size_t end;
    int r = D2O_YJSON_OK;

    y->value_end = 0;
    y->at = 0;
    y->why[0] = '\0';
    y->hd = hd;
    y->skip = 0;
    y->ctx = ctx;
    y->h = yajl_alloc(&callbacks, NULL, y);
    if (!y->h) {
        return D2O_YJSON_NOMEM;
    }
    /* Bytes as they come (json-c's default does not check UTF-8 either); the caller checks what
     * follows the value, to name where it starts. */
    yajl_config(y->h, yajl_dont_validate_strings, 1);
    yajl_config(y->h, yajl_allow_trailing_garbage, 1);
    st = yajl_parse(y->h, (const unsigned char *)body, len);
    /* read before yajl_complete_parse, which counts its own input */
    end = yajl_get_bytes_consumed(y->h);
    if (st == yajl_status_ok) {
        st = yajl_complete_parse(y->h);
        if (st == yajl_status_error) {
            /* every byte lexed, yet the value is not closed */
            r = D2O_YJSON_TRUNCATED;
        }
    } else if (st == yajl_status_error) {
        unsigned char *e = yajl_get_error(y->h, 0, NULL, 0);
        size_t n;

        r = D2O_YJSON_INVALID;
        y->at = end;
        if (e) {
            n = strcspn((const char *)e, "\n");
            if (n >= sizeof(y->why)) {
                n = sizeof(y->why) - 1;
            }
            memcpy(y->why, e, n);
            y->why[n] = '\0';
            yajl_free_error(y->h, e);
        }
    }
    if (st == yajl_status_client_canceled) {
        r = D2O_YJSON_CANCELED;
    }
    if (r == D2O_YJSON_OK) {
        y->value_end = end;
        while (end < len && white(body[end])) {
            end++;
        }
        if (end != len) {
            y->at = end;
            r = D2O_YJSON_TRAILING;
        }
    }
    yajl_free(y->h);
    y->h = NULL;
    return r;
}

bool d2o_yjson_int(const char *s, size_t n, int64_t *out)
{
    bool neg = n > 0 && s[0] == '-';
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    size_t k;

    if (memchr(s, '.', n) || memchr(s, 'e', n) || memchr(s, 'E', n)) {
        return false;
    }
    /* yajl hands over digits only, after an optional minus */
    for (k = neg; k < n; k++) {
        unsigned dig = (unsigned)(s[k] - '0');

        v = v > (lim - dig) / 10 ? lim : v * 10 + dig;
    }
    *out = neg ? (v > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return true;
}
