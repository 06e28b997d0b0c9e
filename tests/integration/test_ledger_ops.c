/* Integration: the ledger's typed operations against a real redis-server — their keys, their
 * parsed replies, Redis errors as -EPROTO, cancelled operations, room messages by room. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_client/ledger_client.h"
#include "tests/support/testkit.h"

static struct tk_redis redis;
static uv_loop_t loop;

static void setup(void)
{
    cr_assert_eq(tk_redis_start(&redis), 0);
    uv_loop_init(&loop);
}

static void teardown(void)
{
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    tk_redis_stop(&redis);
}

TestSuite(ledger_ops, .init = setup, .fini = teardown, .timeout = 60);

#define RUN_UNTIL(cond, timeout_ms)                                                                \
    do {                                                                                           \
        int64_t end_ = ledger_now_ms() + (timeout_ms);                                             \
        while (!(cond) && ledger_now_ms() < end_) {                                                \
            uv_run(&loop, UV_RUN_ONCE);                                                            \
        }                                                                                          \
    } while (0)

/* What the callbacks saw: the last status, and copies of the reply fields the tests read. */
struct seen {
    bool up, sub_up;
    int calls;
    int status;
    char error[128];
    long long a, b, c;
    bool f1, f2;
    char s1[256], s2[256], s3[256];
    int messages;
    char room[65];
    long long epoch;
    char msg[256];
};

static void on_state(void *ud, enum ledger_state st)
{
    struct seen *s = ud;
    if (st == LEDGER_UP) {
        s->up = true;
    } else if (st == LEDGER_SUB_UP) {
        s->sub_up = true;
    }
}

static void on_room_message(void *ud, const char *room, long long epoch, const char *msg,
                            size_t len)
{
    struct seen *s = ud;
    s->messages++;
    s->epoch = epoch;
    snprintf(s->room, sizeof(s->room), "%s", room);
    snprintf(s->msg, sizeof(s->msg), "%.*s", (int)len, msg);
}

/* A ledger whose rooms keep hist_size events for hist_ttl_s (0: the defaults). */
static struct ledger *open_ledger_with(struct seen *s, long hist_size, long hist_ttl_s)
{
    char url[64];
    tk_redis_url(&redis, url, sizeof(url));
    struct ledger_opts o = {.url = url,
                            .timeout_ms = 2000,
                            .max_inflight = 64,
                            .partitions = 16,
                            .history_size = hist_size,
                            .history_ttl_s = hist_ttl_s,
                            .on_state = on_state,
                            .on_room_message = on_room_message,
                            .ud = s};
    struct ledger *l = NULL;
    cr_assert_eq(ledger_new(&loop, &o, &l), 0);
    RUN_UNTIL(s->up && s->sub_up, 5000);
    cr_assert(ledger_ready(l), "ledger never became ready");
    return l;
}

static struct ledger *open_ledger(struct seen *s)
{
    return open_ledger_with(s, 0, 0);
}

static void begin(struct seen *s)
{
    s->calls = 0;
    s->status = 1;
    s->error[0] = '\0';
}

static void done(struct seen *s, int status, const char *error)
{
    s->calls++;
    s->status = status;
    snprintf(s->error, sizeof(s->error), "%s", error ? error : "");
}

static void on_room_open(void *ud, int status, const struct ledger_room_open_reply *r)
{
    struct seen *s = ud;
    done(s, status, r ? r->error : NULL);
    if (status == 0) {
        s->f1 = r->accepted;
        s->f2 = r->opened;
        s->a = r->session;
    }
}

static void on_room_close(void *ud, int status, const struct ledger_room_close_reply *r)
{
    struct seen *s = ud;
    done(s, status, r ? r->error : NULL);
    if (status == 0) {
        s->f1 = r->found;
        s->f2 = r->closed;
    }
}

static void on_room_info(void *ud, int status, const struct ledger_room_info_reply *r)
{
    struct seen *s = ud;
    done(s, status, r ? r->error : NULL);
    if (status == 0) {
        s->f1 = r->found;
        s->f2 = r->live;
        s->a = r->session;
        s->b = r->viewers;
        s->c = (long long)r->ntop;
        snprintf(s->s1, sizeof(s->s1), "%s", r->found ? r->creator_id : "");
        snprintf(s->s2, sizeof(s->s2), "%s", r->found ? r->creator_name : "");
        snprintf(s->s3, sizeof(s->s3), "%s", r->found ? r->title : "");
    }
}

