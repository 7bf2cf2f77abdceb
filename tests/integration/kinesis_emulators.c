/*
 * Kinesis client against a local emulator (kinesis-mock or kinesalite): create a stream, put
 * records, read them back with every iterator type, split and merge shards, read every parent to
 * its end and the children after them, and check that every record is read exactly once.
 *
 * usage: kinesis_emulators ENV_VAR   (D2O_TEST_KINESIS_MOCK or D2O_TEST_KINESALITE)
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "d2o/clock.h"
#include "d2o/http.h"
#include "d2o/kinesis.h"
#include "d2o/sigv4.h"
#include "d2o/wait.h"

#define MAX_RECS 2048

static const char *emu;
static bool faithful; /* kinesis-mock: ChildShards, ListShards pagination and ShardFilter */
static struct d2o_kinesis *k;
static struct d2o_http *http;
static char stream[96];

/* what was put: payload "r<N>", read count per N */
static int n_put;
static int seen[MAX_RECS];

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "FAIL [%s]: ", emu ? emu : "?");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (k && stream[0]) {
        struct d2o_kinesis_err err;

        if (d2o_kinesis_delete_stream(k, stream, &err) != 0) {
            fprintf(stderr, "cleanup: %s\n", err.message);
        }
    }
    exit(1);
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            die(__VA_ARGS__);                                                                      \
        }                                                                                          \
    } while (0)

#define CALL(expr)                                                                                 \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != 0) {                                                                            \
            die("%s:%d %s -> %d: %s", __FILE__, __LINE__, #expr, rc_, err.message);                \
        }                                                                                          \
    } while (0)

static int payload_id(const struct d2o_kinesis_record *r)
{
    int id = -1;
    char tmp[16];

    if (r->data_len < 2 || r->data_len >= sizeof(tmp) || r->data[0] != 'r') {
        return -1;
    }
    memcpy(tmp, r->data + 1, r->data_len - 1);
    tmp[r->data_len - 1] = '\0';
    id = (int)strtol(tmp, NULL, 10);
    return id >= 0 && id < MAX_RECS ? id : -1;
}

/* Puts count records r<n_put>..; explicit_hash_key may route them to one shard. */
static void put_batch(int count, const char *explicit_hash_key)
{
    struct d2o_kinesis_put_entry e[D2O_KINESIS_PUT_MAX];
    char data[D2O_KINESIS_PUT_MAX][16], pk[D2O_KINESIS_PUT_MAX][16];
    struct d2o_kinesis_put_result res;
    struct d2o_kinesis_err err;
    int i, todo[D2O_KINESIS_PUT_MAX], n_todo = 0, attempt;

    CHECK(count <= D2O_KINESIS_PUT_MAX && n_put + count <= MAX_RECS, "batch too large");
    for (i = 0; i < count; i++) {
        todo[n_todo++] = n_put + i;
    }
    n_put += count;
    for (attempt = 0; n_todo > 0; attempt++) {
        int again[D2O_KINESIS_PUT_MAX], n_again = 0;

        CHECK(attempt < 10, "PutRecords: records still failing after 10 attempts");
        for (i = 0; i < n_todo; i++) {
            snprintf(data[i], sizeof(data[i]), "r%d", todo[i]);
            snprintf(pk[i], sizeof(pk[i]), "pk%d", todo[i] % 37);
            e[i].partition_key = pk[i];
            e[i].data = data[i];
            e[i].data_len = strlen(data[i]);
            e[i].explicit_hash_key = explicit_hash_key;
        }
        CALL(d2o_kinesis_put_records(k, stream, e, (size_t)n_todo, &res, &err));
        CHECK(res.n_items == (size_t)n_todo, "PutRecords: %zu results for %d", res.n_items, n_todo);
        for (i = 0; i < n_todo; i++) {
            if (res.items[i].error_code) {
                again[n_again++] = todo[i];
            } else {
                CHECK(d2o_kinesis_seq_valid(res.items[i].sequence_number), "bad sequence number");
            }
        }
        d2o_kinesis_put_result_free(&res);
        memcpy(todo, again, sizeof(int) * (size_t)n_again);
        n_todo = n_again;
    }
}

