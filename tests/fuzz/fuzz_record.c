/*
 * libFuzzer target: the change-record parser and the transform of arbitrary bytes. Whatever the
 * input, the result is either a bulk item whose lines are JSON or a refusal with a reason.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "d2o/conf.h"
#include "d2o/document.h"
#include "d2o/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct d2o_config conf;
static int conf_ready;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct d2o_record rec;
    struct d2o_doc_op op;
    char err[512] = "";

    if (!conf_ready) {
        if (d2o_conf_init(&conf) < 0) {
            abort();
        }
        conf_ready = 1;
    }
    if (d2o_record_parse((const char *)data, size, &rec, err, sizeof(err)) != 0) {
        if (err[0] == '\0' || rec.root) {
            abort();
        }
        return 0;
    }
    err[0] = '\0';
    if (d2o_doc_build(&rec, &conf, &op, err, sizeof(err)) == 0) {
        char *nl = memchr(op.ndjson.data, '\n', op.ndjson.len);
        struct json_tokener *tok = json_tokener_new_ex(100);
        size_t first = nl ? (size_t)(nl - op.ndjson.data) : 0;
        struct json_object *o;

        /* Every line the sink would send parses as JSON. */
        if (op.action != D2O_DOC_SKIP) {
            if (!nl) {
                abort();
            }
            o = json_tokener_parse_ex(tok, op.ndjson.data, (int)first);
            if (!o) {
                abort();
            }
            json_object_put(o);
            if (op.action == D2O_DOC_INDEX) {
                json_tokener_reset(tok);
                o = json_tokener_parse_ex(tok, nl + 1, (int)(op.ndjson.len - first - 2));
                if (!o) {
                    abort();
                }
                json_object_put(o);
            }
        }
        json_tokener_free(tok);
        d2o_doc_op_free(&op);
    } else if (err[0] == '\0') {
        abort();
    }
    d2o_record_free(&rec);
    return 0;
}
