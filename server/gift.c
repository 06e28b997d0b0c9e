/* gift: the gift path — validate, debit (sender's partition), publish (room), ack; the outbox
 * sweeper that publishes debits whose node died before it could. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

/* The publish payload the debit script stores in the outbox and the idempotency record:
 * fields separated by 0x1f, which no identifier, display name or JSON text here contains. */
enum {
    PL_ROOM,
    PL_SUB,
    PL_ID,
    PL_NAME,
    PL_COINS,
    PL_DIAMONDS,
    PL_COUNT,
    PL_GIFT,
    PL_STREAKABLE,
    PL_FROMGIFT, /* "from":{…},"gift":{…} (for combo_end) */
    PL_TAIL1,    /* the event after seq, up to "combo": */
    PL_TAIL2,    /* the event after the combo value */
    PL__COUNT,
};

enum { STAGE_DEBIT = 1, STAGE_PUBLISH, STAGE_SWEEP };

#define HISTORY_CAP "200"

static int split_payload(char *pl, size_t len, char *out[PL__COUNT], size_t outlen[PL__COUNT])
{
    char *p = pl, *end = pl + len;
    for (int i = 0; i < PL__COUNT; i++) {
        char *sep = i < PL__COUNT - 1 ? memchr(p, 0x1f, (size_t)(end - p)) : end;
        if (!sep) {
            return -EINVAL;
        }
        out[i] = p;
        outlen[i] = (size_t)(sep - p);
        p = sep + 1;
    }
    return 0;
}

static void outbox_key(const struct app *app, char *out, size_t len, const char *sub)
{
    char pre[64];
    partition_prefix(pre, sizeof(pre), ledger_partition(sub, app->cfg.ledger_partitions));
    snprintf(out, len, "%soutbox", pre);
}

static void ignore_reply(void *ud, int status, const redisReply *r)
{
    (void)ud;
    (void)status;
    (void)r;
}

static void send_ack(struct session *s, const char *id, long balance, long long seq, bool dup)
{
    struct proto_buf *b = &s->app->scratch;
    proto_buf_reset(b);
    proto_buf_puts(b, "{\"type\":\"ack\",\"id\":");
    proto_buf_json_cstr(b, id);
    proto_buf_printf(b, ",\"balance\":%ld,\"seq\":%lld,\"duplicate\":%s}", balance, seq,
                     dup ? "true" : "false");
    session_send_buf(s, b);
}

static void publish_done(struct pending *p, int status, const redisReply *r)
{
    struct app *app = p->app;
    if (status == 0 && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        long long seq = r->element[0]->integer;
        if (r->element[1]->integer == 1) {
            app->m.events_published++;
            if (p->stage == STAGE_SWEEP) {
                app->m.outbox_swept++;
            }
        }
        /* Broadcast done (now or before): the event leaves the outbox. */
        char kout[128];
        outbox_key(app, kout, sizeof(kout), p->sub);
        const char *argv[] = {"ZREM", kout, p->payload};
        size_t lens[] = {4, strlen(kout), p->payload_len};
        ledger_command(app->ledger, 3, argv, lens, ignore_reply, NULL, NULL);
        if (p->s && p->stage == STAGE_PUBLISH) {
            send_ack(p->s, p->id, p->balance, seq, p->duplicate);
        }
    } else if (p->s && p->stage == STAGE_PUBLISH) {
        /* Committed but not yet broadcast: the outbox sweeper will publish it, and a retry
         * with the same id reports the outcome. */
        session_error(p->s, PROTO_ERR_LEDGER_UNAVAILABLE,
                      "charged; the broadcast is pending: retry with the same id for the ack",
                      p->id);
    }
    free(p->payload);
    free(p);
}