static void on_presence(void *ud, int status, const struct ledger_presence_reply *r)
{
    struct seen *s = ud;
    done(s, status, r ? r->error : NULL);
    if (status == 0) {
        s->f1 = r->live;
        s->a = r->viewers;
        snprintf(s->s1, sizeof(s->s1), "%s", r->creator_id);
    }
}

static void on_recharge(void *ud, int status, const struct ledger_recharge_reply *r)
{
    struct seen *s = ud;
    done(s, status, r ? r->error : NULL);
    if (status == 0) {
        s->f1 = r->duplicate;
        s->a = r->credited;
        s->b = r->balance;
    }
}

static void on_balance(void *ud, int status, const struct ledger_balance_reply *r)
{
    struct seen *s = ud;
    done(s, status, r ? r->error : NULL);
    if (status == 0) {
        s->a = r->coins;
        s->b = r->diamonds;
    }
}

static void on_budget(void *ud, int status, const struct ledger_budget_reply *r)
{
    struct seen *s = ud;
    done(s, status, r ? r->error : NULL);
    if (status == 0) {
        s->f1 = r->daily_capped;
        s->f2 = r->monthly_capped;
        s->a = r->daily_coins;
        s->b = r->spent_today;
        s->c = r->monthly_coins;
    }
}

static void on_settle_begin(void *ud, int status, const struct ledger_settle_begin_reply *r)
{
    struct seen *s = ud;
    done(s, status, r ? r->error : NULL);
    if (status == 0) {
        s->a = r->outcome;
        s->b = r->seq;
        s->c = (long long)r->nrows;
        snprintf(s->s1, sizeof(s->s1), "%s", r->batch);
        if (r->nrows) {
            snprintf(s->s2, sizeof(s->s2), "%s/%s/%s %lld %lld", r->rows[0].creator,
                     r->rows[0].room, r->rows[0].gift, r->rows[0].coins, r->rows[0].diamonds);
        }
    }
}

static void on_settle_credit(void *ud, int status, const struct ledger_settle_credit_reply *r)
{
    struct seen *s = ud;
    done(s, status, r ? r->error : NULL);
    if (status == 0) {
        s->f1 = r->credited;
    }
}

static void on_settle_end(void *ud, int status, const struct ledger_settle_end_reply *r)
{
    struct seen *s = ud;
    done(s, status, r ? r->error : NULL);
    if (status == 0) {
        s->f1 = r->ended;
    }
}

