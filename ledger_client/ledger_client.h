/* ledger_client: giftd's Redis client — hiredis async on the server's libuv loop, Lua scripts,
 * pipelining with a bounded number in flight, deadlines, reconnects, pub/sub. */
#ifndef GIFTD_LEDGER_CLIENT_H
#define GIFTD_LEDGER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <uv.h>

/* The Lua scripts of ledger_client/scripts/, by name. X(enum suffix, file stem) */
#define LEDGER_SCRIPTS(X)                                                                          \
    X(ROOM_OPEN, room_open)                                                                        \
    X(ROOM_CLOSE, room_close)                                                                      \
    X(ROOM_PRESENCE, room_presence)                                                                \
    X(ROOM_INFO, room_info)                                                                        \
    X(GIFT, gift)                                                                                  \
    X(RECHARGE, recharge)                                                                          \
    X(BUDGET, budget)                                                                              \
    X(COMBO, combo)                                                                                \
    X(SETTLE_BEGIN, settle_begin)                                                                  \
    X(SETTLE_STREAM, settle_stream)                                                                \
    X(SETTLE_CREDIT, settle_credit)                                                                \
    X(SETTLE_END, settle_end)

enum ledger_script {
#define LEDGER_X_ENUM(name, stem) LEDGER_SCRIPT_##name,
    LEDGER_SCRIPTS(LEDGER_X_ENUM)
#undef LEDGER_X_ENUM
        LEDGER_SCRIPT__COUNT
};

struct ledger;
struct ledger_req;

/* What a connection state change reports to ledger_opts.on_state. */
enum ledger_state {
    LEDGER_DOWN = 0, /* the command connection is lost; requests fail fast with -EAGAIN */
    LEDGER_UP,       /* the command connection is up and the scripts are loaded */
    LEDGER_SUB_UP,   /* the pub/sub connection is (re)established: subscribe again */
};

/**
 * Reply callback. status 0: reply (borrowed, valid during the call) is Redis's answer, which
 * may be an error reply. status < 0: no reply; -ETIMEDOUT (deadline passed), -ECONNRESET
 * (connection lost after sending: outcome unknown), -ECANCELED (ledger freed).
 */
typedef void ledger_reply_cb(void *ud, int status, const redisReply *reply);

/** Pub/sub message (all borrowed, valid during the call): one room event; a message carrying
 * several (one per line) is delivered as several calls. */
typedef void ledger_message_cb(void *ud, const char *channel, size_t channel_len, const char *msg,
                               size_t msg_len);

typedef void ledger_state_cb(void *ud, enum ledger_state state);

struct ledger_opts {
    const char *url;     /* redis://[:password@]host:port[/db] or unix:///path[?db=N] (borrowed) */
    long timeout_ms;     /* deadline of a request from the call that makes it */
    long max_inflight;   /* requests sent but not answered; more wait in a queue */
    long partitions;     /* ledger.partitions */
    long idempotency_ttl_s; /* ledger.idempotency_ttl_s: how long a send's outcome is kept */
    long combo_window_ms;   /* gifts.combo_window_ms */
    long history_size;      /* events a room keeps for gap recovery */
    ledger_state_cb *on_state;
    ledger_message_cb *on_message;
    void *ud; /* passed to on_state and on_message */
};

/** Parses a redis URL. out_host gets the host or the socket path. Returns 0 or -EINVAL. */
int ledger_url_parse(const char *url, char *out_host, size_t hostlen, int *out_port,
                     int *out_db, char *out_password, size_t passlen, bool *out_unix);

/**
 * Creates the client on loop (borrowed; must outlive the ledger) and starts connecting.
 * opts is copied (url too). *out is **new** (ledger_free). Returns 0, -EINVAL, -ENOMEM.
 */
int ledger_new(uv_loop_t *loop, const struct ledger_opts *opts, struct ledger **out);

/**
 * Closes both connections; every pending request is answered -ECANCELED before this returns.
 * Handles close on the next loop turns: run the loop once more before closing it. NULL no-op.
 */
void ledger_free(struct ledger *l);

/** True when the command connection is up with its scripts loaded. */
bool ledger_ready(const struct ledger *l);

/**
 * Sends one command: argv[0..argc) (borrowed, copied) e.g. {"GET", key}.
 * Returns 0 (cb will be called exactly once, unless the request is cancelled), -EAGAIN when
 * the connection is down (nothing sent, cb not called), -ENOMEM.
 * out_req (may be NULL) receives a handle valid until cb runs or ledger_req_cancel.
 */
int ledger_command(struct ledger *l, int argc, const char *const *argv, const size_t *argvlen,
                   ledger_reply_cb *cb, void *ud, struct ledger_req **out_req);

/**
 * Runs a script with EVALSHA: argv is {numkeys, keys…, args…}. On NOSCRIPT it is resent as
 * EVAL (which also reloads it). Same returns as ledger_command.
 */
int ledger_script(struct ledger *l, enum ledger_script script, int argc, const char *const *argv,
                  const size_t *argvlen, ledger_reply_cb *cb, void *ud,
                  struct ledger_req **out_req);

/** Detaches the callback of a pending request: it will not be called. The request itself
 * still completes in Redis. */
