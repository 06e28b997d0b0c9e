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
    X(TRANSACTIONS, transactions)                                                                  \
    X(REVERSE, reverse)                                                                            \
    X(GOAL, goal)                                                                                  \
    X(ROOM_EVENTS, room_events)                                                                    \
    X(OVERLAY, overlay)                                                                            \
    X(DEBIT, debit)                                                                                \
    X(PUBLISH, publish)                                                                            \
    X(OUTBOX_DONE, outbox_done)                                                                    \
    X(OUTBOX_SWEEP, outbox_sweep)                                                                  \
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

/** Pub/sub message on a room's channel: room (the room's name, not the channel) and msg are
 * borrowed, valid during the call. epoch: the epoch of the room's seq that a seq-carrying
 * event (gift, combo_end, goal_reached) belongs to; 0 for the other messages. */
typedef void ledger_room_message_cb(void *ud, const char *room, long long epoch, const char *msg,
                                    size_t msg_len);

typedef void ledger_state_cb(void *ud, enum ledger_state state);

/** A room's channel is subscribed and Redis confirmed it: what is published on it from now on
 * arrives. room is borrowed, valid during the call. */
typedef void ledger_room_subscribed_cb(void *ud, const char *room);

struct ledger_opts {
    const char *url;     /* redis://[:password@]host:port[/db] or unix:///path[?db=N] (borrowed) */
    const char *cluster; /* instead of url: a Redis Cluster's seed nodes, "host:port" or
                            "redis://[:password@]host:port", comma separated (borrowed) */
    long timeout_ms;     /* deadline of a request from the call that makes it */
    long max_inflight;   /* requests sent but not answered; more wait in a queue */
    long partitions;     /* ledger.partitions */
    long idempotency_ttl_s; /* ledger.idempotency_ttl_s: how long a send's outcome is kept */
    long combo_window_ms;   /* gifts.combo_window_ms */
    long history_size;      /* rooms.history_size: events a room keeps for resumes */
    long history_ttl_s;     /* rooms.history_ttl_s: how long it keeps them */
    long tx_history_size;   /* ledger.history_size: transactions kept per user */
    long tx_history_ttl_s;  /* ledger.history_ttl_s: how long they are kept */
    long outbox_grace_ms;   /* cluster: a charged send not yet published after this is published
                               by any node's outbox sweep (ledger.outbox_grace_ms) */
    ledger_state_cb *on_state;
    ledger_message_cb *on_message;           /* every message, with its raw channel (may be NULL) */
    ledger_room_message_cb *on_room_message; /* messages of room channels (may be NULL) */
    ledger_room_subscribed_cb *on_room_subscribed; /* may be NULL */
    void *ud;                                      /* passed to the callbacks above */
};

/** Parses a redis URL. out_host gets the host or the socket path. Returns 0 or -EINVAL. */
int ledger_url_parse(const char *url, char *out_host, size_t hostlen, int *out_port, int *out_db,
                     char *out_password, size_t passlen, bool *out_unix);

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
    uint64_t errors; /* timeouts and lost connections */
    uint64_t timeouts;
    uint64_t reconnects;
    uint64_t redirects; /* cluster: MOVED, ASK, TRYAGAIN and CLUSTERDOWN answers followed */
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
/* Under load, a batch leaves at most this often (the sends of the meantime join it). 4 ms
 * rather than 2 costs p99 answers 2 ms at 4,000 gifts/s and saves about a tenth of Redis's CPU
 * per gift (twice the sends share each call's fixed cost: parsing, syscalls, MGET/MSET). */
#define LEDGER_GIFT_BATCH_INTERVAL_MS 4
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
    bool anonymous;              /* not on the leaderboard; its combo is apart from named ones */
    const char *event_from_gift; /* the event's "from":…,"anonymous":…,"gift":{…} JSON text */
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
    uint64_t swept;   /* cluster: charged sends published by this node's outbox sweep */
    size_t queued;
};
void ledger_get_gift_stats(const struct ledger *l, struct ledger_gift_stats *out);

/** The user partition of sub: FNV-1a 32 of sub, modulo partitions. */
unsigned ledger_partition(const char *sub, long partitions);

/** Milliseconds of CLOCK_REALTIME. */
int64_t ledger_now_ms(void);

