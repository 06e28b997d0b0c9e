/* Integration: ledger_client against a real redis-server — scripts, NOSCRIPT, deadlines,
 * reconnects, the bounded pipeline, pub/sub, and the debit script's checks. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
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

TestSuite(ledger, .init = setup, .fini = teardown, .timeout = 60);

struct probe {
    int states_up;
    int states_down;
    int sub_up;
    int replies;
    int last_status;
    long long last_int;
    char last_str[256];
    int messages;
    char last_msg[256];
};

static void on_state(void *ud, enum ledger_state st)
{
    struct probe *p = ud;
    if (st == LEDGER_UP) {
        p->states_up++;
    } else if (st == LEDGER_DOWN) {
        p->states_down++;
    } else {
        p->sub_up++;
    }
}

static void on_message(void *ud, const char *ch, size_t chlen, const char *msg, size_t len)
{
    (void)ch;
    (void)chlen;
    struct probe *p = ud;
    p->messages++;
    snprintf(p->last_msg, sizeof(p->last_msg), "%.*s", (int)len, msg);
}

static void on_reply(void *ud, int status, const redisReply *r)
{
    struct probe *p = ud;
    p->replies++;
    p->last_status = status;
    p->last_int = 0;
    p->last_str[0] = '\0';
    if (status == 0) {
        if (r->type == REDIS_REPLY_INTEGER) {
            p->last_int = r->integer;
        } else if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
                   r->type == REDIS_REPLY_ERROR) {
            snprintf(p->last_str, sizeof(p->last_str), "%s", r->str);
        } else if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                   r->element[0]->type == REDIS_REPLY_INTEGER) {
            p->last_int = r->element[0]->integer;
        }
    }
}

/* Runs the loop until cond holds or timeout_ms passes. */
#define RUN_UNTIL(cond, timeout_ms)                                                                \
    do {                                                                                           \
        int64_t end_ = ledger_now_ms() + (timeout_ms);                                             \
        while (!(cond) && ledger_now_ms() < end_) {                                                \
            uv_run(&loop, UV_RUN_ONCE);                                                            \
        }                                                                                          \
    } while (0)

static struct ledger *open_ledger(struct probe *p, long timeout_ms, long max_inflight)
{
    char url[64];
    tk_redis_url(&redis, url, sizeof(url));
    struct ledger_opts o = {.url = url,
                            .timeout_ms = timeout_ms,
                            .max_inflight = max_inflight,
                            .partitions = 1024,
                            .on_state = on_state,
                            .on_message = on_message,
                            .ud = p};
    struct ledger *l = NULL;
    cr_assert_eq(ledger_new(&loop, &o, &l), 0);
    RUN_UNTIL(p->states_up > 0 && p->sub_up > 0, 5000);
    cr_assert(ledger_ready(l), "ledger never became ready");
    return l;
}

Test(ledger, url_parse)
{
    char host[128], pw[64];
    int port, db;
    bool unix_sock;
    cr_assert_eq(ledger_url_parse("redis://10.0.0.1:6380/3", host, sizeof(host), &port, &db, pw,
                                  sizeof(pw), &unix_sock),
                 0);
    cr_assert_str_eq(host, "10.0.0.1");
    cr_assert_eq(port, 6380);
    cr_assert_eq(db, 3);
    cr_assert_not(unix_sock);
    cr_assert_eq(ledger_url_parse("redis://:s3cret@h/0", host, sizeof(host), &port, &db, pw,
                                  sizeof(pw), &unix_sock),
                 0);
    cr_assert_str_eq(pw, "s3cret");
    cr_assert_eq(port, 6379);
    cr_assert_eq(ledger_url_parse("unix:///run/redis.sock?db=2", host, sizeof(host), &port, &db, pw,
                                  sizeof(pw), &unix_sock),
                 0);
    cr_assert_str_eq(host, "/run/redis.sock");
    cr_assert_eq(db, 2);
    cr_assert(unix_sock);
    cr_assert_eq(
        ledger_url_parse("http://x", host, sizeof(host), &port, &db, pw, sizeof(pw), &unix_sock),
        -EINVAL);
    cr_assert_eq(ledger_url_parse("redis://h:99999", host, sizeof(host), &port, &db, pw, sizeof(pw),
                                  &unix_sock),
                 -EINVAL);
}

