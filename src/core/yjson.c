/* One JSON text through yajl's callback parser (see d2o/yjson.h). */
#include <stdbool.h>
#include <string.h>

#include "d2o/yjson.h"

static bool white(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

int d2o_yjson_parse(struct d2o_yjson *y, const yajl_callbacks *cb, void *ctx, const char *body,
                    size_t len)
{
    yajl_status st;
    size_t end;
    int r = D2O_YJSON_OK;

    y->value_end = 0;
    y->at = 0;
    y->why[0] = '\0';
    y->h = yajl_alloc(cb, NULL, ctx);
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
