/* gift: the gift path — validate locally, then one ledger send (charged and broadcast
 * atomically, coalesced with the other sends of the loop turn), then ack or error. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "config/config.h"
#include "gifts/gifts.h"
#include "ledger_client/ledger_client.h"
#include "protocol/protocol.h"
#include "server/app.h"
#include "server/flush.h"
#include "server/gift.h"
#include "server/limits.h"
#include "server/metrics.h"
#include "server/pending.h"
#include "server/rooms.h"
#include "server/session.h"

static void send_ack(struct session *s, const char *id, long long balance, long long seq, bool dup)
{
    struct proto_buf *b = &s->app->scratch;
    proto_buf_reset(b);
    proto_buf_puts(b, "{\"type\":\"ack\",\"id\":");
    proto_buf_json_cstr(b, id);
    proto_buf_printf(b, ",\"balance\":%lld,\"seq\":%lld,\"duplicate\":%s}", balance, seq,
                     dup ? "true" : "false");
    session_send_direct(s, b); /* acks come from ledger replies, outside lws callbacks */
}

static void reject(struct session *s, enum proto_err e, const char *msg, const char *id);

/* The outcome of a send (or of the lookup of a send refused here): answers the sender. */
static void send_done(void *ud, int status, const struct ledger_gift_reply *r)
{
    struct pending *p = ud;
    struct app *app = p->app;
    pending_answered(p);
    struct session *s = p->s;
    if (p->stage && status == -ENOENT) {
        /* Lookup: never committed, so the local refusal stands. */
        if (s) {
            reject(s, (enum proto_err)p->stage, NULL, p->id);
        }
    } else if (status < 0) {
        enum proto_err e = status == -EPROTO ? PROTO_ERR_INTERNAL : PROTO_ERR_LEDGER_UNAVAILABLE;
        app->m.gifts_rejected[e]++;
        if (s) {
            session_error(s, e,
                          status == -EAGAIN   ? "ledger unavailable; nothing was charged"
                          : status == -EPROTO ? "unexpected ledger reply"
                                              : "ledger timed out; retry with the same id to "
                                                "learn whether it was charged",
                          p->id);
        }
    } else if (r->outcome == LEDGER_GIFT_COMMITTED) {
        app->m.gifts_accepted++;
        app->m.events_published++;
        app->m.coins_debited += (uint64_t)p->cost;
        if (s) {
            send_ack(s, p->id, r->balance, r->seq, false);
        }
    } else if (r->outcome == LEDGER_GIFT_DUPLICATE) {
        app->m.gifts_duplicate++;
        if (s) {
            send_ack(s, p->id, r->balance, r->seq, true);
        }
    } else if (r->outcome == LEDGER_GIFT_REFUSED) {
        enum proto_err e = proto_err_from_code(r->refusal);
        app->m.gifts_rejected[e]++;
        if (s) {
            char msg[128];
            snprintf(msg, sizeof(msg), "%s (balance %lld, cost %ld)", proto_err_message(e),
                     r->balance, p->cost);
            session_error(s, e, msg, p->id);
        }
    } else {
        app->m.gifts_rejected[PROTO_ERR_BAD_REQUEST]++;
        if (s) {
            session_error(s, PROTO_ERR_BAD_REQUEST, "id was already used for another gift or count",
                          p->id);
        }
    }
    free(p);
}

/* Refuses a send for a reason that may not have held when it was first sent (room closed,
 * left, catalog changed): if (sub, id) was committed before, the retry gets its first
 * outcome instead (SPEC 4.1). Costs a Redis read, on refusals only. */
static void refuse_or_replay(struct session *s, const struct proto_msg *m, enum proto_err e)
{
    struct app *app = s->app;
    struct pending *p = pending_new(app, s, NULL);
    if (!p) {
        reject(s, e, NULL, m->id);
        return;
    }
    p->stage = (int)e;
    snprintf(p->id, sizeof(p->id), "%s", m->id);
    if (ledger_gift_lookup(app->ledger, s->claims.sub, m->id, m->gift, m->count, send_done, p,
                           NULL) < 0) {
        free(p);
        reject(s, e, NULL, m->id);
        return;
    }
    pending_track(p);
}

static void reject(struct session *s, enum proto_err e, const char *msg, const char *id)
{
    s->app->m.gifts_rejected[e]++;
    session_error(s, e, msg, id);
}

