/* libFuzzer target: _bulk responses through the pure per-item parser and classifier. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "d2o/bulk.h"
#include "d2o/classify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct d2o_bulk_item_status st[8];
    char err[256] = "";
    size_t n = size ? data[0] % 9 : 0, i;

    if (d2o_bulk_parse_response((const char *)data, size, n, NULL, st, err, sizeof(err)) == 0) {
        for (i = 0; i < n; i++) {
            (void)d2o_classify_bulk_item(st[i].status, st[i].error_type, (int)(i & 1));
        }
    } else if (err[0] == '\0') {
        abort();
    }
    return 0;
}
