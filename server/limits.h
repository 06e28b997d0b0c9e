/* limits: token buckets for limits.frames_per_sec (per connection) and limits.gifts_per_sec
 * (per user, across that user's connections on this process); limits.max_connections and
 * limits.connections_per_ip_per_sec for new connections. */
#ifndef GIFTD_SERVER_LIMITS_H
#define GIFTD_SERVER_LIMITS_H

#include <stdbool.h>
#include <stdint.h>

struct app;

struct bucket {
    double tokens;
    int64_t last_ms;
};
/* One user's limits.gifts_per_sec bucket (limits.c); struct app holds their hash table. */
struct user_bucket;

/** Takes one token from b refilled at rate per second (burst: one second's worth). */
bool bucket_take(struct bucket *b, double rate, int64_t now_ms);
/** limits.gifts_per_sec for sub on this process: true when the send may go on. */
bool limits_user_gift(struct app *app, const char *sub, int64_t now_ms);
/** Forgets idle users' buckets (all: every bucket, at shutdown). */
void limits_gc(struct app *app, int64_t now_ms, bool all);

/* New connections per address in the current second (limits.connections_per_ip_per_sec). */
struct ip_count;
struct sockaddr;

/** Counts a new connection from sa (borrowed) and returns NULL when it is within the limits,
 * else the limit it is over, as text for the close reason or error message (static). The
 * open-connection count is app->open_sockets, kept by the lws callback. */
const char *limits_connection(struct app *app, const struct sockaddr *sa, int64_t now_ms);
/** Frees the per-address counts (shutdown). */
void limits_connection_cleanup(struct app *app);

#endif
