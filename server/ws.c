/* ws: the lws protocol callback — WebSocket sessions (SPEC 3) and HTTP requests (SPEC 5). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <uv.h>

#include "auth/auth.h"
#include "config/config.h"
#include "ledger_client/ledger_client.h"
#include "protocol/protocol.h"
#include "server/app.h"
#include "server/gift.h"
#include "server/http.h"
#include "server/limits.h"
#include "server/metrics.h"
#include "server/pending.h"
#include "server/rooms.h"
#include "server/session.h"
#include "server/ws.h"

static struct app *app_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

/* ---- pending requests ---- */

static void pending_unlink(struct pending *p)
{
    if (p->list) {
        if (p->prev) {
            p->prev->next = p->next;
        } else {
            *p->list = p->next;
        }
        if (p->next) {
            p->next->prev = p->prev;
        }
        p->list = NULL;
    }
}

void pending_answered(struct pending *p)
{
    struct session *s = p->s;
    pending_unlink(p);
    if (s) {
        s->pending_ledger--;
        if (s->pending_ledger == SESSION_MAX_PENDING - 1) {
            lws_rx_flow_control(s->wsi, 1);
        }
    }
}

struct pending *pending_new(struct app *app, struct session *s, struct http_req *h)
{
    struct pending *p = calloc(1, sizeof(*p));
    if (!p) {
        return NULL;
    }
    p->app = app;
    p->s = s;
    p->h = h;
    return p;
}

/* Links p into its owner's list while a request of p is in flight. */
static void pending_link(struct pending *p)
{
    struct pending **list = p->s ? &p->s->pendings : p->h ? &p->h->pendings : NULL;
    if (!list || p->list) {
        return;
    }
    p->list = list;
    p->prev = NULL;
    p->next = *list;
    if (*list) {
        (*list)->prev = p;
    }
    *list = p;
}

void pending_track(struct pending *p)
{
    pending_link(p);
    if (p->s) {
        p->s->pending_ledger++;
        if (p->s->pending_ledger == SESSION_MAX_PENDING) {
            /* Back-pressure: stop reading this client until Redis catches up. */
            lws_rx_flow_control(p->s->wsi, 0);
        }
    }
}

void pending_detach_all(struct pending **list)
{
    struct pending *p = *list;
    while (p) {
        struct pending *next = p->next;
        p->s = NULL;
        p->h = NULL;
        p->list = NULL;
        p->prev = p->next = NULL;
        p = next;
    }
    *list = NULL;
}

/* ---- output ---- */

void session_wake(struct session *s)
{
    /* One request per WRITEABLE: with libuv each lws_callback_on_writable re-arms the poll
     * (an epoll_ctl), which per event per viewer was the fan-out's main cost. */
    if (!s->want_write) {
        s->want_write = true;
        s->want_since = uv_now(s->app->loop);
        lws_callback_on_writable(s->wsi);
    }
}

/* Appends m to s's personal output. */
static void out_push(struct session *s, struct out_msg *m)
{
    m->next = NULL;
    if (s->out_tail) {
        s->out_tail->next = m;
    } else {
        s->out_head = m;
    }
    s->out_tail = m;
    s->out_len++;
}

void session_send(struct session *s, const char *text, size_t len)
{
    if (s->close_code || s->going_away) {
        return;
    }
    struct out_msg *m = malloc(sizeof(*m) + LWS_PRE + len);
    if (!m) {
        return;
    }
    m->len = len;
    memcpy(m->buf + LWS_PRE, text, len);
    out_push(s, m);
    session_wake(s);
}

void session_send_direct(struct session *s, struct proto_buf *b)
{
    /* Only when nothing is queued before it and the socket took everything so far: then the
     * frame goes out now, without asking lws for WRITEABLE (two epoll_ctl per frame). */
    if (!b->oom && !s->out_head && !s->want_write && !s->close_code && !s->going_away &&
        !lws_partial_buffered(s->wsi)) {
        int w = lws_write(s->wsi, (unsigned char *)proto_buf_text(b), b->len, LWS_WRITE_TEXT);
        if (w >= 0) {
            s->app->m.frames_out++;
            s->app->m.bytes_out += b->len;
            if (lws_partial_buffered(s->wsi)) {
                session_wake(s); /* lws sends the rest from WRITEABLE */
            }
            return;
        }
    }
    session_send_buf(s, b);
}

void session_send_buf(struct session *s, struct proto_buf *b)
{
    if (!b->oom) {
        session_send(s, proto_buf_text(b), b->len);
    }
}

