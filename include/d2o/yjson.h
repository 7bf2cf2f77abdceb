/*
 * d2o_yjson: one JSON text through yajl's callback parser, with the checks every caller of it
 * repeats: strings are taken as bytes (no UTF-8 check, as json-c's default tokener does), the text
 * must be whole, and nothing but white space may follow it.
 *
 * The per-record answers (GetRecords, _bulk) are read this way, without a tree; the rest of the
 * project reads JSON with json-c.
 */
#ifndef D2O_YJSON_H
#define D2O_YJSON_H

#include <stddef.h>
#include <yajl/yajl_parse.h>

enum d2o_yjson_result {
    D2O_YJSON_OK = 0,
    D2O_YJSON_CANCELED,  /* a callback returned 0 */
    D2O_YJSON_TRUNCATED, /* the text ends inside its value */
    D2O_YJSON_INVALID,   /* not JSON: why, at */
    D2O_YJSON_TRAILING,  /* more than white space after the value: value_end, at */
    D2O_YJSON_NOMEM,
};

struct d2o_yjson {
    yajl_handle h;    /* valid during the callbacks */
    size_t value_end; /* TRAILING: the byte after the value */
    size_t at;        /* INVALID: where parsing stopped; TRAILING: the first byte not white space */
    char why[96];     /* INVALID: yajl's description of the error */
};

/* Runs body[0..len) through the callbacks (ctx handed to each). Returns a d2o_yjson_result. */
__attribute__((warn_unused_result)) int d2o_yjson_parse(struct d2o_yjson *y,
                                                        const yajl_callbacks *cb, void *ctx,
                                                        const char *body, size_t len);

/* Inside a callback: the offset in body just past the token being reported ('{', '[', a string's
 * closing quote, ...). */
static inline size_t d2o_yjson_offset(const struct d2o_yjson *y)
{
    return yajl_get_bytes_consumed(y->h);
}

#endif
