/* ops: the ledger's typed operations on rooms, users and money — keys, argument vectors and
 * reply parsing of each script, so that server/ never sees either. */
#include "ledger_client/ledger_client.h"
#include "ledger_client/ledger_client_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define KEY_MAX 256

/* ---- shared plumbing ---- */

int lop_submit(struct ledger *l, int script, int argc, const char *const *argv,
               ledger_reply_cb *reply, const struct lop *op, struct ledger_req **out_req)
{
    return lreq_submit(l, script, argc, argv, NULL, reply, op, sizeof(*op), out_req);
}

int lop_status(int status, const redisReply *r, const char **out_error)
{
    *out_error = NULL;
    if (status < 0) {
        return status;
    }
    if (!r) {
        return -EBADMSG;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        *out_error = r->str ? r->str : "";
        return -EPROTO;
    }
    return 0;
}

bool lop_int(const redisReply *r, size_t i, long long *out)
{
    if (r->type != REDIS_REPLY_ARRAY || i >= r->elements ||
        r->element[i]->type != REDIS_REPLY_INTEGER) {
        return false;
    }
    *out = r->element[i]->integer;
    return true;
}

const char *lop_num(char out[24], long long v)
{
    snprintf(out, 24, "%lld", v);
    return out;
}

/* An identifier the keyspace accepts (a room, user, payment or creator id): 1-64 bytes. */
static bool id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n >= 1 && n <= 64;
}

/* Element i of an array reply as a string ("" when it is not one). */
static const char *elem_str(const redisReply *r, size_t i)
{
    const redisReply *e = r->element[i];
    return e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS ? e->str : "";
}

/* The argument vector of a script: "numkeys", the keys, then the arguments. */
struct args {
    const char *v[24];
    int n;
    char numkeys[8];
};

static void args_init(struct args *a, int nkeys)
{
    snprintf(a->numkeys, sizeof(a->numkeys), "%d", nkeys);
    a->v[0] = a->numkeys;
    a->n = 1;
}

static void args_add(struct args *a, const char *s)
{
    a->v[a->n++] = s;
}

/* ---- room_open ---- */

static void room_open_reply(void *ud, int status, const redisReply *rr)
{
    const struct lop *op = ud;
    if (!op->cb.room_open) {
        return;
    }
    struct ledger_room_open_reply r = {0};
    status = lop_status(status, rr, &r.error);
    long long ok = 0, v = 0;
    if (status == 0) {
        /* {1, session, opened_now} or {0, other creator} */
        if (rr->type != REDIS_REPLY_ARRAY || rr->elements < 2 || !lop_int(rr, 0, &ok)) {
            status = -EBADMSG;
        } else if (ok != 0) {
            r.accepted = true;
            r.session = lop_int(rr, 1, &v) ? v : 0;
            r.opened = lop_int(rr, 2, &v) && v != 0;
        }
    }
    op->cb.room_open(op->ud, status, status == 0 || status == -EPROTO ? &r : NULL);
}

