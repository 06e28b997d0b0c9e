/* ledger_client internals: the keyspace and the transport's hooks for the typed operations.
 * Only files of ledger_client/ include this. */
#ifndef GIFTD_LEDGER_CLIENT_INTERNAL_H
#define GIFTD_LEDGER_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger_client/ledger_client.h"

#include <uv.h>

struct ledger;
struct ledger_opts;
struct lgift_queue;

/* ---- between the transport and the gift sends ---- */
/** ledger_script whose deadline runs from start_ms (ledger_now_ms clock) instead of now: a
 * batch answers by the deadline of the oldest send in it. */
int lscript_since(struct ledger *l, enum ledger_script script, int argc, const char *const *argv,
                  const size_t *argvlen, ledger_reply_cb *cb, void *ud, int64_t start_ms);
/** Whether a request is taken now: the ledger is ready, or was never ready yet (a node just
 * started: requests wait for the first connection until their deadline). */
bool ledger_accepting(const struct ledger *l);
/** The options the ledger was made with (borrowed, valid while it lives). */
const struct ledger_opts *lgift_opts(const struct ledger *l);
/** The ledger's queue of gift sends. */
struct lgift_queue *lgift_queue_of(struct ledger *l);
/** **new** queue on loop, or NULL on OOM; freed by lgift_queue_free (answers what is queued
 * -ECANCELED; memory goes when the loop runs again). */
struct lgift_queue *lgift_queue_new(struct ledger *l, uv_loop_t *loop);
void lgift_queue_free(struct lgift_queue *q);

/* ---- hiredis on libuv (uvglue.c) ---- */
struct redisAsyncContext;
/** Drives ac on loop: its commands of a loop turn are written just before the loop polls. The
 * glue is freed with the context. 0, -ENOMEM, -EIO. */
int lglue_attach(struct redisAsyncContext *ac, uv_loop_t *loop);

#include "ledger_client/ledger_client.h"

/* Every key giftd writes starts with "giftd:" and carries a hash tag, so that the scripts run
 * unchanged on one Redis or a Redis Cluster: a room's keys are tagged "{r:<room>}", a user's
 * keys and what a debit writes live in the user's partition "{p<n>}" (n = ledger_partition). */

/** A room's key: "giftd:{r:<room>}:<suffix>". */
void lkey_room(char *out, size_t len, const char *room, const char *suffix);
/** A room's pub/sub channel: "giftd:{r:<room>}:ch" (it shares the room's hash tag, so on a
 * Redis Cluster its sharded messages stay on the room's shard). */
void lkey_channel(char *out, size_t len, const char *room);
/** The channel as a script's argument: 'P' (PUBLISH, one Redis) or 'S' (SPUBLISH, a
 * cluster), then the channel (lib/room.lua room_publish). */
void lkey_channel_arg(char *out, size_t len, const struct ledger *l, const char *room);
/** The prefix of partition n's keys: "giftd:{p<n>}:". */
void lkey_partition(char *out, size_t len, unsigned n);
/** A partition-wide key: "giftd:{p<n>}:<suffix>". */
void lkey_partition_key(char *out, size_t len, unsigned n, const char *suffix);
/** A user's key in the user's partition: "giftd:{p<n>}:<kind>:<sub>". */
void lkey_user(char *out, size_t len, long partitions, const char *kind, const char *sub);
/** The current UTC day, "YYYYMMDD" (the day of the daily budget). */
void lkey_utc_day(char *out, size_t len);
/** The room of a channel name (borrowed bytes), copied to out (65 bytes). -EINVAL when the
 * channel is not a room channel. */
int lkey_channel_room(const char *channel, size_t chlen, char out[65]);

/* ---- transport hooks (transport.c) ---- */

/**
 * Sends script (a LEDGER_SCRIPT_*, or -1 for a plain command argv) like ledger_script. ctx
 * (ctx_len bytes, borrowed) is copied into the request, which owns it: cb receives the copy as
 * ud, and a cancelled request frees it with itself. Same returns as ledger_script.
 */
int lreq_submit(struct ledger *l, int script, int argc, const char *const *argv,
                const size_t *argvlen, ledger_reply_cb *cb, const void *ctx, size_t ctx_len,
                struct ledger_req **out_req);