#define CALL(s, expr)                                                                              \
    do {                                                                                           \
        begin(s);                                                                                  \
        cr_assert_eq((expr), 0, "%s", #expr);                                                      \
        RUN_UNTIL((s)->calls > 0, 5000);                                                           \
        cr_assert_eq((s)->calls, 1);                                                               \
    } while (0)

Test(ledger_ops, rooms_open_info_presence_close)
{
    struct seen s = {0};
    struct ledger *l = open_ledger(&s);
    cr_assert_eq(ledger_room_subscribe(l, "r1"), 0);
    RUN_UNTIL(false, 200); /* the SUBSCRIBE lands before the room_opened PUBLISH */

    struct ledger_room_open_req open = {
        .room = "r1", .creator_id = "cara", .creator_name = "Cara \"C\"", .title = "hello"};
    CALL(&s, ledger_room_open(l, &open, on_room_open, &s, NULL));
    cr_assert_eq(s.status, 0);
    cr_assert(s.f1 && s.f2);
    cr_assert_eq(s.a, 1);
    RUN_UNTIL(s.messages > 0, 2000);
    cr_assert_str_eq(s.room, "r1", "on_room_message passes the room, not the channel");
    cr_assert_str_eq(s.msg, "{\"type\":\"room_opened\",\"room\":\"r1\",\"creator\":{\"id\":"
                            "\"cara\",\"name\":\"Cara \\\"C\\\"\"}}");

    open.creator_id = "dave";
    CALL(&s, ledger_room_open(l, &open, on_room_open, &s, NULL));
    cr_assert_eq(s.status, 0);
    cr_assert_not(s.f1, "live with another creator: refused");

    struct ledger_presence_req pr = {.room = "r1",
                                     .node_id = "n1",
                                     .count = 3,
                                     .ttl_ms = 10000,
                                     .publish_interval_ms = -1,
                                     .leaderboard_size = 10};
    CALL(&s, ledger_presence(l, &pr, on_presence, &s, NULL));
    cr_assert_eq(s.status, 0);
    cr_assert(s.f1);
    cr_assert_eq(s.a, 3);
    cr_assert_str_eq(s.s1, "cara");

    CALL(&s, ledger_room_info(l, "r1", 10, on_room_info, &s, NULL));
    cr_assert_eq(s.status, 0);
    cr_assert(s.f1 && s.f2);
    cr_assert_eq(s.a, 1);
    cr_assert_eq(s.b, 3);
    cr_assert_eq(s.c, 0);
    cr_assert_str_eq(s.s1, "cara");
    cr_assert_str_eq(s.s2, "Cara \"C\"");
    cr_assert_str_eq(s.s3, "hello");

    CALL(&s, ledger_room_close(l, "r1", on_room_close, &s, NULL));
    cr_assert_eq(s.status, 0);
    cr_assert(s.f1 && s.f2);
    RUN_UNTIL(s.messages > 1, 2000);
    cr_assert_str_eq(s.msg, "{\"type\":\"room_closed\",\"room\":\"r1\"}");
    CALL(&s, ledger_room_close(l, "r1", on_room_close, &s, NULL));
    cr_assert(s.f1 && !s.f2, "already closed");
    CALL(&s, ledger_room_close(l, "nope", on_room_close, &s, NULL));
    cr_assert_not(s.f1, "never existed");
    CALL(&s, ledger_room_info(l, "nope", 10, on_room_info, &s, NULL));
    cr_assert_eq(s.status, 0);
    cr_assert_not(s.f1);

    cr_assert_eq(ledger_room_open(l, &(struct ledger_room_open_req){.room = ""}, NULL, NULL, NULL),
                 -EINVAL);
    ledger_free(l);
}

Test(ledger_ops, recharge_balance_budget)
{
    struct seen s = {0};
    struct ledger *l = open_ledger(&s);
    struct ledger_recharge_req rc = {.user = "alice", .payment_id = "pay-1", .coins = 500};
    CALL(&s, ledger_recharge(l, &rc, on_recharge, &s, NULL));
    cr_assert_eq(s.status, 0);
    cr_assert_not(s.f1);
    cr_assert_eq(s.a, 500);
    cr_assert_eq(s.b, 500);
    rc.coins = 700; /* a repeat of the payment changes nothing */
    CALL(&s, ledger_recharge(l, &rc, on_recharge, &s, NULL));
    cr_assert(s.f1);
    cr_assert_eq(s.a, 500);
    cr_assert_eq(s.b, 500);

    CALL(&s, ledger_balance(l, "alice", on_balance, &s, NULL));
    cr_assert_eq(s.status, 0);
    cr_assert_eq(s.a, 500);
    cr_assert_eq(s.b, 0);
    CALL(&s, ledger_balance(l, "nobody", on_balance, &s, NULL));
    cr_assert_eq(s.a, 0);

    /* The keys are the keyspace's: the partition of "alice" among 16. */
    redisContext *rc2 = tk_redis_connect(&redis);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "GET giftd:{p%u}:bal:alice", ledger_partition("alice", 16));
    redisReply *r = redisCommand(rc2, cmd);
    cr_assert_eq(r->type, REDIS_REPLY_STRING);
    cr_assert_str_eq(r->str, "500");
    freeReplyObject(r);

    struct ledger_budget_req b = {.user = "alice"};
    CALL(&s, ledger_budget(l, &b, on_budget, &s, NULL));
    cr_assert_eq(s.status, 0);
    cr_assert_not(s.f1);
    cr_assert_not(s.f2);
    b.daily = LEDGER_CAP_SET;
    b.daily_coins = 42;
    CALL(&s, ledger_budget(l, &b, on_budget, &s, NULL));
    cr_assert(s.f1);
    cr_assert_eq(s.a, 42);
    cr_assert_not(s.f2, "the monthly cap is kept (unset)");
    b.daily = LEDGER_CAP_KEEP;
    b.monthly = LEDGER_CAP_SET;
    b.monthly_coins = 900;
    CALL(&s, ledger_budget(l, &b, on_budget, &s, NULL));
    cr_assert(s.f1, "the daily cap is kept");
    cr_assert_eq(s.a, 42);
    cr_assert(s.f2);
    cr_assert_eq(s.c, 900);
    b.daily = LEDGER_CAP_CLEAR;
    b.monthly = LEDGER_CAP_KEEP;
    CALL(&s, ledger_budget(l, &b, on_budget, &s, NULL));
    cr_assert_not(s.f1);
    cr_assert(s.f2);
    cr_assert_eq(s.c, 900);

    /* A Redis error reply is -EPROTO with Redis's text. */
    snprintf(cmd, sizeof(cmd), "HSET giftd:{p%u}:bal:bob x 1", ledger_partition("bob", 16));
    freeReplyObject(redisCommand(rc2, cmd));
    rc = (struct ledger_recharge_req){.user = "bob", .payment_id = "pay-2", .coins = 5};
    CALL(&s, ledger_recharge(l, &rc, on_recharge, &s, NULL));
    cr_assert_eq(s.status, -EPROTO);
    cr_assert(strstr(s.error, "WRONGTYPE") != NULL, "error: %s", s.error);
    redisFree(rc2);
    ledger_free(l);
}