int ledger_room_open(struct ledger *l, const struct ledger_room_open_req *req,
                     ledger_room_open_cb *cb, void *ud, struct ledger_req **out_req)
{
    if (!id_ok(req->room) || !id_ok(req->creator_id) || !req->creator_name) {
        return -EINVAL;
    }
    static const char *const suffix[4] = {"meta", "totals", "lb", "lbnames"};
    char keys[4][KEY_MAX], now[24], channel[KEY_MAX];
    struct args a;
    args_init(&a, 4);
    for (int i = 0; i < 4; i++) {
        lkey_room(keys[i], sizeof(keys[i]), req->room, suffix[i]);
        args_add(&a, keys[i]);
    }
    lkey_channel_arg(channel, sizeof(channel), l, req->room);
    /* The room_opened control message: nodes with viewers still attached to the room learn
     * from it that the room is live again, and who its creator is. */
    json_t *ctl = json_pack("{s:s, s:s, s:{s:s, s:s}}", "type", "room_opened", "room", req->room,
                            "creator", "id", req->creator_id, "name", req->creator_name);
    char *ctl_text = ctl ? json_dumps(ctl, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(ctl);
    args_add(&a, req->creator_id);
    args_add(&a, req->creator_name);
    args_add(&a, req->title ? req->title : "");
    args_add(&a, lop_num(now, ledger_now_ms()));
    args_add(&a, channel);
    args_add(&a, ctl_text ? ctl_text : "{}");
    struct lop op = {.cb.room_open = cb, .ud = ud};
    int rc = lop_submit(l, LEDGER_SCRIPT_ROOM_OPEN, a.n, a.v, room_open_reply, &op, out_req);
    free(ctl_text);
    return rc;
}

/* ---- room_close ---- */

static void room_close_reply(void *ud, int status, const redisReply *rr)
{
    const struct lop *op = ud;
    if (!op->cb.room_close) {
        return;
    }
    struct ledger_room_close_reply r = {0};
    status = lop_status(status, rr, &r.error);
    if (status == 0) {
        /* 1 closed now, 0 already closed, -1 never existed */
        if (rr->type != REDIS_REPLY_INTEGER) {
            status = -EBADMSG;
        } else {
            r.found = rr->integer >= 0;
            r.closed = rr->integer == 1;
        }
    }
    op->cb.room_close(op->ud, status, status == 0 || status == -EPROTO ? &r : NULL);
}

int ledger_room_closed_event(char *out, size_t len, const char *room)
{
    /* A room name is an identifier: nothing in it needs escaping. */
    return snprintf(out, len, "{\"type\":\"room_closed\",\"room\":\"%s\"}", room);
}

int ledger_room_close(struct ledger *l, const char *room, ledger_room_close_cb *cb, void *ud,
                      struct ledger_req **out_req)
{
    if (!id_ok(room)) {
        return -EINVAL;
    }
    char meta[KEY_MAX], now[24], channel[KEY_MAX], ev[128];
    lkey_room(meta, sizeof(meta), room, "meta");
    lkey_channel_arg(channel, sizeof(channel), l, room);
    ledger_room_closed_event(ev, sizeof(ev), room);
    struct args a;
    args_init(&a, 1);
    args_add(&a, meta);
    args_add(&a, lop_num(now, ledger_now_ms()));
    args_add(&a, channel);
    args_add(&a, ev);
    struct lop op = {.cb.room_close = cb, .ud = ud};
    return lop_submit(l, LEDGER_SCRIPT_ROOM_CLOSE, a.n, a.v, room_close_reply, &op, out_req);
}

/* ---- room_info ---- */

static void room_info_reply(void *ud, int status, const redisReply *rr)
{
    const struct lop *op = ud;
    if (!op->cb.room_info) {
        return;
    }
    struct ledger_room_info_reply r = {0};
    struct ledger_room_top *top = NULL;
    status = lop_status(status, rr, &r.error);
    long long found = 0;
    if (status == 0) {
        /* {-1} unknown, or {live, creator_id, creator_name, title, gifts, coins, diamonds,
         * viewers, seq, session, {id, coins, name JSON, ...}, goal JSON, epoch} */
        if (rr->type != REDIS_REPLY_ARRAY || rr->elements < 1) {
            status = -EBADMSG;
        } else {
            found = rr->element[0]->type == REDIS_REPLY_INTEGER ? rr->element[0]->integer : 0;
        }
    }
    if (status == 0 && found >= 0 && rr->elements >= 11) {
        redisReply **e = rr->element;
        r.goal_json = rr->elements >= 12 ? elem_str(rr, 11) : "null";
        r.epoch = rr->elements >= 13 ? strtoll(elem_str(rr, 12), NULL, 10) : 0;
        long long *nums[6] = {&r.gifts, &r.coins, &r.diamonds, &r.viewers, &r.seq, &r.session};
        for (size_t i = 0; i < 6; i++) {
            if (!lop_int(rr, 4 + i, nums[i])) {
                status = -EBADMSG;
            }
        }
        const redisReply *t = e[10];
        size_t n = t->type == REDIS_REPLY_ARRAY ? t->elements / 3 : 0;
        if (status == 0 && n > 0) {
            top = calloc(n, sizeof(*top));
            if (!top) {
                status = -ENOMEM;
            }
        }
        for (size_t i = 0; status == 0 && i < n; i++) {
            const redisReply *coins = t->element[3 * i + 1];
            top[i].id = elem_str(t, 3 * i);
            top[i].name_json = elem_str(t, 3 * i + 2);
            top[i].coins = coins->type == REDIS_REPLY_STRING    ? strtoll(coins->str, NULL, 10)
                           : coins->type == REDIS_REPLY_INTEGER ? coins->integer
                                                                : 0;
        }
        if (status == 0) {
            r.found = true;
            r.live = found == 1;
            r.creator_id = elem_str(rr, 1);
            r.creator_name = elem_str(rr, 2);
            r.title = elem_str(rr, 3);
            r.top = top;
            r.ntop = n;
        }
    }
    op->cb.room_info(op->ud, status, status == 0 || status == -EPROTO ? &r : NULL);
    free(top);
}

int ledger_room_info(struct ledger *l, const char *room, long top_n, ledger_room_info_cb *cb,
                     void *ud, struct ledger_req **out_req)
{
    if (!id_ok(room) || top_n < 1) {
        return -EINVAL;
    }
    static const char *const suffix[6] = {"meta", "totals", "lb", "lbnames", "presence", "seq"};
    char keys[6][KEY_MAX], now[24], top[24];
    struct args a;
    args_init(&a, 6);
    for (int i = 0; i < 6; i++) {
        lkey_room(keys[i], sizeof(keys[i]), room, suffix[i]);
        args_add(&a, keys[i]);
    }
    args_add(&a, lop_num(now, ledger_now_ms()));
    args_add(&a, lop_num(top, top_n));
    struct lop op = {.cb.room_info = cb, .ud = ud};
    return lop_submit(l, LEDGER_SCRIPT_ROOM_INFO, a.n, a.v, room_info_reply, &op, out_req);
}

/* ---- presence ---- */

static void presence_reply(void *ud, int status, const redisReply *rr)
{
    const struct lop *op = ud;
    if (!op->cb.presence) {
        return;
    }
    struct ledger_presence_reply r = {0};
    status = lop_status(status, rr, &r.error);
    long long live = 0;
    /* {live, creator_id, creator_name, seq, viewers, goal JSON, epoch ('' when not live)} */
    if (status == 0 &&
        (rr->type != REDIS_REPLY_ARRAY || rr->elements != 7 || !lop_int(rr, 0, &live) ||
         !lop_int(rr, 3, &r.seq) || !lop_int(rr, 4, &r.viewers))) {
        status = -EBADMSG;
    }
    if (status == 0) {
        r.live = live == 1;
        r.creator_id = elem_str(rr, 1);
        r.creator_name = elem_str(rr, 2);
        r.goal_json = elem_str(rr, 5);
        r.epoch = strtoll(elem_str(rr, 6), NULL, 10);
    }
    op->cb.presence(op->ud, status, status == 0 || status == -EPROTO ? &r : NULL);
}

int ledger_presence(struct ledger *l, const struct ledger_presence_req *req, ledger_presence_cb *cb,
                    void *ud, struct ledger_req **out_req)
{
    if (!id_ok(req->room) || !req->node_id || req->leaderboard_size < 0) {
        return -EINVAL;
    }
    static const char *const suffix[8] = {"meta", "seq",     "presence", "state",
                                          "lb",   "lbnames", "totals",   "hist"};
    char keys[8][KEY_MAX], count[24], now[24], ttl[24], interval[24], channel[KEY_MAX], top[24];
    char histttl[24];
    struct args a;
    args_init(&a, 8);
    for (int i = 0; i < 8; i++) {
        lkey_room(keys[i], sizeof(keys[i]), req->room, suffix[i]);
        args_add(&a, keys[i]);
    }
    lkey_channel_arg(channel, sizeof(channel), l, req->room);
    args_add(&a, req->node_id);
    args_add(&a, req->count < 0 ? "-" : lop_num(count, req->count));
    args_add(&a, lop_num(now, ledger_now_ms()));
    args_add(&a, lop_num(ttl, req->ttl_ms));
    args_add(&a, req->publish_interval_ms < 0 ? "-" : lop_num(interval, req->publish_interval_ms));
    args_add(&a, channel);
    args_add(&a, req->room);
    args_add(&a, lop_num(top, req->leaderboard_size));
    args_add(&a, lop_num(histttl, (long long)lgift_opts(l)->history_ttl_s * 1000));
    struct lop op = {.cb.presence = cb, .ud = ud};
    return lop_submit(l, LEDGER_SCRIPT_ROOM_PRESENCE, a.n, a.v, presence_reply, &op, out_req);
}

/* ---- combo ---- */

static void combo_reply(void *ud, int status, const redisReply *rr)
{
    const struct lop *op = ud;
    if (!op->cb.combo) {
        return;
    }
    struct ledger_combo_reply r = {0};
    status = lop_status(status, rr, &r.error);
    /* {ended, next deadline or -1, now} */
    if (status == 0 &&
        (rr->type != REDIS_REPLY_ARRAY || rr->elements != 3 || !lop_int(rr, 0, &r.ended) ||
         !lop_int(rr, 1, &r.next_due_ms) || !lop_int(rr, 2, &r.now_ms))) {
        status = -EBADMSG;
    }
    op->cb.combo(op->ud, status, status == 0 || status == -EPROTO ? &r : NULL);
}

int ledger_combo_sweep(struct ledger *l, const char *room, bool all, ledger_combo_cb *cb, void *ud,
                       struct ledger_req **out_req)
{
    if (!id_ok(room)) {
        return -EINVAL;
    }
    static const char *const suffix[4] = {"seq", "combos", "combodue", "hist"};
    char keys[4][KEY_MAX], channel[KEY_MAX], cap[24], ttl[24];
    struct args a;
    args_init(&a, 4);
    for (int i = 0; i < 4; i++) {
        lkey_room(keys[i], sizeof(keys[i]), room, suffix[i]);
        args_add(&a, keys[i]);
    }
    lkey_channel_arg(channel, sizeof(channel), l, room);
    const struct ledger_opts *o = lgift_opts(l);
    args_add(&a, all ? "all" : "due");
    args_add(&a, channel);
    args_add(&a, room);
    args_add(&a, lop_num(cap, o->history_size));
    args_add(&a, lop_num(ttl, (long long)o->history_ttl_s * 1000));
    struct lop op = {.cb.combo = cb, .ud = ud};
    return lop_submit(l, LEDGER_SCRIPT_COMBO, a.n, a.v, combo_reply, &op, out_req);
}

/* ---- room events (resume, GET .../events) ---- */

static void room_events_reply(void *ud, int status, const redisReply *rr)
{
    const struct lop *op = ud;
    if (!op->cb.room_events) {
        return;
    }
    struct ledger_room_events_reply r = {0};
    status = lop_status(status, rr, &r.error);
    long long first = 0, flags = 0;
    /* {-1} unknown, or {seq, epoch, flags (1 complete, 2 live), events...} */
    if (status == 0 && (rr->type != REDIS_REPLY_ARRAY || !lop_int(rr, 0, &first))) {
        status = -EBADMSG;
    }
    const char **ev = NULL;
    size_t *len = NULL;
    if (status == 0 && first >= 0) {
        if (rr->elements < 3 || !lop_int(rr, 2, &flags)) {
            status = -EBADMSG;
        } else {
            size_t n = rr->elements - 3;
            ev = calloc(n + 1, sizeof(*ev));
            len = calloc(n + 1, sizeof(*len));
            if (!ev || !len) {
                status = -ENOMEM;
            }
            for (size_t i = 0; status == 0 && i < n; i++) {
                const redisReply *e = rr->element[3 + i];
                if (e->type != REDIS_REPLY_STRING) {
                    status = -EBADMSG;
                    break;
                }
                ev[i] = e->str;
                len[i] = e->len;
            }
            r.found = true;
            r.seq = first;
            r.epoch = strtoll(elem_str(rr, 1), NULL, 10);
            r.complete = (flags & 1) != 0;
            r.live = (flags & 2) != 0;
            r.events = ev;
            r.lens = len;
            r.nevents = n;
        }
    }
    op->cb.room_events(op->ud, status, status == 0 || status == -EPROTO ? &r : NULL);
    free(ev);
    free(len);
}

int ledger_room_events(struct ledger *l, const char *room, long long since_seq, long limit,
                       ledger_room_events_cb *cb, void *ud, struct ledger_req **out_req)
{
    if (!id_ok(room) || since_seq < 0 || limit < 1) {
        return -EINVAL;
    }
    static const char *const suffix[3] = {"meta", "seq", "hist"};
    char keys[3][KEY_MAX], since[24], lim[24], size[24], ttl[24], now[24];
    struct args a;
    args_init(&a, 3);
    for (int i = 0; i < 3; i++) {
        lkey_room(keys[i], sizeof(keys[i]), room, suffix[i]);
        args_add(&a, keys[i]);
    }
    const struct ledger_opts *o = lgift_opts(l);
    args_add(&a, lop_num(since, since_seq));
    args_add(&a, lop_num(lim, limit));
    args_add(&a, lop_num(size, o->history_size));
    args_add(&a, lop_num(ttl, (long long)o->history_ttl_s * 1000));
    args_add(&a, lop_num(now, ledger_now_ms()));
    struct lop op = {.cb.room_events = cb, .ud = ud};
    return lop_submit(l, LEDGER_SCRIPT_ROOM_EVENTS, a.n, a.v, room_events_reply, &op, out_req);
}

/* ---- overlay controls ---- */

static void overlay_reply(void *ud, int status, const redisReply *rr)
{
    const struct lop *op = ud;
    if (!op->cb.overlay) {
        return;
    }
    struct ledger_overlay_reply r = {0};
    status = lop_status(status, rr, &r.error);
    long long code = 0;
    /* {-1} unknown room, {-2} not the creator, {-3} not kept, {1, event JSON} */
    if (status == 0 && (rr->type != REDIS_REPLY_ARRAY || !lop_int(rr, 0, &code))) {
        status = -EBADMSG;
    }
    if (status == 0) {
        r.outcome = code == 1    ? LEDGER_OVERLAY_SENT
                    : code == -1 ? LEDGER_OVERLAY_NO_ROOM
                    : code == -2 ? LEDGER_OVERLAY_NOT_CREATOR
                                 : LEDGER_OVERLAY_NOT_KEPT;
        r.event_json = code == 1 && rr->elements >= 2 ? elem_str(rr, 1) : "";
    }
    op->cb.overlay(op->ud, status, status == 0 || status == -EPROTO ? &r : NULL);
}

int ledger_overlay(struct ledger *l, const struct ledger_overlay_req *req, ledger_overlay_cb *cb,
                   void *ud, struct ledger_req **out_req)
{
    static const char *const actions[] = {"skip", "pause", "resume", "replay"};
    if (!id_ok(req->room) || (req->caller && !id_ok(req->caller)) ||
        req->action < LEDGER_OVERLAY_SKIP || req->action > LEDGER_OVERLAY_REPLAY ||
        (req->action == LEDGER_OVERLAY_REPLAY && req->seq < 1)) {
        return -EINVAL;
    }
    static const char *const suffix[3] = {"meta", "seq", "hist"};
    char keys[3][KEY_MAX], seq[24] = "", size[24], ttl[24], now[24], channel[KEY_MAX];
    struct args a;
    args_init(&a, 3);
    for (int i = 0; i < 3; i++) {
        lkey_room(keys[i], sizeof(keys[i]), req->room, suffix[i]);
        args_add(&a, keys[i]);
    }
    lkey_channel_arg(channel, sizeof(channel), l, req->room);
    const struct ledger_opts *o = lgift_opts(l);
    args_add(&a, actions[req->action - LEDGER_OVERLAY_SKIP]);
    args_add(&a, req->action == LEDGER_OVERLAY_REPLAY ? lop_num(seq, req->seq) : "");
    args_add(&a, req->caller ? req->caller : "");
    args_add(&a, lop_num(size, o->history_size));
    args_add(&a, lop_num(ttl, (long long)o->history_ttl_s * 1000));
    args_add(&a, lop_num(now, ledger_now_ms()));
    args_add(&a, channel);
    args_add(&a, req->room);
    struct lop op = {.cb.overlay = cb, .ud = ud};
    return lop_submit(l, LEDGER_SCRIPT_OVERLAY, a.n, a.v, overlay_reply, &op, out_req);
}

/* ---- pub/sub ---- */

int ledger_room_subscribe(struct ledger *l, const char *room)
{
    if (!id_ok(room)) {
        return -EINVAL;
    }
    char channel[KEY_MAX];
    lkey_channel(channel, sizeof(channel), room);
    return ledger_subscribe(l, channel);
}

int ledger_room_unsubscribe(struct ledger *l, const char *room)
{
    if (!id_ok(room)) {
        return -EINVAL;
    }
    char channel[KEY_MAX];
    lkey_channel(channel, sizeof(channel), room);
    return ledger_unsubscribe(l, channel);
}

/* ---- recharge ---- */

static void recharge_reply(void *ud, int status, const redisReply *rr)
{
    const struct lop *op = ud;
    if (!op->cb.recharge) {
        return;
    }
    struct ledger_recharge_reply r = {0};
    status = lop_status(status, rr, &r.error);
    long long fresh = 0;
    /* {1, credited, balance} or {0, credited the first time, balance} */
    if (status == 0 &&
        (rr->type != REDIS_REPLY_ARRAY || rr->elements != 3 || !lop_int(rr, 0, &fresh) ||
         !lop_int(rr, 1, &r.credited) || !lop_int(rr, 2, &r.balance))) {
        status = -EBADMSG;
    }
    if (status == 0) {
        r.duplicate = fresh != 1;
    }
    op->cb.recharge(op->ud, status, status == 0 || status == -EPROTO ? &r : NULL);
}

int ledger_recharge(struct ledger *l, const struct ledger_recharge_req *req, ledger_recharge_cb *cb,
                    void *ud, struct ledger_req **out_req)
{
    if (!id_ok(req->user) || !id_ok(req->payment_id) || req->coins < 1) {
        return -EINVAL;
    }
    long P = lreq_partitions(l);
    if (req->package && req->package[0] && !id_ok(req->package)) {
        return -EINVAL;
    }
    char kbal[KEY_MAX], kind[80], kpay[KEY_MAX], ktot[KEY_MAX], ktx[KEY_MAX], coins[24], now[24],
        txcap[24], txttl[24];
    lkey_user(kbal, sizeof(kbal), P, "bal", req->user);
    snprintf(kind, sizeof(kind), "pay:%s", req->payment_id);
    lkey_user(kpay, sizeof(kpay), P, kind, req->user);
    lkey_partition_key(ktot, sizeof(ktot), ledger_partition(req->user, P), "recharged");
    lkey_user(ktx, sizeof(ktx), P, "tx", req->user);
    const struct ledger_opts *o = lgift_opts(l);
    struct args a;
    args_init(&a, 4);
    args_add(&a, kbal);
    args_add(&a, kpay);
    args_add(&a, ktot);
    args_add(&a, ktx);
    args_add(&a, lop_num(coins, req->coins));
    args_add(&a, lop_num(now, ledger_now_ms()));
    args_add(&a, req->payment_id);
    args_add(&a, req->package ? req->package : "");
    args_add(&a, lop_num(txcap, o->tx_history_size));
    args_add(&a, lop_num(txttl, o->tx_history_ttl_s * 1000));
    struct lop op = {.cb.recharge = cb, .ud = ud};
    return lop_submit(l, LEDGER_SCRIPT_RECHARGE, a.n, a.v, recharge_reply, &op, out_req);
}

/* ---- goal ---- */

static void goal_reply(void *ud, int status, const redisReply *rr)
{
    const struct lop *op = ud;
    if (!op->cb.goal) {
        return;
    }
    struct ledger_goal_reply r = {0};
    status = lop_status(status, rr, &r.error);
    long long what = 0;
    /* {1, goal JSON} | {-1} not live | {-2} not the creator */
    if (status == 0 && (rr->type != REDIS_REPLY_ARRAY || rr->elements < 1 ||
                        !lop_int(rr, 0, &what) || (what == 1 && rr->elements != 2))) {
        status = -EBADMSG;
    }
    if (status == 0) {
        r.outcome = what == 1    ? LEDGER_GOAL_DONE
                    : what == -2 ? LEDGER_GOAL_NOT_CREATOR
                                 : LEDGER_GOAL_NOT_LIVE;
        r.goal_json = what == 1 ? elem_str(rr, 1) : "null";
    }
    op->cb.goal(op->ud, status, status == 0 || status == -EPROTO ? &r : NULL);
}

int ledger_goal(struct ledger *l, const struct ledger_goal_req *req, ledger_goal_cb *cb, void *ud,
                struct ledger_req **out_req)
{
    bool coins = !req->gift || !req->gift[0];
    if (!id_ok(req->room) || (req->caller && !id_ok(req->caller)) ||
        (!req->clear && (req->target < 1 || !req->title_json || (!coins && !id_ok(req->gift))))) {
        return -EINVAL;
    }
    char kmeta[KEY_MAX], ktot[KEY_MAX], channel[KEY_MAX], target[24];
    lkey_room(kmeta, sizeof(kmeta), req->room, "meta");
    lkey_room(ktot, sizeof(ktot), req->room, "totals");
    lkey_channel_arg(channel, sizeof(channel), l, req->room);
    struct args a;
    args_init(&a, 2);
    args_add(&a, kmeta);
    args_add(&a, ktot);
    args_add(&a, req->clear ? "clear" : "set");
    args_add(&a, req->caller ? req->caller : "");
    args_add(&a, coins ? "" : req->gift);
    args_add(&a, lop_num(target, req->clear ? 0 : req->target));
    args_add(&a, req->clear ? "null" : req->title_json);
    args_add(&a, channel);
    args_add(&a, req->room);
    struct lop op = {.cb.goal = cb, .ud = ud};
    return lop_submit(l, LEDGER_SCRIPT_GOAL, a.n, a.v, goal_reply, &op, out_req);
}

/* ---- reverse ---- */

static void reverse_reply(void *ud, int status, const redisReply *rr)
{
    const struct lop *op = ud;
    if (!op->cb.reverse) {
        return;
    }
    struct ledger_reverse_reply r = {0};
    status = lop_status(status, rr, &r.error);
    long long what = 0;
    /* {1 | 0 | -1, reversed, balance} */
    if (status == 0 &&
        (rr->type != REDIS_REPLY_ARRAY || rr->elements != 3 || !lop_int(rr, 0, &what) ||
         what < -1 || what > 1 || !lop_int(rr, 1, &r.reversed) || !lop_int(rr, 2, &r.balance))) {
        status = -EBADMSG;
    }
    if (status == 0) {
        r.outcome = what == 1   ? LEDGER_REVERSED
                    : what == 0 ? LEDGER_REVERSE_DUPLICATE
                                : LEDGER_REVERSE_NOT_FOUND;
    }
    op->cb.reverse(op->ud, status, status == 0 || status == -EPROTO ? &r : NULL);
}

int ledger_reverse(struct ledger *l, const struct ledger_reverse_req *req, ledger_reverse_cb *cb,
                   void *ud, struct ledger_req **out_req)
{
    if (!id_ok(req->user) || !id_ok(req->payment_id)) {
        return -EINVAL;
    }
    long P = lreq_partitions(l);
    const struct ledger_opts *o = lgift_opts(l);
    char kbal[KEY_MAX], kind[80], kpay[KEY_MAX], krev[KEY_MAX], ktot[KEY_MAX], ktx[KEY_MAX],
        now[24], txcap[24], txttl[24];
    lkey_user(kbal, sizeof(kbal), P, "bal", req->user);
    snprintf(kind, sizeof(kind), "pay:%s", req->payment_id);
    lkey_user(kpay, sizeof(kpay), P, kind, req->user);
    snprintf(kind, sizeof(kind), "rev:%s", req->payment_id);
    lkey_user(krev, sizeof(krev), P, kind, req->user);
    lkey_partition_key(ktot, sizeof(ktot), ledger_partition(req->user, P), "reversed");
    lkey_user(ktx, sizeof(ktx), P, "tx", req->user);
    struct args a;
    args_init(&a, 5);
    args_add(&a, kbal);
    args_add(&a, kpay);
    args_add(&a, krev);
    args_add(&a, ktot);
    args_add(&a, ktx);
    args_add(&a, lop_num(now, ledger_now_ms()));
    args_add(&a, req->payment_id);
    args_add(&a, req->reason_json ? req->reason_json : "null");
    args_add(&a, lop_num(txcap, o->tx_history_size));
    args_add(&a, lop_num(txttl, o->tx_history_ttl_s * 1000));
    struct lop op = {.cb.reverse = cb, .ud = ud};
    return lop_submit(l, LEDGER_SCRIPT_REVERSE, a.n, a.v, reverse_reply, &op, out_req);
}

/* ---- balance ---- */

static long long opt_num(const redisReply *e)
{
    if (e->type == REDIS_REPLY_STRING) {
        return strtoll(e->str, NULL, 10);
    }
    return e->type == REDIS_REPLY_INTEGER ? e->integer : 0;
}

static void balance_reply(void *ud, int status, const redisReply *rr)
{
    const struct lop *op = ud;
    if (!op->cb.balance) {
        return;
    }
    struct ledger_balance_reply r = {0};
    status = lop_status(status, rr, &r.error);
    if (status == 0 && (rr->type != REDIS_REPLY_ARRAY || rr->elements != 2)) {
        status = -EBADMSG;
    }
    if (status == 0) {
        r.coins = opt_num(rr->element[0]);
        r.diamonds = opt_num(rr->element[1]);
    }
    op->cb.balance(op->ud, status, status == 0 || status == -EPROTO ? &r : NULL);
}

int ledger_balance(struct ledger *l, const char *user, ledger_balance_cb *cb, void *ud,
                   struct ledger_req **out_req)
{
    if (!id_ok(user)) {
        return -EINVAL;
    }
    long P = lreq_partitions(l);
    char kbal[KEY_MAX], kdia[KEY_MAX];
    lkey_user(kbal, sizeof(kbal), P, "bal", user);
    lkey_user(kdia, sizeof(kdia), P, "dia", user);
    /* Both keys are in the user's partition: one slot. */
    const char *argv[] = {"MGET", kbal, kdia};
    struct lop op = {.cb.balance = cb, .ud = ud};
    return lop_submit(l, -1, 3, argv, balance_reply, &op, out_req);
}

/* ---- budget ---- */

static void budget_reply(void *ud, int status, const redisReply *rr)
{
    const struct lop *op = ud;
    if (!op->cb.budget) {
        return;
    }
    struct ledger_budget_reply r = {0};
    status = lop_status(status, rr, &r.error);
    long long dcap = 0, mcap = 0;
    /* {daily cap or -1, monthly cap or -1, spent today, spent this month} */
    if (status == 0 && (rr->type != REDIS_REPLY_ARRAY || rr->elements != 4 ||
                        !lop_int(rr, 0, &dcap) || !lop_int(rr, 1, &mcap) ||
                        !lop_int(rr, 2, &r.spent_today) || !lop_int(rr, 3, &r.spent_this_month))) {
        status = -EBADMSG;
    }
    if (status == 0) {
        r.daily_capped = dcap >= 0;
        r.daily_coins = dcap >= 0 ? dcap : 0;
        r.monthly_capped = mcap >= 0;
        r.monthly_coins = mcap >= 0 ? mcap : 0;
    }
    op->cb.budget(op->ud, status, status == 0 || status == -EPROTO ? &r : NULL);
}

/* The script's argument for one cap: '?' keeps it, '' clears it, else the coins. */
static const char *cap_arg(char buf[24], enum ledger_cap_change c, long long coins)
{
    return c == LEDGER_CAP_SET ? lop_num(buf, coins) : c == LEDGER_CAP_CLEAR ? "" : "?";
}

int ledger_budget(struct ledger *l, const struct ledger_budget_req *req, ledger_budget_cb *cb,
                  void *ud, struct ledger_req **out_req)
{
    if (!id_ok(req->user) || (req->daily == LEDGER_CAP_SET && req->daily_coins < 0) ||
        (req->monthly == LEDGER_CAP_SET && req->monthly_coins < 0)) {
        return -EINVAL;
    }
    long P = lreq_partitions(l);
    char klim[KEY_MAX], dcap[24], mcap[24], day[16];
    lkey_user(klim, sizeof(klim), P, "limits", req->user);
    lkey_utc_day(day, sizeof(day));
    struct args a;
    args_init(&a, 1);
    args_add(&a, klim);
    args_add(&a, cap_arg(dcap, req->daily, req->daily_coins));
    args_add(&a, cap_arg(mcap, req->monthly, req->monthly_coins));
    args_add(&a, day);
    struct lop op = {.cb.budget = cb, .ud = ud};
    return lop_submit(l, LEDGER_SCRIPT_BUDGET, a.n, a.v, budget_reply, &op, out_req);
}

/* ---- transactions ---- */

#define TX_PAGE_MAX 1100 /* a page of 1000 plus entries of one ts_ms */

static void transactions_reply(void *ud, int status, const redisReply *rr)
{
    const struct lop *op = ud;
    if (!op->cb.transactions) {
        return;
    }
    struct ledger_transactions_reply r = {.next_before = -1};
    status = lop_status(status, rr, &r.error);
    long long next = -1;
    if (status == 0 && (rr->type != REDIS_REPLY_ARRAY || rr->elements < 1 ||
                        rr->elements > TX_PAGE_MAX + 1 || !lop_int(rr, 0, &next))) {
        status = -EBADMSG;
    }
    const char *entries[TX_PAGE_MAX];
    size_t lens[TX_PAGE_MAX];
    for (size_t i = 1; status == 0 && i < rr->elements; i++) {
        const redisReply *e = rr->element[i];
        if (e->type != REDIS_REPLY_STRING) {
            status = -EBADMSG;
            break;
        }
        entries[i - 1] = e->str;
        lens[i - 1] = e->len;
    }
    if (status == 0) {
        r.n = rr->elements - 1;
        r.entries = entries;
        r.lens = lens;
        r.next_before = next;
    }
    op->cb.transactions(op->ud, status, status == 0 || status == -EPROTO ? &r : NULL);
}

int ledger_transactions(struct ledger *l, const struct ledger_transactions_req *req,
                        ledger_transactions_cb *cb, void *ud, struct ledger_req **out_req)
{
    if (!id_ok(req->user) || req->limit < 1 || req->limit > 1000) {
        return -EINVAL;
    }
    const struct ledger_opts *o = lgift_opts(l);
    char ktx[KEY_MAX], limit[24], before[24], cutoff[24];
    lkey_user(ktx, sizeof(ktx), lreq_partitions(l), "tx", req->user);
    struct args a;
    args_init(&a, 1);
    args_add(&a, ktx);
    args_add(&a, lop_num(limit, req->limit));
    args_add(&a, req->before >= 0 ? lop_num(before, req->before) : "");
    args_add(&a, lop_num(cutoff, ledger_now_ms() - (long long)o->tx_history_ttl_s * 1000));
    struct lop op = {.cb.transactions = cb, .ud = ud};
    return lop_submit(l, LEDGER_SCRIPT_TRANSACTIONS, a.n, a.v, transactions_reply, &op, out_req);
}
