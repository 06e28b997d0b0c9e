/* hist: a log-linear latency histogram (HDR-like) in microseconds, and the code → count map. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "loadtest/loadtest.h"

#define SUB      (1u << LOAD_HIST_SUB_BITS)
#define HALF     (1u << (LOAD_HIST_SUB_BITS - 1))
#define LAST_IDX (LOAD_HIST_BUCKETS - 1)

void load_hist_init(struct load_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

static size_t bucket_of(uint64_t v)
{
    if (v < SUB) {
        return (size_t)v;
    }
    unsigned m = 63u - (unsigned)__builtin_clzll(v); /* m >= LOAD_HIST_SUB_BITS */
    if (m > LOAD_HIST_MAX_EXP) {
        return LAST_IDX;
    }
    unsigned shift = m - (LOAD_HIST_SUB_BITS - 1);
    uint64_t top = v >> shift; /* HALF .. SUB-1 */
    return SUB + (size_t)(m - LOAD_HIST_SUB_BITS) * HALF + (size_t)(top - HALF);
}

/* The middle of bucket i. */
static uint64_t bucket_mid(size_t i)
{
    if (i < SUB) {
        return (uint64_t)i;
    }
    size_t k = i - SUB;
    unsigned m = (unsigned)(k / HALF) + LOAD_HIST_SUB_BITS;
    uint64_t top = (uint64_t)(k % HALF) + HALF;
    unsigned shift = m - (LOAD_HIST_SUB_BITS - 1);
    return (top << shift) + ((1ull << shift) >> 1);
}

void load_hist_record(struct load_hist *h, uint64_t v)
{
    h->counts[bucket_of(v)]++;
    h->total++;
    if (v > h->max) {
        h->max = v;
    }
    if (v < h->min) {
        h->min = v;
    }
}

uint64_t load_hist_quantile(const struct load_hist *h, double q)
{
    if (h->total == 0) {
        return 0;
    }
    if (q >= 1.0) {
        return h->max;
    }
    double r = ceil(q * (double)h->total);
    uint64_t rank = r < 1.0 ? 1 : (uint64_t)r;
    uint64_t seen = 0;
    for (size_t i = 0; i < LOAD_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = bucket_mid(i);
            if (v > h->max) {
                v = h->max;
            }
            if (v < h->min) {
                v = h->min;
            }
            return v;
        }
    }
    return h->max;
}

void load_codes_add(struct load_codes *c, const char *s, size_t len)
{
    char name[48];
    if (len >= sizeof(name)) {
        len = sizeof(name) - 1;
    }
    memcpy(name, s, len);
    name[len] = '\0';
    for (int i = 0; i < c->used; i++) {
        if (strcmp(c->name[i], name) == 0) {
            c->n[i]++;
            return;
        }
    }
    if (c->used == LOAD_MAX_CODES - 1) {
        /* The last slot collects whatever does not fit. */
        snprintf(c->name[c->used], sizeof(c->name[0]), "other");
        c->n[c->used++] = 0;
    }
    if (c->used == LOAD_MAX_CODES) {
        c->n[LOAD_MAX_CODES - 1]++;
        return;
    }
    memcpy(c->name[c->used], name, len + 1);
    c->n[c->used++] = 1;
}
