/* The acknowledgement low watermark of one shard; see include/d2o/ack.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/ack.h"
#include "d2o/mem.h"

struct slot {
    char *seq;
    int64_t tag;
    void *payload;
    bool acked;
};

/* A ring of slots: ticket t lives at (head + t - first) % cap. */
struct d2o_ack {
    struct slot *ring;
    size_t cap;
    size_t head;
    size_t n;
    uint64_t first;   /* ticket of the slot at head */
    int64_t last_tag; /* tag of the last record popped */
};

struct d2o_ack *d2o_ack_new(void)
{
    return calloc(1, sizeof(struct d2o_ack));
}

static struct slot *at(const struct d2o_ack *a, size_t i)
{
    return &a->ring[(a->head + i) % a->cap];
}

void d2o_ack_free(struct d2o_ack *a, void (*drop)(void *payload))
{
    size_t i;

    if (!a) {
        return;
    }
    for (i = 0; i < a->n; i++) {
        struct slot *s = at(a, i);

        free(s->seq);
        if (s->payload && drop) {
            drop(s->payload);
        }
    }
    free(a->ring);
    free(a);
}

static int grow(struct d2o_ack *a)
{
    size_t cap = a->cap ? a->cap * 2 : 64, i;
    struct slot *ring = d2o_calloc(cap, sizeof(*ring));

    if (!ring) {
        return -ENOMEM;
    }
    for (i = 0; i < a->n; i++) {
        ring[i] = *at(a, i);
    }
    free(a->ring);
    a->ring = ring;
    a->cap = cap;
    a->head = 0;
    return 0;
}

int d2o_ack_push(struct d2o_ack *a, const char *seq, uint64_t *ticket)
{
    return d2o_ack_push_tagged(a, seq, 0, ticket);
}

int d2o_ack_push_tagged(struct d2o_ack *a, const char *seq, int64_t tag, uint64_t *ticket)
{
    struct slot *s;
    char *copy;

    if (a->n == a->cap && grow(a) < 0) {
        return -ENOMEM;
    }
    copy = d2o_strdup(seq);
    if (!copy) {
        return -ENOMEM;
    }
    s = at(a, a->n);
    s->seq = copy;
    s->tag = tag;
    s->payload = NULL;
    s->acked = false;
    *ticket = a->first + a->n;
    a->n++;
    return 0;
}

int d2o_ack_complete(struct d2o_ack *a, uint64_t ticket, void *dlq_payload)
{
    struct slot *s;

    if (ticket < a->first || ticket - a->first >= a->n) {
        return -ENOENT;
    }
    s = at(a, (size_t)(ticket - a->first));
    if (s->acked) {
        return -EALREADY;
    }
    s->acked = true;
    s->payload = dlq_payload;
    return 0;
}

int d2o_ack_unpush(struct d2o_ack *a, uint64_t ticket)
{
    struct slot *s;

    if (a->n == 0 || ticket != a->first + a->n - 1) {
        return -ENOENT;
    }
    s = at(a, a->n - 1);
    if (s->acked) {
        return -ENOENT;
    }
    free(s->seq);
    s->seq = NULL;
    a->n--;
    return 0;
}

int64_t d2o_ack_advance(struct d2o_ack *a, char **seq, void ***payloads, size_t *n_payloads)
{
    size_t k = 0, with_payload = 0, i;
    void **grown;

    while (k < a->n && at(a, k)->acked) {
        with_payload += at(a, k)->payload != NULL;
        k++;
    }
    if (k == 0) {
        return 0;
    }
    if (with_payload) {
        grown = d2o_realloc(*payloads, (*n_payloads + with_payload) * sizeof(*grown));
        if (!grown) {
            return -ENOMEM;
        }
        *payloads = grown;
    }
    for (i = 0; i < k; i++) {
        struct slot *s = at(a, i);

        if (s->payload) {
            (*payloads)[(*n_payloads)++] = s->payload;
            s->payload = NULL;
        }
        if (i + 1 < k) {
            free(s->seq);
            s->seq = NULL;
        }
    }
    free(*seq);
    *seq = at(a, k - 1)->seq;
    at(a, k - 1)->seq = NULL;
    a->last_tag = at(a, k - 1)->tag;
    a->head = (a->head + k) % a->cap;
    a->n -= k;
    a->first += k;
    return (int64_t)k;
}

int64_t d2o_ack_last_tag(const struct d2o_ack *a)
{
    return a->last_tag;
}

size_t d2o_ack_pending(const struct d2o_ack *a)
{
    return a->n;
}