/** ledger_opts.partitions (at least 1). */
long lreq_partitions(const struct ledger *l);
/** True when the ledger speaks to a Redis Cluster. */
bool lreq_cluster(const struct ledger *l);
/** True when room channels are sharded (SPUBLISH / SSUBSCRIBE: a cluster). */
bool lreq_sharded(const struct ledger *l);

/* ---- typed operations (ops.c) ---- */

/* A typed operation's state, copied into its request by lreq_submit: the caller's callback
 * (NULL: the reply is dropped) and its ud. */
struct lop {
    union {
        ledger_room_open_cb *room_open;
        ledger_room_close_cb *room_close;
        ledger_room_info_cb *room_info;
        ledger_presence_cb *presence;
        ledger_combo_cb *combo;
        ledger_room_events_cb *room_events;
        ledger_overlay_cb *overlay;
        ledger_recharge_cb *recharge;
        ledger_balance_cb *balance;
        ledger_budget_cb *budget;
        ledger_transactions_cb *transactions;
        ledger_reverse_cb *reverse;
        ledger_goal_cb *goal;
        ledger_settle_begin_cb *settle_begin;
        ledger_settle_stream_cb *settle_stream;
        ledger_settle_credit_cb *settle_credit;
        ledger_settle_end_cb *settle_end;
    } cb;
    void *ud;
};

/** Sends a typed operation: reply (the operation's parser) gets a copy of op as ud. */
int lop_submit(struct ledger *l, int script, int argc, const char *const *argv,
               ledger_reply_cb *reply, const struct lop *op, struct ledger_req **out_req);
/**
 * The typed status of a raw reply (r borrowed): the transport's status when < 0, -EPROTO for
 * an error reply (*out_error: its text, borrowed like r), else 0.
 */
int lop_status(int status, const redisReply *r, const char **out_error);
/** The integer of element i of an array reply, or false when it is not one. */
bool lop_int(const redisReply *r, size_t i, long long *out);
/** Writes "%lld" of v to out (24 bytes). Returns out. */
const char *lop_num(char out[24], long long v);

/* ---- cluster map (cluster_map.c) ---- */

/* Redis Cluster has 16384 hash slots. */
#define LSLOT_COUNT 16384

/**
 * The Redis Cluster slot of key (len bytes, borrowed, binary-safe): CRC16-XMODEM mod 16384 of
 * the hash tag when there is one (the bytes between the first '{' and the first '}' after it,
 * if any), else of the whole key; "{}" is no tag, so "{}x" hashes whole.
 */
unsigned lslot_of(const char *key, size_t len);

/* A cluster node, by the address a client connects to. */
struct lslot_node {
    char host[256];
    int port;
};

/* Who serves each slot, from CLUSTER SLOTS (masters only). Caller-supplied (32 KiB); nodes is
 * **new**, freed by lslot_map_free. */
struct lslot_map {
    struct lslot_node *nodes;
    size_t nnodes;
    int16_t owner[LSLOT_COUNT]; /* index into nodes, -1 unknown */
};

/**
 * Fills out (caller-supplied, overwritten) from a CLUSTER SLOTS reply (borrowed) given by the
 * node at asked_host:asked_port (borrowed): each range's first node is its master; replicas
 * are skipped. A NIL or empty IP means the node asked (at the port in the reply, or asked_port
 * when that is 0); a "?" endpoint (none usable) leaves its slots unknown, as do slots no range
 * covers. Nodes are deduplicated by host:port. Returns 0, -EINVAL (not a CLUSTER SLOTS reply;
 * out is then empty) or -ENOMEM. Free out with lslot_map_free in every case.
 */
int lslot_map_from_reply(const redisReply *cluster_slots, const char *asked_host, int asked_port,
                         struct lslot_map *out);

/** Frees m's nodes and marks every slot unknown; m stays usable. NULL is a no-op. */
void lslot_map_free(struct lslot_map *m);

/**
 * The index in m->nodes of host:port (host borrowed, copied), appended when absent (which may
 * move m->nodes). Returns the index, -EINVAL (host of 256 bytes or more, port not 1–65535) or
 * -ENOMEM.
 */
int lslot_map_node(struct lslot_map *m, const char *host, int port);

