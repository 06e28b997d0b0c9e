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
    X(DEBIT, debit)                                                                                \
    X(PUBLISH, publish)                                                                            \
    X(RECHARGE, recharge)                                                                          \
    X(BUDGET, budget)                                                                              \
    X(SWEEP, sweep)                                                                                \
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

/** Pub/sub message (all borrowed, valid during the call). */
typedef void ledger_message_cb(void *ud, const char *channel, size_t channel_len, const char *msg,
                               size_t msg_len);

typedef void ledger_state_cb(void *ud, enum ledger_state state);

struct ledger_opts {
    const char *url;     /* redis://[:password@]host:port[/db] or unix:///path[?db=N] (borrowed) */
    long timeout_ms;     /* deadline of a request from the call that makes it */
    long max_inflight;   /* requests sent but not answered; more wait in a queue */
    long partitions;     /* ledger.partitions */
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

/** The user partition of sub: FNV-1a 32 of sub, modulo partitions. */
unsigned ledger_partition(const char *sub, long partitions);

/** Milliseconds of CLOCK_REALTIME. */
int64_t ledger_now_ms(void);

#endif
