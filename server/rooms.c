/* rooms: this node's rooms — viewers, a ring of encoded events per room, pub/sub, presence. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libwebsockets.h>
#include <uv.h>

#include "config/config.h"
#include "ledger_client/ledger_client.h"
#include "protocol/protocol.h"
#include "server/app.h"
#include "server/metrics.h"
#include "server/rooms.h"
#include "server/session.h"

#define BATCH_MAX_EVENTS 512

/* ---- rooms ---- */

struct fanout_msg *fanout_msg_new(const char *text, size_t len)
{
    struct fanout_msg *m = malloc(sizeof(*m) + LWS_PRE + len);
    if (!m) {
        return NULL;
    }
    m->seq = 0;
    m->epoch = 0;
    m->next = NULL;
    m->closes_room = false;
    m->len = len;
    memcpy(m->buf + LWS_PRE, text, len);
    return m;
}

static size_t hash_name(const char *s)
{
    size_t h = 5381;
    for (; *s; s++) {
        h = h * 33 + (unsigned char)*s;
    }
    return h;
}

static int grow_table(struct app *app)
{
    size_t cap = app->rooms_cap ? app->rooms_cap * 2 : 256;
    struct room **t = calloc(cap, sizeof(*t));
    if (!t) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < app->rooms_cap; i++) {
        struct room *r = app->rooms[i];
        while (r) {
            struct room *next = r->hnext;
            size_t b = hash_name(r->name) & (cap - 1);
            r->hnext = t[b];
            t[b] = r;
            r = next;
        }
    }
    free(app->rooms);
    app->rooms = t;
    app->rooms_cap = cap;
    return 0;
}

static void subscribe(struct room *room)
{
    room->subscribed = ledger_room_subscribe(room->app->ledger, room->name) == 0;
}

struct room *rooms_get(struct app *app, const char *name, bool create)
{
    if (app->rooms_cap) {
        for (struct room *r = app->rooms[hash_name(name) & (app->rooms_cap - 1)]; r; r = r->hnext) {
            if (strcmp(r->name, name) == 0) {
                return r;
            }
        }
    }
    if (!create) {
        return NULL;
    }
    if ((size_t)app->nrooms >= app->rooms_cap && grow_table(app) < 0) {
        return NULL;
    }
    struct room *r = calloc(1, sizeof(*r));
    if (!r) {
        return NULL;
    }
    /* Room for bursts: a viewer more than fanout.max_queue behind is dropped only when its
     * socket is choked; the ring holds twice that before events must be overwritten. */
    size_t cap = 16;
    while (cap <= 2 * (size_t)app->cfg.fanout_max_queue) {
        cap *= 2;
    }
    r->ring = calloc(cap, sizeof(*r->ring));
    if (!r->ring) {
        free(r);
        return NULL;
    }
    r->ring_cap = cap;
    snprintf(r->name, sizeof(r->name), "%s", name);
    r->app = app;
    r->reported = -1;
    size_t b = hash_name(name) & (app->rooms_cap - 1);
    r->hnext = app->rooms[b];
    app->rooms[b] = r;
    app->nrooms++;
    /* Subscribe before the join's script runs, so no event between the two is missed. */
    subscribe(r);
    return r;
}

void rooms_presence_req(const struct app *app, struct ledger_presence_req *out, const char *room,
                        long count, bool publish)
{
    long interval = app->cfg.rooms_presence_interval_ms;
    *out = (struct ledger_presence_req){
        .room = room,
        .node_id = app->node_id,
        .count = count,
        /* A node that dies stops refreshing its count: it lapses after a few intervals. */
        .ttl_ms = interval * 3 + 2000,
        .publish_interval_ms = publish ? interval : -1,
        .leaderboard_size = app->cfg.rooms_leaderboard_size,
    };
}