Test(ledger_ops, cancelled_operation_does_not_call_back)
{
    struct seen s = {0};
    struct ledger *l = open_ledger(&s);
    struct ledger_req *req = NULL;
    begin(&s);
    cr_assert_eq(ledger_balance(l, "alice", on_balance, &s, &req), 0);
    ledger_req_cancel(req); /* its state goes with the request: ASan sees no leak */
    cr_assert_eq(ledger_room_close(l, "x", on_room_close, &s, NULL), 0);
    RUN_UNTIL(s.calls > 0, 5000);
    RUN_UNTIL(false, 200);
    cr_assert_eq(s.calls, 1);
    cr_assert(!s.f1, "the room close answered, not the cancelled balance");
    ledger_free(l);
}

Test(ledger_ops, settle_a_batch)
{
    struct seen s = {0};
    struct ledger *l = open_ledger(&s);
    struct ledger_settle_begin_req br = {.partition = 3, .node_id = "n1", .lease_ms = 5000};
    CALL(&s, ledger_settle_begin(l, &br, on_settle_begin, &s, NULL));
    cr_assert_eq(s.status, 0);
    cr_assert_eq(s.a, LEDGER_SETTLE_IDLE);

    redisContext *rc = tk_redis_connect(&redis);
    freeReplyObject(
        redisCommand(rc, "HSET giftd:{p3}:pending cara\x1froom1\x1frose %s", "2 20 10 1000 2000"));
    CALL(&s, ledger_settle_begin(l, &br, on_settle_begin, &s, NULL));
    cr_assert_eq(s.status, 0);
    cr_assert_eq(s.a, LEDGER_SETTLE_BATCH);
    cr_assert_eq(s.b, 1);
    cr_assert_eq(s.c, 1);
    cr_assert(strncmp(s.s1, "p3-1-", 5) == 0, "batch %s", s.s1);
    cr_assert_str_eq(s.s2, "cara/room1/rose 20 10");
    char batch[256];
    memcpy(batch, s.s1, sizeof(batch));

    /* Another node: the lease is held. */
    struct ledger_settle_begin_req other = {.partition = 3, .node_id = "n2", .lease_ms = 5000};
    CALL(&s, ledger_settle_begin(l, &other, on_settle_begin, &s, NULL));
    cr_assert_eq(s.a, LEDGER_SETTLE_HELD);

    struct ledger_settle_credit_req cr = {
        .creator = "cara", .partition = 3, .seq = 1, .diamonds = 10};
    CALL(&s, ledger_settle_credit(l, &cr, on_settle_credit, &s, NULL));
    cr_assert(s.f1);
    CALL(&s, ledger_settle_credit(l, &cr, on_settle_credit, &s, NULL));
    cr_assert_not(s.f1, "credited once per batch");

    struct ledger_settle_end_req er = {.partition = 3, .batch = batch};
    CALL(&s, ledger_settle_end(l, &er, on_settle_end, &s, NULL));
    cr_assert(s.f1);
    CALL(&s, ledger_settle_end(l, &er, on_settle_end, &s, NULL));
    cr_assert_not(s.f1);

    /* A pending row that does not parse: -EBADMSG, and the batch stays in Redis. */
    freeReplyObject(redisCommand(rc, "HSET giftd:{p3}:pending bad-field 1"));
    CALL(&s, ledger_settle_begin(l, &br, on_settle_begin, &s, NULL));
    cr_assert_eq(s.status, -EBADMSG);
    redisReply *r = redisCommand(rc, "EXISTS giftd:{p3}:settling");
    cr_assert_eq(r->integer, 1);
    freeReplyObject(r);
    redisFree(rc);
    ledger_free(l);
}

/* ---- room history (SPEC 3.4) ---- */

struct events_seen {
    struct seen s;
    bool found, complete;
    long long seq, epoch;
    long long first, last; /* seqs of the first and last event returned */
    size_t n;
};

