/*
 * libFuzzer target: the record path's JSON document (src/core/jdoc.c) against json-c on the
 * same bytes. Whatever the input:
 * - a refusal has a reason and an offset inside the input;
 * - an object or array the document accepts, json-c (strict, same nesting bound) accepts too;
 * - d2o_jdoc_write() writes what json-c writes for its own tree (keys with a NUL byte aside:
 *   json-c cuts them there), and that text parses again to the same text.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "d2o/buf.h"
#include "d2o/jdoc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DEPTH 80

static struct d2o_jdoc *doc, *again;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    struct d2o_buf out = D2O_BUF_INIT, out2 = D2O_BUF_INIT;
    struct json_tokener *tok;
    struct json_object *o;
    char err[256] = "";

    if (size > 1 << 20) {
        return 0;
    }
    if (!doc) {
        doc = d2o_jdoc_new(DEPTH);
        again = d2o_jdoc_new(DEPTH);
        if (!doc || !again) {
            abort();
        }
    }
    if (d2o_jdoc_parse(doc, in, size, err, sizeof(err)) != 0) {
        if (err[0] == '\0' || d2o_jdoc_root(doc) || d2o_jdoc_error_kind(doc) == D2O_JDOC_OK ||
            d2o_jdoc_error_offset(doc) > size) {
            abort();
        }
        return 0;
    }
    if (d2o_jdoc_write(&out, d2o_jdoc_root(doc)) != 0) {
        abort();
    }
    /* the written text reads back to itself */
    if (d2o_jdoc_parse(again, out.data, out.len, err, sizeof(err)) != 0 ||
        d2o_jdoc_write(&out2, d2o_jdoc_root(again)) != 0 || out2.len != out.len ||
        memcmp(out.data, out2.data, out.len) != 0) {
        abort();
    }
    /* json-c cannot tell where a number at the top ends: compare objects and arrays */
    if (d2o_jdoc_root(doc)->type >= D2O_JARRAY) {
        tok = json_tokener_new_ex(DEPTH);
        if (!tok) {
            abort();
        }
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        o = json_tokener_parse_ex(tok, in, (int)size);
        if (json_tokener_get_error(tok) != json_tokener_success) {
            abort();
        }
        if (!memmem(out.data, out.len, "\\u0000", 6)) {
            const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                  JSON_C_TO_STRING_NOSLASHESCAPE);

            if (!s || strlen(s) != out.len || memcmp(s, out.data, out.len) != 0) {
                abort();
            }
        }
        json_object_put(o);
        json_tokener_free(tok);
    }
    d2o_buf_free(&out);
    d2o_buf_free(&out2);
    return 0;
}