static void presence_write(struct app *app, struct room *room)
{
    struct ledger_presence_req pr;
    rooms_presence_req(app, &pr, room->name, room->nviewers, room->nviewers > 0);
    if (ledger_presence(app->ledger, &pr, NULL, NULL, NULL) == 0) {
        room->reported = room->nviewers;
    }
}

static void room_free(struct room *r)
{
    for (size_t i = 0; i < r->ring_cap; i++) {
        free(r->ring[i]);
    }
    while (r->held) {
        struct fanout_msg *m = r->held;
        r->held = m->next;
        free(m);
    }
    free(r->ring);
    free(r);
}

void rooms_release(struct app *app, struct room *room)
{
    if (room->nviewers > 0 || room->joining > 0) {
        return;
    }
    if (room->reported > 0 && app->ledger) {
        presence_write(app, room);
    }
    if (room->subscribed && app->ledger) {
        ledger_room_unsubscribe(app->ledger, room->name);
    }
    if (room->dirty) {
        struct room **dp = &app->dirty_rooms;
        while (*dp && *dp != room) {
            dp = &(*dp)->dnext;
        }
        if (*dp) {
            *dp = room->dnext;
        }
    }
    struct room **pp = &app->rooms[hash_name(room->name) & (app->rooms_cap - 1)];
    while (*pp && *pp != room) {
        pp = &(*pp)->hnext;
    }
    if (*pp) {
        *pp = room->hnext;
    }
    app->nrooms--;
    room_free(room);
}

void rooms_free_all(struct app *app)
{
    for (size_t i = 0; i < app->rooms_cap; i++) {
        struct room *r = app->rooms[i];
        while (r) {
            struct room *next = r->hnext;
            for (struct session *s = r->viewers; s; s = s->rnext) {
                s->room = NULL;
            }
            room_free(r);
            r = next;
        }
    }
    free(app->rooms);
    app->rooms = NULL;
    app->rooms_cap = 0;
    app->nrooms = 0;
    app->dirty_rooms = NULL;
}

void rooms_attach(struct room *room, struct session *s, uint64_t after_seq)
{
    s->room = room;
    s->rprev = NULL;
    s->rnext = room->viewers;
    if (room->viewers) {
        room->viewers->rprev = s;
    }
    room->viewers = s;
    room->nviewers++;
    /* Start after the last event the join saw; events that raced it are still delivered. */
    uint64_t c = room->head;
    uint64_t floor = room->head > room->ring_cap ? room->head - room->ring_cap : 0;
    while (c > floor) {
        struct fanout_msg *m = room->ring[(c - 1) & (room->ring_cap - 1)];
        if (!m || m->closes_room || (m->seq && m->seq <= after_seq)) {
            break;
        }
        c--;
    }
    s->cursor = c;
    if (s->cursor < room->head) {
        session_wake(s);
    }
}

void rooms_detach(struct session *s)
{
    struct room *room = s->room;
    if (!room) {
        return;
    }
    if (room->pass_next == s) {
        room->pass_next = s->rnext;
    }
    if (s->rprev) {
        s->rprev->rnext = s->rnext;
    } else {
        room->viewers = s->rnext;
    }
    if (s->rnext) {
        s->rnext->rprev = s->rprev;
    }
    s->rnext = s->rprev = NULL;
    s->room = NULL;
    room->nviewers--;
    if (room->nviewers == 0 && room->joining == 0) {
        rooms_release(room->app, room);
    }
}

/* Events every viewer has been sent are freed, except the last ROOM_RETAIN: a join that races
 * new events finds those in the ring (rooms_attach). Without this each room held ring_cap
 * events (4,096 by default, about 1.5 MiB) however fast its viewers read, and RSS grew with
 * every event until the rings were full. The viewers are scanned at most once per
 * ROOM_RETAIN events, so a viewer that lags costs no more. */
#define ROOM_RETAIN 64

