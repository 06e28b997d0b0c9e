/* End-to-end on a Redis Cluster: a local cluster of 3 masters and a replica each, two giftd
 * nodes with redis.cluster. The money guarantees (charged once, never below zero, broadcast
 * exactly once) hold while a slot is resharded and while a master fails over in the middle of
 * the load; gifts spread over the masters; room channels are sharded. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "tests/support/fixture.h"

static struct fx f;

static void setup(void)
{
    static const char *const extra[] = {
        "--rooms.presence_interval_ms=200", "--limits.gifts_per_sec=100000",
        "--limits.frames_per_sec=100000", "--ledger.outbox_grace_ms=1000", NULL};
    fx_start_cluster(&f, 2, 3, 1, extra);
}

static void teardown(void)
{
    fx_stop(&f);
}

TestSuite(cluster, .init = setup, .fini = teardown, .timeout = 300);

/* galaxy: 1000 coins, not streakable, so each accepted send is exactly one seq event. */
#define COST 1000

/* The user partition of sub (ledger_partition: FNV-1a 32 mod 1024). */
static unsigned partition_of(const char *sub)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)sub; *p; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    return h % 1024;
}

static unsigned keyslot(const char *key)
{
    redisContext *c = tk_cluster_connect_node(f.cluster, 0);
    redisReply *r = redisCommand(c, "CLUSTER KEYSLOT %s", key);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER);
    unsigned slot = (unsigned)r->integer;
    freeReplyObject(r);
    redisFree(c);
    return slot;
}

static unsigned room_slot(const char *room)
{
    char key[128];
    snprintf(key, sizeof(key), "giftd:{r:%s}:seq", room);
    return keyslot(key);
}

static unsigned user_slot(const char *sub)
{
    char key[64];
    snprintf(key, sizeof(key), "giftd:{p%u}:bal:%s", partition_of(sub), sub);
    return keyslot(key);
}

/* One sender: its connection, the ids it sent and what became of each. */
#define MAX_SENDS 400
struct sender {
    struct tk_ws *ws;
    char sub[32];
    int n;
    char id[MAX_SENDS][64];
    int state[MAX_SENDS]; /* 0 waiting, 1 acked, 2 refused */
};

static void send_burst(struct sender *s, const char *stem, int count)
{
    for (int i = 0; i < count && s->n < MAX_SENDS; i++) {
        snprintf(s->id[s->n], sizeof(s->id[0]), "%s-%s-%d", s->sub, stem, s->n);
        fx_send_gift(s->ws, s->id[s->n], "galaxy", 1);
        s->state[s->n++] = 0;
    }
}

static int index_of(const struct sender *s, const char *id)
{
    for (int i = 0; i < s->n; i++) {
        if (strcmp(s->id[i], id) == 0) {
            return i;
        }
    }
    return -1;
}

/* Reads answers until every send has an outcome; a ledger_unavailable (outcome unknown) is
 * sent again with the same id, as a client does. Asserts it all ends within the deadline. */
static void settle(struct sender *s, int timeout_ms)
{
    int64_t end = fx_now_ms() + timeout_ms;
    for (;;) {
        int waiting = 0;
        for (int i = 0; i < s->n; i++) {
            waiting += s->state[i] == 0;
        }
        if (!waiting) {
            return;
        }
        int left = (int)(end - fx_now_ms());
        cr_assert_gt(left, 0, "%s: %d sends never settled", s->sub, waiting);
        json_t *j = tk_ws_recv(s->ws, left);
        cr_assert_not_null(j, "%s: connection lost", s->sub);
        const char *t = fx_str(j, "type");
        const char *id = json_string_value(json_object_get(j, "id"));
        int k = id ? index_of(s, id) : -1;
        if (k >= 0 && strcmp(t, "ack") == 0) {
            s->state[k] = 1;
        } else if (k >= 0 && strcmp(t, "error") == 0) {
            const char *code = fx_str(j, "code");
            if (strcmp(code, "ledger_unavailable") == 0) {
                fx_send_gift(s->ws, s->id[k], "galaxy", 1); /* same id: charged at most once */
            } else {
                cr_assert_str_eq(code, "insufficient_funds", "%s %s", s->id[k],
                                 json_dumps(j, JSON_COMPACT));
                s->state[k] = 2;
            }
        }
        json_decref(j);
    }
}

static int acked(const struct sender *s)
{
    int n = 0;
    for (int i = 0; i < s->n; i++) {
        n += s->state[i] == 1;
    }
    return n;
}

/* A viewer reads gift events until it has seen `want` of them; asserts seqs follow one another
 * from first_seq, each gift id once, and every one of them acked by a sender. */