void gift_handle(struct session *s, const struct proto_msg *m)
{
    struct app *app = s->app;
    if (s->guest || s->claims.role != AUTH_ROLE_VIEWER) {
        reject(s, PROTO_ERR_FORBIDDEN, "only viewers may send gifts", m->id);
        return;
    }
    int64_t now = ledger_now_ms();
    if (s->claims.exp * 1000 <= now) {
        reject(s, PROTO_ERR_UNAUTHORIZED, "token expired: send hello with a fresh token", m->id);
        return;
    }
    struct room *room = s->room;
    const struct gift *g = gifts_find(app->catalog, m->gift);
    enum proto_err e = !room                                          ? PROTO_ERR_NOT_JOINED
                       : !room->live                                  ? PROTO_ERR_ROOM_NOT_LIVE
                       : !g                                           ? PROTO_ERR_UNKNOWN_GIFT
                       : !gifts_available(g, now)                     ? PROTO_ERR_GIFT_UNAVAILABLE
                       : strcmp(s->claims.sub, room->creator_id) == 0 ? PROTO_ERR_SELF_GIFT
                                                                      : PROTO_OK;
    if (e != PROTO_OK) {
        refuse_or_replay(s, m, e);
        return;
    }
    if (!limits_user_gift(app, s->claims.sub, now)) {
        reject(s, PROTO_ERR_RATE_LIMITED, "over limits.gifts_per_sec", m->id);
        return;
    }
    if (s->pending_ledger >= SESSION_MAX_PENDING - 1) {
        reject(s, PROTO_ERR_LEDGER_UNAVAILABLE,
               "too many sends awaiting the ledger; nothing was charged: retry later", m->id);
        return;
    }
    /* The event text after seq, encoded once here; every node sends it as is. The script
     * adds seq, the combo value and the time. */
    struct proto_buf fg, name;
    proto_buf_init(&fg, 0);
    proto_buf_init(&name, 0);
    proto_buf_json_cstr(&name, s->claims.name);
    if (m->anonymous) {
        /* The sender is in no frame: not even its own connection's (its app matches the
         * event by id). */
        proto_buf_puts(&fg, "\"from\":null,\"anonymous\":true");
    } else {
        proto_buf_puts(&fg, "\"from\":{\"id\":");
        proto_buf_json_cstr(&fg, s->claims.sub);
        proto_buf_puts(&fg, ",\"name\":");
        proto_buf_append(&fg, proto_buf_text(&name), name.len);
        proto_buf_puts(&fg, "},\"anonymous\":false");
    }
    proto_buf_puts(&fg, ",\"gift\":{\"id\":");
    proto_buf_json_cstr(&fg, g->id);
    proto_buf_puts(&fg, ",\"name\":");
    proto_buf_json_cstr(&fg, g->name);
    proto_buf_printf(&fg,
                     ",\"coins\":%ld,\"diamonds\":%ld,\"tier\":\"%s\",\"animation\":", g->coins,
                     g->diamonds, gifts_tier_name(g->tier));
    proto_buf_json_cstr(&fg, g->animation);
    proto_buf_puts(&fg, "}");
    struct pending *p = fg.oom || name.oom ? NULL : pending_new(app, s, NULL);
    if (!p) {
        proto_buf_cleanup(&fg);
        proto_buf_cleanup(&name);
        reject(s, PROTO_ERR_INTERNAL, "out of memory", m->id);
        return;
    }
    p->cost = g->coins * m->count;
    snprintf(p->id, sizeof(p->id), "%s", m->id);
    struct ledger_gift_req req = {
        .sub = s->claims.sub,
        .name_json = proto_buf_text(&name),
        .id = m->id,
        .room = room->name,
        .creator = room->creator_id,
        .gift = g->id,
        .coins = g->coins,
        .diamonds = g->diamonds,
        .count = m->count,
        .streakable = g->streakable,
        .anonymous = m->anonymous,
        .event_from_gift = proto_buf_text(&fg),
    };
    /* Before the answer: a send that times out may still have committed. */
    flush_note_partition(app, ledger_partition(s->claims.sub, app->cfg.ledger_partitions));
    int rc = ledger_gift_send(app->ledger, &req, send_done, p, NULL);
    proto_buf_cleanup(&fg);
    proto_buf_cleanup(&name);
    if (rc < 0) {
        free(p);
        /* Not sent: nothing was charged. */
        reject(s, PROTO_ERR_LEDGER_UNAVAILABLE,
               rc == -EBUSY ? "overloaded; nothing was charged: retry later"
                            : "ledger unavailable; nothing was charged",
               m->id);
        return;
    }
    pending_track(p);
}