static void ring_trim(struct room *room)
{
    uint64_t lo = room->head > room->ring_cap ? room->head - room->ring_cap : 0;
    if (room->tail < lo) {
        room->tail = lo; /* overwritten (and freed) by rooms_broadcast */
    }
    uint64_t upto = room->head > ROOM_RETAIN ? room->head - ROOM_RETAIN : 0;
    for (struct session *s = room->viewers; s && upto > room->tail; s = s->rnext) {
        if (s->cursor < upto) {
            upto = s->cursor;
        }
    }
    for (; room->tail < upto; room->tail++) {
        size_t slot = room->tail & (room->ring_cap - 1);
        free(room->ring[slot]);
        room->ring[slot] = NULL;
    }
}

void rooms_broadcast(struct room *room, struct fanout_msg *msg)
{
    size_t slot = room->head & (room->ring_cap - 1);
    free(room->ring[slot]);
    room->ring[slot] = msg;
    room->head++;
    if (room->head >= room->trim_at) {
        ring_trim(room);
        room->trim_at = room->head + ROOM_RETAIN;
    }
    if (msg->closes_room) {
        room->live = false;
    }
    /* Sent at the end of this loop turn (rooms_fanout_pass), together with whatever else
     * arrives in the same turn. */
    if (!room->dirty) {
        room->dirty = true;
        room->dnext = room->app->dirty_rooms;
        room->app->dirty_rooms = room;
    }
}

static void fanout_idle_noop(uv_idle_t *h)
{
    (void)h; /* only its being active matters: the loop polls without waiting */
}

static void slow_consumer(struct session *s)
{
    /* A slow consumer never holds the room back: it is closed (4008) as soon as it can take
     * the close frame, and dropped if it cannot within a few seconds. */
    s->app->m.slow_consumers++;
    s->close_code = 4008;
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, 5);
    session_wake(s);
}

/* Passes a room's new events to one viewer. Returns 1 when it wrote a frame. */
static int pass_one(struct room *room, struct session *s, uint64_t now)
{
    uint64_t max = (uint64_t)room->app->cfg.fanout_max_queue;
    if (s->cursor >= room->head) {
        return 0; /* nothing new */
    }
    if (s->want_write) {
        /* A WRITEABLE is due and will send it. lws may spend a writable turn on its own
         * frames (a pong) without calling us: ask again if it is late. */
        if (now - s->want_since > 10) {
            s->want_since = now;
            lws_callback_on_writable(s->wsi);
        }
        return 0;
    }
    if (s->close_code || s->going_away || s->out_head) {
        session_wake(s); /* personal frames and closes go out from WRITEABLE */
        return 0;
    }
    if (lws_partial_buffered(s->wsi)) {
        /* Its socket took only part of the last frame. Behind by more than fanout.max_queue
         * while it cannot take more: slow. */
        if (room->head - s->cursor > max && s->close_code != 4008) {
            slow_consumer(s);
        } else {
            session_wake(s);
        }
        return 0;
    }
    /* Written directly, at once: no WRITEABLE round trip (which re-arms epoll twice per
     * frame). */
    if (fanout_write(s) < 0) {
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    } else if (lws_partial_buffered(s->wsi) || s->cursor < room->head) {
        session_wake(s);
    }
    return 1;
}

void rooms_fanout_pass(struct app *app)
{
    int budget = FANOUT_SLICE;
    uint64_t now = uv_now(app->loop);
    while (app->dirty_rooms && budget > 0) {
        struct room *room = app->dirty_rooms;
        struct session *s = room->pass_next;
        if (!s) {
            s = room->viewers;
            room->pass_head = room->head;
        }
        while (s && budget > 0) {
            struct session *snext = s->rnext;
            budget -= pass_one(room, s, now);
            s = snext;
        }
        room->pass_next = s;
        if (s) {
            break; /* the slice is used up: resume here after the next poll */
        }
        if (room->head != room->pass_head) {
            /* Events arrived during the pass: the viewers it served before them need another.
             * The room goes to the end of the list so other rooms get their turn. */
            if (room->dnext) {
                app->dirty_rooms = room->dnext;
                struct room *last = room->dnext;
                while (last->dnext) {
                    last = last->dnext;
                }
                last->dnext = room;
                room->dnext = NULL;
            }
            continue;
        }
        app->dirty_rooms = room->dnext;
        room->dirty = false;
        room->dnext = NULL;
    }
    if (app->dirty_rooms) {
        uv_idle_start(&app->fanout_idle, fanout_idle_noop);
    } else {
        uv_idle_stop(&app->fanout_idle);
    }
}