static void expect_broadcast_once(struct tk_ws *v, struct sender *const *senders, int nsenders,
                                  int want, int timeout_ms)
{
    int64_t end = fx_now_ms() + timeout_ms;
    long long last = -1;
    int seen = 0;
    char **ids = calloc((size_t)want + 1, sizeof(*ids));
    while (seen < want) {
        int left = (int)(end - fx_now_ms());
        cr_assert_gt(left, 0, "only %d of %d gift events arrived", seen, want);
        json_t *j = tk_ws_recv(v, left);
        cr_assert_not_null(j, "viewer lost after %d of %d gift events", seen, want);
        const char *t = fx_str(j, "type");
        if (strcmp(t, "gift") == 0) {
            long long seq = fx_int(j, "seq");
            cr_assert(last < 0 || seq == last + 1, "seq %lld after %lld", seq, last);
            last = seq;
            const char *id = fx_str(j, "id");
            for (int i = 0; i < seen; i++) {
                cr_assert_str_neq(ids[i], id, "gift %s broadcast twice", id);
            }
            bool found = false;
            for (int k = 0; k < nsenders && !found; k++) {
                int i = index_of(senders[k], id);
                found = i >= 0 && senders[k]->state[i] == 1;
            }
            cr_assert(found, "gift %s broadcast but not acked", id);
            ids[seen++] = strdup(id);
        }
        json_decref(j);
    }
    for (int i = 0; i < seen; i++) {
        free(ids[i]);
    }
    free(ids);
}

/* Every partition's outbox is empty (each charged send was published and cleared). */
static void expect_outboxes_empty(int timeout_ms)
{
    int64_t end = fx_now_ms() + timeout_ms;
    for (;;) {
        long long entries = 0;
        for (int n = 0; n < f.cluster->nnodes; n++) {
            redisContext *c = tk_cluster_connect_node(f.cluster, n);
            redisReply *role = redisCommand(c, "ROLE");
            bool master = role && role->type == REDIS_REPLY_ARRAY &&
                          strcmp(role->element[0]->str, "master") == 0;
            freeReplyObject(role);
            if (master) {
                redisReply *keys = redisCommand(c, "KEYS giftd:{p*}:outbox");
                for (size_t i = 0; keys && i < keys->elements; i++) {
                    redisReply *h = redisCommand(c, "HLEN %s", keys->element[i]->str);
                    entries += h && h->type == REDIS_REPLY_INTEGER ? h->integer : 0;
                    freeReplyObject(h);
                }
                freeReplyObject(keys);
            }
            redisFree(c);
        }
        if (entries == 0) {
            return;
        }
        cr_assert_lt(fx_now_ms(), end, "%lld outbox entries left", entries);
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL);
    }
}

static long long redirects(void)
{
    return fx_metric(&f, 0, "giftd_ledger_redirects_total") +
           fx_metric(&f, 1, "giftd_ledger_redirects_total");
}

/* The coins the settlement stream (on its own slot's master) holds for room; asserts each
 * (batch, creator, room, gift) row appears once. */
static long long settled_coins(const char *room)
{
    int m = tk_cluster_master_of(f.cluster, keyslot("giftd:settlements"));
    cr_assert_geq(m, 0);
    redisContext *c = tk_cluster_connect_node(f.cluster, m);
    redisReply *r = redisCommand(c, "XRANGE giftd:settlements - +");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    long long coins = 0;
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *fl = r->element[i]->element[1];
        const char *batch = "", *rroom = "", *gift = "";
        long long v = 0;
        for (size_t k = 0; k + 1 < fl->elements; k += 2) {
            const char *name = fl->element[k]->str, *val = fl->element[k + 1]->str;
            batch = strcmp(name, "batch") == 0 ? val : batch;
            rroom = strcmp(name, "room") == 0 ? val : rroom;
            gift = strcmp(name, "gift") == 0 ? val : gift;
            v = strcmp(name, "coins") == 0 ? strtoll(val, NULL, 10) : v;
        }
        if (strcmp(rroom, room) != 0) {
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            redisReply *g = r->element[j]->element[1];
            int same = 0;
            for (size_t k = 0; k + 1 < g->elements; k += 2) {
                const char *name = g->element[k]->str, *val = g->element[k + 1]->str;
                same += (strcmp(name, "batch") == 0 && strcmp(val, batch) == 0) ||
                        (strcmp(name, "room") == 0 && strcmp(val, rroom) == 0) ||
                        (strcmp(name, "gift") == 0 && strcmp(val, gift) == 0);
            }
            cr_assert_lt(same, 3, "batch %s of %s settled twice", batch, room);
        }
        coins += v;
    }
    freeReplyObject(r);
    redisFree(c);
    return coins;
}