void session_error(struct session *s, enum proto_err e, const char *message, const char *id)
{
    struct app *app = s->app;
    app->m.errors[e]++;
    proto_buf_reset(&app->scratch);
    proto_buf_error(&app->scratch, e, message, id);
    session_send_buf(s, &app->scratch);
}

/* ---- welcome / join ---- */

/* The welcome frame's text, into b. */
static void build_welcome(struct session *s, const char *balance, struct proto_buf *b)
{
    proto_buf_reset(b);
    proto_buf_puts(b, "{\"type\":\"welcome\",\"user\":");
    if (s->guest) {
        proto_buf_puts(b, "null,\"role\":\"guest\",\"balance\":null");
    } else {
        proto_buf_puts(b, "{\"id\":");
        proto_buf_json_cstr(b, s->claims.sub);
        proto_buf_puts(b, ",\"name\":");
        proto_buf_json_cstr(b, s->claims.name[0] ? s->claims.name : s->claims.sub);
        proto_buf_puts(b, "},\"role\":");
        proto_buf_json_cstr(b, auth_role_name(s->claims.role));
        proto_buf_printf(b, ",\"balance\":%s", balance ? balance : "null");
    }
    proto_buf_printf(b, ",\"server_time_ms\":%lld}", (long long)ledger_now_ms());
}

static void send_welcome(struct session *s, const char *balance)
{
    build_welcome(s, balance, &s->app->scratch);
    session_send_buf(s, &s->app->scratch);
}

/* A viewer's welcome carries its balance, read from Redis. Its place in the output is kept
 * from the start (an empty frame nothing is sent past), so that welcome comes first even when
 * a join's answer, from another Redis connection on a cluster, arrives before the balance. */
#define WELCOME_MAX 1024

static void welcome_reserve(struct session *s)
{
    struct out_msg *m = malloc(sizeof(*m) + LWS_PRE + WELCOME_MAX);
    if (!m) {
        return;
    }
    m->len = 0;
    out_push(s, m);
    s->welcome_slot = m;
}

static void welcome_fill(struct session *s, const char *balance)
{
    struct out_msg *m = s->welcome_slot;
    if (!m) {
        send_welcome(s, balance);
        return;
    }
    struct proto_buf *b = &s->app->scratch;
    build_welcome(s, balance, b);
    /* Far below WELCOME_MAX: ids and names are at most 64 bytes (6 escaped). */
    m->len = b->oom || b->len > WELCOME_MAX ? 0 : b->len;
    memcpy(m->buf + LWS_PRE, proto_buf_text(b), m->len);
    s->welcome_slot = NULL;
    session_wake(s);
}

static void welcome_balance_done(void *ud, int status, const struct ledger_balance_reply *r)
{
    struct pending *p = ud;
    pending_answered(p);
    struct session *s = p->s;
    if (s) {
        char bal[32] = "null";
        if (status == 0) {
            snprintf(bal, sizeof(bal), "%lld", r->coins); /* 0 for a user never recharged */
        }
        welcome_fill(s, bal);
    }
    free(p);
}

static void session_join(struct session *s, const char *room, const struct proto_resume *rs);

/* The connection is authenticated (or a guest): send welcome, then join the query's room. */
static void session_authed(struct session *s, const char *room, const struct proto_resume *rs)
{
    s->authed = true;
    lws_set_timer_usecs(s->wsi, LWS_SET_TIMER_USEC_CANCEL);
    if (s->claims.role == AUTH_ROLE_VIEWER) {
        struct app *app = s->app;
        struct pending *p = pending_new(app, s, NULL);
        if (p && ledger_balance(app->ledger, s->claims.sub, welcome_balance_done, p, NULL) == 0) {
            pending_track(p);
            if (!s->welcome_slot) {
                welcome_reserve(s); /* a second authentication keeps the first one's place */
            }
        } else {
            free(p);
            send_welcome(s, "null");
        }
    } else {
        send_welcome(s, NULL);
    }
    if (room && room[0]) {
        session_join(s, room, rs);
    }
}

static bool token_valid(struct session *s, const char *token, size_t len, struct auth_claims *out)
{
    const char *secret = s->app->cfg.auth_secret;
    return auth_jwt_verify(token, len, secret, strlen(secret), ledger_now_ms() / 1000, out) == 0;
}

static bool session_verify(struct session *s, const char *token, size_t len)
{
    struct auth_claims c;
    if (!token_valid(s, token, len, &c)) {
        return false;
    }
    s->claims = c;
    s->guest = false;
    return true;
}

/* The end of a join: p's room or its session went away, or the join is answered. */
static void join_release(struct pending *p)
{
    struct room *room = rooms_get(p->app, p->room, false);
    if (room) {
        room->joining--;
        if (room->nviewers == 0 && room->joining == 0) {
            rooms_release(p->app, room);
        }
    }
    free(p->goal_json);
    free(p);
}