/* Runs the publish script for p->payload (owned by p). p->stage says who waits for it. */
static void publish_start(struct pending *p)
{
    struct app *app = p->app;
    char *f[PL__COUNT];
    size_t fl[PL__COUNT];
    /* Split a copy: the original text is the outbox member to remove afterwards. */
    char *copy = malloc(p->payload_len + 1);
    if (!copy) {
        goto fail;
    }
    memcpy(copy, p->payload, p->payload_len);
    copy[p->payload_len] = '\0';
    if (split_payload(copy, p->payload_len, f, fl) < 0 || fl[PL_ROOM] == 0 ||
        fl[PL_ROOM] > 64 || fl[PL_SUB] == 0 || fl[PL_SUB] > 64 || fl[PL_ID] > 64) {
        free(copy);
        goto fail;
    }
    for (int i = 0; i < PL__COUNT; i++) {
        f[i][fl[i]] = '\0';
    }
    snprintf(p->sub, sizeof(p->sub), "%s", f[PL_SUB]);
    const char *room = f[PL_ROOM];
    static const char *const suffix[] = {"seq", NULL, "totals", "lb", "lbnames",
                                         "hist", "combos", "combodue", "state"};
    char keys[9][320];
    for (int i = 0; i < 9; i++) {
        if (suffix[i]) {
            rooms_key(keys[i], sizeof(keys[i]), room, suffix[i]);
        }
    }
    char dsuffix[160];
    snprintf(dsuffix, sizeof(dsuffix), "d:%s:%s", f[PL_SUB], f[PL_ID]);
    rooms_key(keys[1], sizeof(keys[1]), room, dsuffix);
    char ch[128], head[160], ttl[24], window[24];
    rooms_channel(ch, sizeof(ch), room);
    snprintf(head, sizeof(head), "{\"type\":\"gift\",\"room\":\"%s\",\"seq\":", room);
    snprintf(ttl, sizeof(ttl), "%ld", app->cfg.ledger_idempotency_ttl_s);
    snprintf(window, sizeof(window), "%ld", app->cfg.gifts_combo_window_ms);
    struct proto_buf name;
    proto_buf_init(&name, 0);
    proto_buf_json_cstr(&name, f[PL_NAME]);
    const char *argv[] = {"9",         keys[0],      keys[1],        keys[2],    keys[3],
                          keys[4],     keys[5],      keys[6],        keys[7],    keys[8],
                          head,        f[PL_TAIL1],  f[PL_TAIL2],    ch,         ttl,
                          f[PL_SUB],   name.oom ? "\"\"" : proto_buf_text(&name),
                          f[PL_COINS], f[PL_DIAMONDS], f[PL_COUNT],  HISTORY_CAP, f[PL_GIFT],
                          f[PL_STREAKABLE], f[PL_FROMGIFT], window, room};
    struct session *s = p->stage == STAGE_PUBLISH ? p->s : NULL;
    p->done = publish_done;
    char id[65];
    snprintf(id, sizeof(id), "%s", p->id);
    int rc = pending_script(p, LEDGER_SCRIPT_PUBLISH, 26, argv, NULL);
    proto_buf_cleanup(&name);
    free(copy);
    if (rc < 0 && s) {
        /* pending_script freed p; the event waits in the outbox for the sweeper. */
        session_error(s, PROTO_ERR_LEDGER_UNAVAILABLE,
                      "charged; the broadcast is pending: retry with the same id for the ack", id);
    }
    return;
fail:
    if (p->s && p->stage == STAGE_PUBLISH) {
        session_error(p->s, PROTO_ERR_INTERNAL, "bad outbox payload", p->id);
    }
    free(p->payload);
    free(p);
}

/* A retry of a committed send: publish its stored event (a no-op when it was already
 * broadcast) to learn its seq, and answer with the first outcome. Takes over p. */
static void replay_committed(struct pending *p, long balance, const char *payload, size_t len)
{
    p->app->m.gifts_duplicate++;
    p->balance = balance;
    p->duplicate = true;
    free(p->payload);
    p->payload = malloc(len + 1);
    if (!p->payload) {
        if (p->s) {
            session_error(p->s, PROTO_ERR_INTERNAL, "out of memory", p->id);
        }
        free(p);
        return;
    }
    memcpy(p->payload, payload, len);
    p->payload[len] = '\0';
    p->payload_len = len;
    p->stage = STAGE_PUBLISH;
    publish_start(p);
}

static void reject(struct session *s, enum proto_err e, const char *msg, const char *id);

/* The answer to the idempotency lookup of a send refused on this node (p->stage holds the
 * refusal): a send committed before is answered with its first outcome, anything else with
 * the refusal. */