static void on_room_events(void *ud, int status, const struct ledger_room_events_reply *r)
{
    struct events_seen *e = ud;
    done(&e->s, status, r ? r->error : NULL);
    if (status == 0) {
        e->found = r->found;
        e->complete = r->complete;
        e->seq = r->seq;
        e->epoch = r->epoch;
        e->n = r->nevents;
        e->first = e->last = -1;
        for (size_t i = 0; i < r->nevents; i++) {
            const char *p = strstr(r->events[i], "\"seq\":");
            long long seq = p ? strtoll(p + 6, NULL, 10) : -2;
            cr_assert(i == 0 || seq == e->last + 1, "events out of order");
            if (i == 0) {
                e->first = seq;
            }
            e->last = seq;
        }
    }
}

#define EVENTS(e, l, room, since, limit)                                                           \
    CALL(&(e)->s, ledger_room_events(l, room, since, limit, on_room_events, (e), NULL))

Test(ledger_ops, room_history_keeps_the_last_size_events_younger_than_the_ttl)
{
    struct events_seen e = {0};
    struct ledger *l = open_ledger_with(&e.s, 6, 3600);
    redisContext *rc = tk_redis_connect(&redis);
    /* A legacy seq key (no epoch) and 10 events, newest first; 1-3 are two hours old. */
    freeReplyObject(redisCommand(rc, "HSET giftd:{r:h1}:meta live 1 creator_id cara"));
    freeReplyObject(redisCommand(rc, "SET giftd:{r:h1}:seq 10"));
    long long now = ledger_now_ms();
    for (int seq = 1; seq <= 10; seq++) {
        freeReplyObject(redisCommand(
            rc,
            "LPUSH giftd:{r:h1}:hist {\"type\":\"gift\",\"room\":\"h1\",\"seq\":%d,\"ts_ms\":%lld}",
            seq, seq <= 3 ? now - 7200 * 1000 : now));
    }
    /* The epoch is made once, kept, and written next to the seq. */
    EVENTS(&e, l, "h1", 8, 10);
    cr_assert_eq(e.s.status, 0, "%s", e.s.error);
    cr_assert(e.found && e.complete);
    cr_assert_gt(e.epoch, 0);
    long long epoch = e.epoch;
    cr_assert_eq(e.seq, 10);
    cr_assert_eq(e.n, 2);
    cr_assert_eq(e.first, 9);
    redisReply *v = redisCommand(rc, "GET giftd:{r:h1}:seq");
    char want[64];
    snprintf(want, sizeof(want), "10 %lld", epoch);
    cr_assert_str_eq(v->str, want);
    freeReplyObject(v);
    EVENTS(&e, l, "h1", 4, 2);
    cr_assert(e.complete);
    cr_assert_eq(e.epoch, epoch);
    cr_assert_eq(e.first, 5);
    cr_assert_eq(e.last, 6);
    /* history_size 6: 1-4 are dropped. */
    EVENTS(&e, l, "h1", 3, 100);
    cr_assert_not(e.complete);
    cr_assert_eq(e.first, 5);
    cr_assert_eq(e.last, 10);
    /* Past the end: nothing, complete. */
    EVENTS(&e, l, "h1", 10, 100);
    cr_assert(e.complete);
    cr_assert_eq(e.n, 0);
    /* Unknown room. */
    EVENTS(&e, l, "nosuch", 0, 10);
    cr_assert_not(e.found);
    ledger_free(l);
    uv_run(&loop, UV_RUN_NOWAIT);

    /* A size that keeps everything, a ttl of one hour: 1-3 are too old. */
    e.s.up = e.s.sub_up = false;
    l = open_ledger_with(&e.s, 100, 3600);
    EVENTS(&e, l, "h1", 0, 100);
    cr_assert_not(e.complete);
    cr_assert_eq(e.first, 4);
    cr_assert_eq(e.last, 10);
    EVENTS(&e, l, "h1", 3, 100);
    cr_assert(e.complete);
    /* A window of only too-old events moves on to the kept ones. */
    EVENTS(&e, l, "h1", 0, 2);
    cr_assert_not(e.complete);
    cr_assert_eq(e.first, 4);
    cr_assert_eq(e.last, 5);
    /* A hole in the list ends what is returned (never an event after a missing one). */
    freeReplyObject(redisCommand(rc, "LSET giftd:{r:h1}:hist 2 {\"type\":\"gift\",\"seq\":77}"));
    EVENTS(&e, l, "h1", 5, 100);
    cr_assert(e.complete);
    cr_assert_eq(e.first, 6);
    cr_assert_eq(e.last, 7);
    redisFree(rc);
    ledger_free(l);
}