/* The session of p, when its join of p->room is still the one it waits for. */
static struct session *join_waiting(const struct pending *p)
{
    struct session *s = p->s;
    return s && strcmp(s->joining, p->room) == 0 ? s : NULL;
}

/* join_waiting, and the session waits no more (its join is answered now). */
static struct session *join_session(struct pending *p)
{
    struct session *s = join_waiting(p);
    if (s) {
        s->joining[0] = '\0';
    }
    return s;
}

/* An event as it was first sent, plus "replay":true (it ends with '}'). */
static void put_replayed(struct proto_buf *b, const char *ev, size_t len)
{
    proto_buf_append(b, ev, len - 1);
    proto_buf_puts(b, ",\"replay\":true}");
}

/* Sends a resume's missed events (in seq order) in batch frames of at most
 * FANOUT_BATCH_MAX_BYTES, queued after joined and before any live event. */
static void send_replay(struct session *s, const char *const *ev, const size_t *len, size_t n)
{
    struct proto_buf *b = &s->app->scratch;
    size_t i = 0;
    while (i < n) {
        proto_buf_reset(b);
        if (i + 1 == n) {
            put_replayed(b, ev[i], len[i]);
            i++;
        } else {
            proto_buf_puts(b, "{\"type\":\"batch\",\"events\":[");
            for (size_t k = 0; i < n && b->len < FANOUT_BATCH_MAX_BYTES; k++, i++) {
                if (k) {
                    proto_buf_puts(b, ",");
                }
                put_replayed(b, ev[i], len[i]);
            }
            proto_buf_puts(b, "]}");
        }
        session_send_buf(s, b);
    }
    s->app->m.replayed_events += n;
}

/* Attaches s to room after seq (events up to it, of epoch, are not sent) and sends joined.
 * resumed: -1 not asked, 0 false, 1 true. */
static void join_finish(struct session *s, struct room *room, const struct pending *p,
                        uint64_t after, int resumed, const char *goal_json, long long viewers)
{
    if (s->room != room || resumed >= 0) {
        rooms_detach(s);
        rooms_attach(room, s, after);
    }
    s->skip_upto = after;
    s->skip_epoch = p->epoch;
    if (viewers < room->nviewers) {
        viewers = room->nviewers;
    }
    struct proto_buf *b = &s->app->scratch;
    proto_buf_reset(b);
    proto_buf_puts(b, "{\"type\":\"joined\",\"room\":");
    proto_buf_json_cstr(b, room->name);
    proto_buf_puts(b, ",\"creator\":{\"id\":");
    proto_buf_json_cstr(b, room->creator_id);
    proto_buf_puts(b, ",\"name\":");
    proto_buf_json_cstr(b, room->creator_name);
    proto_buf_printf(b, "},\"viewers\":%lld,\"seq\":%lld,\"epoch\":%lld,\"goal\":", viewers, p->seq,
                     p->epoch);
    proto_buf_puts(b, goal_json && goal_json[0] ? goal_json : "null");
    if (resumed >= 0) {
        proto_buf_puts(b, resumed ? ",\"resumed\":true" : ",\"resumed\":false");
    }
    proto_buf_puts(b, "}");
    session_send_buf(s, b);
}

/* A resume's history read (from Redis: the ring did not hold the missed events). */
static void join_events_done(void *ud, int status, const struct ledger_room_events_reply *r)
{
    struct pending *p = ud;
    pending_answered(p);
    struct session *s = join_session(p);
    struct room *room = rooms_get(p->app, p->room, false);
    if (s && room) {
        if (status == 0 && r->found && r->epoch == p->epoch && r->complete) {
            join_finish(s, room, p, (uint64_t)r->seq, 1, p->goal_json, p->viewers);
            send_replay(s, r->events, r->lens, r->nevents);
            p->app->m.resumes[1]++;
        } else {
            join_finish(s, room, p, (uint64_t)p->seq, 0, p->goal_json, p->viewers);
            p->app->m.resumes[2]++;
        }
    }
    join_release(p);
}

/* A resume whose missed events are all in the ring: replayed from it, no Redis call. */
static void join_from_ring(struct session *s, struct room *room, struct pending *p, uint64_t pos,
                           const char *goal_json)
{
    size_t mask = room->ring_cap - 1, n = 0;
    uint64_t last = (uint64_t)p->resume.since;
    const char **ev = malloc((room->head - pos) * sizeof(*ev));
    size_t *len = malloc((room->head - pos) * sizeof(*len));
    if (!ev || !len) {
        free(ev);
        free(len);
        join_finish(s, room, p, (uint64_t)p->seq, 0, goal_json, p->viewers);
        s->app->m.resumes[2]++;
        return;
    }
    for (uint64_t c = pos; c < room->head; c++) {
        const struct fanout_msg *m = room->ring[c & mask];
        if (m->seq > last) {
            ev[n] = (const char *)m->buf + LWS_PRE;
            len[n++] = m->len;
            last = m->seq;
        }
    }
    join_finish(s, room, p, last, 1, goal_json, p->viewers);
    send_replay(s, ev, len, n);
    s->app->m.resumes[0]++;
    free(ev);
    free(len);
}

