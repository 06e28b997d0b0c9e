/* fixture: a real redis-server and one or more real giftd nodes for end-to-end tests. */
#ifndef GIFTD_TESTS_FIXTURE_H
#define GIFTD_TESTS_FIXTURE_H

#include <jansson.h>
#include <stdint.h>

#include "tests/support/testkit.h"

#define FX_MAX_NODES 3

struct fx {
    struct tk_redis redis;
    struct tk_cluster *cluster; /* fx_start_cluster: the Redis Cluster instead of redis */
    char seeds[512];            /* its seed nodes */
    struct tk_giftd node[FX_MAX_NODES];
    int nodes;
    char redis_url[64];
    char *service; /* a service token */
};

/** Starts a redis-server and `nodes` giftd processes on it (extra flags for every node,
 * NULL-terminated, may be NULL); asserts that all became ready. */
void fx_start(struct fx *f, int nodes, const char *const *extra);
/** fx_start with a redis-server that keeps an AOF (appendfsync always), so a kill -9 and
 * restart of Redis loses nothing. */
void fx_start_aof(struct fx *f, int nodes, const char *const *extra);
/** Starts a Redis Cluster (masters, replicas per master) and `nodes` giftd processes on it
 * (--redis.cluster with every node as a seed). */
void fx_start_cluster(struct fx *f, int nodes, int masters, int replicas, const char *const *extra);
/** Stops every giftd (asserting nothing) and the redis-server. */
void fx_stop(struct fx *f);
/** Starts (again) node i with the fixture's redis, --workers=1, then the extra flags. */
void fx_start_node(struct fx *f, int i, const char *const *extra);

/* The helpers below speak https and wss to a node started with --tls.cert=FILE (verified
 * against FILE), plain HTTP and ws otherwise. */

/** PUT /v1/rooms/room with a service token; asserts 200. */
void fx_open_room(struct fx *f, const char *room, const char *creator);
/** DELETE /v1/rooms/room; asserts 200. */
void fx_close_room(struct fx *f, const char *room);
/** POST /v1/recharge {coins}; asserts 200 and returns the balance. */
long fx_recharge(struct fx *f, const char *user, long coins);
/** GET /v1/users/user/balance coins; asserts 200. */
long fx_balance(struct fx *f, const char *user);

/** A viewer `sub` on node i, authenticated by query token, joined to room (welcome and joined
 * read and asserted). Returns a **new** connection. */
struct tk_ws *fx_viewer(struct fx *f, int node, const char *sub, const char *room);
/** Same for a given role's token (overlay: room claim = room). */
struct tk_ws *fx_connect_as(struct fx *f, int node, const char *sub, const char *role,
                            const char *room);

/** A sample of node's /metrics named name (a counter or gauge line "name value"), 0 when
 * absent. */
long long fx_metric(struct fx *f, int node, const char *name);

/** Milliseconds of CLOCK_MONOTONIC, for deadlines in tests. */
int64_t fx_now_ms(void);

/** json helpers: string / integer field of obj (asserting presence and type). */
const char *fx_str(json_t *obj, const char *key);
long long fx_int(json_t *obj, const char *key);

/** Sends a gift frame. */
void fx_send_gift(struct tk_ws *ws, const char *id, const char *gift, long count);
/** Receives events until an ack or error carrying id; returns it (**new**), NULL on timeout.
 * Answers come in no set order (a refusal decided at the debit can overtake the ack of an
 * earlier send still being published): those to other ids are kept for their own call.
 * Other events are dropped. */
json_t *fx_answer(struct tk_ws *ws, const char *id, int timeout_ms);
/** Sends a gift and asserts it is refused with error code `code`. */
void fx_expect_refusal(struct tk_ws *ws, const char *id, const char *gift, long count,
                       const char *code);

#endif
