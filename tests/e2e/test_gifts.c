/* End-to-end: the gift path through real giftd nodes and a real redis-server — debit, publish,
 * ack, broadcast across nodes, idempotency, refusals, Redis failure, the outbox (SPEC 3, 4). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ledger_client/ledger_client.h"
#include "tests/support/fixture.h"

#define US "\x1f" /* the separator of the outbox payload's fields */

static struct fx f;
/* Rate limits are lifted here: these tests fire bursts on purpose (test_semantics checks
 * the limits). */
static const char *const two_fast[] = {"--ledger.outbox_grace_ms=1000",
                                       "--limits.gifts_per_sec=100000",
                                       "--limits.frames_per_sec=100000", NULL};

static void setup2(void)
{
    fx_start(&f, 2, two_fast);
}

static void teardown(void)
{
    fx_stop(&f);
}

TestSuite(gifts, .init = setup2, .fini = teardown, .timeout = 120);

/* Reads gift events until n arrived or timeout; asserts they are the ones expected in order
 * of seq; returns how many arrived. */
static int collect_gifts(struct tk_ws *ws, int n, int timeout_ms, json_t **out)
{
    int got = 0;
    int64_t end = fx_now_ms() + timeout_ms;
    while (got < n) {
        int left = (int)(end - fx_now_ms());
        if (left <= 0) {
            break;
        }
        json_t *j = tk_ws_recv(ws, left);
        if (!j) {
            break;
        }
        if (strcmp(fx_str(j, "type"), "gift") == 0) {
            out[got++] = j;
        } else {
            json_decref(j);
        }
    }
    return got;
}

/* Counts gift events arriving within quiet_ms of silence. */
static int count_more_gifts(struct tk_ws *ws, int quiet_ms)
{
    int n = 0;
    json_t *j;
    while ((j = tk_ws_recv(ws, quiet_ms))) {
        if (strcmp(fx_str(j, "type"), "gift") == 0) {
            n++;
        }
        json_decref(j);
    }
    return n;
}

