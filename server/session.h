/* session: a WebSocket session (SPEC 3) and its personal output queue (ws.c). */
#ifndef GIFTD_SERVER_SESSION_H
#define GIFTD_SERVER_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/auth.h"
#include "protocol/protocol.h"
#include "server/limits.h"

struct app;
struct lws;
struct pending;
struct room;

struct out_msg {
    struct out_msg *next;
    size_t len;
    unsigned char buf[]; /* LWS_PRE + text */
};

/* Close code 1013 (try again later: over the connection limits); lws 4.1 has no name for it. */
#define SESSION_CLOSE_TRY_AGAIN_LATER 1013

struct session {
    int kind; /* CONN_WS: first member, shared with struct http_req */
    struct lws *wsi;
    struct app *app;
    struct session *anext, *aprev; /* all sessions */
    struct session *rnext, *rprev; /* viewers of the same room */
    struct room *room;
    uint64_t cursor;      /* next ring position to send */
    uint64_t skip_upto;   /* seq events up to this one (of skip_epoch) are not sent: the join */
    long long skip_epoch; /* or its replay covered them (rooms.c skipped()) */
    bool authed;          /* welcome sent (token or guest) */
    bool guest;
    struct auth_claims claims;
    struct out_msg *out_head, *out_tail; /* personal messages (welcome, ack, error …) */
    struct out_msg *welcome_slot;        /* the welcome's place while its balance is read */
    long out_len;
    char *rx; /* fragments of the current message */
    size_t rx_len;
    size_t rx_cap;
    int close_code;           /* close after the queue drains, 0 none */
    const char *close_reason; /* its reason text (static), NULL none */
    long pending_ledger;      /* this session's requests awaiting Redis */
    struct pending *pendings; /* the same, to detach them when the session closes */
    bool going_away;
    bool want_write;                  /* lws_callback_on_writable asked, WRITEABLE not yet run */
    uint64_t want_since;              /* uv_now() of that request */
    struct bucket frames;             /* limits.frames_per_sec */
    int64_t limited_sec;              /* the second (Unix) of the last refused frame */
    int limited_strikes;              /* consecutive seconds with refused frames */
    long limited_in_sec;              /* frames refused in limited_sec */
    char joining[65];                 /* room of the join awaiting Redis, "" none */
    char query_room[65];              /* ?room= of a connection that must authenticate first */
    struct proto_resume query_resume; /* and its ?since_seq=, ?epoch= */
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

/* Redis requests one session may have in flight: past it the session is not read (gift sends
 * are refused instead, so that none waits unseen in the socket past its deadline). */
#define SESSION_MAX_PENDING 64

#endif