Test(ledger, script_runs_and_is_resent_after_script_flush)
{
    struct probe p = {0};
    struct ledger *l = open_ledger(&p, 2000, 64);
    const char *argv[] = {"4",    "t:bal", "t:pay", "t:tot", "t:tx", "25",
                          "1000", "pay1",  "",      "1000",  "60000"};
    cr_assert_eq(ledger_script(l, LEDGER_SCRIPT_RECHARGE, 11, argv, NULL, on_reply, &p, NULL), 0);
    RUN_UNTIL(p.replies == 1, 5000);
    cr_assert_eq(p.last_status, 0);
    cr_assert_eq(p.last_int, 1, "credited now");
    /* The script cache is volatile: after SCRIPT FLUSH the call must still work (EVAL). */
    redisContext *rc = tk_redis_connect(&redis);
    freeReplyObject(redisCommand(rc, "SCRIPT FLUSH"));
    const char *argv2[] = {"4",    "t:bal", "t:pay2", "t:tot", "t:tx", "5",
                           "1001", "pay2",  "",       "1000",  "60000"};
    cr_assert_eq(ledger_script(l, LEDGER_SCRIPT_RECHARGE, 11, argv2, NULL, on_reply, &p, NULL), 0);
    RUN_UNTIL(p.replies == 2, 5000);
    cr_assert_eq(p.last_status, 0);
    cr_assert_str_eq(p.last_str, "", "error reply: %s", p.last_str);
    cr_assert_eq(p.last_int, 1);
    redisReply *r = redisCommand(rc, "GET t:bal");
    cr_assert_str_eq(r->str, "30", "the recharge ran exactly once each time");
    freeReplyObject(r);
    redisFree(rc);
    ledger_free(l);
}

Test(ledger, requests_past_the_deadline_time_out_and_the_connection_recovers)
{
    struct probe p = {0};
    struct ledger *l = open_ledger(&p, 300, 64);
    /* A hung Redis (SIGSTOP): the request gets -ETIMEDOUT near its deadline. */
    kill(redis.pid, SIGSTOP);
    const char *argv[] = {"PING"};
    int64_t t0 = ledger_now_ms();
    cr_assert_eq(ledger_command(l, 1, argv, NULL, on_reply, &p, NULL), 0);
    RUN_UNTIL(p.replies == 1, 5000);
    int64_t took = ledger_now_ms() - t0;
    cr_assert_eq(p.last_status, -ETIMEDOUT);
    cr_assert(took >= 290 && took < 800, "timed out after %lld ms", (long long)took);
    /* While down, requests fail fast without being sent. */
    RUN_UNTIL(!ledger_ready(l), 2000);
    cr_assert_eq(ledger_command(l, 1, argv, NULL, on_reply, &p, NULL), -EAGAIN);
    kill(redis.pid, SIGCONT);
    RUN_UNTIL(ledger_ready(l), 5000);
    cr_assert(ledger_ready(l), "did not reconnect");
    cr_assert_eq(ledger_command(l, 1, argv, NULL, on_reply, &p, NULL), 0);
    RUN_UNTIL(p.replies == 2, 5000);
    cr_assert_eq(p.last_status, 0);
    cr_assert_str_eq(p.last_str, "PONG");
    ledger_free(l);
}

Test(ledger, redis_restart_reports_lost_requests_and_reconnects)
{
    struct probe p = {0};
    struct ledger *l = open_ledger(&p, 2000, 64);
    int port = redis.port;
    tk_redis_kill(&redis, SIGKILL);
    RUN_UNTIL(p.states_down > 0, 5000);
    cr_assert_eq(p.states_down, 1);
    cr_assert(!ledger_ready(l));
    cr_assert_eq(tk_redis_start_on(&redis, port, false), 0);
    RUN_UNTIL(p.states_up > 1 && p.sub_up > 1, 10000);
    cr_assert_eq(p.states_up, 2, "did not come back up");
    cr_assert_eq(p.sub_up, 2, "pub/sub did not come back up");
    struct ledger_stats st;
    ledger_get_stats(l, &st);
    cr_assert(st.reconnects >= 2);
    ledger_free(l);
}