static void join_done(void *ud, int status, const struct ledger_presence_reply *r)
{
    struct pending *p = ud;
    pending_answered(p);
    struct app *app = p->app;
    struct session *s = join_session(p);
    struct room *room = rooms_get(app, p->room, false);
    if (status < 0) {
        if (s) {
            session_error(s, PROTO_ERR_LEDGER_UNAVAILABLE, "could not join: Redis unavailable",
                          NULL);
        }
    } else if (!r->live) {
        if (s) {
            session_error(s, PROTO_ERR_ROOM_NOT_LIVE, NULL, NULL);
        }
        if (room) {
            room->live = false;
        }
    } else if (s && room) {
        room->live = true;
        snprintf(room->creator_id, sizeof(room->creator_id), "%s", r->creator_id);
        snprintf(room->creator_name, sizeof(room->creator_name), "%s", r->creator_name);
        rooms_note_seq(room, r->epoch, (uint64_t)r->seq);
        p->seq = r->seq;
        p->epoch = r->epoch;
        p->viewers = r->viewers;
        const struct proto_resume *rs = &p->resume;
        uint64_t pos;
        if (!rs->on) {
            join_finish(s, room, p, (uint64_t)r->seq, -1, r->goal_json, r->viewers);
        } else if (rs->has_epoch && rs->epoch != r->epoch) {
            join_finish(s, room, p, (uint64_t)r->seq, 0, r->goal_json, r->viewers);
            app->m.resumes[2]++;
        } else if (rs->since >= r->seq) {
            join_finish(s, room, p, (uint64_t)r->seq, 1, r->goal_json, r->viewers);
            app->m.resumes[0]++;
        } else if (r->seq - rs->since > app->cfg.rooms_history_size) {
            join_finish(s, room, p, (uint64_t)r->seq, 0, r->goal_json, r->viewers);
            app->m.resumes[2]++;
        } else if (rooms_ring_from(room, r->epoch, (uint64_t)rs->since, &pos)) {
            join_from_ring(s, room, p, pos, r->goal_json);
        } else {
            /* The missed events come from the room's history; the join waits for them. */
            p->goal_json = strdup(r->goal_json ? r->goal_json : "null");
            snprintf(s->joining, sizeof(s->joining), "%s", p->room);
            if (p->goal_json &&
                ledger_room_events(app->ledger, p->room, rs->since, app->cfg.rooms_history_size,
                                   join_events_done, p, NULL) == 0) {
                pending_track(p);
                return; /* the room's joining count stays until then */
            }
            s->joining[0] = '\0';
            join_finish(s, room, p, (uint64_t)r->seq, 0, r->goal_json, r->viewers);
            app->m.resumes[2]++;
        }
    }
    join_release(p);
}

/* Reads the room's presence for p's join; join_done answers it. */
static void join_start(struct pending *p, struct room *room)
{
    struct app *app = p->app;
    struct ledger_presence_req pr;
    rooms_presence_req(app, &pr, p->room, room->nviewers + 1, false);
    if (ledger_presence(app->ledger, &pr, join_done, p, NULL) == 0) {
        pending_track(p);
        return;
    }
    struct session *s = join_session(p);
    if (s) {
        session_error(s, PROTO_ERR_LEDGER_UNAVAILABLE, "could not join: Redis unavailable", NULL);
    }
    join_release(p); /* may free the room */
}

/* A join of a room whose subscription Redis has not confirmed yet waits for it (the room's
 * events from its read on must all arrive: ARCHITECTURE "History and resume"). */
static void join_park(struct room *room, struct pending *p)
{
    struct app *app = p->app;
    if (!room->parked) {
        room->parked_ms = (int64_t)uv_now(app->loop); /* monotonic */
        room->pnext = app->parked_rooms;
        if (room->pnext) {
            room->pnext->pprev = &room->pnext;
        }
        room->pprev = &app->parked_rooms;
        app->parked_rooms = room;
        room->parked = p;
    } else {
        room->parked_tail->park_next = p;
    }
    room->parked_tail = p;
    pending_track(p);
}

/* Starts the room's parked joins, or drops them all (shutdown). The room may be freed by the
 * time this returns. */