/* Reads a shard from spec; stops at SHARD_END or after `empty_polls` empty responses on an open
 * shard. Calls fn for each record. Returns whether SHARD_END was reached. */
static bool read_shard(const char *shard_id, const struct d2o_kinesis_iter_spec *spec,
                       int empty_polls, void (*fn)(const struct d2o_kinesis_record *, void *),
                       void *arg, bool *saw_children, char *last_seq, size_t last_seq_size)
{
    struct d2o_kinesis_err err;
    struct d2o_kinesis_records r;
    char *it = NULL, prev[D2O_KINESIS_SEQ_MAX_DIGITS + 1] = "";
    int empties = 0, calls;
    bool end = false;
    size_t i;

    CALL(d2o_kinesis_get_shard_iterator(k, stream, shard_id, spec, &it, &err));
    for (calls = 0; calls < 2000; calls++) {
        CALL(d2o_kinesis_get_records(k, it, 10000, &r, &err));
        for (i = 0; i < r.n_records; i++) {
            CHECK(prev[0] == '\0' || d2o_kinesis_seq_cmp(prev, r.records[i].sequence_number) < 0,
                  "%s: sequence numbers not increasing (%s then %s)", shard_id, prev,
                  r.records[i].sequence_number);
            snprintf(prev, sizeof(prev), "%s", r.records[i].sequence_number);
            fn(&r.records[i], arg);
        }
        if (saw_children && r.n_children > 0) {
            *saw_children = true;
        }
        free(it);
        it = r.next_iterator;
        r.next_iterator = NULL;
        empties = r.n_records == 0 ? empties + 1 : 0;
        d2o_kinesis_records_free(&r);
        if (!it) {
            end = true;
            break;
        }
        if (empties >= empty_polls) {
            break;
        }
    }
    CHECK(calls < 2000, "%s: no end after 2000 GetRecords calls", shard_id);
    free(it);
    if (last_seq) {
        snprintf(last_seq, last_seq_size, "%s", prev);
    }
    return end;
}

struct collect {
    int ids[MAX_RECS];
    char seqs[256][D2O_KINESIS_SEQ_MAX_DIGITS + 1];
    int64_t arrivals[256];
    int n;
};

static void collect_fn(const struct d2o_kinesis_record *r, void *arg)
{
    struct collect *c = arg;

    if (c->n < MAX_RECS) {
        c->ids[c->n] = payload_id(r);
        if (c->n < 256) {
            snprintf(c->seqs[c->n], sizeof(c->seqs[0]), "%s", r->sequence_number);
            c->arrivals[c->n] = r->arrival_ms;
        }
        c->n++;
    }
}

static void count_fn(const struct d2o_kinesis_record *r, void *arg)
{
    int id = payload_id(r);

    (void)arg;
    CHECK(id >= 0 && id < n_put, "unexpected record payload (%zu bytes)", r->data_len);
    seen[id]++;
}

struct async_state {
    char *iterator;
    int rc;
    int records;
    struct d2o_kinesis_shards shards;
    bool done;
    struct d2o_kinesis_err err;
};

static void on_iterator(int rc, char *iterator, const struct d2o_kinesis_err *err, void *arg)
{
    struct async_state *st = arg;

    st->rc = rc;
    st->err = *err;
    st->iterator = iterator; /* ours to free */
    st->done = true;
}

static void on_records(int rc, struct d2o_kinesis_records *res, const struct d2o_kinesis_err *err,
                       void *arg)
{
    struct async_state *st = arg;

    st->rc = rc;
    st->err = *err;
    st->records = (int)res->n_records;
    free(st->iterator);
    st->iterator = res->next_iterator;
    res->next_iterator = NULL;
    d2o_kinesis_records_free(res);
    st->done = true;
}

static void on_shards(int rc, struct d2o_kinesis_shards *res, const struct d2o_kinesis_err *err,
                      void *arg)
{
    struct async_state *st = arg;

    st->rc = rc;
    st->err = *err;
    st->shards = *res; /* ours to free */
    st->done = true;
}