Test(ledger, pipeline_is_bounded_and_everything_is_answered_in_order)
{
    struct probe p = {0};
    struct ledger *l = open_ledger(&p, 5000, 4);
    const char *argv[] = {"INCR", "t:ctr"};
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(ledger_command(l, 2, argv, NULL, on_reply, &p, NULL), 0);
        struct ledger_stats st;
        ledger_get_stats(l, &st);
        cr_assert(st.inflight <= 4, "inflight %ld over the bound", st.inflight);
    }
    RUN_UNTIL(p.replies == 100, 5000);
    cr_assert_eq(p.replies, 100);
    cr_assert_eq(p.last_int, 100, "the last reply is the last INCR");
    ledger_free(l);
}

Test(ledger, cancelled_request_does_not_call_back)
{
    struct probe p = {0};
    struct ledger *l = open_ledger(&p, 2000, 64);
    const char *argv[] = {"INCR", "t:c2"};
    struct ledger_req *req = NULL;
    cr_assert_eq(ledger_command(l, 2, argv, NULL, on_reply, &p, &req), 0);
    ledger_req_cancel(req);
    cr_assert_eq(ledger_command(l, 2, argv, NULL, on_reply, &p, NULL), 0);
    RUN_UNTIL(p.replies == 1, 5000);
    cr_assert_eq(p.replies, 1);
    cr_assert_eq(p.last_int, 2, "the cancelled INCR still ran in Redis");
    ledger_free(l);
}

Test(ledger, pubsub_delivers_messages)
{
    struct probe p = {0};
    struct ledger *l = open_ledger(&p, 2000, 64);
    cr_assert_eq(ledger_subscribe(l, "t:chan"), 0);
    const char *argv[] = {"PUBLISH", "t:chan", "hello"};
    /* The subscription races the first PUBLISH: publish until one arrives. */
    for (int i = 0; i < 50 && p.messages == 0; i++) {
        ledger_command(l, 3, argv, NULL, on_reply, &p, NULL);
        RUN_UNTIL(p.messages > 0, 100);
    }
    cr_assert(p.messages > 0);
    cr_assert_str_eq(p.last_msg, "hello");
    /* Let the publishes still in flight land before unsubscribing. */
    RUN_UNTIL(false, 300);
    cr_assert_eq(ledger_unsubscribe(l, "t:chan"), 0);
    RUN_UNTIL(false, 300);
    int before = p.messages;
    int replies = p.replies;
    ledger_command(l, 3, argv, NULL, on_reply, &p, NULL);
    RUN_UNTIL(p.replies > replies, 2000);
    RUN_UNTIL(false, 300);
    cr_assert_eq(p.messages, before, "a message arrived after UNSUBSCRIBE");
    ledger_free(l);
}

extern const char ledger_script_gift[];

/* The gift script alone: one batch of sends on one user, each with its own outcome. */
static redisReply *gift_batch(redisContext *rc, int n, const char *const ids[],
                              const char *const digests[], const long costs[])
{
    /* The script as giftd embeds it (ledger_scripts.c: gift.lua with lib/room.lua). */
    const char *argv[3 + 8 + 12 * 8];
    char cost[8][24];
    int argc = 0;
    const char *head[] = {"EVAL", ledger_script_gift, "0",    "1000",       "86400",   "10000",
                          "200",  "20260101",         "1000", "7776000000", "86400000"};
    for (size_t i = 0; i < 11; i++) {
        argv[argc++] = head[i];
    }
    for (int i = 0; i < n; i++) {
        snprintf(cost[i], sizeof(cost[i]), "%ld", costs[i]);
        const char *send[12] = {"d:",
                                "ann",
                                ids[i],
                                digests[i],
                                cost[i],
                                "cara",
                                "droom",
                                "1",
                                "1",
                                "\"Ann\"",
                                "\"from\":{\"id\":\"ann\"}",
                                "rose|0|0"};
        for (int k = 0; k < 12; k++) {
            argv[argc++] = send[k];
        }
    }
    redisReply *r = redisCommandArgv(rc, argc, argv, NULL);
    cr_assert_not_null(r);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY, "%s", r->type == REDIS_REPLY_ERROR ? r->str : "");
    cr_assert_eq(r->elements, (size_t)(3 * n));
    return r;
}
static long long get_int(redisContext *rc, const char *cmd)
{
    redisReply *r = redisCommand(rc, cmd);
    long long v = r->type == REDIS_REPLY_INTEGER  ? r->integer
                  : r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10)
                                                  : 0;
    freeReplyObject(r);
    return v;
}

