/*
 * JSON helpers of the Kinesis-shaped parsers (kinesis_parse.c), shared with the dialects that
 * parse answers of the same shape (src/ddbstreams). Internal to libd2o.
 *
 * Each returns 0, D2O_KINESIS_E_FAILED with err filled (MalformedResponse, naming `what` and the
 * member) or -ENOMEM.
 */
#ifndef D2O_KINESIS_JSON_H
#define D2O_KINESIS_JSON_H

#include <json-c/json.h>
#include <stdbool.h>

#include "d2o/kinesis.h"

/* Fills err as a MalformedResponse (action RETRY) with the formatted message. */
void d2o_kjson_err(struct d2o_kinesis_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Parses body as one JSON object (nothing but white space after it). */
int d2o_kjson_root(const char *what, const char *body, size_t len, json_object **out,
                   struct d2o_kinesis_err *err);
/* Copies a string member (absent or null: NULL, an error when required). */
int d2o_kjson_str(const char *what, json_object *obj, const char *key, bool required, char **out,
                  struct d2o_kinesis_err *err);
/* The same for a sequence number (d2o_kinesis_seq_valid). */
int d2o_kjson_seq(const char *what, json_object *obj, const char *key, bool required, char **out,
                  struct d2o_kinesis_err *err);
/* The same with the sequence-number check of another service (valid: e.g.
 * d2o_ddbstreams_seq_valid, which takes zero-padded numbers). */
int d2o_kjson_seq_checked(const char *what, json_object *obj, const char *key, bool required,
                          bool (*valid)(const char *), char **out, struct d2o_kinesis_err *err);
/* A member of the given type (absent or null: NULL, an error when required). */
int d2o_kjson_member(const char *what, json_object *obj, const char *key, bool required,
                     json_type type, const char *type_text, json_object **out,
                     struct d2o_kinesis_err *err);

#endif
