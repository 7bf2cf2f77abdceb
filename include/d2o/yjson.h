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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_parse.h>

enum d2o_yjson_result {
    D2O_YJSON_OK = 0,
    D2O_YJSON_CANCELED,  /* a callback returned 0 */
    D2O_YJSON_TRUNCATED, /* the text ends inside its value */
    D2O_YJSON_INVALID,   /* not JSON: why, at */
    D2O_YJSON_TRAILING,  /* more than white space after the value: value_end, at */
    D2O_YJSON_NOMEM,
};

/* What starts where a value is expected. */
enum d2o_yjson_kind { D2O_YJ_NULL, D2O_YJ_BOOL, D2O_YJ_NUM, D2O_YJ_STR, D2O_YJ_MAP, D2O_YJ_ARR };

/* What value() returns for an object or array whose content the handler does not want: no event
 * comes until it closes, then skipped() (when set) with its text. */
#define D2O_YJSON_SKIP 2

/* The parser's events, each returning 1 to go on or 0 to stop (D2O_YJSON_CANCELED). */
struct d2o_yjson_handler {
    /* A value: a scalar with its text (a string decoded; a number as written; "true" or "false";
     * null with none), or the opening of an object or an array (which may return
     * D2O_YJSON_SKIP). */
    int (*value)(void *ctx, enum d2o_yjson_kind k, const unsigned char *s, size_t n);
    int (*key)(void *ctx, const unsigned char *s, size_t n); /* an object's member name */
    int (*end)(void *ctx);                                   /* an object or an array closes */
    /* A skipped object or array closed: its text is body[at..end). May be NULL. */
    void (*skipped)(void *ctx, size_t at, size_t end);
};

struct d2o_yjson {
    const struct d2o_yjson_handler *hd;
    void *ctx;
    yajl_handle h;    /* valid during the callbacks */
    size_t skip;      /* depth inside a skipped value */
    size_t skip_at;   /* where it started */
    size_t value_end; /* TRAILING: the byte after the value */
    size_t at;        /* INVALID: where parsing stopped; TRAILING: the first byte not white space */
    char why[96];     /* INVALID: yajl's description of the error */
};

/* Runs body[0..len) through the handler (ctx handed to each event). Returns a
 * d2o_yjson_result. */
__attribute__((warn_unused_result)) int d2o_yjson_parse(struct d2o_yjson *y,
                                                        const struct d2o_yjson_handler *hd,
                                                        void *ctx, const char *body, size_t len);

/* A yajl number as json-c reads one: true for an integer (no fraction, no exponent) with its
 * value in *out, saturated at the int64 range; false for a number with a fraction or exponent. */
bool d2o_yjson_int(const char *s, size_t n, int64_t *out);

#endif