Test(ledger, gift_script_checks_each_send_before_writing)
{
    redisContext *rc = tk_redis_connect(&redis);
    freeReplyObject(redisCommand(rc, "SET d:bal:ann 10"));
    freeReplyObject(redisCommand(rc, "SET d:limits:ann %s", "0 0 0 0 8 -"));
    /* Over the budget; then over the balance once the budget is gone: nothing written. */
    const char *ids1[] = {"a"};
    const char *dg1[] = {"rose:9"};
    const long c1[] = {9};
    redisReply *r = gift_batch(rc, 1, ids1, dg1, c1);
    cr_assert_eq(r->element[0]->integer, 0);
    cr_assert_str_eq(r->element[1]->str, "budget_exceeded");
    freeReplyObject(r);
    freeReplyObject(redisCommand(rc, "DEL d:limits:ann"));
    /* One batch: refused, committed, a duplicate of it, a reuse of its id, committed. */
    const char *ids[] = {"b", "c", "c", "c", "e"};
    const char *dg[] = {"rose:11", "rose:4", "rose:4", "rose:5", "rose:1"};
    const long c[] = {11, 4, 4, 5, 1};
    r = gift_batch(rc, 5, ids, dg, c);
    cr_assert_eq(r->element[0]->integer, 0);
    cr_assert_str_eq(r->element[1]->str, "insufficient_funds");
    cr_assert_eq(r->element[2]->integer, 10);
    cr_assert_eq(r->element[3]->integer, 1, "c committed");
    cr_assert_eq(r->element[4]->integer, 6);
    long long seq = r->element[5]->integer;
    cr_assert_eq(r->element[6]->integer, 2, "the second c is its retry");
    cr_assert_eq(r->element[7]->integer, 6);
    cr_assert_eq(r->element[8]->integer, seq);
    cr_assert_eq(r->element[9]->integer, -1, "c with another count is refused");
    cr_assert_eq(r->element[12]->integer, 1, "e committed");
    cr_assert_eq(r->element[13]->integer, 5);
    cr_assert_eq(r->element[14]->integer, seq + 1);
    freeReplyObject(r);
    cr_assert_eq(get_int(rc, "GET d:bal:ann"), 5);
    cr_assert_eq(get_int(rc, "EXISTS d:idem:a:ann d:idem:b:ann"), 0, "a refusal wrote");
    r = redisCommand(rc, "GET d:limits:ann");
    cr_assert_str_eq(r->str, "20260101 5 202601 5 - -",
                     "the day, the month, what was spent in each");
    freeReplyObject(r);
    cr_assert_eq(get_int(rc, "GET giftd:{r:droom}:seq"), seq + 1);
    cr_assert_eq(get_int(rc, "LLEN giftd:{r:droom}:hist"), 2, "one history entry per gift");
    /* Running totals: the room's coins and the sender's, each send included. */
    r = redisCommand(rc, "LINDEX giftd:{r:droom}:hist 1");
    cr_assert_not_null(strstr(r->str, "\"totals\":{\"room_coins\":4,\"sender_coins\":4}"), "%s",
                       r->str);
    freeReplyObject(r);
    r = redisCommand(rc, "LINDEX giftd:{r:droom}:hist 0");
    cr_assert_not_null(strstr(r->str, "\"totals\":{\"room_coins\":5,\"sender_coins\":5}"), "%s",
                       r->str);
    freeReplyObject(r);
    cr_assert_eq(get_int(rc, "ZSCORE giftd:{r:droom}:lb ann"), 5);
    /* The creator's pending earnings: a log row per committed send (settle_begin sums them). */
    r = redisCommand(rc, "LRANGE d:pendlog 0 -1");
    cr_assert_eq(r->elements, 2);
    cr_assert_str_eq(r->element[0]->str,
                     "cara\x1f"
                     "droom\x1frose\x1e"
                     "1 4 1 1000",
                     "creator room gift, then count coins diamonds ts");
    cr_assert_str_eq(r->element[1]->str, "cara\x1f"
                                         "droom\x1frose\x1e"
                                         "1 1 1 1000");
    freeReplyObject(r);
    r = redisCommand(rc, "GET giftd:{r:droom}:totals");
    cr_assert_str_eq(r->str, "2 5 2", "gifts coins diamonds");
    freeReplyObject(r);
    /* The retry in a later batch still gets the first outcome. */
    r = gift_batch(rc, 1, ids + 1, dg + 1, c + 1);
    cr_assert_eq(r->element[0]->integer, 2);
    cr_assert_eq(r->element[1]->integer, 6);
    cr_assert_eq(r->element[2]->integer, seq);
    freeReplyObject(r);
    cr_assert_eq(get_int(rc, "GET d:bal:ann"), 5);
    redisFree(rc);
}