static void joins_unpark(struct room *room, bool drop)
{
    *room->pprev = room->pnext;
    if (room->pnext) {
        room->pnext->pprev = room->pprev;
    }
    room->pnext = NULL;
    room->pprev = NULL;
    struct pending *p = room->parked;
    room->parked = room->parked_tail = NULL;
    while (p) {
        struct pending *next = p->park_next;
        pending_answered(p);
        if (!drop && join_waiting(p)) {
            join_start(p, room);
        } else {
            join_release(p); /* the session went away, or joins another room now */
        }
        p = next;
    }
}

void ws_room_subscribed(struct app *app, const char *name)
{
    struct room *room = rooms_get(app, name, false);
    if (room) {
        room->confirmed = true;
        if (room->parked) {
            joins_unpark(room, false);
        }
    }
}

void ws_parked_tick(struct app *app, bool all)
{
    /* A confirmation that does not come within the ledger's deadline (the subscriber is
     * down): the joins go on; the room fills its gaps once subscribed again. */
    int64_t before = (int64_t)uv_now(app->loop) - app->cfg.ledger_timeout_ms;
    struct room *r = app->parked_rooms;
    while (r) {
        struct room *next = r->pnext;
        if (all || r->parked_ms <= before) {
            joins_unpark(r, all);
        }
        r = next;
    }
}

static void session_join(struct session *s, const char *name, const struct proto_resume *rs)
{
    struct app *app = s->app;
    if (s->claims.role == AUTH_ROLE_OVERLAY && strcmp(s->claims.room, name) != 0) {
        session_error(s, PROTO_ERR_FORBIDDEN, "an overlay token may only watch its own room", NULL);
        return;
    }
    /* The current room is kept until the new one answers: a failed join changes nothing. */
    struct room *room = rooms_get(app, name, true);
    if (!room) {
        session_error(s, PROTO_ERR_INTERNAL, "out of memory", NULL);
        return;
    }
    struct pending *p = pending_new(app, s, NULL);
    if (!p) {
        if (room->nviewers == 0 && room->joining == 0) {
            rooms_release(app, room);
        }
        session_error(s, PROTO_ERR_INTERNAL, "out of memory", NULL);
        return;
    }
    snprintf(p->room, sizeof(p->room), "%s", name);
    if (rs) {
        p->resume = *rs;
    }
    snprintf(s->joining, sizeof(s->joining), "%s", name);
    room->joining++;
    if (!room->confirmed && ledger_ready(app->ledger)) {
        join_park(room, p);
    } else {
        join_start(p, room);
    }
}

/* ---- input ---- */

/* limits.frames_per_sec: refuses a frame over the limit; after three seconds in a row with
 * refused frames the connection is closed (1008). Returns false when the frame is refused. */
static bool frame_allowed(struct session *s, const char *id)
{
    struct app *app = s->app;
    int64_t now = ledger_now_ms();
    if (bucket_take(&s->frames, (double)app->cfg.limits_frames_per_sec, now)) {
        if (s->limited_sec && now / 1000 > s->limited_sec + 1) {
            s->limited_strikes = 0; /* a whole second without refusals */
        }
        return true;
    }
    int64_t sec = now / 1000;
    if (sec != s->limited_sec) {
        s->limited_strikes = sec == s->limited_sec + 1 ? s->limited_strikes + 1 : 1;
        s->limited_sec = sec;
        s->limited_in_sec = 0;
    }
    s->limited_in_sec++;
    if (s->limited_strikes >= 3) {
        s->close_code = LWS_CLOSE_STATUS_POLICY_VIOLATION;
        session_wake(s);
    } else if (s->limited_in_sec <= app->cfg.limits_frames_per_sec) {
        /* Answer refusals up to the limit itself; beyond it, drop them quietly. */
        session_error(s, PROTO_ERR_RATE_LIMITED, "over limits.frames_per_sec", id);
    }
    return false;
}