/* ==== Typed operations (ops.c, ops_settle.c) ====
 *
 * The ledger's operations for server/: each builds its keys (the keyspace of keys.c) and its
 * script's argument vector, and parses the reply into a typed struct. server/ never formats a
 * key, a channel or an argument vector.
 *
 * Common contract of every operation below:
 * - Returns 0 (the callback will be called exactly once, unless the request is cancelled with
 *   ledger_req_cancel), -EAGAIN when the connection is down (nothing sent, callback not
 *   called), -ENOMEM, or -EINVAL for a request that cannot be encoded (nothing sent).
 * - Every pointer of a request is **borrowed** for the call only (it is copied).
 * - cb may be NULL: the request is sent and its reply dropped. ud is passed to cb as is.
 * - out_req (may be NULL) receives a handle valid until cb runs or ledger_req_cancel; a
 *   cancelled operation frees its own state and never calls cb.
 * - The callback's status: 0, r is the parsed reply; -EPROTO, Redis answered with an error
 *   reply (a script error): r is a zeroed reply whose `error` is Redis's text; otherwise r is
 *   NULL: -ETIMEDOUT (deadline passed), -ECONNRESET (connection lost after sending: outcome
 *   unknown), -ECANCELED (ledger freed), -EBADMSG (a reply of an unexpected shape), -ENOMEM.
 * - r and every pointer in it are **borrowed**, valid during the callback only.
 */

/* -- rooms -- */

/** PUT /v1/rooms: open (or re-open) a room's live session. */
struct ledger_room_open_req {
    const char *room;
    const char *creator_id;
    const char *creator_name;
    const char *title; /* NULL or "": keeps a live room's title, none for a new session */
};
struct ledger_room_open_reply {
    bool accepted;     /* false: the room is live with another creator; nothing changed */
    long long session; /* the live session's number (accepted) */
    bool opened;       /* true: opened now; false: it was already live with this creator */
    const char *error;
};
typedef void ledger_room_open_cb(void *ud, int status, const struct ledger_room_open_reply *r);
/** Opens a room; a newly opened room's room_opened control message reaches every node that
 * subscribed to it (ledger_opts.on_room_message). */
int ledger_room_open(struct ledger *l, const struct ledger_room_open_req *req,
                     ledger_room_open_cb *cb, void *ud, struct ledger_req **out_req);

struct ledger_room_close_reply {
    bool found;  /* false: the room never existed */
    bool closed; /* true: it was live and is closed now (room_closed published) */
    const char *error;
};
typedef void ledger_room_close_cb(void *ud, int status, const struct ledger_room_close_reply *r);
/** The room_closed event of room, as a close publishes it, into out (len bytes); returns its
 * length (snprintf's). */
int ledger_room_closed_event(char *out, size_t len, const char *room);
/** Ends room's live session and publishes room_closed to its viewers on every node. */
int ledger_room_close(struct ledger *l, const char *room, ledger_room_close_cb *cb, void *ud,
                      struct ledger_req **out_req);

/** One leaderboard entry of a room. */
struct ledger_room_top {
    const char *id;
    const char *name_json; /* the sender's name as JSON text (a quoted string) */
    long long coins;
};
struct ledger_room_info_reply {
    bool found; /* false: no such room (other fields zero) */
    bool live;
    const char *creator_id;
    const char *creator_name;
    const char *title;
    long long gifts, coins, diamonds; /* the session's totals */
    long long viewers;                /* on every node, from the presence hash */
    long long seq;                    /* the room's last event seq */
    long long epoch;                  /* the epoch of that seq (SPEC 3.4) */
    long long session;
    const struct ledger_room_top *top; /* ntop entries, highest first */
    size_t ntop;
    const char *goal_json; /* the room's goal as JSON text, "null" when none */
    const char *error;
};
typedef void ledger_room_info_cb(void *ud, int status, const struct ledger_room_info_reply *r);
/** GET /v1/rooms/{room}: a room's public state with its top_n senders. */
int ledger_room_info(struct ledger *l, const char *room, long top_n, ledger_room_info_cb *cb,
                     void *ud, struct ledger_req **out_req);

/** This node's viewer count of a room, written to (or read from) the room's presence. */
struct ledger_presence_req {
    const char *room;
    const char *node_id;
    long count;               /* this node's viewers; < 0: only read */
    long ttl_ms;              /* the count expires unless refreshed within this time */
    long publish_interval_ms; /* publish viewers, leaderboard at most this often; < 0 never */
    long leaderboard_size;    /* entries of a published leaderboard */
};
struct ledger_presence_reply {
    bool live;
    const char *creator_id;
    const char *creator_name;
    long long seq;         /* the room's last event seq */
    long long epoch;       /* the epoch of that seq (live rooms; 0 otherwise) */
    long long viewers;     /* on every node */
    const char *goal_json; /* the room's goal as JSON text, "null" when none */
    const char *error;
};
typedef void ledger_presence_cb(void *ud, int status, const struct ledger_presence_reply *r);
/** Records a node's viewer count of a room and reads the room's state. */
int ledger_presence(struct ledger *l, const struct ledger_presence_req *req, ledger_presence_cb *cb,
                    void *ud, struct ledger_req **out_req);