Test(ledger, gift_script_applies_daily_and_monthly_caps_by_utc_day_and_month)
{
    redisContext *rc = tk_redis_connect(&redis);
    freeReplyObject(redisCommand(rc, "SET d:bal:ann 1000"));
    /* 95 spent this month (on an earlier day), monthly cap 100, no daily cap. */
    freeReplyObject(redisCommand(rc, "SET d:limits:ann %s", "20251231 40 202601 95 - 100"));
    const char *ids[] = {"m1", "m2"};
    const char *dg[] = {"rose:6", "rose:5"};
    const long c[] = {6, 5};
    redisReply *r = gift_batch(rc, 2, ids, dg, c);
    cr_assert_eq(r->element[0]->integer, 0, "95 + 6 is over the monthly 100");
    cr_assert_str_eq(r->element[1]->str, "budget_exceeded");
    cr_assert_eq(r->element[3]->integer, 1, "95 + 5 is not");
    freeReplyObject(r);
    r = redisCommand(rc, "GET d:limits:ann");
    cr_assert_str_eq(r->str, "20260101 5 202601 100 - 100", "a new day; the month goes on");
    freeReplyObject(r);
    /* Last month's spending does not count; the daily cap does. */
    freeReplyObject(redisCommand(rc, "SET d:limits:ann %s", "20251231 90 202512 900 3 100"));
    const char *ids2[] = {"m3", "m4"};
    const char *dg2[] = {"rose:4", "rose:3"};
    const long c2[] = {4, 3};
    r = gift_batch(rc, 2, ids2, dg2, c2);
    cr_assert_eq(r->element[0]->integer, 0, "4 is over the daily 3");
    cr_assert_eq(r->element[3]->integer, 1, "3 is not, and December's 900 is gone");
    freeReplyObject(r);
    r = redisCommand(rc, "GET d:limits:ann");
    cr_assert_str_eq(r->str, "20260101 3 202601 3 3 100");
    freeReplyObject(r);
    cr_assert_eq(get_int(rc, "GET d:bal:ann"), 1000 - 5 - 3);
    redisFree(rc);
}

extern const char ledger_script_room_presence[];

/* room_presence.lua alone for node n1 of room "pr" at time now (ms): its count ("-" to only
 * read), at PR_T0 + now, a 5 s field lifetime, a 1 s publish interval, an 80 s history expiry. */
#define PR_T0 1700000000000LL /* the tests' clock starts here */