static void wait_async(struct async_state *st)
{
    int guard;

    for (guard = 0; guard < 600 && !st->done; guard++) {
        CHECK(d2o_http_run(http, NULL, 0, 100) >= 0, "d2o_http_run failed");
    }
    CHECK(st->done, "async call did not complete");
    CHECK(st->rc == 0, "async call: %s", st->err.message);
    st->done = false;
}

/* The async API (what the worker's event loop uses) reads the same records as the sync one. */
static void async_read(const struct d2o_kinesis_shard *sh, int want)
{
    struct d2o_kinesis_iter_spec spec = {D2O_ITER_TRIM_HORIZON, NULL, 0};
    struct async_state st;
    int total = 0, calls;

    memset(&st, 0, sizeof(st));
    CHECK(d2o_kinesis_get_shard_iterator_async(k, stream, sh->shard_id, &spec, on_iterator, &st) ==
              0,
          "get_shard_iterator_async");
    wait_async(&st);
    for (calls = 0; calls < 20 && st.iterator; calls++) {
        CHECK(d2o_kinesis_get_records_async(k, st.iterator, 10000, on_records, &st) == 0,
              "get_records_async");
        wait_async(&st);
        total += st.records;
        if (st.records == 0) {
            break;
        }
    }
    free(st.iterator);
    CHECK(total == want, "async read of %s: %d records, want %d", sh->shard_id, total, want);
    CHECK(d2o_http_in_flight(http) == 0, "requests left in flight");
}

static void iterator_types(const struct d2o_kinesis_shard *sh)
{
    struct d2o_kinesis_iter_spec spec;
    struct collect *all = calloc(1, sizeof(*all)), *part = calloc(1, sizeof(*part));
    int i, before;

    CHECK(all && part, "out of memory");
    memset(&spec, 0, sizeof(spec));
    spec.type = D2O_ITER_TRIM_HORIZON;
    read_shard(sh->shard_id, &spec, 2, collect_fn, all, NULL, NULL, 0);
    CHECK(all->n >= 3 && all->n <= 256, "TRIM_HORIZON on %s: %d records", sh->shard_id, all->n);
    async_read(sh, all->n);

    spec.type = D2O_ITER_AT_SEQUENCE_NUMBER;
    spec.sequence_number = all->seqs[1];
    read_shard(sh->shard_id, &spec, 2, collect_fn, part, NULL, NULL, 0);
    CHECK(part->n == all->n - 1 && strcmp(part->seqs[0], all->seqs[1]) == 0,
          "AT_SEQUENCE_NUMBER: got %d records starting at %s", part->n, part->seqs[0]);

    memset(part, 0, sizeof(*part));
    spec.type = D2O_ITER_AFTER_SEQUENCE_NUMBER;
    read_shard(sh->shard_id, &spec, 2, collect_fn, part, NULL, NULL, 0);
    CHECK(part->n == all->n - 2 && strcmp(part->seqs[0], all->seqs[2]) == 0,
          "AFTER_SEQUENCE_NUMBER: got %d records starting at %s", part->n, part->seqs[0]);

    /* AT_TIMESTAMP at the first arrival: everything; at the last arrival: the records that
     * arrived in that millisecond or later (kinesalite hangs when nothing is after it) */
    memset(part, 0, sizeof(*part));
    spec.type = D2O_ITER_AT_TIMESTAMP;
    spec.timestamp_ms = all->arrivals[0];
    read_shard(sh->shard_id, &spec, 2, collect_fn, part, NULL, NULL, 0);
    CHECK(part->n == all->n, "AT_TIMESTAMP(first arrival): %d of %d records", part->n, all->n);
    memset(part, 0, sizeof(*part));
    spec.timestamp_ms = all->arrivals[all->n - 1];
    for (before = 0, i = 0; i < all->n; i++) {
        before += all->arrivals[i] >= spec.timestamp_ms;
    }
    read_shard(sh->shard_id, &spec, 2, collect_fn, part, NULL, NULL, 0);
    CHECK(part->n == before && strcmp(part->seqs[0], all->seqs[all->n - before]) == 0,
          "AT_TIMESTAMP(last arrival): %d records, want %d", part->n, before);

    /* LATEST: only what is put after the iterator was taken */
    {
        struct d2o_kinesis_err err;
        struct d2o_kinesis_records r;
        char *it = NULL;
        int got = 0, polls;
        size_t j;

        spec.type = D2O_ITER_LATEST;
        CALL(d2o_kinesis_get_shard_iterator(k, stream, sh->shard_id, &spec, &it, &err));
        before = n_put;
        put_batch(3, sh->hash_start);
        for (polls = 0; polls < 50 && got < 3; polls++) {
            CALL(d2o_kinesis_get_records(k, it, 100, &r, &err));
            for (j = 0; j < r.n_records; j++) {
                i = payload_id(&r.records[j]);
                CHECK(i >= before && i < before + 3, "LATEST returned old record r%d", i);
                got++;
            }
            free(it);
            it = r.next_iterator;
            r.next_iterator = NULL;
            d2o_kinesis_records_free(&r);
            CHECK(it, "LATEST: shard ended");
        }
        free(it);
        CHECK(got == 3, "LATEST: %d of 3 new records", got);
    }
    free(all);
    free(part);
}

