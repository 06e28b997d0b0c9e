/* limits: token buckets for limits.frames_per_sec (per connection) and limits.gifts_per_sec
 * (per user, across that user's connections on this process); limits.max_connections and
 * limits.connections_per_ip_per_sec for new connections. */
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config/config.h"
#include "server/app.h"
#include "server/limits.h"

struct user_bucket {
    struct user_bucket *next;
    struct bucket b;
    char sub[65];
};

bool bucket_take(struct bucket *b, double rate, int64_t now_ms)
{
    /* Burst: one second's worth. A new bucket starts full. */
    if (b->last_ms == 0) {
        b->tokens = rate;
    } else if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * rate / 1000.0;
        if (b->tokens > rate) {
            b->tokens = rate;
        }
    }
    b->last_ms = now_ms;
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return true;
    }
    return false;
}

static size_t hash_sub(const char *s)
{
    size_t h = 14695981039346656037u;
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    }
    return h;
}

bool limits_user_gift(struct app *app, const char *sub, int64_t now_ms)
{
    if (!app->user_buckets) {
        app->user_buckets_cap = 1024;
        app->user_buckets = calloc(app->user_buckets_cap, sizeof(*app->user_buckets));
        if (!app->user_buckets) {
            app->user_buckets_cap = 0;
            return true; /* out of memory: do not refuse paying users for it */
        }
    }
    size_t i = hash_sub(sub) & (app->user_buckets_cap - 1);
    struct user_bucket *u = app->user_buckets[i];
    while (u && strcmp(u->sub, sub) != 0) {
        u = u->next;
    }
    if (!u) {
        u = calloc(1, sizeof(*u));
        if (!u) {
            return true;
        }
        snprintf(u->sub, sizeof(u->sub), "%s", sub);
        u->next = app->user_buckets[i];
        app->user_buckets[i] = u;
    }
    return bucket_take(&u->b, (double)app->cfg.limits_gifts_per_sec, now_ms);
}

void limits_gc(struct app *app, int64_t now_ms, bool all)
{
    for (size_t i = 0; i < app->user_buckets_cap; i++) {
        struct user_bucket **pp = &app->user_buckets[i];
        while (*pp) {
            struct user_bucket *u = *pp;
            /* Idle for over a second: the bucket is full again, forgetting it is exact. */
            if (all || now_ms - u->b.last_ms > 1000) {
                *pp = u->next;
                free(u);
            } else {
                pp = &u->next;
            }
        }
    }
    if (all) {
        free(app->user_buckets);
        app->user_buckets = NULL;
        app->user_buckets_cap = 0;
    }
}

/* ---- new connections per address ----
 * A fixed table of IP_SLOTS counters for the current second, indexed by a hash of the address
 * with a short linear probe; a slot from an earlier second is free. When every probed slot
 * counts another address in this second, the least used one is taken over: an attacker
 * cycling through addresses can evict a counter, never make the table grow. */
#define IP_SLOTS 4096
#define IP_PROBE 8

struct ip_count {
    unsigned char addr[16]; /* IPv6, or IPv4 mapped into IPv6 */
    int64_t sec;
    long n;
};

static bool addr_key(const struct sockaddr *sa, unsigned char out[16])
{
    memset(out, 0, 16);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &in->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

const char *limits_connection(struct app *app, const struct sockaddr *sa, int64_t now_ms)
{
    if (app->max_connections > 0 && app->open_sockets >= app->max_connections) {
        return "over limits.max_connections";
    }
    long per_sec = app->cfg.limits_connections_per_ip_per_sec;
    unsigned char key[16];
    if (per_sec <= 0 || !sa || !addr_key(sa, key)) {
        return NULL;
    }
    if (!app->ip_counts) {
        app->ip_counts = calloc(IP_SLOTS, sizeof(*app->ip_counts));
        if (!app->ip_counts) {
            return NULL; /* out of memory: fail open, the other limits still hold */
        }
    }
    int64_t sec = now_ms / 1000;
    uint64_t h = 14695981039346656037u;
    for (int i = 0; i < 16; i++) {
        h = (h ^ key[i]) * 1099511628211u;
    }
    struct ip_count *slot = NULL, *victim = NULL;
    for (int i = 0; i < IP_PROBE; i++) {
        struct ip_count *c = &app->ip_counts[(h + (uint64_t)i) % IP_SLOTS];
        if (c->sec == sec && memcmp(c->addr, key, 16) == 0) {
            slot = c;
            break;
        }
        /* Free (an earlier second) beats least used. */
        long use = c->sec == sec ? c->n : -1;
        if (!victim || use < (victim->sec == sec ? victim->n : -1)) {
            victim = c;
        }
    }
    if (!slot) {
        slot = victim;
        memcpy(slot->addr, key, 16);
        slot->sec = sec;
        slot->n = 0;
    }
    return ++slot->n > per_sec ? "over limits.connections_per_ip_per_sec" : NULL;
}

void limits_connection_cleanup(struct app *app)
{
    free(app->ip_counts);
    app->ip_counts = NULL;
}