/**
 * Parses a redirect error reply's text (err: len bytes without the leading '-', borrowed):
 * "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>". The endpoint splits at its last
 * ':' (an IPv6 host such as "::1" keeps its colons). host (hostlen bytes) receives the host,
 * NUL-terminated: "" when Redis 7 sent none ("MOVED 3999 :6381", cluster-preferred-endpoint-type
 * unknown-endpoint: the host of the connection that got the reply), "?" verbatim when it has no
 * usable endpoint (type hostname, none announced: refresh the map). Returns 0, or -EINVAL for
 * any other text, a slot over 16383, a port not 1–65535 or a host that does not fit.
 */
int lslot_parse_redirect(const char *err, size_t len, bool *out_ask, unsigned *out_slot, char *host,
                         size_t hostlen, int *out_port);

/* ---- sharded pub/sub subscriber (shard_sub.c) ---- */

/* One connection to one Redis node holding sharded subscriptions (SSUBSCRIBE, Redis 7.0),
 * driven on a libuv loop. No automatic reconnect: the owner decides. */
struct lshard_sub;

enum lshard_event {
    LSHARD_UP = 1,       /* connected (and AUTH accepted) */
    LSHARD_DOWN,         /* the connection failed or dropped (lshard_sub_error says why); the
                            sub is dead: free it */
    LSHARD_UNSUBSCRIBED, /* channel is not subscribed here (any more): we asked (SUNSUBSCRIBE),
                            the server dropped it (its slot moved away, a failover made the node
                            a replica), or it refused our SSUBSCRIBE (MOVED: not its slot) */
    LSHARD_SUBSCRIBED,   /* the server confirmed channel's SSUBSCRIBE: messages published from
                            now on arrive */
};

/** A message (channel and msg: borrowed, valid during the call, binary-safe). */
typedef void lshard_msg_cb(void *ud, const char *channel, size_t clen, const char *msg,
                           size_t mlen);
/** An event; channel (borrowed, valid during the call) only for UNSUBSCRIBED and SUBSCRIBED,
 * else NULL. Both callbacks may call any lshard_sub_* function, lshard_sub_free included. */
typedef void lshard_event_cb(void *ud, enum lshard_event ev, const char *channel, size_t clen);

/**
 * Connects to host:port (borrowed; an IP, or a name resolved with uv_getaddrinfo, whose first
 * address is used) on loop and
 * sends AUTH password first when password (borrowed) is neither NULL nor "". Reports UP once
 * connected (and authenticated), or DOWN. Commands may be sent before UP: they go out after
 * AUTH. *out is **new** (lshard_sub_free). Returns 0, -EINVAL (bad host or port, a NULL
 * callback) or a negative errno from libuv; no callback runs before it returns.
 */
int lshard_sub_new(uv_loop_t *loop, const char *host, int port, const char *password,
                   lshard_msg_cb *on_msg, lshard_event_cb *on_event, void *ud,
                   struct lshard_sub **out);

/** Sends SSUBSCRIBE channel (borrowed, copied). SUBSCRIBED or UNSUBSCRIBED (refused) answers
 * it. Returns 0, -ENOTCONN after DOWN, -ENOMEM. */
int lshard_sub_ssubscribe(struct lshard_sub *s, const char *channel);

/** Sends SUNSUBSCRIBE channel (borrowed, copied), then a PING that marks the end of its
 * answer. UNSUBSCRIBED follows, except when the server answers -MOVED (the channel's slot is
 * not this node's: the server already dropped the channel, and said so, or it was never
 * subscribed here). Returns like lshard_sub_ssubscribe. */
int lshard_sub_sunsubscribe(struct lshard_sub *s, const char *channel);

/** 0 until DOWN; then why, as a negative errno: the libuv error of the connect, read or write
 * (-ECONNREFUSED, -ECONNRESET also for EOF …), -EACCES (AUTH refused), -EPROTO (a reply out of
 * place or bad RESP). */
int lshard_sub_error(const struct lshard_sub *s);

/** Closes the connection: no callback runs after it returns; the memory goes on a later loop
 * turn (run the loop). NULL is a no-op. */
void lshard_sub_free(struct lshard_sub *s);

#endif