/* An event the session was already sent in a resume's replay (or that its join's state
 * includes): a seq event up to s->skip_upto of the same epoch. The first later seq event ends
 * the skipping. */
static bool skipped(struct session *s, const struct fanout_msg *m)
{
    if (!s->skip_upto || !m->seq) {
        return false;
    }
    if (m->epoch == s->skip_epoch && m->seq <= s->skip_upto) {
        return true;
    }
    s->skip_upto = 0;
    return false;
}

int fanout_write(struct session *s)
{
    struct room *room = s->room;
    struct app *app = s->app;
    uint64_t behind = room->head - s->cursor;
    if (behind >= room->ring_cap) {
        /* Its next events were overwritten: it cannot be served in order any more. */
        if (s->close_code != 4008) {
            app->m.slow_consumers++;
        }
        return session_close_now(s, 4008, "slow consumer");
    }
    size_t mask = room->ring_cap - 1;
    while (s->cursor < room->head && skipped(s, room->ring[s->cursor & mask])) {
        s->cursor++;
    }
    behind = room->head - s->cursor;
    if (behind == 0) {
        return 0;
    }
    struct fanout_msg *first = room->ring[s->cursor & mask];
    uint64_t n = 1, sent = 1;
    int w;
    if (behind == 1) {
        w = lws_write(s->wsi, first->buf + LWS_PRE, first->len, LWS_WRITE_TEXT);
        app->m.bytes_out += first->len;
    } else {
        /* Several events pending: pack them into one batch frame, encoded once per pass. */
        struct proto_buf *b = &app->scratch;
        proto_buf_reset(b);
        proto_buf_puts(b, "{\"type\":\"batch\",\"events\":[");
        proto_buf_append(b, (const char *)first->buf + LWS_PRE, first->len);
        while (n < behind && n < BATCH_MAX_EVENTS && b->len < FANOUT_BATCH_MAX_BYTES) {
            struct fanout_msg *m = room->ring[(s->cursor + n) & mask];
            n++;
            if (skipped(s, m)) {
                continue;
            }
            proto_buf_puts(b, ",");
            proto_buf_append(b, (const char *)m->buf + LWS_PRE, m->len);
            sent++;
        }
        proto_buf_puts(b, "]}");
        if (b->oom) {
            return -1;
        }
        w = lws_write(s->wsi, (unsigned char *)proto_buf_text(b), b->len, LWS_WRITE_TEXT);
        app->m.bytes_out += b->len;
        app->m.batch_frames++;
    }
    app->m.frames_out++;
    app->m.events_out += sent;
    app->m.batch_le[sent <= 1     ? 0
                    : sent <= 4   ? 1
                    : sent <= 16  ? 2
                    : sent <= 64  ? 3
                    : sent <= 256 ? 4
                                  : 5]++;
    s->cursor += n;
    if (w < 0) {
        return -1;
    }
    return 0;
}

static uint64_t parse_seq(const char *msg, size_t len)
{
    const char *p = memmem(msg, len, "\"seq\":", 6);
    if (!p) {
        return 0;
    }
    return strtoull(p + 6, NULL, 10);
}

/* ---- the room's stream: seq events in order, gaps filled from the history ---- */

static void stream_admit(struct room *room, struct fanout_msg *m, bool may_fill);