static void handle_frame(struct session *s, const char *buf, size_t len)
{
    struct app *app = s->app;
    app->m.frames_in++;
    struct proto_msg m;
    const char *detail = NULL;
    enum proto_err e = proto_parse(buf, len, app->cfg.gifts_max_count, &m, &detail);
    /* Parsed first so that a refused gift's error carries its id. */
    if (!frame_allowed(s, m.type == PROTO_MSG_GIFT && m.id[0] ? m.id : NULL)) {
        return;
    }
    if (e != PROTO_OK) {
        session_error(s, e, detail, m.type == PROTO_MSG_GIFT && m.id[0] ? m.id : NULL);
        return;
    }
    switch (m.type) {
    case PROTO_MSG_PING:
        session_send(s, "{\"type\":\"pong\"}", 15);
        return;
    case PROTO_MSG_HELLO:
        if (s->authed && !s->guest) {
            /* A fresh token for the same identity extends the session (tokens expire). */
            struct auth_claims c;
            if (!token_valid(s, m.token, strlen(m.token), &c)) {
                session_error(s, PROTO_ERR_UNAUTHORIZED, "invalid or expired token", NULL);
            } else if (strcmp(c.sub, s->claims.sub) != 0 || c.role != s->claims.role ||
                       strcmp(c.room, s->claims.room) != 0) {
                session_error(s, PROTO_ERR_BAD_REQUEST, "already authenticated as another identity",
                              NULL);
            } else {
                s->claims = c;
                session_authed(s, NULL, NULL);
            }
            return;
        }
        if (!session_verify(s, m.token, strlen(m.token))) {
            session_error(s, PROTO_ERR_UNAUTHORIZED, "invalid or expired token", NULL);
            return;
        }
        session_authed(s, s->query_room, &s->query_resume);
        s->query_room[0] = '\0';
        return;
    default:
        break;
    }
    if (!s->authed) {
        session_error(s, PROTO_ERR_UNAUTHORIZED, "send hello with a token first",
                      m.type == PROTO_MSG_GIFT ? m.id : NULL);
        return;
    }
    switch (m.type) {
    case PROTO_MSG_JOIN:
        session_join(s, m.room, &m.resume);
        break;
    case PROTO_MSG_LEAVE: {
        struct proto_buf *b = &app->scratch;
        proto_buf_reset(b);
        proto_buf_puts(b, "{\"type\":\"left\",\"room\":");
        proto_buf_json_cstr(b, s->room ? s->room->name : NULL);
        proto_buf_puts(b, "}");
        s->joining[0] = '\0';
        if (s->room) {
            rooms_detach(s);
        }
        session_send_buf(s, b);
        break;
    }
    case PROTO_MSG_GIFT:
        gift_handle(s, &m);
        break;
    default:
        break;
    }
}

static int session_receive(struct session *s, const char *in, size_t len)
{
    struct app *app = s->app;
    size_t max = (size_t)app->cfg.limits_max_frame_bytes;
    size_t remaining = lws_remaining_packet_payload(s->wsi);
    if (s->rx_len + len + remaining > max) {
        /* The error frame goes out first, then the close (1009); the rest of the frame is
         * ignored. */
        session_error(s, PROTO_ERR_TOO_LARGE, "frame over limits.max_frame_bytes", NULL);
        s->close_code = LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE;
        s->rx_len = 0;
        return 0;
    }
    bool final = lws_is_final_fragment(s->wsi) && remaining == 0;
    if (lws_frame_is_binary(s->wsi)) {
        if (final) {
            app->m.frames_in++;
            session_error(s, PROTO_ERR_BAD_JSON, "binary frames are not supported", NULL);
        }
        return 0;
    }
    if (final && s->rx_len == 0) {
        handle_frame(s, in, len);
        return 0;
    }
    if (s->rx_len + len > s->rx_cap) {
        size_t cap = s->rx_cap ? s->rx_cap : 512;
        while (cap < s->rx_len + len) {
            cap *= 2;
        }
        char *n = realloc(s->rx, cap);
        if (!n) {
            return -1;
        }
        s->rx = n;
        s->rx_cap = cap;
    }
    memcpy(s->rx + s->rx_len, in, len);
    s->rx_len += len;
    if (final) {
        handle_frame(s, s->rx, s->rx_len);
        s->rx_len = 0;
        if (s->rx_cap > 4096) {
            free(s->rx);
            s->rx = NULL;
            s->rx_cap = 0;
        }
    }
    return 0;
}

/* ---- writable ---- */

/* Sends a close frame with code and reason now (from WRITEABLE), then drops the connection:
 * the client sees the code even when the process is about to exit. */
/* ---- lingering close ----
 * A socket closed while the client is still sending is reset by the kernel, and the reset
 * takes with it what the server sent last (the error and the close frame): the client sees
 * 1006. So when giftd closes a connection for what the client sent (a frame over the limit, a
 * flood), the socket lives on under a duplicate descriptor after lws has let it go (lws shuts
 * its sending side, so the FIN follows the close frame), and what still arrives is read and
 * dropped until the client closes too, LINGER_MAX_BYTES arrived or LINGER_MS passed. */
#define LINGER_MS        2000
#define LINGER_MAX_BYTES (64u << 20)

struct lingering {
    uv_poll_t poll;
    uv_timer_t timer;
    int fd;
    int open; /* handles not yet closed */
    size_t got;
};