Test(gifts, debited_once_acked_and_broadcast_to_every_viewer)
{
    fx_open_room(&f, "g1", "cara");
    cr_assert_eq(fx_recharge(&f, "ann", 100), 100);
    struct tk_ws *ann = fx_viewer(&f, 0, "ann", "g1");
    struct tk_ws *ben = fx_viewer(&f, 0, "ben", "g1");
    struct tk_ws *ovl = fx_connect_as(&f, 1, "cara", "overlay", "g1");

    const char *gift[] = {"rose", "doughnut", "finger_heart"};
    long count[] = {1, 2, 3};
    long cost[] = {1, 60, 15};
    long balance = 100;
    long long first_seq = 0;
    /* The sender's own room events, kept while its answers are read. */
    json_t *ann_ev[8];
    int ann_n = 0, ann_i = 0;
    for (int i = 0; i < 3; i++) {
        char id[32];
        snprintf(id, sizeof(id), "send-%d", i);
        fx_send_gift(ann, id, gift[i], count[i]);
        json_t *a = NULL;
        while (!a) {
            json_t *j = tk_ws_recv(ann, 5000);
            cr_assert_not_null(j, "no answer to %s", id);
            const char *t = fx_str(j, "type");
            json_t *jid = json_object_get(j, "id");
            if ((strcmp(t, "ack") == 0 || strcmp(t, "error") == 0) && json_is_string(jid) &&
                strcmp(json_string_value(jid), id) == 0) {
                a = j;
            } else if (strcmp(t, "gift") == 0 || strcmp(t, "combo_end") == 0) {
                cr_assert_lt(ann_n, 8, "the sender got too many events");
                ann_ev[ann_n++] = j;
            } else {
                json_decref(j);
            }
        }
        cr_assert_str_eq(fx_str(a, "type"), "ack", "%s", json_dumps(a, 0));
        balance -= cost[i];
        cr_assert_eq(fx_int(a, "balance"), balance);
        cr_assert(json_is_false(json_object_get(a, "duplicate")));
        /* Each send after the first ends the previous gift's combo first (a combo_end event,
         * which takes a seq of its own). */
        if (i == 0) {
            first_seq = fx_int(a, "seq");
        }
        cr_assert_eq(fx_int(a, "seq"), first_seq + 2 * i, "seq must rise by exactly one per event");
        json_decref(a);
    }
    cr_assert_eq(fx_balance(&f, "ann"), 24);

    /* Every viewer, the sender included and the overlay on the other node, gets each event
     * once, in order, with SPEC 3.2's fields. */
    struct tk_ws *viewers[] = {ben, ovl, ann};
    for (int v = 0; v < 3; v++) {
        /* gift, combo_end, gift, combo_end, gift, then the last combo_end when its window
         * passes: seq consecutive, each event once. */
        for (int k = 0; k < 6; k++) {
            json_t *e = viewers[v] == ann && ann_i < ann_n ? ann_ev[ann_i++]
                                                          : tk_ws_recv(viewers[v], 6000);
            cr_assert_not_null(e, "viewer %d: event %d missing", v, k);
            const char *type = fx_str(e, "type");
            if (strcmp(type, "viewers") == 0 || strcmp(type, "leaderboard") == 0) {
                json_decref(e);
                k--;
                continue;
            }
            cr_assert_eq(fx_int(e, "seq"), first_seq + k, "viewer %d event %d", v, k);
            cr_assert_str_eq(fx_str(e, "room"), "g1");
            int i = k / 2;
            json_t *from = json_object_get(e, "from");
            cr_assert_str_eq(fx_str(from, "id"), "ann");
            cr_assert_str_eq(fx_str(from, "name"), "ann");
            json_t *g = json_object_get(e, "gift");
            cr_assert_str_eq(fx_str(g, "id"), gift[i]);
            cr_assert(json_is_string(json_object_get(g, "name")));
            cr_assert(fx_int(g, "coins") * count[i] == cost[i]);
            cr_assert(fx_int(g, "diamonds") >= 0);
            cr_assert(json_is_string(json_object_get(g, "tier")));
            cr_assert(json_is_string(json_object_get(g, "animation")));
            cr_assert(fx_int(e, "ts_ms") > 0);
            if (k % 2 == 0) {
                cr_assert_str_eq(type, "gift");
                char id[32];
                snprintf(id, sizeof(id), "send-%d", i);
                cr_assert_str_eq(fx_str(e, "id"), id);
                cr_assert_eq(fx_int(e, "count"), count[i]);
                cr_assert_eq(fx_int(json_object_get(e, "combo"), "count"), 1);
            } else {
                cr_assert_str_eq(type, "combo_end");
                cr_assert_eq(fx_int(json_object_get(e, "combo"), "count"), 1);
                cr_assert_eq(fx_int(e, "total_count"), count[i]);
            }
            json_decref(e);
        }
        cr_assert_eq(count_more_gifts(viewers[v], 300), 0, "viewer %d got an extra event", v);
    }

    /* Room totals and leaderboard follow. */
    struct tk_http_resp r = {0};
    cr_assert_eq(tk_http(f.node[1].port, "GET", "/v1/rooms/g1", NULL, NULL, &r), 0);
    json_t *t = json_object_get(r.json, "totals");
    cr_assert_eq(fx_int(t, "coins"), 76);
    cr_assert_eq(fx_int(t, "gifts"), 6);
    json_t *top = json_object_get(r.json, "top");
    cr_assert_eq(json_array_size(top), 1);
    cr_assert_str_eq(fx_str(json_array_get(top, 0), "id"), "ann");
    cr_assert_eq(fx_int(json_array_get(top, 0), "coins"), 76);
    tk_http_resp_cleanup(&r);
    tk_ws_free(ann);
    tk_ws_free(ben);
    tk_ws_free(ovl);
}

Test(gifts, viewer_on_another_node_receives_in_order)
{
    fx_open_room(&f, "g2", "cara");
    fx_recharge(&f, "ann", 1000);
    struct tk_ws *b = fx_viewer(&f, 1, "ben", "g2");
    struct tk_ws *a = fx_viewer(&f, 0, "ann", "g2");
    for (int i = 0; i < 20; i++) {
        char id[32];
        snprintf(id, sizeof(id), "o-%d", i);
        fx_send_gift(a, id, "rose", 1);
    }
    json_t *ev[20] = {0};
    cr_assert_eq(collect_gifts(b, 20, 10000, ev), 20);
    long long seq0 = fx_int(ev[0], "seq");
    for (int i = 0; i < 20; i++) {
        char id[32];
        snprintf(id, sizeof(id), "o-%d", i);
        cr_assert_eq(fx_int(ev[i], "seq"), seq0 + i, "out of order at %d", i);
        cr_assert_str_eq(fx_str(ev[i], "id"), id);
        json_decref(ev[i]);
    }
    tk_ws_free(a);
    tk_ws_free(b);
}