struct fill_ctx {
    struct app *app;
    char room[65];
    unsigned gen;
    unsigned opened_gen; /* the room's, when the fill was asked for */
};

/* Passes on the messages held during a fill; a gap still left among them is not filled
 * again (the history has no more to give, or Redis is unreachable): it is passed on. */
static void stream_release_held(struct room *room)
{
    while (room->held && !room->filling) {
        struct fanout_msg *m = room->held;
        room->held = m->next;
        if (!room->held) {
            room->held_tail = NULL;
        }
        m->next = NULL;
        stream_admit(room, m, false);
    }
}

static bool held_closes(const struct room *room)
{
    for (const struct fanout_msg *m = room->held; m; m = m->next) {
        if (m->closes_room) {
            return true;
        }
    }
    return false;
}

static void closed_missed(struct room *room)
{
    char ev[128];
    int n = ledger_room_closed_event(ev, sizeof(ev), room->name);
    struct fanout_msg *m = fanout_msg_new(ev, (size_t)n);
    if (m) {
        m->closes_room = true;
        rooms_broadcast(room, m);
        room->close_made = true;
    }
}

static void fill_done(void *ud, int status, const struct ledger_room_events_reply *r)
{
    struct fill_ctx *c = ud;
    struct room *room = rooms_get(c->app, c->room, false);
    if (!room || !room->filling || room->fill_gen != c->gen) {
        free(c);
        return;
    }
    room->filling = false;
    struct app *app = c->app;
    unsigned opened_gen = c->opened_gen;
    free(c);
    app->m.gap_fills++;
    if (status == 0 && r->found && r->epoch == room->epoch) {
        for (size_t i = 0; i < r->nevents; i++) {
            uint64_t seq = parse_seq(r->events[i], r->lens[i]);
            if (seq <= room->last_seq) {
                continue;
            }
            struct fanout_msg *m = fanout_msg_new(r->events[i], r->lens[i]);
            if (!m) {
                break;
            }
            m->seq = seq;
            m->epoch = r->epoch;
            app->m.gap_events++;
            rooms_broadcast(room, m);
            room->last_seq = seq;
        }
        if (room->live && !r->live && !held_closes(room) && room->opened_gen == opened_gen) {
            /* Its room_closed was published while the node was not subscribed (or is still
             * on its way: rooms_on_message drops it then). */
            closed_missed(room);
        }
    }
    stream_release_held(room);
}

/* Reads the room's events after last_seq; until they are in, new messages are held. */
static void stream_fill(struct room *room)
{
    struct app *app = room->app;
    struct fill_ctx *c = malloc(sizeof(*c));
    if (!c) {
        return;
    }
    c->app = app;
    snprintf(c->room, sizeof(c->room), "%s", room->name);
    /* One counter for every room: a room freed and made again under the same name does not
     * meet its predecessor's late reply. */
    static unsigned fill_gen;
    c->gen = room->fill_gen = ++fill_gen;
    c->opened_gen = room->opened_gen;
    if (ledger_room_events(app->ledger, room->name, (long long)room->last_seq,
                           app->cfg.rooms_history_size, fill_done, c, NULL) < 0) {
        free(c);
        return;
    }
    room->filling = true;
}

static void stream_admit(struct room *room, struct fanout_msg *m, bool may_fill)
{
    if (room->filling) {
        if (room->held_tail) {
            room->held_tail->next = m;
        } else {
            room->held = m;
        }
        room->held_tail = m;
        return;
    }
    if (m->seq && m->epoch) {
        if (m->epoch != room->epoch) {
            /* The first seq event seen, or the seq started over: it starts the stream. */
            room->epoch = m->epoch;
            room->last_seq = m->seq - 1;
        }
        if (m->seq <= room->last_seq) {
            free(m); /* already passed on (a fill read it too) */
            return;
        }
        if (m->seq > room->last_seq + 1) {
            if (may_fill && room->app->ledger && ledger_ready(room->app->ledger)) {
                stream_fill(room);
                if (room->filling) {
                    stream_admit(room, m, false); /* held */
                    return;
                }
            }
            room->app->m.gaps_unfilled++;
        }
        room->last_seq = m->seq;
    }
    rooms_broadcast(room, m);
}