static const struct d2o_kinesis_shard *find(const struct d2o_kinesis_shards *s, const char *id)
{
    size_t i;

    for (i = 0; id && i < s->n_shards; i++) {
        if (strcmp(s->shards[i].shard_id, id) == 0) {
            return &s->shards[i];
        }
    }
    return NULL;
}

static void list_checks(const struct d2o_kinesis_shards *all)
{
    struct d2o_kinesis_err err;
    struct d2o_kinesis_shards page, latest;
    struct d2o_kinesis_list_req req;
    size_t got = 0, i, j;
    char *token = NULL;
    int pages = 0;

    if (!faithful) {
        return; /* kinesalite: no ListShards pagination nor ShardFilter */
    }
    for (;;) {
        memset(&req, 0, sizeof(req));
        req.stream = stream;
        req.next_token = token;
        req.max_results = 1;
        CALL(d2o_kinesis_list_shards(k, &req, &page, &err));
        for (i = 0; i < page.n_shards; i++) {
            CHECK(got < all->n_shards &&
                      strcmp(page.shards[i].shard_id, all->shards[got].shard_id) == 0,
                  "ListShards page %d: unexpected shard %s", pages, page.shards[i].shard_id);
            got++;
        }
        CHECK(page.n_shards <= 1, "MaxResults 1 gave %zu shards", page.n_shards);
        free(token);
        token = page.next_token;
        page.next_token = NULL;
        d2o_kinesis_shards_free(&page);
        pages++;
        CHECK(pages < 100, "ListShards pagination does not end");
        if (!token) {
            break;
        }
    }
    CHECK(got == all->n_shards, "pagination listed %zu of %zu shards", got, all->n_shards);
    /* the same pages on the multi handle (the worker's shard sync), one shard a page */
    {
        struct async_state st;

        memset(&st, 0, sizeof(st));
        CALL(
            d2o_kinesis_list_all_shards_async(k, stream, D2O_SHARD_FILTER_NONE, 1, on_shards, &st));
        wait_async(&st);
        CHECK(st.shards.n_shards == all->n_shards && !st.shards.next_token,
              "async listing: %zu of %zu shards", st.shards.n_shards, all->n_shards);
        for (i = 0; i < st.shards.n_shards && i < all->n_shards; i++) {
            CHECK(strcmp(st.shards.shards[i].shard_id, all->shards[i].shard_id) == 0,
                  "async listing: shard %zu is %s, want %s", i, st.shards.shards[i].shard_id,
                  all->shards[i].shard_id);
        }
        d2o_kinesis_shards_free(&st.shards);
    }
    /* after split + merge only the lower child and the merged shard are open */
    CALL(d2o_kinesis_list_all_shards(k, stream, D2O_SHARD_FILTER_AT_LATEST, 0, &latest, &err));
    CHECK(latest.n_shards == 2, "ShardFilter AT_LATEST: %zu open shards, want 2", latest.n_shards);
    for (i = 0; i < latest.n_shards; i++) {
        for (j = 0; j < all->n_shards; j++) {
            CHECK(!all->shards[j].parent_shard_id ||
                      strcmp(all->shards[j].parent_shard_id, latest.shards[i].shard_id) != 0,
                  "AT_LATEST listed the closed parent %s", latest.shards[i].shard_id);
        }
    }
    d2o_kinesis_shards_free(&latest);
}