Test(gifts, concurrent_sends_of_one_user_on_two_nodes_never_overdraw)
{
    fx_open_room(&f, "g3", "cara");
    cr_assert_eq(fx_recharge(&f, "ann", 40), 40);
    struct tk_ws *watch = fx_viewer(&f, 1, "ben", "g3");
    struct tk_ws *c[5];
    for (int i = 0; i < 5; i++) {
        c[i] = fx_viewer(&f, i % 2, "ann", "g3");
    }
    /* 200 sends of a 1-coin rose, fired without waiting, 40 per connection. */
    for (int k = 0; k < 40; k++) {
        for (int i = 0; i < 5; i++) {
            char id[32];
            snprintf(id, sizeof(id), "c%d-%d", i, k);
            fx_send_gift(c[i], id, "rose", 1);
        }
    }
    /* Answers come in any order (a refusal takes one Redis round trip, an ack two). */
    int acks = 0, poor = 0, other = 0;
    for (int i = 0; i < 5; i++) {
        int answered = 0;
        while (answered < 40) {
            json_t *a = tk_ws_recv(c[i], 10000);
            cr_assert_not_null(a, "connection %d: %d answers", i, answered);
            const char *type = fx_str(a, "type");
            if (strcmp(type, "ack") == 0) {
                acks++;
                answered++;
                cr_assert(fx_int(a, "balance") >= 0);
            } else if (strcmp(type, "error") == 0) {
                answered++;
                if (strcmp(fx_str(a, "code"), "insufficient_funds") == 0) {
                    poor++;
                } else {
                    other++;
                }
            }
            json_decref(a);
        }
    }
    cr_assert_eq(acks, 40);
    cr_assert_eq(poor, 160);
    cr_assert_eq(other, 0);
    cr_assert_eq(fx_balance(&f, "ann"), 0);
    json_t *ev[41] = {0};
    int n = collect_gifts(watch, 41, 3000, ev);
    cr_assert_eq(n, 40, "broadcasts: %d", n);
    for (int i = 0; i < n; i++) {
        json_decref(ev[i]);
    }
    for (int i = 0; i < 5; i++) {
        tk_ws_free(c[i]);
    }
    tk_ws_free(watch);
}

Test(gifts, retry_with_same_id_is_a_duplicate_and_not_broadcast_again)
{
    fx_open_room(&f, "g4", "cara");
    fx_recharge(&f, "ann", 100);
    struct tk_ws *a = fx_viewer(&f, 0, "ann", "g4");
    struct tk_ws *w = fx_viewer(&f, 1, "ben", "g4");
    fx_send_gift(a, "once", "doughnut", 1);
    json_t *first = fx_answer(a, "once", 5000);
    cr_assert_str_eq(fx_str(first, "type"), "ack");
    long long seq = fx_int(first, "seq");
    cr_assert_eq(fx_int(first, "balance"), 70);
    json_decref(first);
    /* The retry can come from another connection, on another node. */
    struct tk_ws *a2 = fx_viewer(&f, 1, "ann", "g4");
    fx_send_gift(a2, "once", "doughnut", 1);
    json_t *dup = fx_answer(a2, "once", 5000);
    cr_assert_str_eq(fx_str(dup, "type"), "ack");
    cr_assert(json_is_true(json_object_get(dup, "duplicate")));
    cr_assert_eq(fx_int(dup, "seq"), seq);
    cr_assert_eq(fx_int(dup, "balance"), 70);
    json_decref(dup);
    /* The same id with another gift or count is bad_request. */
    fx_send_gift(a, "once", "rose", 1);
    json_t *bad = fx_answer(a, "once", 5000);
    cr_assert_str_eq(fx_str(bad, "code"), "bad_request");
    json_decref(bad);
    fx_send_gift(a, "once", "doughnut", 2);
    bad = fx_answer(a, "once", 5000);
    cr_assert_str_eq(fx_str(bad, "code"), "bad_request");
    json_decref(bad);
    cr_assert_eq(fx_balance(&f, "ann"), 70);
    json_t *ev[2] = {0};
    cr_assert_eq(collect_gifts(w, 2, 1500, ev), 1, "broadcast more than once");
    json_decref(ev[0]);
    tk_ws_free(a);
    tk_ws_free(a2);
    tk_ws_free(w);
}