static redisReply *presence_at(redisContext *rc, const char *count, long long now)
{
    char now_s[24];
    snprintf(now_s, sizeof(now_s), "%lld", PR_T0 + now);
    const char *argv[] = {"EVAL",
                          ledger_script_room_presence,
                          "8",
                          "giftd:{r:pr}:meta",
                          "giftd:{r:pr}:seq",
                          "giftd:{r:pr}:presence",
                          "giftd:{r:pr}:state",
                          "giftd:{r:pr}:lb",
                          "giftd:{r:pr}:lbnames",
                          "giftd:{r:pr}:totals",
                          "giftd:{r:pr}:hist",
                          "n1",
                          count,
                          now_s,
                          "5000",
                          "1000",
                          "Pgiftd:{r:pr}:ch",
                          "pr",
                          "10",
                          "80000"};
    redisReply *r = redisCommandArgv(rc, (int)(sizeof(argv) / sizeof(argv[0])), argv, NULL);
    cr_assert_not_null(r);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY, "%s", r->type == REDIS_REPLY_ERROR ? r->str : "");
    return r;
}

/* node's field of the presence hash is "count:PR_T0 + expires" (count NULL: no field). */
static void expect_field(redisContext *rc, const char *node, const char *count, long long expires)
{
    redisReply *r = redisCommand(rc, "HGET giftd:{r:pr}:presence %s", node);
    if (!count) {
        cr_assert_eq(r->type, REDIS_REPLY_NIL, "%s still has a field", node);
    } else {
        char want[48];
        snprintf(want, sizeof(want), "%s:%lld", count, PR_T0 + expires);
        cr_assert_eq(r->type, REDIS_REPLY_STRING, "%s has no field", node);
        cr_assert_str_eq(r->str, want);
    }
    freeReplyObject(r);
}

Test(ledger, presence_rewrites_a_count_only_when_it_changed_or_half_its_life_passed)
{
    redisContext *rc = tk_redis_connect(&redis);
    freeReplyObject(redisCommand(rc, "HSET giftd:{r:pr}:meta live 1 creator_id cara"));
    freeReplyObject(redisCommand(rc, "RPUSH giftd:{r:pr}:hist e1"));
    redisReply *r = presence_at(rc, "3", 1000);
    cr_assert_eq(r->element[4]->integer, 3, "viewers");
    freeReplyObject(r);
    expect_field(rc, "n1", "3", 6000);
    cr_assert(get_int(rc, "PTTL giftd:{r:pr}:hist") > 79000, "the history's expiry pushed on");
    /* A second later, nothing changed: the field and the history's expiry are left alone. */
    freeReplyObject(redisCommand(rc, "PEXPIRE giftd:{r:pr}:hist 50000"));
    freeReplyObject(presence_at(rc, "3", 2000));
    expect_field(rc, "n1", "3", 6000);
    cr_assert(get_int(rc, "PTTL giftd:{r:pr}:hist") <= 50000, "pushed on again too soon");
    /* Less than half its life left: rewritten. A new count: rewritten at once. */
    freeReplyObject(presence_at(rc, "3", 3600));
    expect_field(rc, "n1", "3", 8600);
    freeReplyObject(redisCommand(rc, "HSET giftd:{r:pr}:presence n2 2:%lld n3 4:%lld", PR_T0 + 3000,
                                 PR_T0 + 9000));
    r = presence_at(rc, "4", 3700);
    cr_assert_eq(r->element[4]->integer, 8, "n1's 4 and n3's 4; n2's expired 2 is not counted");
    freeReplyObject(r);
    expect_field(rc, "n1", "4", 8700);
    expect_field(rc, "n2", NULL, 0);
    /* Reading only, after n1's field lapsed (n1 died): it no longer counts and is dropped. */
    r = presence_at(rc, "-", 8800);
    cr_assert_eq(r->element[4]->integer, 4, "only n3's");
    freeReplyObject(r);
    expect_field(rc, "n1", NULL, 0);
    /* An eighth of the history's expiry after the last push, it is pushed on again. */
    freeReplyObject(presence_at(rc, "4", 11000));
    cr_assert(get_int(rc, "PTTL giftd:{r:pr}:hist") > 79000, "the history's expiry not pushed");
    /* A count of 0 removes the node's field. */
    freeReplyObject(presence_at(rc, "0", 11100));
    expect_field(rc, "n1", NULL, 0);
    redisFree(rc);
}