void rooms_opened(struct room *room)
{
    room->live = true;
    room->opened_gen++;
    room->close_made = false;
}

void rooms_note_seq(struct room *room, long long epoch, uint64_t seq)
{
    if (epoch > 0 && room->epoch == 0 && !room->filling) {
        room->epoch = epoch;
        room->last_seq = seq;
    }
}

/* The ts_ms of a room event (its last field), 0 when it has none. */
static int64_t event_ts_ms(const struct fanout_msg *m)
{
    static const char key[] = "\"ts_ms\":";
    const char *text = (const char *)m->buf + LWS_PRE;
    for (size_t i = m->len; i >= sizeof(key) - 1; i--) {
        if (memcmp(text + i - (sizeof(key) - 1), key, sizeof(key) - 1) == 0) {
            return strtoll(text + i, NULL, 10);
        }
    }
    return 0;
}

bool rooms_ring_from(const struct room *room, long long epoch, uint64_t since, uint64_t *out_pos)
{
    if (room->epoch != epoch || room->last_seq <= since || room->filling) {
        return false;
    }
    /* Back from the newest: seq events must count down to since + 1 without a hole. */
    uint64_t want = room->last_seq;
    uint64_t lo = room->head > room->ring_cap ? room->head - room->ring_cap : 0;
    if (lo < room->tail) {
        lo = room->tail;
    }
    int64_t cutoff = ledger_now_ms() - (int64_t)room->app->cfg.rooms_history_ttl_s * 1000;
    for (uint64_t c = room->head; c > lo; c--) {
        const struct fanout_msg *m = room->ring[(c - 1) & (room->ring_cap - 1)];
        if (!m) {
            return false;
        }
        if (!m->seq) {
            continue;
        }
        if (m->seq != want || m->epoch != epoch) {
            return false;
        }
        if (want == since + 1) {
            *out_pos = c - 1;
            return event_ts_ms(m) >= cutoff; /* else dropped from the history too */
        }
        want--;
    }
    return false;
}

void rooms_on_message(struct app *app, const char *name, long long epoch, const char *msg,
                      size_t len)
{
    struct room *room = rooms_get(app, name, false);
    if (!room) {
        return;
    }
    static const char opened[] = "{\"type\":\"room_opened\"";
    if (len >= sizeof(opened) - 1 && memcmp(msg, opened, sizeof(opened) - 1) == 0) {
        /* A control message: the room is live again (viewers stay attached across a close). */
        json_t *j = json_loadb(msg, len, 0, NULL);
        json_t *c = json_object_get(j, "creator");
        const char *cid = json_string_value(json_object_get(c, "id"));
        const char *cname = json_string_value(json_object_get(c, "name"));
        if (cid && cname) {
            rooms_opened(room);
            snprintf(room->creator_id, sizeof(room->creator_id), "%s", cid);
            snprintf(room->creator_name, sizeof(room->creator_name), "%s", cname);
        }
        json_decref(j);
        return;
    }
    static const char overlay[] = "{\"type\":\"overlay\"";
    if (len >= sizeof(overlay) - 1 && memcmp(msg, overlay, sizeof(overlay) - 1) == 0) {
        /* A control for the room's overlays only (SPEC 5). */
        for (struct session *s = room->viewers; s; s = s->rnext) {
            if (s->claims.role == AUTH_ROLE_OVERLAY) {
                session_send(s, msg, len);
            }
        }
        return;
    }
    struct fanout_msg *m = fanout_msg_new(msg, len);
    if (!m) {
        return;
    }
    static const char closed[] = "{\"type\":\"room_closed\"";
    if (len >= sizeof(closed) - 1 && memcmp(msg, closed, sizeof(closed) - 1) == 0) {
        if (room->close_made && !room->live) {
            room->close_made = false; /* a gap fill passed it on already */
            free(m);
            return;
        }
        m->closes_room = true;
    } else {
        m->seq = parse_seq(msg, len);
        m->epoch = m->seq ? epoch : 0;
        /* A streak is open: its combo_end is due one window after this send. */
        static const char open_combo[] = "\"combo\":{\"count\":";
        if (memmem(msg, len, open_combo, sizeof(open_combo) - 1)) {
            int64_t due = ledger_now_ms() + app->cfg.gifts_combo_window_ms + 20;
            if (!room->combo_due_ms || due < room->combo_due_ms) {
                room->combo_due_ms = due;
            }
        }
    }
    stream_admit(room, m, true);
}