static void linger_closed(uv_handle_t *h)
{
    struct lingering *lg = h->data;
    if (--lg->open == 0) {
        close(lg->fd);
        free(lg);
    }
}

static void linger_end(struct lingering *lg)
{
    if (!uv_is_closing((uv_handle_t *)&lg->poll)) {
        uv_close((uv_handle_t *)&lg->poll, linger_closed);
        uv_close((uv_handle_t *)&lg->timer, linger_closed);
    }
}

static void linger_read(uv_poll_t *h, int status, int events)
{
    (void)events;
    struct lingering *lg = h->data;
    char buf[16384];
    while (status == 0) {
        ssize_t n = recv(lg->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n <= 0 || (lg->got += (size_t)n) > LINGER_MAX_BYTES) {
            break; /* the client closed, or failed, or keeps sending: enough */
        }
    }
    linger_end(lg);
}

static void linger_expired(uv_timer_t *t)
{
    linger_end(t->data);
}

static void linger_start(struct app *app, struct lws *wsi)
{
    struct lingering *lg = calloc(1, sizeof(*lg));
    if (!lg) {
        return;
    }
    lg->fd = dup(lws_get_socket_fd(wsi));
    if (lg->fd < 0 || uv_poll_init(app->loop, &lg->poll, lg->fd) != 0) {
        if (lg->fd >= 0) {
            close(lg->fd);
        }
        free(lg);
        return;
    }
    uv_timer_init(app->loop, &lg->timer);
    lg->open = 2;
    lg->poll.data = lg;
    lg->timer.data = lg;
    uv_poll_start(&lg->poll, UV_READABLE, linger_read);
    uv_timer_start(&lg->timer, linger_expired, LINGER_MS, 0);
}

int session_close_now(struct session *s, int code, const char *reason)
{
    unsigned char buf[LWS_PRE + 125];
    unsigned char *p = buf + LWS_PRE;
    size_t n = reason ? strlen(reason) : 0;
    if (n > 120) {
        n = 120;
    }
    p[0] = (unsigned char)(code >> 8);
    p[1] = (unsigned char)(code & 0xff);
    if (n) {
        memcpy(p + 2, reason, n);
    }
    /* 4 is the close opcode: lws 4.1 handles it but no longer names it in its headers. */
    lws_write(s->wsi, p, n + 2, (enum lws_write_protocol)4);
    if (code == LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE || code == LWS_CLOSE_STATUS_POLICY_VIOLATION ||
        code == SESSION_CLOSE_TRY_AGAIN_LATER) {
        linger_start(s->app, s->wsi);
    }
    return -1;
}

static int session_writeable(struct session *s)
{
    struct app *app = s->app;
    s->want_write = false;
    if (s->going_away) {
        return session_close_now(s, LWS_CLOSE_STATUS_GOINGAWAY, "server shutting down");
    }
    if (s->out_head && s->out_head == s->welcome_slot) {
        return 0; /* nothing goes before the welcome */
    }
    if (s->out_head) {
        struct out_msg *m = s->out_head;
        s->out_head = m->next;
        if (!s->out_head) {
            s->out_tail = NULL;
        }
        s->out_len--;
        int n = lws_write(s->wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT);
        app->m.frames_out++;
        app->m.bytes_out += m->len;
        free(m);
        if (n < 0) {
            return -1;
        }
        if (s->out_head || s->close_code || (s->room && s->cursor < s->room->head)) {
            session_wake(s);
        }
        return 0;
    }
    /* A pending close goes out once the personal messages (its error) are sent. */
    if (s->close_code) {
        return session_close_now(s, s->close_code,
                                 s->close_code == 4008 ? "slow consumer" : s->close_reason);
    }
    if (s->room && s->cursor < s->room->head) {
        int rc = fanout_write(s);
        if (rc < 0) {
            return -1;
        }
        if ((s->room && s->cursor < s->room->head) || s->out_head || s->close_code) {
            session_wake(s);
        }
        return 0;
    }
    return 0;
}

/* ---- lifecycle ---- */