static void error_checks(void)
{
    struct d2o_kinesis_err err;
    struct d2o_kinesis_summary sum;
    struct d2o_kinesis_records r;
    char missing[128];

    snprintf(missing, sizeof(missing), "%s-missing", stream);
    CHECK(d2o_kinesis_describe_stream_summary(k, missing, &sum, &err) == D2O_KINESIS_E_FAILED,
          "DescribeStreamSummary of a missing stream succeeded");
    CHECK(err.action == D2O_ACT_PERMANENT && strcmp(err.code, "ResourceNotFoundException") == 0,
          "missing stream: action %s code '%s'", d2o_action_name(err.action), err.code);
    CHECK(strstr(err.message, missing) != NULL, "message does not name the stream: %s",
          err.message);

    d2o_kinesis_set_retry(k, 0, NULL);
    CHECK(d2o_kinesis_get_records(k, "bm90LWFuLWl0ZXJhdG9y", 10, &r, &err) == D2O_KINESIS_E_FAILED,
          "GetRecords with a bad iterator succeeded");
    CHECK(err.action == D2O_ACT_PERMANENT || err.action == D2O_ACT_RETRY,
          "bad iterator: action %s (%s)", d2o_action_name(err.action), err.message);
    CHECK(err.message[0] != '\0', "bad iterator: no message");
    d2o_kinesis_set_retry(k, 5, NULL);
}

