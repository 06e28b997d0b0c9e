/* Integration: the sharded pub/sub subscriber (shard_sub.c) against a real 3-master Redis
 * Cluster: smessages, many channels, refusals, a slot move, a failover, a killed node, AUTH,
 * and freeing it with data in flight. */
#include "ledger_client/ledger_client_internal.h"
#include "tests/support/testkit.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct tk_cluster cl;
static uv_loop_t loop;

static void loop_setup(void)
{
    cr_assert_eq(uv_loop_init(&loop), 0);
}

static void cluster_setup(void)
{
    loop_setup();
    cr_assert_eq(tk_cluster_start(&cl, 3, 0), 0);
}

static void close_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

/* Every handle must be closed by now: lshard_sub_free closed what it opened. (After a failed
 * assertion a subscriber may still be open: close it by force so that the test ends.) */
static void loop_teardown(void)
{
    uv_run(&loop, UV_RUN_NOWAIT);
    int rc = uv_loop_close(&loop);
    if (rc != 0) {
        uv_walk(&loop, close_handle, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
    }
    cr_assert_eq(rc, 0, "a handle was left open");
}

static void cluster_teardown(void)
{
    loop_teardown();
    tk_cluster_stop(&cl);
}

TestSuite(lshard_sub, .init = cluster_setup, .fini = cluster_teardown, .timeout = 120);

#define MAX_CHANNELS 512
#define MSGS_PER_CH  10

/* What a subscriber saw. */
struct probe {
    int up, down, subscribed, unsubscribed, messages;
    char last_sub[128];   /* channel of the last SUBSCRIBED */
    char last_unsub[128]; /* channel of the last UNSUBSCRIBED */
    char events[1024];    /* "S:ch U:ch …" in order */
    char last_msg[256];
    size_t last_mlen;
    int next[MAX_CHANNELS]; /* many_channels: the next message expected per channel */
    bool out_of_order;
    struct lshard_sub *free_on_msg; /* freed by the first message */
};

static void on_msg(void *ud, const char *ch, size_t clen, const char *msg, size_t mlen)
{
    struct probe *p = ud;
    p->messages++;
    size_t n = mlen < sizeof(p->last_msg) ? mlen : sizeof(p->last_msg);
    memcpy(p->last_msg, msg, n);
    p->last_mlen = mlen;
    /* many_channels: "shard:{c<i>}" carries "<i>:<j>", j counting from 0. */
    int i = -1, j = -1;
    char chan[64];
    snprintf(chan, sizeof(chan), "%.*s", (int)clen, ch);
    if (sscanf(chan, "shard:{c%d}", &i) == 1 && i >= 0 && i < MAX_CHANNELS) {
        char text[64];
        snprintf(text, sizeof(text), "%.*s", (int)(mlen < 63 ? mlen : 63), msg);
        int i2;
        if (sscanf(text, "%d:%d", &i2, &j) != 2 || i2 != i || j != p->next[i]) {
            p->out_of_order = true;
        }
        p->next[i]++;
    }
    if (p->free_on_msg) {
        lshard_sub_free(p->free_on_msg);
        p->free_on_msg = NULL;
    }
}

static void on_event(void *ud, enum lshard_event ev, const char *ch, size_t clen)
{
    struct probe *p = ud;
    size_t used = strlen(p->events);
    switch (ev) {
    case LSHARD_UP:
        cr_assert_null(ch);
        p->up++;
        break;
    case LSHARD_DOWN:
        cr_assert_null(ch);
        p->down++;
        break;
    case LSHARD_SUBSCRIBED:
        p->subscribed++;
        snprintf(p->last_sub, sizeof(p->last_sub), "%.*s", (int)clen, ch);
        snprintf(p->events + used, sizeof(p->events) - used, "S:%.*s ", (int)clen, ch);
        break;
    case LSHARD_UNSUBSCRIBED:
        p->unsubscribed++;
        snprintf(p->last_unsub, sizeof(p->last_unsub), "%.*s", (int)clen, ch);
        snprintf(p->events + used, sizeof(p->events) - used, "U:%.*s ", (int)clen, ch);
        break;
    }
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until *counter >= want or ms pass. Returns whether it got there. */
static bool run_until(const int *counter, int want, int ms)
{
    uv_timer_t tick;
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, on_tick, 5, 5);
    uv_update_time(&loop); /* the loop's clock stood still while the test blocked */
    uint64_t deadline = uv_now(&loop) + (uint64_t)ms;
    while (*counter < want && uv_now(&loop) < deadline) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return *counter >= want;
}

/* Runs the loop for ms (to see that nothing more arrives). */
static void run_for(int ms)
{
    int never = 0;
    run_until(&never, 1, ms);
}

static struct lshard_sub *sub_to(int node, struct probe *p)
{
    struct lshard_sub *s = NULL;
    cr_assert_eq(
        lshard_sub_new(&loop, "127.0.0.1", cl.node[node].port, NULL, on_msg, on_event, p, &s), 0);
    cr_assert_not_null(s);
    return s;
}

/* SPUBLISH from a plain hiredis connection to node: the number of receivers. */
static long long spublish(int node, const char *ch, const char *msg, size_t mlen)
{
    redisContext *ctx = tk_cluster_connect_node(&cl, node);
    redisReply *r = redisCommand(ctx, "SPUBLISH %s %b", ch, msg, mlen);
    cr_assert_not_null(r);
    cr_assert_eq(r->type, REDIS_REPLY_INTEGER, "SPUBLISH %s: %s", ch,
                 r->type == REDIS_REPLY_ERROR ? r->str : "?");
    long long n = r->integer;
    freeReplyObject(r);
    redisFree(ctx);
    return n;
}

static unsigned slot_of(const char *key)
{
    return lslot_of(key, strlen(key));
}

Test(lshard_sub, delivers_smessages_until_sunsubscribed)
{
    const char *ch = "giftd:{r:demo}:ev";
    int node = tk_cluster_master_of(&cl, slot_of(ch));
    cr_assert_geq(node, 0);
    static struct probe p;
    struct lshard_sub *s = sub_to(node, &p);
    /* Subscribing before UP is fine: it goes out once connected. */
    cr_assert_eq(lshard_sub_ssubscribe(s, ch), 0);
    cr_assert(run_until(&p.subscribed, 1, 5000));
    cr_assert_eq(p.up, 1);
    cr_assert_str_eq(p.last_sub, ch);

    /* Binary-safe: NUL, CR LF and a RESP-looking payload. */
    static const char msg[] = "a\0b\r\n*3\r\n$8\r\nsmessage\xff";
    cr_assert_eq(spublish(node, ch, msg, sizeof(msg) - 1), 1);
    cr_assert(run_until(&p.messages, 1, 5000));
    cr_assert_eq(p.last_mlen, sizeof(msg) - 1);
    cr_assert_eq(memcmp(p.last_msg, msg, sizeof(msg) - 1), 0);

    cr_assert_eq(lshard_sub_sunsubscribe(s, ch), 0);
    cr_assert(run_until(&p.unsubscribed, 1, 5000));
    cr_assert_str_eq(p.last_unsub, ch);
    cr_assert_eq(spublish(node, ch, "x", 1), 0, "the server still counts a subscriber");
    run_for(100);
    cr_assert_eq(p.messages, 1);
    cr_assert_eq(p.down, 0);
    cr_assert_eq(lshard_sub_error(s), 0);
    lshard_sub_free(s);
}

Test(lshard_sub, many_channels_on_every_master)
{
    enum { NCH = 300 };
    /* The slot owners, once, from CLUSTER SLOTS. */
    redisContext *ctx = tk_cluster_connect_node(&cl, 0);
    redisReply *r = redisCommand(ctx, "CLUSTER SLOTS");
    static struct lslot_map map;
    cr_assert_eq(lslot_map_from_reply(r, "127.0.0.1", cl.node[0].port, &map), 0);
    freeReplyObject(r);
    redisFree(ctx);
    int node_of[NCH];
    for (int i = 0; i < NCH; i++) {
        char ch[64];
        snprintf(ch, sizeof(ch), "shard:{c%d}", i);
        int owner = map.owner[slot_of(ch)];
        cr_assert_geq(owner, 0);
        node_of[i] = -1;
        for (int n = 0; n < cl.nnodes; n++) {
            if (cl.node[n].port == map.nodes[owner].port) {
                node_of[i] = n;
            }
        }
        cr_assert_geq(node_of[i], 0);
    }
    lslot_map_free(&map);

    static struct probe p[3];
    struct lshard_sub *s[3];
    int per_node[3] = {0, 0, 0};
    for (int n = 0; n < 3; n++) {
        s[n] = sub_to(n, &p[n]);
    }
    for (int i = 0; i < NCH; i++) {
        char ch[64];
        snprintf(ch, sizeof(ch), "shard:{c%d}", i);
        cr_assert_eq(lshard_sub_ssubscribe(s[node_of[i]], ch), 0);
        per_node[node_of[i]]++;
    }
    for (int n = 0; n < 3; n++) {
        cr_assert_gt(per_node[n], 50, "node %d got %d channels", n, per_node[n]);
        cr_assert(run_until(&p[n].subscribed, per_node[n], 10000), "node %d: %d of %d", n,
                  p[n].subscribed, per_node[n]);
        cr_assert_eq(p[n].unsubscribed, 0);
    }
    /* Each channel gets MSGS_PER_CH messages, pipelined per node, interleaved. */
    redisContext *pub[3];
    for (int n = 0; n < 3; n++) {
        pub[n] = tk_cluster_connect_node(&cl, n);
    }
    for (int j = 0; j < MSGS_PER_CH; j++) {
        for (int i = 0; i < NCH; i++) {
            redisAppendCommand(pub[node_of[i]], "SPUBLISH shard:{c%d} %d:%d", i, i, j);
        }
    }
    for (int j = 0; j < MSGS_PER_CH; j++) {
        for (int i = 0; i < NCH; i++) {
            void *reply = NULL;
            cr_assert_eq(redisGetReply(pub[node_of[i]], &reply), REDIS_OK);
            cr_assert_eq(((redisReply *)reply)->integer, 1);
            freeReplyObject(reply);
        }
    }
    for (int n = 0; n < 3; n++) {
        redisFree(pub[n]);
        cr_assert(run_until(&p[n].messages, per_node[n] * MSGS_PER_CH, 10000), "node %d: %d", n,
                  p[n].messages);
    }
    run_for(50);
    for (int n = 0; n < 3; n++) {
        cr_assert_eq(p[n].messages, per_node[n] * MSGS_PER_CH, "node %d: extra messages", n);
        cr_assert_not(p[n].out_of_order, "node %d: a message out of order", n);
        lshard_sub_free(s[n]);
    }
    for (int i = 0; i < NCH; i++) {
        cr_assert_eq(p[node_of[i]].next[i], MSGS_PER_CH, "channel %d", i);
    }
}

Test(lshard_sub, refusals_keep_answers_in_order)
{
    /* Node 0 serves slots 0-5460: "bar" (5061) and the tag {user1000} (3443), not {p12}. */
    const char *mine1 = "bar";
    const char *mine2 = "{user1000}.tl";
    const char *never = "none:{user1000}";
    const char *foreign = "giftd:{p12}:x"; /* 14525 */
    cr_assert_eq(tk_cluster_master_of(&cl, slot_of(mine1)), 0);
    cr_assert_eq(tk_cluster_master_of(&cl, slot_of(mine2)), 0);
    cr_assert_neq(tk_cluster_master_of(&cl, slot_of(foreign)), 0);

    static struct probe p;
    struct lshard_sub *s = sub_to(0, &p);
    cr_assert_eq(lshard_sub_ssubscribe(s, foreign), 0);   /* -MOVED: refused */
    cr_assert_eq(lshard_sub_ssubscribe(s, mine1), 0);     /* ssubscribe */
    cr_assert_eq(lshard_sub_sunsubscribe(s, foreign), 0); /* -MOVED, then pong: nothing */
    cr_assert_eq(lshard_sub_ssubscribe(s, mine2), 0);     /* ssubscribe */
    cr_assert_eq(lshard_sub_sunsubscribe(s, never), 0);   /* sunsubscribe, then pong */
    cr_assert(run_until(&p.unsubscribed, 2, 5000));
    run_for(100);
    char want[256];
    snprintf(want, sizeof(want), "U:%s S:%s S:%s U:%s ", foreign, mine1, mine2, never);
    cr_assert_str_eq(p.events, want);
    cr_assert_eq(p.down, 0);
    /* Still subscribed to both of its own. */
    cr_assert_eq(spublish(0, mine1, "1", 1), 1);
    cr_assert_eq(spublish(0, mine2, "2", 1), 1);
    cr_assert(run_until(&p.messages, 2, 5000));
    lshard_sub_free(s);
}

Test(lshard_sub, a_moved_slot_unsubscribes_its_channels)
{
    const char *ch = "giftd:{r:moving}:ev";
    const char *stay = "giftd:{r:staying}:ev";
    unsigned slot = slot_of(ch);
    int src = tk_cluster_master_of(&cl, slot);
    /* stay: another slot of the same node. */
    char stay_buf[64];
    for (int i = 0; tk_cluster_master_of(&cl, slot_of(stay)) != src; i++) {
        snprintf(stay_buf, sizeof(stay_buf), "giftd:{r:staying%d}:ev", i);
        stay = stay_buf;
    }
    int dst = (src + 1) % 3;
    static struct probe p;
    struct lshard_sub *s = sub_to(src, &p);
    cr_assert_eq(lshard_sub_ssubscribe(s, ch), 0);
    cr_assert_eq(lshard_sub_ssubscribe(s, stay), 0);
    cr_assert(run_until(&p.subscribed, 2, 5000));

    cr_assert_eq(tk_cluster_move_slot(&cl, slot, dst), 0);
    cr_assert(run_until(&p.unsubscribed, 1, 5000), "no sunsubscribe after the move");
    cr_assert_str_eq(p.last_unsub, ch);
    /* The other slot's channel still delivers. */
    cr_assert_eq(spublish(src, stay, "still", 5), 1);
    cr_assert(run_until(&p.messages, 1, 5000));
    /* Unsubscribing now is answered -MOVED: swallowed, no second UNSUBSCRIBED, and the next
     * answer still matches its command. */
    cr_assert_eq(lshard_sub_sunsubscribe(s, ch), 0);
    cr_assert_eq(lshard_sub_ssubscribe(s, ch), 0); /* -MOVED: refused */
    cr_assert(run_until(&p.unsubscribed, 2, 5000));
    run_for(100);
    cr_assert_eq(p.unsubscribed, 2);
    cr_assert_eq(p.subscribed, 2);
    cr_assert_eq(p.down, 0);

    /* At the new owner it works. */
    static struct probe q;
    struct lshard_sub *t = sub_to(dst, &q);
    cr_assert_eq(lshard_sub_ssubscribe(t, ch), 0);
    cr_assert(run_until(&q.subscribed, 1, 5000));
    cr_assert_eq(spublish(dst, ch, "moved", 5), 1);
    cr_assert(run_until(&q.messages, 1, 5000));
    cr_assert_eq(p.messages, 1, "the old connection got nothing more");
    lshard_sub_free(s);
    lshard_sub_free(t);
}

Test(lshard_sub, a_killed_node_reports_down)
{
    const char *ch = "giftd:{r:kill}:ev";
    int node = tk_cluster_master_of(&cl, slot_of(ch));
    static struct probe p;
    struct lshard_sub *s = sub_to(node, &p);
    cr_assert_eq(lshard_sub_ssubscribe(s, ch), 0);
    cr_assert(run_until(&p.subscribed, 1, 5000));
    tk_redis_kill(&cl.node[node], SIGKILL);
    cr_assert(run_until(&p.down, 1, 5000));
    cr_assert_eq(lshard_sub_error(s), -ECONNRESET);
    cr_assert_eq(lshard_sub_ssubscribe(s, ch), -ENOTCONN);
    cr_assert_eq(lshard_sub_sunsubscribe(s, ch), -ENOTCONN);
    run_for(50);
    cr_assert_eq(p.down, 1, "DOWN once");
    lshard_sub_free(s);

    /* Nobody listens there now: the connect fails. */
    static struct probe q;
    struct lshard_sub *t = sub_to(node, &q);
    cr_assert(run_until(&q.down, 1, 5000));
    cr_assert_eq(q.up, 0);
    cr_assert_eq(lshard_sub_error(t), -ECONNREFUSED);
    lshard_sub_free(t);
}

Test(lshard_sub, free_with_data_in_flight)
{
    const char *ch = "giftd:{r:flood}:ev";
    int node = tk_cluster_master_of(&cl, slot_of(ch));
    static struct probe p;
    struct lshard_sub *s = sub_to(node, &p);
    cr_assert_eq(lshard_sub_ssubscribe(s, ch), 0);
    cr_assert(run_until(&p.subscribed, 1, 5000));
    /* Thousands of small messages (many per read) and 4 MB of big ones are on their way when
     * the first one frees the subscriber. */
    static char big[64 * 1024];
    memset(big, 'x', sizeof(big));
    redisContext *pub = tk_cluster_connect_node(&cl, node);
    for (int i = 0; i < 2000; i++) {
        redisAppendCommand(pub, "SPUBLISH %s small-%d", ch, i);
    }
    for (int i = 0; i < 64; i++) {
        redisAppendCommand(pub, "SPUBLISH %s %b", ch, big, sizeof(big));
    }
    for (int i = 0; i < 2064; i++) {
        void *reply = NULL;
        cr_assert_eq(redisGetReply(pub, &reply), REDIS_OK);
        cr_assert_eq(((redisReply *)reply)->integer, 1);
        freeReplyObject(reply);
    }
    redisFree(pub);
    p.free_on_msg = s;
    cr_assert(run_until(&p.messages, 1, 5000));
    run_for(200);
    cr_assert_eq(p.messages, 1, "a message after lshard_sub_free");
    cr_assert_eq(p.down, 0, "DOWN after lshard_sub_free");

    /* Freed while connecting, with commands queued, and while a name is being resolved. */
    static struct probe q;
    struct lshard_sub *t = sub_to(node, &q);
    cr_assert_eq(lshard_sub_ssubscribe(t, ch), 0);
    lshard_sub_free(t);
    t = NULL;
    cr_assert_eq(
        lshard_sub_new(&loop, "localhost", cl.node[node].port, "pw", on_msg, on_event, &q, &t), 0);
    cr_assert_eq(lshard_sub_ssubscribe(t, ch), 0);
    lshard_sub_free(t);
    run_for(200);
    cr_assert_eq(q.up + q.down + q.subscribed + q.unsubscribed + q.messages, 0);
    lshard_sub_free(NULL);
}

Test(lshard_sub, resolves_a_host_name)
{
    const char *ch = "giftd:{r:named}:ev";
    int node = tk_cluster_master_of(&cl, slot_of(ch));
    static struct probe p;
    struct lshard_sub *s = NULL;
    cr_assert_eq(
        lshard_sub_new(&loop, "localhost", cl.node[node].port, NULL, on_msg, on_event, &p, &s), 0);
    cr_assert_eq(lshard_sub_ssubscribe(s, ch), 0);
    cr_assert(run_until(&p.subscribed, 1, 5000));
    cr_assert_eq(p.up, 1);
    lshard_sub_free(s);
    /* A name that does not resolve: DOWN. */
    static struct probe q;
    cr_assert_eq(
        lshard_sub_new(&loop, "no-such-host.invalid", 6379, NULL, on_msg, on_event, &q, &s), 0);
    cr_assert(run_until(&q.down, 1, 10000));
    cr_assert_lt(lshard_sub_error(s), 0);
    lshard_sub_free(s);
    /* Bad arguments. */
    cr_assert_eq(lshard_sub_new(&loop, "", 6379, NULL, on_msg, on_event, &q, &s), -EINVAL);
    cr_assert_null(s);
    cr_assert_eq(lshard_sub_new(&loop, "127.0.0.1", 0, NULL, on_msg, on_event, &q, &s), -EINVAL);
    cr_assert_eq(lshard_sub_new(&loop, "127.0.0.1", 1, NULL, NULL, on_event, &q, &s), -EINVAL);
}

/* A replica promoted by a failover keeps serving; the old master drops its subscribers. */
static void replicas_setup(void)
{
    loop_setup();
    cr_assert_eq(tk_cluster_start(&cl, 3, 1), 0);
}

Test(lshard_sub_failover, the_old_master_unsubscribes, .init = replicas_setup,
     .fini = cluster_teardown, .timeout = 120)
{
    const char *ch = "giftd:{r:fo}:ev";
    int master = tk_cluster_master_of(&cl, slot_of(ch));
    static struct probe p;
    struct lshard_sub *s = sub_to(master, &p);
    cr_assert_eq(lshard_sub_ssubscribe(s, ch), 0);
    cr_assert(run_until(&p.subscribed, 1, 5000));
    int promoted = tk_cluster_failover(&cl, master);
    cr_assert_geq(promoted, 0);
    cr_assert(run_until(&p.unsubscribed, 1, 5000), "no sunsubscribe after the failover");
    cr_assert_str_eq(p.last_unsub, ch);
    cr_assert_eq(p.down, 0);
    lshard_sub_free(s);
}

/* AUTH against a standalone redis-server 7.0, which has sharded pub/sub too. */
static struct tk_redis single;

static void single_setup(void)
{
    loop_setup();
    cr_assert_eq(tk_redis_start(&single), 0);
    redisContext *ctx = tk_redis_connect(&single);
    freeReplyObject(redisCommand(ctx, "CONFIG SET requirepass s3cret"));
    redisFree(ctx);
}

static void single_teardown(void)
{
    loop_teardown();
    tk_redis_stop(&single);
}

Test(lshard_sub_auth, authenticates_first, .init = single_setup, .fini = single_teardown,
     .timeout = 60)
{
    static struct probe p, bad, none;
    struct lshard_sub *s = NULL, *b = NULL, *n = NULL;
    cr_assert_eq(
        lshard_sub_new(&loop, "127.0.0.1", single.port, "s3cret", on_msg, on_event, &p, &s), 0);
    cr_assert_eq(lshard_sub_ssubscribe(s, "room"), 0);
    cr_assert_eq(
        lshard_sub_new(&loop, "127.0.0.1", single.port, "wrong", on_msg, on_event, &bad, &b), 0);
    cr_assert_eq(lshard_sub_new(&loop, "127.0.0.1", single.port, NULL, on_msg, on_event, &none, &n),
                 0);
    cr_assert_eq(lshard_sub_ssubscribe(n, "room"), 0);
    cr_assert(run_until(&p.subscribed, 1, 5000));
    cr_assert_eq(p.up, 1);
    cr_assert(run_until(&bad.down, 1, 5000));
    cr_assert_eq(bad.up, 0);
    cr_assert_eq(lshard_sub_error(b), -EACCES);
    /* Without AUTH the server refuses the SSUBSCRIBE (NOAUTH). */
    cr_assert(run_until(&none.unsubscribed, 1, 5000));
    cr_assert_str_eq(none.last_unsub, "room");

    redisContext *ctx = tk_redis_connect(&single);
    redisReply *r = redisCommand(ctx, "AUTH s3cret");
    freeReplyObject(r);
    r = redisCommand(ctx, "SPUBLISH room hi");
    cr_assert_eq(r->integer, 1);
    freeReplyObject(r);
    redisFree(ctx);
    cr_assert(run_until(&p.messages, 1, 5000));
    cr_assert_eq(p.last_mlen, 2);
    cr_assert_eq(none.messages, 0);
    lshard_sub_free(s);
    lshard_sub_free(b);
    lshard_sub_free(n);
}
