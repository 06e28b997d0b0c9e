/* limits: token buckets for limits.frames_per_sec (per connection) and limits.gifts_per_sec
 * (per user, across that user's connections on this process). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