/* Waits until room's settled coins reach want; asserts they never pass it. */
static void expect_settled(const char *room, long long want, int timeout_ms)
{
    int64_t end = fx_now_ms() + timeout_ms;
    long long got = 0;
    while ((got = settled_coins(room)) < want && fx_now_ms() < end) {
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL);
    }
    cr_assert_eq(got, want, "%s: settled %lld coins, acked %lld", room, got, want);
}

static struct sender *new_sender(int node, const char *sub, const char *room, long coins)
{
    struct sender *s = calloc(1, sizeof(*s));
    snprintf(s->sub, sizeof(s->sub), "%s", sub);
    fx_recharge(&f, sub, coins);
    s->ws = fx_viewer(&f, node, sub, room);
    return s;
}

static void free_sender(struct sender *s)
{
    tk_ws_free(s->ws);
    free(s);
}

Test(cluster, gifts_are_charged_once_and_broadcast_once_across_the_masters)
{
    enum { ROOMS = 6, PER_ROOM = 2, SENDS = 15 };
    struct sender *snd[ROOMS * PER_ROOM];
    struct tk_ws *viewer[ROOMS];
    bool master_used[TK_CLUSTER_MAX_NODES] = {0};
    for (int r = 0; r < ROOMS; r++) {
        char room[32];
        snprintf(room, sizeof(room), "cr%d", r);
        fx_open_room(&f, room, "cara");
        master_used[tk_cluster_master_of(f.cluster, room_slot(room))] = true;
        viewer[r] = fx_viewer(&f, 1, "vic", room);
        for (int k = 0; k < PER_ROOM; k++) {
            char sub[32];
            snprintf(sub, sizeof(sub), "cs%d-%d", r, k);
            snd[r * PER_ROOM + k] = new_sender(k % 2, sub, room, 100 * COST);
        }
    }
    int used = 0;
    for (int n = 0; n < TK_CLUSTER_MAX_NODES; n++) {
        used += master_used[n];
    }
    cr_assert_gt(used, 1, "the rooms should spread over several masters");
    /* Bursts from every sender at once; 2 sends each beyond its coins are refused. */
    for (int i = 0; i < ROOMS * PER_ROOM; i++) {
        send_burst(snd[i], "a", SENDS);
    }
    for (int i = 0; i < ROOMS * PER_ROOM; i++) {
        settle(snd[i], 30000);
        cr_assert_eq(acked(snd[i]), SENDS, "%s", snd[i]->sub);
        cr_assert_eq(fx_balance(&f, snd[i]->sub), (100 - SENDS) * COST);
    }
    for (int r = 0; r < ROOMS; r++) {
        expect_broadcast_once(viewer[r], snd + r * PER_ROOM, PER_ROOM, PER_ROOM * SENDS, 10000);
    }
    /* Over its balance: refused, nothing charged. */
    struct sender *poor = new_sender(0, "poor", "cr0", COST + 10);
    send_burst(poor, "p", 3);
    settle(poor, 10000);
    cr_assert_eq(acked(poor), 1);
    cr_assert_eq(fx_balance(&f, "poor"), 10);
    expect_outboxes_empty(5000);
    for (int r = 0; r < ROOMS; r++) {
        char room[32];
        snprintf(room, sizeof(room), "cr%d", r);
        expect_settled(room, (long long)(PER_ROOM * SENDS + (r == 0)) * COST, 20000);
    }
    free_sender(poor);
    for (int i = 0; i < ROOMS * PER_ROOM; i++) {
        free_sender(snd[i]);
    }
    for (int r = 0; r < ROOMS; r++) {
        tk_ws_free(viewer[r]);
    }
}

/* Load from two senders (one per giftd node) into one room while `change` runs; then every
 * acked gift was charged once and broadcast once, and nothing else was. */