static void session_open(struct session *s, struct lws *wsi)
{
    struct app *app = app_of(wsi);
    memset(s, 0, sizeof(*s));
    s->kind = CONN_WS;
    s->wsi = wsi;
    s->app = app;
    s->anext = app->sessions;
    if (app->sessions) {
        app->sessions->aprev = s;
    }
    app->sessions = s;
    app->m.connections++;
    app->m.connections_total++;
    if (app->shutting_down) {
        s->going_away = true;
        lws_callback_on_writable(wsi);
        return;
    }
    const char *over = lws_get_opaque_user_data(wsi); /* listener.c: over the limits */
    if (over) {
        s->close_code = SESSION_CLOSE_TRY_AGAIN_LATER;
        s->close_reason = over;
        session_wake(s);
        return;
    }

    /* lws copies "name=value" into the buffer and returns a pointer to the value; it gives up
     * at the first argument that does not fit, so both buffers hold the longest one. */
    char tokbuf[PROTO_TOKEN_MAX + 16];
    char roombuf[PROTO_TOKEN_MAX + 16];
    const char *token = lws_get_urlarg_by_name(wsi, "token=", tokbuf, sizeof(tokbuf));
    const char *room = lws_get_urlarg_by_name(wsi, "room=", roombuf, sizeof(roombuf));
    bool have_room = room != NULL;
    if (have_room && !proto_valid_id(room, strlen(room))) {
        session_error(s, PROTO_ERR_BAD_REQUEST, "room: not a valid identifier", NULL);
        have_room = false;
    }
    /* ?since_seq=&epoch=: the query's join resumes (SPEC 3.4). */
    char sincebuf[PROTO_TOKEN_MAX + 16], epochbuf[PROTO_TOKEN_MAX + 16];
    const char *since = lws_get_urlarg_by_name(wsi, "since_seq=", sincebuf, sizeof(sincebuf));
    const char *epoch = lws_get_urlarg_by_name(wsi, "epoch=", epochbuf, sizeof(epochbuf));
    if (have_room && !proto_resume_from_query(since, epoch, &s->query_resume)) {
        session_error(s, PROTO_ERR_BAD_REQUEST, "since_seq: must be an integer >= 0", NULL);
        have_room = false;
    }
    if (token && token[0]) {
        if (session_verify(s, token, strlen(token))) {
            session_authed(s, have_room ? room : NULL, &s->query_resume);
            return;
        }
        session_error(s, PROTO_ERR_UNAUTHORIZED, "invalid or expired token", NULL);
    }
    if (app->cfg.auth_allow_guests) {
        s->guest = true;
        s->claims.role = AUTH_ROLE_NONE;
        session_authed(s, have_room ? room : NULL, &s->query_resume);
        return;
    }
    if (have_room) {
        memcpy(s->query_room, room, strlen(room) + 1); /* a valid identifier: <= 64 bytes */
    }
    lws_set_timer_usecs(wsi, (lws_usec_t)app->cfg.auth_hello_timeout_ms * 1000);
}

static void session_closed(struct session *s)
{
    struct app *app = s->app;
    if (!app) {
        return;
    }
    if (s->room) {
        rooms_detach(s);
    }
    pending_detach_all(&s->pendings);
    if (s->aprev) {
        s->aprev->anext = s->anext;
    } else {
        app->sessions = s->anext;
    }
    if (s->anext) {
        s->anext->aprev = s->aprev;
    }
    while (s->out_head) {
        struct out_msg *m = s->out_head;
        s->out_head = m->next;
        free(m);
    }
    free(s->rx);
    s->rx = NULL;
    app->m.connections--;
    s->app = NULL;
}

static bool is_ws_path(struct lws *wsi)
{
    char uri[64];
    int n = lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI);
    return n > 0 && strcmp(uri, "/ws") == 0;
}

int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    union conn *c = user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return is_ws_path(wsi) ? 0 : 1;
    case LWS_CALLBACK_ESTABLISHED:
        session_open(&c->s, wsi);
        return 0;
    case LWS_CALLBACK_WSI_CREATE: /* every accepted socket, WebSocket or HTTP (user is NULL) */
        app_of(wsi)->open_sockets++;
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        app_of(wsi)->open_sockets--;
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (c->s.close_code || c->s.going_away) {
            return 0;
        }
        return session_receive(&c->s, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return session_writeable(&c->s);
    case LWS_CALLBACK_TIMER:
        if (!c->s.authed) {
            static const char reason_txt[] = "not authenticated in time";
            lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, (unsigned char *)reason_txt,
                             sizeof(reason_txt) - 1);
            return -1;
        }
        return 0;
    case LWS_CALLBACK_CLOSED:
        if (c && c->s.kind == CONN_WS) {
            session_closed(&c->s);
        }
        return 0;

    case LWS_CALLBACK_HTTP:
        return http_begin(&c->h, wsi, in, len);
    case LWS_CALLBACK_HTTP_BODY:
        http_body(&c->h, in, len);
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return http_dispatch(&c->h);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (c && c->h.kind == CONN_HTTP && c->h.stage > 0) {
            return http_writeable(&c->h);
        }
        break;
    case LWS_CALLBACK_CLOSED_HTTP:
        if (c && c->h.kind == CONN_HTTP) {
            http_cleanup(&c->h);
        }
        break;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}
