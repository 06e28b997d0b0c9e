/* server: giftd's process — lws on a libuv loop it owns, sessions, rooms, fan-out, HTTP API. */
#ifndef GIFTD_SERVER_H
#define GIFTD_SERVER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>
#include <uv.h>

#include "auth/auth.h"
#include "config/config.h"
#include "gifts/gifts.h"
#include "ledger_client/ledger_client.h"
#include "protocol/protocol.h"

struct app;
struct room;
struct session;

/* ---- metrics (metrics.c) ---- */

struct metrics {
    uint64_t connections_total;
    long connections;
    uint64_t frames_in;
    uint64_t frames_out;
    uint64_t bytes_out;
    uint64_t events_out;     /* room events delivered (one frame may carry several) */
    uint64_t batch_frames;   /* frames that packed more than one event */
    uint64_t batch_le[6];    /* frames by events packed: <=1, <=4, <=16, <=64, <=256, more */
    uint64_t slow_consumers; /* closed 4008 */
    uint64_t errors[PROTO_ERR__COUNT];
    uint64_t gifts_accepted;
    uint64_t gifts_duplicate;
    uint64_t gifts_rejected[PROTO_ERR__COUNT];
    uint64_t coins_debited;
    uint64_t events_published; /* gift events this node's sends published */
    uint64_t http_requests;
};

/** Appends the Prometheus text of every giftd_ metric. */
void metrics_render(struct app *app, struct proto_buf *out);

/* ---- fan-out (rooms.c) ---- */

/* A batch frame stops growing once it holds this many bytes (one more event may follow). */
#define FANOUT_BATCH_MAX_BYTES (256 * 1024)
/* The most lws sends in one send(): a whole batch frame, its last event and its header. */
#define FANOUT_TX_MAX (FANOUT_BATCH_MAX_BYTES + 64 * 1024)
/* Frames written per slice of a pass (each costs about 10-20 us of CPU on loopback). */
#define FANOUT_SLICE 32

/* One encoded room event, shared by every viewer of the room on this node. */
struct fanout_msg {
    uint64_t seq;      /* room seq, 0 for events without one */
    bool closes_room;  /* room_closed: viewers leave the room after it */
    size_t len;        /* text length */
    unsigned char buf[]; /* LWS_PRE bytes of headroom, then the text */
};

/** **new** message holding a copy of text (len bytes), or NULL on OOM. */
struct fanout_msg *fanout_msg_new(const char *text, size_t len);

/* A room on this node: its local viewers and its ring of recent events. */
struct room {
    char name[65];
    struct room *hnext; /* hash chain */
    struct app *app;
    struct session *viewers; /* doubly linked through session->rnext/rprev */
    long nviewers;
    long joining;  /* joins awaiting Redis */
    long reported; /* count last written to the presence hash, -1 never */
    bool live;
    char creator_id[65];
    char creator_name[65];
    bool subscribed;
    bool dirty;           /* has events not yet passed to all its viewers */
    struct room *dnext;   /* the app's list of dirty rooms */
    struct session *pass_next; /* where the pass over the viewers resumes, NULL: a new pass */
    uint64_t pass_head;        /* head when the current pass began */
    int64_t combo_due_ms; /* a combo of this room may end at this time, 0 none known */
    bool combo_sweeping;  /* a combo sweep of this room awaits Redis */
    struct fanout_msg **ring; /* ring_cap slots, indexed by absolute position % ring_cap */
    size_t ring_cap;
    uint64_t head;    /* absolute position of the next event */
    uint64_t tail;    /* events before it are freed (sent to every viewer, or overwritten) */
    uint64_t trim_at; /* head at which to look for events to free next */
};

/** The room record for name, created (empty, not subscribed) when create is true. */
struct room *rooms_get(struct app *app, const char *name, bool create);
/** Frees a room with no viewers (unsubscribing). */
void rooms_release(struct app *app, struct room *room);
/** Appends an event to the room's ring and wakes its viewers. steals msg. */
void rooms_broadcast(struct room *room, struct fanout_msg *msg);
/** End of a loop turn (uv_check): sends the new events of the dirty rooms to their viewers,
 * directly where their sockets take them, through WRITEABLE where they do not. One call
 * writes at most FANOUT_SLICE frames; an unfinished pass resumes after the next poll (which
 * then does not wait), so new input is taken between slices of a long pass. */
void rooms_fanout_pass(struct app *app);
/** WRITEABLE step for room events: one frame with everything pending (a batch when several).
 * Returns -1 when the session must close (slow consumer or write failure). */