int main(int argc, char **argv)
{
    struct d2o_aws_creds creds = {"AKIDTEST", "test-secret", NULL};
    struct d2o_kinesis_err err;
    struct d2o_kinesis_shards shards;
    const struct d2o_kinesis_shard *s0, *s1, *a, *b;
    char errstr[256], mid[48];
    const char *endpoint;
    bool *done, progress, children_seen = false, end;
    size_t i, n_done = 0;
    int id, batch;

    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc != 2) {
        fprintf(stderr, "usage: %s D2O_TEST_KINESIS_MOCK|D2O_TEST_KINESALITE\n", argv[0]);
        return 2;
    }
    emu = argv[1];
    faithful = strcmp(emu, "D2O_TEST_KINESIS_MOCK") == 0;
    endpoint = getenv(emu);
    if (!endpoint || !endpoint[0]) {
        fprintf(
            stderr,
            "FAIL: %s is not set. Start the emulators and export their addresses:\n"
            "  scripts/services start && set -a && eval \"$(scripts/services env)\" && set +a\n",
            emu);
        return 1;
    }
    http = d2o_http_new(NULL, errstr, sizeof(errstr));
    CHECK(http, "d2o_http_new: %s", errstr);
    k = d2o_kinesis_new_endpoint(http, "us-east-1", endpoint, &creds, errstr, sizeof(errstr));
    CHECK(k, "d2o_kinesis_new: %s", errstr);
    snprintf(stream, sizeof(stream), "d2o-it-%ld-%lld", (long)getpid(),
             (long long)(d2o_wall_us() / 1000));
    printf("%s: stream %s at %s\n", emu, stream, endpoint);

    CALL(d2o_kinesis_create_stream(k, stream, 2, &err));
    CALL(d2o_kinesis_wait_active(k, stream, 60000, &err));
    CALL(d2o_kinesis_list_all_shards(k, stream, D2O_SHARD_FILTER_NONE, 0, &shards, &err));
    CHECK(shards.n_shards == 2, "new stream has %zu shards, want 2", shards.n_shards);

    batch = 60;
    put_batch(batch, NULL);
    put_batch(5, shards.shards[0].hash_start); /* shard 0 surely has a few */
    iterator_types(&shards.shards[0]);
    error_checks();

    /* split shard 0 in the middle of its range */
    CHECK(d2o_kinesis_hash_mid(shards.shards[0].hash_start, shards.shards[0].hash_end, mid,
                               sizeof(mid)) == 0,
          "hash midpoint");
    CALL(d2o_kinesis_split_shard(k, stream, shards.shards[0].shard_id, mid, &err));
    CALL(d2o_kinesis_wait_active(k, stream, 60000, &err));
    put_batch(batch, NULL);
    d2o_kinesis_shards_free(&shards);

    /* merge the upper child of shard 0 with shard 1 (adjacent ranges) */
    CALL(d2o_kinesis_list_all_shards(k, stream, D2O_SHARD_FILTER_NONE, 0, &shards, &err));
    CHECK(shards.n_shards == 4, "after split: %zu shards, want 4", shards.n_shards);
    s1 = NULL;
    a = b = NULL;
    for (i = 0; i < shards.n_shards; i++) {
        const struct d2o_kinesis_shard *sh = &shards.shards[i];

        if (sh->parent_shard_id && strcmp(sh->hash_start, mid) == 0) {
            a = sh;
        } else if (!sh->parent_shard_id && strcmp(sh->hash_start, "0") != 0) {
            s1 = sh;
        }
    }
    CHECK(a && s1, "cannot find the upper child and shard 1");
    CALL(d2o_kinesis_merge_shards(k, stream, a->shard_id, s1->shard_id, &err));
    CALL(d2o_kinesis_wait_active(k, stream, 60000, &err));
    put_batch(batch, NULL);
    d2o_kinesis_shards_free(&shards);

    CALL(d2o_kinesis_list_all_shards(k, stream, D2O_SHARD_FILTER_NONE, 0, &shards, &err));
    CHECK(shards.n_shards == 5, "after merge: %zu shards, want 5", shards.n_shards);
    list_checks(&shards);

    /* read every shard after its parents, from TRIM_HORIZON */
    done = calloc(shards.n_shards, sizeof(*done));
    CHECK(done, "out of memory");
    while (n_done < shards.n_shards) {
        progress = false;
        for (i = 0; i < shards.n_shards; i++) {
            const struct d2o_kinesis_shard *sh = &shards.shards[i];
            struct d2o_kinesis_iter_spec spec = {D2O_ITER_TRIM_HORIZON, NULL, 0};

            s0 = find(&shards, sh->parent_shard_id);
            b = find(&shards, sh->adjacent_parent_shard_id);
            if (done[i] || (s0 && !done[s0 - shards.shards]) || (b && !done[b - shards.shards])) {
                continue;
            }
            children_seen = false;
            end = read_shard(sh->shard_id, &spec, 3, count_fn, NULL, &children_seen, NULL, 0);
            /* a parent (some shard names it) is closed: it must reach SHARD_END */
            {
                size_t j;
                bool is_parent = false;

                for (j = 0; j < shards.n_shards; j++) {
                    is_parent |=
                        (shards.shards[j].parent_shard_id &&
                         strcmp(shards.shards[j].parent_shard_id, sh->shard_id) == 0) ||
                        (shards.shards[j].adjacent_parent_shard_id &&
                         strcmp(shards.shards[j].adjacent_parent_shard_id, sh->shard_id) == 0);
                }
                CHECK(!is_parent || end, "parent %s did not reach SHARD_END", sh->shard_id);
                CHECK(is_parent || !end, "open shard %s ended", sh->shard_id);
                CHECK(!is_parent || !faithful || children_seen,
                      "kinesis-mock: no ChildShards at the end of %s", sh->shard_id);
            }
            printf("  read %s%s\n", sh->shard_id, end ? " to SHARD_END" : "");
            done[i] = true;
            n_done++;
            progress = true;
        }
        CHECK(progress, "shard lineage has a cycle or a missing parent");
    }
    for (id = 0; id < n_put; id++) {
        CHECK(seen[id] == 1, "record r%d read %d times", id, seen[id]);
    }
    printf("%s: %d records read exactly once across %zu shards\n", emu, n_put, shards.n_shards);
    free(done);
    d2o_kinesis_shards_free(&shards);

    CALL(d2o_kinesis_delete_stream(k, stream, &err));
    stream[0] = '\0';
    d2o_kinesis_free(k);
    d2o_http_free(http);
    printf("PASS\n");
    return 0;
}