struct combo_ctx {
    struct app *app;
    char room[65];
};

static void combo_done(void *ud, int status, const struct ledger_combo_reply *r)
{
    struct combo_ctx *c = ud;
    struct room *room = rooms_get(c->app, c->room, false);
    if (room) {
        room->combo_sweeping = false;
        if (status == 0) {
            long long next = r->next_due_ms;
            long long redis_now = r->now_ms;
            /* Redis's clock decides; translate its deadline to ours. */
            room->combo_due_ms = next < 0 ? 0 : ledger_now_ms() + (next - redis_now) + 5;
        } else {
            room->combo_due_ms = ledger_now_ms() + 200; /* try again */
        }
    }
    free(c);
}

void rooms_combo_sweep(struct app *app, const char *name, bool all)
{
    struct combo_ctx *c = malloc(sizeof(*c));
    if (!c) {
        return;
    }
    c->app = app;
    snprintf(c->room, sizeof(c->room), "%s", name);
    if (ledger_combo_sweep(app->ledger, name, all, combo_done, c, NULL) < 0) {
        free(c);
        return;
    }
    struct room *room = rooms_get(app, name, false);
    if (room) {
        room->combo_sweeping = true;
    }
}

void rooms_combo_tick(struct app *app)
{
    if (!app->ledger || !ledger_ready(app->ledger)) {
        return;
    }
    int64_t now = ledger_now_ms();
    for (size_t i = 0; i < app->rooms_cap; i++) {
        for (struct room *r = app->rooms[i]; r; r = r->hnext) {
            if (r->combo_due_ms && r->combo_due_ms <= now && !r->combo_sweeping) {
                rooms_combo_sweep(app, r->name, false);
            }
        }
    }
}

void rooms_resubscribe(struct app *app)
{
    for (size_t i = 0; i < app->rooms_cap; i++) {
        for (struct room *r = app->rooms[i]; r; r = r->hnext) {
            subscribe(r);
            /* What was published while the subscription was down is in the history. */
            if (r->epoch && !r->filling && ledger_ready(app->ledger)) {
                stream_fill(r);
            }
        }
    }
}

void rooms_presence_tick(struct app *app, bool refresh_all, int slice)
{
    if (slice <= 0) {
        /* Safety net for session_wake's once-per-WRITEABLE rule: a session with output
         * waiting asks again, in case lws consumed a writable turn for its own buffered data. */
        for (struct session *s = app->sessions; s; s = s->anext) {
            if (s->out_head || s->close_code || (s->room && s->cursor < s->room->head)) {
                lws_callback_on_writable(s->wsi);
            }
        }
    }
    if (!app->ledger || !ledger_ready(app->ledger)) {
        return;
    }
    for (size_t i = 0; i < app->rooms_cap; i++) {
        if (slice >= 0 && i % ROOMS_PRESENCE_SLICES != (size_t)slice) {
            continue;
        }
        for (struct room *r = app->rooms[i]; r; r = r->hnext) {
            if (r->nviewers != r->reported || (refresh_all && r->nviewers > 0)) {
                presence_write(app, r);
            }
        }
    }
}