int fanout_write(struct session *s);
/** Adds a session to a room's local viewers; its cursor starts after the event with seq
 * after_seq still in the ring (so events that raced the join are not lost). */
void rooms_attach(struct room *room, struct session *s, uint64_t after_seq);
/** Removes a session from its room (releasing the room when it was the last). */
void rooms_detach(struct session *s);
/** Pub/sub message from Redis for a room (name and msg borrowed, valid during the call). */
void rooms_on_message(struct app *app, const char *room, const char *msg, size_t len);
/** Subscribes again to every room with local viewers (after a pub/sub reconnect). */
void rooms_resubscribe(struct app *app);
/* The presence work of one interval is spread over this many ticks (a slice of the rooms
 * each), so that a thousand rooms do not all run their presence script, and publish their
 * leaderboards to every viewer, in the same millisecond. */
#define ROOMS_PRESENCE_SLICES 32
/** Writes this node's viewer counts to Redis for rooms whose count changed or needs refresh:
 * the rooms of slice (0 .. ROOMS_PRESENCE_SLICES-1), or all of them when slice is -1. */
void rooms_presence_tick(struct app *app, bool refresh_all, int slice);
/** Ends due combos of rooms this node serves (timer). */
void rooms_combo_tick(struct app *app);
/** Ends a room's due combos (all: every open combo, the room is closing). */
void rooms_combo_sweep(struct app *app, const char *room, bool all);
/** Fills the presence request of room (name borrowed by out) with this node's count (< 0:
 * only read); publish says whether the ledger may publish viewers/leaderboard events. */
void rooms_presence_req(const struct app *app, struct ledger_presence_req *out, const char *room,
                        long count, bool publish);
/** Frees every room (shutdown). */
void rooms_free_all(struct app *app);

/* ---- limits (limits.c) ---- */

struct bucket {
    double tokens;
    int64_t last_ms;
};
struct user_bucket;

/** Takes one token from b refilled at rate per second (burst: one second's worth). */
bool bucket_take(struct bucket *b, double rate, int64_t now_ms);
/** limits.gifts_per_sec for sub on this process: true when the send may go on. */
bool limits_user_gift(struct app *app, const char *sub, int64_t now_ms);
/** Forgets idle users' buckets (all: every bucket, at shutdown). */
void limits_gc(struct app *app, int64_t now_ms, bool all);

/* ---- sessions (ws.c) ---- */

struct out_msg {
    struct out_msg *next;
    size_t len;
    unsigned char buf[]; /* LWS_PRE + text */
};

enum { CONN_WS = 1, CONN_HTTP = 2 };

struct session {
    int kind; /* CONN_WS: first member, shared with struct http_req */
    struct lws *wsi;
    struct app *app;
    struct session *anext, *aprev; /* all sessions */
    struct session *rnext, *rprev; /* viewers of the same room */
    struct room *room;
    uint64_t cursor; /* next ring position to send */
    bool authed;     /* welcome sent (token or guest) */
    bool guest;
    struct auth_claims claims;
    struct out_msg *out_head, *out_tail; /* personal messages (welcome, ack, error …) */
    long out_len;
    char *rx;       /* fragments of the current message */
    size_t rx_len;
    size_t rx_cap;
    int close_code; /* close after the queue drains, 0 none */
    long pending_ledger; /* this session's requests awaiting Redis */
    struct pending *pendings; /* the same, to detach them when the session closes */
    bool going_away;
    bool want_write;         /* lws_callback_on_writable asked, WRITEABLE not yet run */
    uint64_t want_since;     /* uv_now() of that request */
    struct bucket frames;    /* limits.frames_per_sec */
    int64_t limited_sec;     /* the second (Unix) of the last refused frame */
    int limited_strikes;     /* consecutive seconds with refused frames */
    long limited_in_sec;     /* frames refused in limited_sec */
    char joining[65];     /* room of the join awaiting Redis, "" none */
    char query_room[65];  /* ?room= of a connection that must authenticate first */
};

/** Asks for WRITEABLE once (no-op while a request is pending). */
void session_wake(struct session *s);
/** Queues a personal text frame (copied) to s and asks for writable. */
void session_send(struct session *s, const char *text, size_t len);
/** Writes a proto_buf's text (which has LWS_PRE headroom, like app->scratch) at once when
 * the session has nothing queued and its socket is keeping up; else queues it. Only from
 * outside lws callbacks (a ledger reply, the end of a loop turn). */