struct ledger_combo_reply {
    long long ended;       /* combos ended now (one combo_end event each) */
    long long next_due_ms; /* the next combo deadline, Redis's clock; -1 none */
    long long now_ms;      /* Redis's clock when the sweep ran */
    const char *error;
};
typedef void ledger_combo_cb(void *ud, int status, const struct ledger_combo_reply *r);
/** Ends the combos of room whose window has passed (all: every open combo, a room closing). */
int ledger_combo_sweep(struct ledger *l, const char *room, bool all, ledger_combo_cb *cb, void *ud,
                       struct ledger_req **out_req);

/** The kept events of a room after a seq (SPEC 3.4, GET /v1/rooms/{room}/events). */
struct ledger_room_events_reply {
    bool found;          /* false: no such room (other fields zero) */
    long long seq;       /* the room's last event seq */
    long long epoch;     /* its epoch */
    bool complete;       /* false: some events after since_seq were already dropped */
    bool live;           /* the room is open */
    const char **events; /* nevents event texts (JSON objects) in seq order, as first sent */
    const size_t *lens;
    size_t nevents;
    const char *error;
};
typedef void ledger_room_events_cb(void *ud, int status, const struct ledger_room_events_reply *r);
/** At most limit events of room after since_seq (>= 0): kept are the last history_size
 * events younger than history_ttl_s. */
int ledger_room_events(struct ledger *l, const char *room, long long since_seq, long limit,
                       ledger_room_events_cb *cb, void *ud, struct ledger_req **out_req);

/* An overlay control (SPEC 5, POST /v1/rooms/{room}/overlay). */
enum ledger_overlay_action {
    LEDGER_OVERLAY_SKIP = 1,
    LEDGER_OVERLAY_PAUSE,
    LEDGER_OVERLAY_RESUME,
    LEDGER_OVERLAY_REPLAY,
};
struct ledger_overlay_req {
    const char *room;
    enum ledger_overlay_action action;
    long long seq;      /* REPLAY: the event to show again */
    const char *caller; /* NULL for the service; else the user, who must be the creator */
};
enum ledger_overlay_outcome {
    LEDGER_OVERLAY_SENT = 1,    /* published to the room's overlays */
    LEDGER_OVERLAY_NO_ROOM,     /* the room never existed */
    LEDGER_OVERLAY_NOT_CREATOR, /* the caller is not the room's creator */
    LEDGER_OVERLAY_NOT_KEPT,    /* REPLAY: no kept event with that seq */
};
struct ledger_overlay_reply {
    enum ledger_overlay_outcome outcome;
    const char *event_json; /* SENT: the overlay event as published */
    const char *error;
};
typedef void ledger_overlay_cb(void *ud, int status, const struct ledger_overlay_reply *r);
/** Sends a control to a room's overlays (on every node) through its channel. */
int ledger_overlay(struct ledger *l, const struct ledger_overlay_req *req, ledger_overlay_cb *cb,
                   void *ud, struct ledger_req **out_req);

/** SUBSCRIBE / UNSUBSCRIBE to room's channel (its messages reach on_room_message). 0, or
 * -EAGAIN while the pub/sub connection is down. */
int ledger_room_subscribe(struct ledger *l, const char *room);
int ledger_room_unsubscribe(struct ledger *l, const char *room);

/* -- users and money -- */

struct ledger_recharge_req {
    const char *user;
    const char *payment_id;
    const char *package; /* the package's id for the transaction history; NULL or "" none */
    long long coins;     /* > 0 */
};
struct ledger_recharge_reply {
    bool duplicate;     /* the payment was credited before: nothing changed */
    long long credited; /* coins credited by this payment (the first time) */
    long long balance;  /* the user's balance now */
    const char *error;
};
typedef void ledger_recharge_cb(void *ud, int status, const struct ledger_recharge_reply *r);
/** Credits coins to user once per payment_id. */
int ledger_recharge(struct ledger *l, const struct ledger_recharge_req *req, ledger_recharge_cb *cb,
                    void *ud, struct ledger_req **out_req);