void ledger_req_cancel(struct ledger_req *req);

/** SUBSCRIBE / UNSUBSCRIBE channel (borrowed) on the pub/sub connection. -EAGAIN when down. */
int ledger_subscribe(struct ledger *l, const char *channel);
int ledger_unsubscribe(struct ledger *l, const char *channel);

/* Counters for /metrics. */
struct ledger_stats {
    uint64_t requests;
    uint64_t errors;   /* timeouts and lost connections */
    uint64_t timeouts;
    uint64_t reconnects;
    long inflight;
    long queued;
    /* Round-trip latency histogram: counts of requests at or below each bound (cumulative). */
    uint64_t latency_le[12];
    uint64_t latency_count;
    double latency_sum_s;
};
extern const double ledger_latency_bounds_s[12];
void ledger_get_stats(const struct ledger *l, struct ledger_stats *out);

/* ---- gift sends (send.c) ----
 * The sends of one loop turn go to Redis as one script call (gift.lua) that charges and
 * broadcasts each of them atomically, with its own outcome; idle, a batch is one send. */

/* The most sends in one script call. */
#define LEDGER_GIFT_BATCH_MAX 256
/* Under load, a batch leaves at most this often (the sends of the meantime join it). */
#define LEDGER_GIFT_BATCH_INTERVAL_MS 2
/* Batches waiting for Redis before new sends wait for the next turn (and grow the batch). */
#define LEDGER_GIFT_BATCHES_INFLIGHT 2

/* One gift send (all strings borrowed for the call; identifiers already validated). */
struct ledger_gift_req {
    const char *sub;             /* the sender */
    const char *name_json;       /* the sender's display name as a JSON string */
    const char *id;              /* the client's idempotency key */
    const char *room;            /* the room (live, checked by the caller) */
    const char *creator;         /* the room's creator */
    const char *gift;            /* catalog id */
    long coins, diamonds;        /* per unit, from the catalog */
    long count;                  /* >= 1 */
    bool streakable;             /* may continue a combo */
    const char *event_from_gift; /* the event's "from":{…},"gift":{…} JSON text */
};

enum ledger_gift_outcome {
    LEDGER_GIFT_COMMITTED = 1, /* charged and broadcast now */
    LEDGER_GIFT_DUPLICATE,     /* (sub, id) was committed before: its first outcome */
    LEDGER_GIFT_REFUSED,       /* nothing written: see refusal */
    LEDGER_GIFT_ID_REUSED,     /* (sub, id) was committed with another gift or count */
};

struct ledger_gift_reply {
    enum ledger_gift_outcome outcome;
    const char *refusal; /* REFUSED: "insufficient_funds" or "budget_exceeded" (static) */
    long long balance;   /* after the send (COMMITTED, DUPLICATE), or now (REFUSED) */
    long long seq;       /* the gift event's room seq (COMMITTED, DUPLICATE) */
};

/**
 * Outcome of a send or lookup. status 0: r (borrowed, valid during the call) is the outcome.
 * status < 0, r NULL: -EAGAIN (never sent: nothing was charged), -ETIMEDOUT or -ECONNRESET
 * (sent, outcome unknown: a retry with the same id learns it), -EPROTO (unexpected reply),
 * -ECANCELED (ledger freed), and for a lookup -ENOENT (no send with that id was committed).
 */
typedef void ledger_gift_cb(void *ud, int status, const struct ledger_gift_reply *r);

struct ledger_gift_op;

/**
 * Queues a send for this loop turn's batch. req is copied. Returns 0 (cb is called exactly
 * once, unless cancelled), -EAGAIN (Redis down: nothing sent, cb not called), -EBUSY (overload:
 * the queue is not draining within the deadline; nothing sent), -EINVAL, -ENOMEM.
 * out_op (may be NULL) gets a handle valid until cb runs.
 */
int ledger_gift_send(struct ledger *l, const struct ledger_gift_req *req, ledger_gift_cb *cb,
                     void *ud, struct ledger_gift_op **out_op);

/**
 * The first outcome of (sub, id), for a send refused before it reached Redis (a retry after
 * the room closed, say): DUPLICATE with its balance and seq, ID_REUSED when gift or count
 * differ, status -ENOENT when it was never committed. Same returns as ledger_gift_send.
 */
int ledger_gift_lookup(struct ledger *l, const char *sub, const char *id, const char *gift,
                       long count, ledger_gift_cb *cb, void *ud, struct ledger_gift_op **out_op);

/** Detaches the callback of a pending send or lookup: it will not be called. */
void ledger_gift_cancel(struct ledger_gift_op *op);

struct ledger_gift_stats {
    uint64_t batches;       /* script calls */
    uint64_t batched_sends; /* sends in them */
    uint64_t committed;
    uint64_t expired; /* waited past the deadline without being sent */
    uint64_t shed;    /* refused at once: the queue was not draining within the deadline */
    size_t queued;
};
void ledger_get_gift_stats(const struct ledger *l, struct ledger_gift_stats *out);

/** The user partition of sub: FNV-1a 32 of sub, modulo partitions. */
unsigned ledger_partition(const char *sub, long partitions);

/** Milliseconds of CLOCK_REALTIME. */
int64_t ledger_now_ms(void);

#endif