void session_send_direct(struct session *s, struct proto_buf *b);
/** Queues a proto_buf's text. */
void session_send_buf(struct session *s, struct proto_buf *b);
/** Queues an error frame (message NULL: default; id NULL: none) and counts it. */
void session_error(struct session *s, enum proto_err e, const char *message, const char *id);
/** From WRITEABLE: writes a close frame (code, reason may be NULL) and returns -1 so lws
 * drops the connection. */
int session_close_now(struct session *s, int code, const char *reason);
/** The protocol callback for /ws and HTTP (lws protocols[0]). */
int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                size_t len);

/* An asynchronous Redis request made on behalf of a session (or an HTTP call): detached from
 * its owner when the owner goes away, so a late reply finds no dangling pointer. */
struct pending {
    struct pending *next, *prev;
    struct pending **list; /* the owner's list head, NULL once detached */
    struct session *s;     /* owner session (NULL for HTTP or after detach) */
    struct http_req *h;    /* owner HTTP request */
    struct app *app;
    /* Request-specific state. */
    char room[65];
    char id[65];
    char sub[65];
    char name[65];
    long cost;
    int stage;
    char creator_id[65];
};

/* Redis requests one session may have in flight: past it the session is not read (gift sends
 * are refused instead, so that none waits unseen in the socket past its deadline). */
#define SESSION_MAX_PENDING 64

/** Allocates a pending request owned by s or h. Returns NULL on OOM. */
struct pending *pending_new(struct app *app, struct session *s, struct http_req *h);
/** After a typed ledger operation started with ud = p returned 0: links p to its owner
 * (detached when the owner goes away) and counts it against the session's back-pressure.
 * The operation's callback must call pending_answered(p) first. */
void pending_track(struct pending *p);
/** First step of a typed callback whose ud is a tracked p: p's request is answered (unlinked,
 * back-pressure released). p->s / p->h then name its owner, NULL when the owner went away;
 * the callback still frees p. */
void pending_answered(struct pending *p);
/** Detaches every pending request of a list (their replies will be ignored). */
void pending_detach_all(struct pending **list);

/* ---- HTTP (http.c) ---- */

struct http_req {
    int kind; /* CONN_HTTP: first member, shared with struct session */
    struct lws *wsi;
    struct app *app;
    int method; /* HTTP_GET … */
    char path[256];
    char *body;
    size_t body_len;
    bool too_large;
    bool have_auth;
    struct auth_claims claims;
    bool auth_bad;
    /* The response, once ready. */
    int status;
    char ctype[64];
    char *resp;
    size_t resp_len;
    int stage; /* 0 waiting, 1 headers to write, 2 body to write */
    struct pending *pendings;
};

enum { HTTP_GET = 1, HTTP_POST, HTTP_PUT, HTTP_DELETE, HTTP_OTHER };

/** LWS_CALLBACK_HTTP: starts a request (uri: len bytes). Returns 0, or -1 to close. */
int http_begin(struct http_req *h, struct lws *wsi, const char *uri, size_t len);
/** LWS_CALLBACK_HTTP_BODY: appends to the body (bounded). */
void http_body(struct http_req *h, const char *in, size_t len);
/** Handles a complete HTTP request (body read). Returns 0, or -1 to close. */
int http_dispatch(struct http_req *h);
/** Sets the response (JSON text copied) and asks for writable. */
void http_respond(struct http_req *h, int status, const char *json, size_t len);
void http_respond_buf(struct http_req *h, int status, struct proto_buf *b);
void http_error(struct http_req *h, enum proto_err e, const char *message);
/** WRITEABLE step: writes headers, then the body. Returns -1 when the connection must close. */
int http_writeable(struct http_req *h);
void http_cleanup(struct http_req *h);

/* One connection's per-session data (lws allocates it): a WebSocket session or an HTTP
 * request, never both; `kind` tells which. */
union conn {
    struct session s;
    struct http_req h;
};

/* ---- gifts path (gift.c) ---- */


/** Handles a parsed `gift` frame of a session. */
void gift_handle(struct session *s, const struct proto_msg *m);

/* ---- settlement flusher (flush.c, flush_pg.c) ---- */

/** Starts the flusher (its timer, and the PostgreSQL thread for that sink). 0 or -errno. */
int flush_start(struct app *app);
/** Settles every partition this node may flush now (a room closed), not waiting for the
 * timer; a pass already running is followed by another. */
void flush_request(struct app *app);
/** This node is debiting into partition: its next pass visits it (the others only every
 * FLUSH_FULL_EVERY passes). */