static void under_load(const char *room, void (*change)(const char *room, const char *sub))
{
    fx_open_room(&f, room, "cara");
    struct tk_ws *v = fx_viewer(&f, 1, "vic", room);
    char sa[32], sb[32];
    snprintf(sa, sizeof(sa), "%s-a", room);
    snprintf(sb, sizeof(sb), "%s-b", room);
    struct sender *a = new_sender(0, sa, room, 1000 * COST);
    struct sender *b = new_sender(1, sb, room, 1000 * COST);
    send_burst(a, "x", 60);
    send_burst(b, "x", 60);
    change(room, sa);
    send_burst(a, "y", 60);
    send_burst(b, "y", 60);
    settle(a, 60000);
    settle(b, 60000);
    cr_assert_eq(acked(a), 120);
    cr_assert_eq(acked(b), 120);
    cr_assert_eq(fx_balance(&f, sa), (1000 - 120) * COST, "charged once per acked gift");
    cr_assert_eq(fx_balance(&f, sb), (1000 - 120) * COST, "charged once per acked gift");
    struct sender *both[2] = {a, b};
    expect_broadcast_once(v, both, 2, 240, 30000);
    json_t *extra = tk_ws_expect(v, "gift", 1500);
    cr_assert_null(extra, "an extra gift event: %s", json_dumps(extra, JSON_COMPACT));
    expect_outboxes_empty(10000);
    /* What the creator earned is settled once: charged == broadcast == settled. */
    expect_settled(room, 240LL * COST, 20000);
    free_sender(a);
    free_sender(b);
    tk_ws_free(v);
}

static void reshard(const char *room, const char *sub)
{
    /* The room's slot, then the sender's partition, each to the next master. */
    unsigned rs = room_slot(room), us = user_slot(sub);
    int to = (tk_cluster_master_of(f.cluster, rs) + 1) % f.cluster->masters;
    cr_assert_eq(tk_cluster_move_slot(f.cluster, rs, to), 0, "moving the room's slot");
    to = (tk_cluster_master_of(f.cluster, us) + 1) % f.cluster->masters;
    if (tk_cluster_master_of(f.cluster, us) != to) {
        cr_assert_eq(tk_cluster_move_slot(f.cluster, us, to), 0, "moving the user's slot");
    }
}

Test(cluster, a_reshard_in_the_middle_of_the_load_loses_and_doubles_nothing)
{
    long long before = redirects();
    under_load("rs-move", reshard);
    /* The nodes learned of the moves from Redis's answers (MOVED / ASK / TRYAGAIN). */
    cr_assert_gt(redirects(), before, "no redirect was followed");
}

static void failover(const char *room, const char *sub)
{
    (void)sub;
    int m = tk_cluster_master_of(f.cluster, room_slot(room));
    cr_assert_geq(m, 0);
    cr_assert_geq(tk_cluster_failover(f.cluster, m), 0, "failover of master %d", m);
}

Test(cluster, a_master_failover_in_the_middle_of_the_load_loses_and_doubles_nothing)
{
    long long before = redirects();
    under_load("rs-fail", failover);
    cr_assert_gt(redirects(), before, "no redirect was followed");
}
Test(cluster, room_channels_are_sharded_while_viewers_watch)
{
    fx_open_room(&f, "shard1", "cara");
    struct tk_ws *v = fx_viewer(&f, 0, "vic", "shard1");
    int m = tk_cluster_master_of(f.cluster, room_slot("shard1"));
    redisContext *c = tk_cluster_connect_node(f.cluster, m);
    int64_t end = fx_now_ms() + 5000;
    bool found = false;
    while (!found && fx_now_ms() < end) {
        redisReply *r = redisCommand(c, "PUBSUB SHARDCHANNELS giftd:{r:shard1}:ch");
        found = r && r->type == REDIS_REPLY_ARRAY && r->elements == 1;
        freeReplyObject(r);
    }
    cr_assert(found, "no sharded subscription to the room's channel on its master");
    redisReply *r = redisCommand(c, "PUBSUB CHANNELS giftd:*");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    cr_assert_eq(r->elements, 0, "classic channels in use");
    freeReplyObject(r);
    redisFree(c);
    tk_ws_free(v);
}

/* A room's last viewer leaves and another joins at once, over and over: the answer to the
 * SUNSUBSCRIBE of the leave is not taken for the server dropping the new subscription (which
 * would have every room of the node read its history again). */