static void expect_refusal(struct tk_ws *ws, const char *id, const char *gift, long count,
                           const char *code)
{
    fx_send_gift(ws, id, gift, count);
    json_t *e = fx_answer(ws, id, 5000);
    cr_assert_not_null(e, "no answer to %s", id);
    cr_assert_str_eq(fx_str(e, "type"), "error", "%s: %s", id, json_dumps(e, 0));
    cr_assert_str_eq(fx_str(e, "code"), code);
    json_decref(e);
}

Test(gifts, refusals_change_nothing)
{
    fx_open_room(&f, "g5", "cara");
    fx_open_room(&f, "g5b", "dave");
    fx_recharge(&f, "ann", 100);
    struct tk_ws *w = fx_viewer(&f, 1, "ben", "g5");
    struct tk_ws *a = fx_viewer(&f, 0, "ann", NULL);
    expect_refusal(a, "nj", "rose", 1, "not_joined");
    cr_assert_eq(tk_ws_send_json(a, "{\"type\":\"join\",\"room\":\"g5\"}"), 0);
    json_decref(tk_ws_expect(a, "joined", 5000));
    expect_refusal(a, "ug", "unicorn", 1, "unknown_gift");
    expect_refusal(a, "ev", "pumpkin", 1, "gift_unavailable");
    expect_refusal(a, "poor", "lion", 1, "insufficient_funds");
    expect_refusal(a, "big", "rose", 100, "bad_request"); /* over gifts.max_count */

    /* Daily budget: 50 coins, 30 spent, the next 30 would exceed it. */
    char path[64];
    snprintf(path, sizeof(path), "/v1/users/ann/budget");
    struct tk_http_resp r = {0};
    cr_assert_eq(tk_http(f.node[0].port, "PUT", path, f.service, "{\"daily_coins\":50}", &r), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(fx_int(r.json, "daily_coins"), 50);
    tk_http_resp_cleanup(&r);
    fx_send_gift(a, "b1", "doughnut", 1);
    json_t *ok = fx_answer(a, "b1", 5000);
    cr_assert_str_eq(fx_str(ok, "type"), "ack");
    json_decref(ok);
    expect_refusal(a, "b2", "doughnut", 1, "budget_exceeded");
    cr_assert_eq(tk_http(f.node[0].port, "PUT", path, f.service, "{\"daily_coins\":null}", &r), 0);
    cr_assert(json_is_null(json_object_get(r.json, "daily_coins")));
    tk_http_resp_cleanup(&r);

    /* The creator cannot gift in their own room. */
    fx_recharge(&f, "cara", 10);
    struct tk_ws *c = fx_viewer(&f, 0, "cara", "g5");
    expect_refusal(c, "self", "rose", 1, "self_gift");
    /* Overlay and guest may not send. */
    struct tk_ws *o = fx_connect_as(&f, 0, "cara", "overlay", "g5");
    expect_refusal(o, "ov", "rose", 1, "forbidden");
    /* A closed room. */
    struct tk_ws *d = fx_viewer(&f, 0, "ann", "g5b");
    fx_close_room(&f, "g5b");
    json_decref(tk_ws_expect(d, "room_closed", 5000));
    expect_refusal(d, "closed", "rose", 1, "room_not_live");

    cr_assert_eq(fx_balance(&f, "ann"), 70, "a refusal changed the balance");
    cr_assert_eq(fx_balance(&f, "cara"), 10);
    json_t *ev[2] = {0};
    cr_assert_eq(collect_gifts(w, 2, 1000, ev), 1, "only the one accepted gift is broadcast");
    json_decref(ev[0]);
    tk_ws_free(a);
    tk_ws_free(c);
    tk_ws_free(o);
    tk_ws_free(d);
    tk_ws_free(w);
}

Test(gifts, guests_may_not_send)
{
    fx_open_room(&f, "g6", "cara");
    const char *extra[] = {"--auth.allow_guests=true", NULL};
    fx_start_node(&f, 2, extra);
    f.nodes = 3;
    struct tk_ws *g = tk_ws_connect(f.node[2].port, "/ws?room=g6");
    cr_assert_not_null(g);
    json_decref(tk_ws_expect(g, "joined", 5000));
    expect_refusal(g, "guest", "rose", 1, "forbidden");
    tk_ws_free(g);
}

Test(gifts, recharge_is_idempotent_per_payment_id)
{
    struct tk_http_resp r = {0};
    const char *body = "{\"payment_id\":\"pay-1\",\"user\":\"ann\",\"package\":\"p70\"}";
    cr_assert_eq(tk_http(f.node[0].port, "POST", "/v1/recharge", f.service, body, &r), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(fx_int(r.json, "credited"), 70);
    cr_assert_eq(fx_int(r.json, "balance"), 70);
    cr_assert(json_is_false(json_object_get(r.json, "duplicate")));
    tk_http_resp_cleanup(&r);
    cr_assert_eq(tk_http(f.node[1].port, "POST", "/v1/recharge", f.service, body, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(fx_int(r.json, "credited"), 70);
    cr_assert_eq(fx_int(r.json, "balance"), 70);
    cr_assert(json_is_true(json_object_get(r.json, "duplicate")));
    tk_http_resp_cleanup(&r);
    const char *bad[] = {
        "{\"payment_id\":\"pay-2\",\"user\":\"ann\",\"package\":\"nope\"}",
        "{\"payment_id\":\"pay-2\",\"user\":\"ann\",\"coins\":-5}",
        "{\"payment_id\":\"pay-2\",\"user\":\"ann\",\"coins\":5,\"package\":\"p70\"}",
        "{\"payment_id\":\"pay 2\",\"user\":\"ann\",\"coins\":5}",
        "{\"user\":\"ann\",\"coins\":5}",
        "not json",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(tk_http(f.node[0].port, "POST", "/v1/recharge", f.service, bad[i], &r), 0);
        cr_assert_eq(r.status, 400, "%s -> %d", bad[i], r.status);
        tk_http_resp_cleanup(&r);
    }
    char *viewer = tk_token("ann", "Ann", "viewer", NULL, 600);
    cr_assert_eq(tk_http(f.node[0].port, "POST", "/v1/recharge", viewer,
                         "{\"payment_id\":\"pay-3\",\"user\":\"ann\",\"coins\":5}", &r),
                 0);
    cr_assert_eq(r.status, 403);
    tk_http_resp_cleanup(&r);
    /* A user may read their own balance, not someone else's. */
    cr_assert_eq(tk_http(f.node[0].port, "GET", "/v1/users/ann/balance", viewer, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(fx_int(r.json, "coins"), 70);
    tk_http_resp_cleanup(&r);
    cr_assert_eq(tk_http(f.node[0].port, "GET", "/v1/users/ben/balance", viewer, NULL, &r), 0);
    cr_assert_eq(r.status, 403);
    tk_http_resp_cleanup(&r);
    free(viewer);
    cr_assert_eq(fx_balance(&f, "ann"), 70);
}

/* Runs the debit script directly, as a node killed between debit and publish leaves it: the
 * debit is committed and its event sits in the outbox, unpublished. */
static void debit_without_publish(const char *room, const char *creator, const char *sub,
                                  const char *id)
{
    char script_path[512];
    snprintf(script_path, sizeof(script_path), "%s/ledger_client/scripts/debit.lua",
             GIFTD_SOURCE_DIR);
    FILE *fp = fopen(script_path, "r");
    cr_assert_not_null(fp);
    char script[8192];
    size_t n = fread(script, 1, sizeof(script) - 1, fp);
    fclose(fp);
    script[n] = '\0';
    unsigned p = ledger_partition(sub, 1024);
    char kbal[128], kidem[160], kbud[128], kspent[128], kpend[64], kout[64];
    snprintf(kbal, sizeof(kbal), "giftd:{p%u}:bal:%s", p, sub);
    snprintf(kidem, sizeof(kidem), "giftd:{p%u}:idem:%s:%s", p, id, sub);
    snprintf(kbud, sizeof(kbud), "giftd:{p%u}:budget:%s", p, sub);
    snprintf(kspent, sizeof(kspent), "giftd:{p%u}:spent:test:%s", p, sub);
    snprintf(kpend, sizeof(kpend), "giftd:{p%u}:pending", p);
    snprintf(kout, sizeof(kout), "giftd:{p%u}:outbox", p);
    char field[256], payload[1024], now[32];
    long long t = (long long)time(NULL) * 1000;
    snprintf(now, sizeof(now), "%lld", t);
    snprintf(field, sizeof(field), "%s" US "%s" US "galaxy", creator, room);
    /* The payload giftd's gift path stores (server/gift.c): room, sub, id, name, coins,
     * diamonds, count, gift, streakable, from+gift JSON, event text up to the combo value,
     * event text after it. */
    char fg[256];
    snprintf(fg, sizeof(fg),
             "\"from\":{\"id\":\"%s\",\"name\":\"%s\"},\"gift\":{\"id\":\"galaxy\",\"name\":"
             "\"Galaxy\",\"coins\":1,\"diamonds\":1,\"tier\":\"large\",\"animation\":\"galaxy\"}",
             sub, sub);
    snprintf(payload, sizeof(payload),
             "%s" US "%s" US "%s" US "%s" US "1" US "1" US "1" US "galaxy" US "0" US "%s" US
             ",\"id\":\"%s\",%s,\"count\":1,\"combo\":" US ",\"ts_ms\":%lld}",
             room, sub, id, sub, fg, id, fg, t);
    redisContext *rc = tk_redis_connect(&f.redis);
    redisReply *r = redisCommand(rc, "EVAL %s 6 %s %s %s %s %s %s %s %s %s %s %s %s %s %s",
                                 script, kbal, kidem, kbud, kspent, kpend, kout, "galaxy:1", "1",
                                 "86400", field, "1", "1", now, payload);
    cr_assert_not_null(r);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY, "%s", r->type == REDIS_REPLY_ERROR ? r->str : "");
    cr_assert_eq(r->element[0]->integer, 1, "debit not committed");
    freeReplyObject(r);
    r = redisCommand(rc, "ZCARD %s", kout);
    cr_assert_eq(r->integer, 1);
    freeReplyObject(r);
    redisFree(rc);
}

static long long outbox_size(const char *sub)
{
    redisContext *rc = tk_redis_connect(&f.redis);
    redisReply *r = redisCommand(rc, "ZCARD giftd:{p%u}:outbox", ledger_partition(sub, 1024));
    long long n = r->integer;
    freeReplyObject(r);
    redisFree(rc);
    return n;
}

Test(gifts, outbox_publishes_a_debit_whose_node_died_exactly_once)
{
    fx_open_room(&f, "g7", "cara");
    fx_recharge(&f, "ann", 1002);
    struct tk_ws *w = fx_viewer(&f, 1, "ben", "g7");
    struct tk_ws *a = fx_viewer(&f, 0, "ann", "g7");
    /* A gift that opens no combo, so the next event's seq is the very next one. */
    fx_send_gift(a, "live-1", "galaxy", 1);
    json_t *ack = fx_answer(a, "live-1", 5000);
    long long seq = fx_int(ack, "seq");
    json_decref(ack);
    json_t *ev[2] = {0};
    cr_assert_eq(collect_gifts(w, 1, 3000, ev), 1);
    json_decref(ev[0]);

    int64_t t0 = fx_now_ms();
    debit_without_publish("g7", "cara", "ann", "orphan-1");
    cr_assert_eq(collect_gifts(w, 1, 1000 + 3000, ev), 1, "the outbox event never came");
    int64_t took = fx_now_ms() - t0;
    cr_assert_str_eq(fx_str(ev[0], "id"), "orphan-1");
    cr_assert_eq(fx_int(ev[0], "seq"), seq + 1);
    json_decref(ev[0]);
    cr_assert(took < 1000 + 2000, "published after %lld ms", (long long)took);
    /* Exactly once: nothing more, and the outbox is empty. */
    cr_assert_eq(count_more_gifts(w, 2500), 0);
    cr_assert_eq(outbox_size("ann"), 0);
    cr_assert_eq(fx_balance(&f, "ann"), 1);
    /* The sender retrying that id learns its outcome. */
    fx_send_gift(a, "orphan-1", "galaxy", 1);
    json_t *dup = fx_answer(a, "orphan-1", 5000);
    cr_assert_str_eq(fx_str(dup, "type"), "ack");
    cr_assert(json_is_true(json_object_get(dup, "duplicate")));
    cr_assert_eq(fx_int(dup, "seq"), seq + 1);
    json_decref(dup);
    cr_assert_eq(count_more_gifts(w, 500), 0);
    tk_ws_free(a);
    tk_ws_free(w);
}

/* The Redis-failure test runs on its own fixture: Redis with an AOF, a short ledger timeout. */
static void setup_aof(void)
{
    static const char *const extra[] = {"--ledger.timeout_ms=500", "--limits.gifts_per_sec=100000",
                                        "--limits.frames_per_sec=100000", NULL};
    fx_start_aof(&f, 1, extra);
}

TestSuite(gifts_redis_failure, .init = setup_aof, .fini = teardown, .timeout = 120);

Test(gifts_redis_failure, redis_killed_and_restarted_mid_stream)
{
    fx_open_room(&f, "g8", "cara");
    const long start = 10000;
    cr_assert_eq(fx_recharge(&f, "ann", start), start);
    struct tk_ws *w = fx_viewer(&f, 0, "ben", "g8");
    struct tk_ws *a = fx_viewer(&f, 0, "ann", "g8");
    enum { N = 150 };
    /* outcome: 0 unknown, 1 acked, 2 refused for good */
    int outcome[N] = {0};
    int unavailable = 0;
    long acked_coins = 0;
    int64_t worst_ms = 0;
    for (int i = 0; i < N; i++) {
        if (i == 50) {
            tk_redis_kill(&f.redis, SIGKILL);
        }
        if (i == 100) {
            cr_assert_eq(tk_redis_start_on(&f.redis, f.redis.port, true), 0);
            cr_assert_eq(tk_giftd_wait_ready(&f.node[0], 10000), 0);
        }
        char id[32];
        snprintf(id, sizeof(id), "k-%d", i);
        int64_t t = fx_now_ms();
        fx_send_gift(a, id, "rose", 1);
        json_t *r = fx_answer(a, id, 5000);
        cr_assert_not_null(r, "no answer to %s", id);
        int64_t took = fx_now_ms() - t;
        if (took > worst_ms) {
            worst_ms = took;
        }
        if (strcmp(fx_str(r, "type"), "ack") == 0) {
            outcome[i] = 1;
            acked_coins += 1;
        } else {
            cr_assert_str_eq(fx_str(r, "code"), "ledger_unavailable", "%s", json_dumps(r, 0));
            /* Gifts flow again once giftd is ready after the restart. */
            cr_assert_lt(i, 100, "%s refused after Redis came back: %s", id, json_dumps(r, 0));
            unavailable++;
        }
        json_decref(r);
    }
    cr_assert(unavailable > 0, "Redis was down but nothing failed");
    cr_assert(worst_ms < 500 + 1500, "an answer took %lld ms", (long long)worst_ms);
    /* Viewers stayed connected. */
    cr_assert_eq(tk_ws_send_json(w, "{\"type\":\"ping\"}"), 0);
    json_t *pong = tk_ws_expect(w, "pong", 5000);
    cr_assert_not_null(pong, "the viewer lost its connection");
    json_decref(pong);
    /* Every unavailable send, retried with its id, is committed once or reports its outcome. */
    for (int i = 0; i < N; i++) {
        if (outcome[i]) {
            continue;
        }
        char id[32];
        snprintf(id, sizeof(id), "k-%d", i);
        fx_send_gift(a, id, "rose", 1);
        json_t *r = fx_answer(a, id, 5000);
        cr_assert_not_null(r);
        cr_assert_str_eq(fx_str(r, "type"), "ack", "retry of %s: %s", id, json_dumps(r, 0));
        acked_coins += 1;
        json_decref(r);
    }
    /* No double charge, no silent charge: coins acked = coins debited. */
    cr_assert_eq(start - fx_balance(&f, "ann"), acked_coins);
    tk_ws_free(a);
    tk_ws_free(w);
}