static void replay_done(struct pending *p, int status, const redisReply *r)
{
    enum proto_err e = (enum proto_err)p->stage;
    if (status == 0 && r->type == REDIS_REPLY_STRING) {
        char digest[100];
        snprintf(digest, sizeof(digest), "%s:%ld", p->gift.id, p->count);
        const char *bar = memchr(r->str, '|', r->len);
        const char *bar2 = bar ? memchr(bar + 1, '|', r->len - (size_t)(bar + 1 - r->str)) : NULL;
        if (!bar || !bar2) {
            e = PROTO_ERR_INTERNAL;
        } else if ((size_t)(bar - r->str) != strlen(digest) ||
                   memcmp(r->str, digest, strlen(digest)) != 0) {
            e = PROTO_ERR_BAD_REQUEST;
        } else {
            long bal = strtol(bar + 1, NULL, 10);
            replay_committed(p, bal, bar2 + 1, r->len - (size_t)(bar2 + 1 - r->str));
            return;
        }
    }
    if (p->s) {
        reject(p->s, e,
               e == PROTO_ERR_BAD_REQUEST ? "id was already used for another gift or count"
                                          : NULL,
               p->id);
    }
    free(p);
}

/* Refuses a send for a reason that may not have held when it was first sent (room closed,
 * left, catalog changed): if (sub, id) was committed before, the retry gets its first
 * outcome instead (SPEC 4.1). Costs a Redis read, on refusals only. */
static void refuse_or_replay(struct session *s, const struct proto_msg *m, enum proto_err e)
{
    struct app *app = s->app;
    struct pending *p = pending_new(app, s, NULL, replay_done);
    if (!p) {
        reject(s, e, NULL, m->id);
        return;
    }
    p->stage = (int)e;
    snprintf(p->gift.id, sizeof(p->gift.id), "%s", m->gift);
    p->count = m->count;
    snprintf(p->id, sizeof(p->id), "%s", m->id);
    snprintf(p->sub, sizeof(p->sub), "%s", s->claims.sub);
    char idkind[80], kidem[300];
    snprintf(idkind, sizeof(idkind), "idem:%s", m->id);
    user_key(app, kidem, sizeof(kidem), idkind, s->claims.sub);
    const char *argv[] = {"GET", kidem};
    if (pending_command(p, 2, argv, NULL) < 0) {
        reject(s, e, NULL, m->id);
    }
}