Test(cluster, leaving_and_rejoining_a_room_does_not_refill_every_room)
{
    char *tok = tk_token("vic", "vic", "viewer", NULL, 3600);
    char path[1024];
    snprintf(path, sizeof(path), "/ws?token=%s", tok);
    for (int r = 0; r < 4; r++) {
        char room[16];
        snprintf(room, sizeof(room), "lv%d", r);
        fx_open_room(&f, room, "cara");
    }
    /* Other rooms watched on node 1, so that a refill would show in the metric. */
    struct tk_ws *other[3];
    for (int r = 1; r < 4; r++) {
        char room[16];
        snprintf(room, sizeof(room), "lv%d", r);
        other[r - 1] = fx_viewer(&f, 1, "olga", room);
    }
    fx_recharge(&f, "ann", 100 * COST);
    struct tk_ws *sender = fx_viewer(&f, 0, "ann", "lv1");
    fx_send_gift(sender, "seed", "galaxy", 1); /* the rooms' streams start */
    json_t *a = fx_answer(sender, "seed", 5000);
    cr_assert_not_null(a);
    json_decref(a);
    long long fills = fx_metric(&f, 1, "giftd_gap_fills_total");
    struct tk_ws *v = fx_viewer(&f, 1, "vic", "lv0");
    for (int i = 0; i < 20; i++) {
        struct tk_ws *next = tk_ws_connect(f.node[1].port, path);
        cr_assert_not_null(next);
        json_decref(tk_ws_expect(next, "welcome", 5000));
        tk_ws_free(v); /* the last viewer of lv0 leaves… */
        cr_assert_eq(tk_ws_send_json(next, "{\"type\":\"join\",\"room\":\"lv0\"}"), 0);
        json_t *j = tk_ws_expect(next, "joined", 5000); /* …and another joins at once */
        cr_assert_not_null(j);
        json_decref(j);
        v = next;
    }
    /* A gift in lv1 still reaches node 1's viewer of lv1. */
    fx_send_gift(sender, "after", "galaxy", 1);
    json_t *g = tk_ws_expect(other[0], "gift", 5000);
    cr_assert_not_null(g);
    json_decref(g);
    cr_assert_eq(fx_metric(&f, 1, "giftd_gap_fills_total"), fills,
                 "rooms read their history again after leaves and joins");
    tk_ws_free(v);
    for (int r = 0; r < 3; r++) {
        tk_ws_free(other[r]);
    }
    tk_ws_free(sender);
    free(tok);
}

/* A room's first viewer on a node gets joined only once the node's sharded subscription is
 * confirmed by the room's master (a subscriber connection is made on demand, and the join's
 * read may well come back first): the close published right after joined reaches the viewer.
 * It once did not, and a gift sent after the close was charged. Every other round the nodes'
 * subscribers at the room's master are killed just before the join. */
Test(cluster, joined_comes_after_the_sharded_subscription)
{
    fx_recharge(&f, "ann", 100 * COST);
    /* A room per master watched on both nodes throughout keeps their subscribers there of type
     * pubsub (the ones CLIENT KILL TYPE pubsub finds). */
    struct tk_ws *anchor[2 * TK_CLUSTER_MAX_NODES] = {0};
    int nanchor = 0;
    bool held[TK_CLUSTER_MAX_NODES] = {0};
    for (int k = 0; k < 64; k++) {
        char room[16];
        snprintf(room, sizeof(room), "anchor%d", k);
        int m = tk_cluster_master_of(f.cluster, room_slot(room));
        if (m < 0 || held[m]) {
            continue;
        }
        held[m] = true;
        fx_open_room(&f, room, "cara");
        anchor[nanchor++] = fx_viewer(&f, 0, "olga", room);
        anchor[nanchor++] = fx_viewer(&f, 1, "olga", room);
    }
    for (int i = 0; i < 9; i++) {
        char room[16], ch[64];
        snprintf(room, sizeof(room), "js%d", i);
        snprintf(ch, sizeof(ch), "giftd:{r:%s}:ch", room);
        fx_open_room(&f, room, "cara");
        redisContext *c =
            tk_cluster_connect_node(f.cluster, tk_cluster_master_of(f.cluster, room_slot(room)));
        cr_assert_not_null(c);
        if (i % 2) {
            /* The nodes' subscribers at that master are lost: made again after a backoff. */
            freeReplyObject(redisCommand(c, "CLIENT KILL TYPE pubsub"));
        }
        struct tk_ws *v = fx_viewer(&f, (i / 2) % 2, "ann", room);
        redisReply *r = redisCommand(c, "PUBSUB SHARDNUMSUB %s", ch);
        cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
        cr_assert_eq(r->element[1]->integer, 1, "joined before the node subscribed to %s", room);
        freeReplyObject(r);
        redisFree(c);
        fx_close_room(&f, room);
        json_t *closed = tk_ws_expect(v, "room_closed", 3000);
        cr_assert_not_null(closed, "%s: room_closed did not arrive", room);
        json_decref(closed);
        fx_expect_refusal(v, "late", "galaxy", 1, "room_not_live");
        tk_ws_free(v);
    }
    cr_assert_eq(fx_balance(&f, "ann"), 100 * COST, "a gift to a closed room was charged");
    for (int k = 0; k < nanchor; k++) {
        tk_ws_free(anchor[k]);
    }
}