/* A room's goal (SPEC 3.2, 5): set (replacing the current one) or cleared. */
struct ledger_goal_req {
    const char *room;
    bool clear;             /* true: remove the goal (the fields below are unused) */
    const char *caller;     /* NULL for the service; else the user, who must be the creator */
    const char *gift;       /* a catalog gift id for a count goal, NULL or "" for coins */
    long long target;       /* >= 1 */
    const char *title_json; /* the title as a JSON string */
};
enum ledger_goal_outcome {
    LEDGER_GOAL_DONE = 1,    /* set or cleared; the room got a goal event */
    LEDGER_GOAL_NOT_LIVE,    /* the room is not live: nothing changed */
    LEDGER_GOAL_NOT_CREATOR, /* the caller is not the room's creator: nothing changed */
};
struct ledger_goal_reply {
    enum ledger_goal_outcome outcome;
    const char *goal_json; /* DONE: the goal as JSON text, "null" after a clear */
    const char *error;
};
typedef void ledger_goal_cb(void *ud, int status, const struct ledger_goal_reply *r);
/** Sets or clears a live room's goal and sends the room a goal event. */
int ledger_goal(struct ledger *l, const struct ledger_goal_req *req, ledger_goal_cb *cb, void *ud,
                struct ledger_req **out_req);

/* A reversal of a recharge (its payment was refunded or charged back). */
struct ledger_reverse_req {
    const char *user;
    const char *payment_id;
    const char *reason_json; /* a JSON string, or NULL */
};
enum ledger_reverse_outcome {
    LEDGER_REVERSED = 1,      /* taken back now */
    LEDGER_REVERSE_DUPLICATE, /* taken back before: nothing changed */
    LEDGER_REVERSE_NOT_FOUND, /* the payment was never recharged: nothing changed */
};
struct ledger_reverse_reply {
    enum ledger_reverse_outcome outcome;
    long long reversed; /* coins taken back (the first time) */
    long long balance;  /* the user's balance now (below zero: debt) */
    const char *error;
};
typedef void ledger_reverse_cb(void *ud, int status, const struct ledger_reverse_reply *r);
/** Takes back, once per payment_id, the coins its recharge credited (the balance may go below
 * zero). */
int ledger_reverse(struct ledger *l, const struct ledger_reverse_req *req, ledger_reverse_cb *cb,
                   void *ud, struct ledger_req **out_req);

struct ledger_balance_reply {
    long long coins;    /* 0 for an unknown user */
    long long diamonds; /* 0 for an unknown user */
    const char *error;
};
typedef void ledger_balance_cb(void *ud, int status, const struct ledger_balance_reply *r);
/** A user's coins and diamonds. */
int ledger_balance(struct ledger *l, const char *user, ledger_balance_cb *cb, void *ud,
                   struct ledger_req **out_req);

/* What a budget request does to one cap. */
enum ledger_cap_change {
    LEDGER_CAP_KEEP = 0, /* leave it as it is */
    LEDGER_CAP_SET,      /* set it to the given coins */
    LEDGER_CAP_CLEAR,    /* remove it */
};
struct ledger_budget_req {
    const char *user;
    enum ledger_cap_change daily, monthly; /* all KEEP: only read */
    long long daily_coins, monthly_coins;  /* SET: the cap, >= 0 */
};
struct ledger_budget_reply {
    bool daily_capped, monthly_capped; /* a cap is set */
    long long daily_coins;             /* the daily cap (daily_capped) */
    long long monthly_coins;           /* the monthly cap (monthly_capped) */
    long long spent_today;             /* coins spent on the current UTC day */
    long long spent_this_month;        /* coins spent in the current UTC calendar month */
    const char *error;
};
typedef void ledger_budget_cb(void *ud, int status, const struct ledger_budget_reply *r);
/** Reads, sets or clears a user's daily and monthly coin caps. */
int ledger_budget(struct ledger *l, const struct ledger_budget_req *req, ledger_budget_cb *cb,
                  void *ud, struct ledger_req **out_req);

/* A page of a user's transactions. */
struct ledger_transactions_req {
    const char *user;
    long limit;       /* entries at most (a page may run past it to keep entries of one ts_ms) */
    long long before; /* only entries older than this ts_ms; < 0: the newest */
};
struct ledger_transactions_reply {
    size_t n;
    const char *const *entries; /* n JSON objects as text, newest first (borrowed: the call) */
    const size_t *lens;
    long long next_before; /* before for the next page, -1 on the last page */
    const char *error;
};
typedef void ledger_transactions_cb(void *ud, int status,
                                    const struct ledger_transactions_reply *r);