void flush_note_partition(struct app *app, unsigned partition);
/** Shutdown: starts a last pass (first call) and returns true once it is done or its time
 * (a few seconds) is up; the node's partition leases are released by it. */
bool flush_final(struct app *app);
/** Stops the flusher: call before ledger_free, which answers its requests; its memory is
 * freed when the loop runs again. NULL flusher: no-op. */
void flush_stop(struct app *app);
/** Appends the giftd_flush_* metrics. */
void flush_metrics_render(struct app *app, struct proto_buf *b);

/* The PostgreSQL sink: a thread owns the libpq connection, so the loop never blocks. */
struct pg_sink;
/** status 0 (written, or already there) or negative errno (-EIO, -ECONNREFUSED, -ECANCELED). */
typedef void pg_sink_cb(void *ud, int status);
/** Starts the thread; conninfo (borrowed, copied) is used on the first write. out: **new**. */
int pg_sink_new(uv_loop_t *loop, const char *conninfo, struct pg_sink **out);
/** Queues one batch: its rows are inserted in one transaction (several batches queued
 * together share one), ON CONFLICT DO NOTHING. batch and rows are borrowed until cb, which
 * runs on the loop. Returns 0 or -ENOMEM. */
int pg_sink_write(struct pg_sink *s, const char *batch, const struct ledger_settle_row *rows,
                  size_t nrows, pg_sink_cb *cb, void *ud);
/** Stops the thread (cancelling a running statement), answers every queued write (its result,
 * or -ECANCELED) before returning; memory is freed when the loop runs again. NULL: no-op. */
void pg_sink_free(struct pg_sink *s);

/* ---- the process ---- */

struct app {
    struct config cfg;
    struct gifts_catalog *catalog;
    bool dev;
    uv_loop_t *loop;
    struct lws_context *ctx;
    struct lws_vhost *vhost;
    struct ledger *ledger;
    char node_id[40];
    struct metrics m;
    struct session *sessions;
    struct room **rooms; /* hash table */
    size_t rooms_cap;
    long nrooms;
    struct proto_buf scratch; /* batch frames and one-off encodings, reused */
    struct room *dirty_rooms;          /* rooms whose viewers have events to be passed */
    uv_check_t fanout_check;           /* runs rooms_fanout_pass after each I/O poll */
    uv_idle_t fanout_idle;             /* active while a pass is unfinished: poll, don't wait */
    uint64_t trimmed_at_connections;   /* connections_total at the last malloc_trim */
    int presence_slice;                /* the slice of rooms the next presence tick visits */
    struct user_bucket **user_buckets; /* limits.gifts_per_sec per user */
    size_t user_buckets_cap;
    uv_timer_t presence_timer;
    uv_timer_t shutdown_timer;
    uv_timer_t combo_timer;
    uv_signal_t sigterm, sigint, sighup;
    uv_poll_t listen_poll;
    int listen_fd;
    bool shutting_down;
    bool dev_done;
    int worker;  /* index of this worker process, 0 with one process */
    long nworkers;
    int64_t started_ms;
    struct flusher *flusher; /* flush.c */
};

/** Frees the catalog in force and installs cat (steals). */
void app_set_catalog(struct app *app, struct gifts_catalog *cat);
/** Called when the ledger's state changes. */
void app_ledger_state(void *ud, enum ledger_state st);

/* Private redis-server child (redis_child.c). */
struct redis_child {
    pid_t pid;
    char dir[256];
    char sock[300];
};
/** Starts redis-server on a Unix socket in a new temporary directory; waits until it answers.
 * appendonly with everysec. Returns 0 or negative errno. */
int redis_child_start(struct redis_child *rc);
void redis_child_stop(struct redis_child *rc);

/** Forks n worker processes and supervises them (restarts the dead, passes SIGTERM, SIGINT
 * and SIGHUP on). Returns -1 in a worker (out_index set: 0..n-1) and the exit code in the
 * supervisor once every worker stopped. */
int workers_supervise(long n, int *out_index);

/* Listening socket owned by giftd (listener.c): SO_REUSEPORT, accepted sockets adopted by lws. */
int listener_start(struct app *app);
void listener_stop(struct app *app);

/* Logging: one line per event, with time and level; never tokens. */
void log_msg(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_info(...) log_msg("info", __VA_ARGS__)
#define log_warn(...) log_msg("warn", __VA_ARGS__)
#define log_err(...)  log_msg("error", __VA_ARGS__)

#endif
