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
/** A room's pub/sub channel: "giftd:room:<room>". */
void lkey_channel(char *out, size_t len, const char *room);
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

#endif

/* ---- cluster map (cluster_map.c) ---- */
struct redisReply;
/** The Redis Cluster slot of a key: CRC16-XMODEM mod 16384 of its hash tag, or of the whole
 * key when it has none. */
unsigned lslot_of(const char *key, size_t len);
struct lslot_node {
    char host[256];
    int port;
};
struct lslot_map {
    struct lslot_node *nodes;
    size_t nnodes;
    int16_t owner[16384]; /* index into nodes, -1 unknown */
};
/** The masters of a CLUSTER SLOTS reply (an empty or NULL IP is the node asked). out is
 * **new** (lslot_map_free). 0, -EINVAL, -ENOMEM. */
int lslot_map_from_reply(const struct redisReply *cluster_slots, const char *asked_host,
                         int asked_port, struct lslot_map *out);
void lslot_map_free(struct lslot_map *m);
/** Index of host:port in m, added when absent; -ENOMEM. */
int lslot_map_node(struct lslot_map *m, const char *host, int port);
/** "MOVED slot host:port" or "ASK slot host:port" (host "" when the reply gives none: the
 * connection's). 0 or -EINVAL. */
int lslot_parse_redirect(const char *err, size_t len, bool *out_ask, unsigned *out_slot,
                         char *host, size_t hostlen, int *out_port);