static void debit_done(struct pending *p, int status, const redisReply *r)
{
    struct app *app = p->app;
    struct session *s = p->s;
    if (status < 0) {
        if (s) {
            session_error(s, PROTO_ERR_LEDGER_UNAVAILABLE,
                          status == -EAGAIN ? NULL
                                            : "ledger timed out; retry with the same id to learn "
                                              "whether it was charged",
                          p->id);
        }
        app->m.gifts_rejected[PROTO_ERR_LEDGER_UNAVAILABLE]++;
        goto done;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
        if (s) {
            session_error(s, PROTO_ERR_INTERNAL, "unexpected ledger reply", p->id);
        }
        goto done;
    }
    long long kind = r->element[0]->integer;
    if (kind == 1 && r->elements == 2) {
        app->m.gifts_accepted++;
        app->m.coins_debited += (uint64_t)p->cost;
        p->balance = (long)r->element[1]->integer;
        p->duplicate = false;
        p->stage = STAGE_PUBLISH;
        publish_start(p);
        return;
    }
    if (kind == 2 && r->elements == 3 && r->element[2]->type == REDIS_REPLY_STRING) {
        replay_committed(p, (long)r->element[1]->integer, r->element[2]->str, r->element[2]->len);
        return;
    }
    if (kind == 0 && r->elements == 3) {
        enum proto_err e = proto_err_from_code(r->element[1]->str);
        if (e == PROTO_OK) {
            e = PROTO_ERR_INTERNAL;
        }
        app->m.gifts_rejected[e]++;
        if (s) {
            char msg[128];
            snprintf(msg, sizeof(msg), "%s (balance %lld, cost %ld)", proto_err_message(e),
                     r->element[2]->integer, p->cost);
            session_error(s, e, msg, p->id);
        }
        goto done;
    }
    if (kind == -1) {
        app->m.gifts_rejected[PROTO_ERR_BAD_REQUEST]++;
        if (s) {
            session_error(s, PROTO_ERR_BAD_REQUEST,
                          "id was already used for another gift or count", p->id);
        }
        goto done;
    }
    if (s) {
        session_error(s, PROTO_ERR_INTERNAL, "unexpected ledger reply", p->id);
    }
done:
    free(p->payload);
    free(p);
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
    enum proto_err e = !room                                           ? PROTO_ERR_NOT_JOINED
                       : !room->live                                   ? PROTO_ERR_ROOM_NOT_LIVE
                       : !g                                            ? PROTO_ERR_UNKNOWN_GIFT
                       : !gifts_available(g, now)                      ? PROTO_ERR_GIFT_UNAVAILABLE
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
    struct pending *p = pending_new(app, s, NULL, debit_done);
    if (!p) {
        reject(s, PROTO_ERR_INTERNAL, "out of memory", m->id);
        return;
    }
    p->stage = STAGE_DEBIT;
    p->gift = *g;
    p->count = m->count;
    p->cost = g->coins * m->count;
    snprintf(p->id, sizeof(p->id), "%s", m->id);
    snprintf(p->sub, sizeof(p->sub), "%s", s->claims.sub);
    snprintf(p->room, sizeof(p->room), "%s", room->name);

    /* The event text after seq, encoded once here; every node sends it as is. The publish
     * script adds seq and the combo value. */
    struct proto_buf fg;
    proto_buf_init(&fg, 0);
    proto_buf_puts(&fg, "\"from\":{\"id\":");
    proto_buf_json_cstr(&fg, s->claims.sub);
    proto_buf_puts(&fg, ",\"name\":");
    proto_buf_json_cstr(&fg, s->claims.name);
    proto_buf_puts(&fg, "},\"gift\":{\"id\":");
    proto_buf_json_cstr(&fg, g->id);
    proto_buf_puts(&fg, ",\"name\":");
    proto_buf_json_cstr(&fg, g->name);
    proto_buf_printf(&fg, ",\"coins\":%ld,\"diamonds\":%ld,\"tier\":\"%s\",\"animation\":",
                     g->coins, g->diamonds, gifts_tier_name(g->tier));
    proto_buf_json_cstr(&fg, g->animation);
    proto_buf_puts(&fg, "}");

    struct proto_buf pl;
    proto_buf_init(&pl, 0);
    proto_buf_printf(&pl, "%s\x1f%s\x1f%s\x1f%s\x1f%ld\x1f%ld\x1f%ld\x1f%s\x1f%d\x1f", room->name,
                     s->claims.sub, m->id, s->claims.name, p->cost, g->diamonds * m->count,
                     m->count, g->id, g->streakable ? 1 : 0);
    proto_buf_append(&pl, proto_buf_text(&fg), fg.len);
    proto_buf_puts(&pl, "\x1f,\"id\":");
    proto_buf_json_cstr(&pl, m->id);
    proto_buf_puts(&pl, ",");
    proto_buf_append(&pl, proto_buf_text(&fg), fg.len);
    proto_buf_printf(&pl, ",\"count\":%ld,\"combo\":\x1f,\"ts_ms\":%lld}", m->count,
                     (long long)now);
    proto_buf_cleanup(&fg);
    if (pl.oom) {
        proto_buf_cleanup(&pl);
        free(p);
        reject(s, PROTO_ERR_INTERNAL, "out of memory", m->id);
        return;
    }
    p->payload_len = pl.len;
    p->payload = malloc(pl.len + 1);
    if (p->payload) {
        memcpy(p->payload, proto_buf_text(&pl), pl.len);
        p->payload[pl.len] = '\0';
    }
    proto_buf_cleanup(&pl);

    char kbal[200], kidem[300], kbud[200], kspent[200], kpend[100], kout[100], idkind[80];
    char digest[100], cost[24], ttl[24], field[220], count[24], dia[24], nows[24], pre[64];
    user_key(app, kbal, sizeof(kbal), "bal", p->sub);
    snprintf(idkind, sizeof(idkind), "idem:%s", m->id);
    user_key(app, kidem, sizeof(kidem), idkind, p->sub);
    user_key(app, kbud, sizeof(kbud), "budget", p->sub);
    gift_spent_key(app, kspent, sizeof(kspent), p->sub);
    unsigned part = ledger_partition(p->sub, app->cfg.ledger_partitions);
    partition_prefix(pre, sizeof(pre), part);
    snprintf(kpend, sizeof(kpend), "%spending", pre);
    snprintf(kout, sizeof(kout), "%soutbox", pre);
    snprintf(digest, sizeof(digest), "%s:%ld", g->id, m->count);
    snprintf(cost, sizeof(cost), "%ld", p->cost);
    snprintf(ttl, sizeof(ttl), "%ld", app->cfg.ledger_idempotency_ttl_s);
    snprintf(field, sizeof(field), "%s\x1f%s\x1f%s", room->creator_id, room->name, g->id);
    snprintf(count, sizeof(count), "%ld", m->count);
    snprintf(dia, sizeof(dia), "%ld", g->diamonds * m->count);
    snprintf(nows, sizeof(nows), "%lld", (long long)now);
    if (!p->payload) {
        free(p);
        reject(s, PROTO_ERR_INTERNAL, "out of memory", m->id);
        return;
    }
    const char *argv[] = {"6",   kbal,  kidem, kbud,  kspent, kpend, kout,   digest,
                          cost,  ttl,   field, count, dia,    nows,  p->payload};
    size_t lens[15];
    for (int i = 0; i < 14; i++) {
        lens[i] = strlen(argv[i]);
    }
    lens[14] = p->payload_len;
    /* Before the answer: a debit that times out may still have committed. */
    flush_note_partition(app, part);
    if (pending_script(p, LEDGER_SCRIPT_DEBIT, 15, argv, lens) < 0) {
        /* Not sent: nothing was charged. */
        reject(s, PROTO_ERR_LEDGER_UNAVAILABLE, "ledger unavailable; nothing was charged",
               m->id);
    }
}