/** Reads a page of user's transactions (recharges, reversals, gifts), newest first, within
 * ledger.history_ttl_s. */
int ledger_transactions(struct ledger *l, const struct ledger_transactions_req *req,
                        ledger_transactions_cb *cb, void *ud, struct ledger_req **out_req);

/* -- settlement (SPEC 7; the flusher's four steps per partition) -- */

/** One settlement row: the totals of one (creator, room, gift) in one batch. */
struct ledger_settle_row {
    char creator[65];
    char room[65];
    char gift[65];
    long long count;
    long long coins;
    long long diamonds;
    long long first_ts_ms;
    long long last_ts_ms;
};

struct ledger_settle_begin_req {
    unsigned partition;
    const char *node_id; /* the flush lease's holder */
    long lease_ms;       /* the lease's length; 0: the node leaves, give its lease up */
};
enum ledger_settle_outcome {
    LEDGER_SETTLE_HELD = 0,  /* another node holds the partition's flush lease */
    LEDGER_SETTLE_IDLE = 1,  /* nothing to settle */
    LEDGER_SETTLE_BATCH = 2, /* a batch to settle: new, or the one a crash left (its old id) */
};
struct ledger_settle_begin_reply {
    enum ledger_settle_outcome outcome;
    char batch[64]; /* LEDGER_SETTLE_BATCH: "p<partition>-<seq>-<ms>" */
    long long seq;  /* LEDGER_SETTLE_BATCH: the batch's seq in its partition */
    const struct ledger_settle_row *rows; /* LEDGER_SETTLE_BATCH: nrows rows (copy to keep) */
    size_t nrows;
    const char *error;
};
typedef void ledger_settle_begin_cb(void *ud, int status,
                                    const struct ledger_settle_begin_reply *r);
/** Step 1: under the partition's flush lease, moves its pending earnings to a batch. A batch
 * whose reply (or one of its rows) does not parse is answered -EBADMSG and stays in Redis. */
int ledger_settle_begin(struct ledger *l, const struct ledger_settle_begin_req *req,
                        ledger_settle_begin_cb *cb, void *ud, struct ledger_req **out_req);

struct ledger_settle_stream_req {
    const char *stream; /* the settlements stream's key (flush.stream) */
    unsigned partition;
    const char *batch;
    long long seq;
    const struct ledger_settle_row *rows;
    size_t nrows;
};
struct ledger_settle_stream_reply {
    long long added; /* entries added; 0: this batch was already written; -1: a later batch of
                      * the partition was (a delayed re-delivery, nothing written) */
    const char *error;
};
typedef void ledger_settle_stream_cb(void *ud, int status,
                                     const struct ledger_settle_stream_reply *r);
/** Step 2 (redis-stream sink): appends a batch's rows to the stream at most once. */
int ledger_settle_stream(struct ledger *l, const struct ledger_settle_stream_req *req,
                         ledger_settle_stream_cb *cb, void *ud, struct ledger_req **out_req);

struct ledger_settle_credit_req {
    const char *creator;
    unsigned partition; /* the batch's partition */
    long long seq;      /* the batch's seq */
    long long diamonds;
};
struct ledger_settle_credit_reply {
    bool credited; /* false: this batch (or a later one) was already credited */
    const char *error;
};
typedef void ledger_settle_credit_cb(void *ud, int status,
                                     const struct ledger_settle_credit_reply *r);
/** Step 3: credits a creator's diamonds of one batch at most once. */
int ledger_settle_credit(struct ledger *l, const struct ledger_settle_credit_req *req,
                         ledger_settle_credit_cb *cb, void *ud, struct ledger_req **out_req);

struct ledger_settle_end_req {
    unsigned partition;
    const char *batch;
};
struct ledger_settle_end_reply {
    bool ended; /* false: it was no longer the partition's settling batch */
    const char *error;
};
typedef void ledger_settle_end_cb(void *ud, int status, const struct ledger_settle_end_reply *r);
/** Step 4: forgets a written and credited batch if it is still the partition's settling one. */
int ledger_settle_end(struct ledger *l, const struct ledger_settle_end_req *req,
                      ledger_settle_end_cb *cb, void *ud, struct ledger_req **out_req);

#endif