/* ---- outbox sweeper ---- */

void gift_publish_payload(struct app *app, char *payload, size_t len, bool from_sweeper)
{
    struct pending *p = pending_new(app, NULL, NULL, publish_done);
    if (!p) {
        free(payload);
        return;
    }
    p->payload = payload;
    p->payload_len = len;
    p->stage = from_sweeper ? STAGE_SWEEP : STAGE_PUBLISH;
    publish_start(p);
}

static void sweep_done(void *ud, int status, const redisReply *r)
{
    struct app *app = ud;
    if (status < 0 || r->type != REDIS_REPLY_ARRAY || app->shutting_down) {
        return;
    }
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING) {
            continue;
        }
        char *copy = malloc(e->len + 1);
        if (!copy) {
            return;
        }
        memcpy(copy, e->str, e->len);
        copy[e->len] = '\0';
        gift_publish_payload(app, copy, e->len, true);
    }
}

#define SWEEP_TICK_MS 100

static void sweep_fired(uv_timer_t *t)
{
    struct app *app = t->data;
    if (!ledger_ready(app->ledger) || app->shutting_down) {
        return;
    }
    /* Visit every partition once per grace/4; the lease lasts grace/2, so a dead node's
     * partitions are taken over and their due entries published within about 1.25 × grace. */
    long P = app->cfg.ledger_partitions;
    long cycle = app->cfg.ledger_outbox_grace_ms / 4;
    if (cycle < SWEEP_TICK_MS) {
        cycle = SWEEP_TICK_MS;
    }
    long per_tick = (P * SWEEP_TICK_MS + cycle - 1) / cycle;
    int64_t now = ledger_now_ms();
    char lease_ms[24], cutoff[24];
    snprintf(lease_ms, sizeof(lease_ms), "%ld", app->cfg.ledger_outbox_grace_ms / 2 + 100);
    snprintf(cutoff, sizeof(cutoff), "%lld",
             (long long)(now - app->cfg.ledger_outbox_grace_ms));
    for (long i = 0; i < per_tick; i++) {
        unsigned n = app->sweep_next;
        app->sweep_next = (unsigned)((app->sweep_next + 1) % (unsigned long)P);
        char pre[64], klease[96], kout[96];
        partition_prefix(pre, sizeof(pre), n);
        snprintf(klease, sizeof(klease), "%slease", pre);
        snprintf(kout, sizeof(kout), "%soutbox", pre);
        const char *argv[] = {"2", klease, kout, app->node_id, lease_ms, cutoff, "100"};
        ledger_script(app->ledger, LEDGER_SCRIPT_SWEEP, 7, argv, NULL, sweep_done, app, NULL);
    }
}

void gift_sweeper_start(struct app *app)
{
    uv_timer_start(&app->sweep_timer, sweep_fired, SWEEP_TICK_MS, SWEEP_TICK_MS);
}
