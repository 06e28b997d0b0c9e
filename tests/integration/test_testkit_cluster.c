/* Tests of the test kit's Redis Cluster: start, slots, a live slot move under writes, a
 * failover, stop. */
#include "ledger_client/ledger_client_internal.h"
#include "tests/support/testkit.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static redisReply *must(redisContext *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static redisReply *must(redisContext *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(ctx, fmt, ap);
    va_end(ap);
    cr_assert_not_null(r, "%s: %s", fmt, ctx->errstr);
    return r;
}

static long long get_int(redisContext *ctx, const char *key)
{
    redisReply *r = must(ctx, "GET %s", key);
    cr_assert_eq(r->type, REDIS_REPLY_STRING, "GET %s: type %d", key, r->type);
    long long v = atoll(r->str);
    freeReplyObject(r);
    return v;
}

Test(tk_cluster_start, serves_every_slot_and_stop_cleans_up, .timeout = 90)
{
    struct tk_cluster c;
    cr_assert_eq(tk_cluster_start(&c, 3, 0), 0);
    cr_assert_eq(c.nnodes, 3);

    char seeds[256];
    tk_cluster_seeds(&c, seeds, sizeof(seeds));
    char want[256];
    snprintf(want, sizeof(want), "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", c.node[0].port,
             c.node[1].port, c.node[2].port);
    cr_assert_str_eq(seeds, want);
    /* Truncated at a node boundary. */
    char small[20];
    tk_cluster_seeds(&c, small, sizeof(small));
    snprintf(want, sizeof(want), "127.0.0.1:%d", c.node[0].port);
    cr_assert_str_eq(small, want);

    /* Each node is in cluster mode, says ok, and has its third of the slots. */
    for (int i = 0; i < 3; i++) {
        redisContext *ctx = tk_cluster_connect_node(&c, i);
        redisReply *r = must(ctx, "CLUSTER INFO");
        cr_assert(strstr(r->str, "cluster_state:ok"), "node %d: %s", i, r->str);
        cr_assert(strstr(r->str, "cluster_slots_assigned:16384"));
        cr_assert(strstr(r->str, "cluster_known_nodes:3"));
        freeReplyObject(r);
        r = must(ctx, "CONFIG GET appendonly");
        cr_assert_str_eq(r->element[1]->str, "no");
        freeReplyObject(r);
        redisFree(ctx);
    }
    cr_assert_eq(tk_cluster_master_of(&c, 0), 0);
    cr_assert_eq(tk_cluster_master_of(&c, 5460), 0);
    cr_assert_eq(tk_cluster_master_of(&c, 5461), 1);
    cr_assert_eq(tk_cluster_master_of(&c, 16383), 2);
    cr_assert_eq(tk_cluster_master_of(&c, 16384), -EINVAL);

    /* A key answers on its master and is redirected elsewhere. */
    int owner = tk_cluster_master_of(&c, lslot_of("foo", 3));
    cr_assert_eq(owner, 2, "foo is slot 12182");
    redisContext *ctx = tk_cluster_connect_node(&c, 0);
    redisReply *r = must(ctx, "SET foo bar");
    cr_assert_eq(r->type, REDIS_REPLY_ERROR);
    char moved[64];
    snprintf(moved, sizeof(moved), "MOVED 12182 127.0.0.1:%d", c.node[2].port);
    cr_assert_str_eq(r->str, moved);
    freeReplyObject(r);
    redisFree(ctx);

    pid_t pids[3];
    char dirs[3][256];
    for (int i = 0; i < 3; i++) {
        pids[i] = c.node[i].pid;
        snprintf(dirs[i], sizeof(dirs[i]), "%s", c.node[i].dir);
    }
    tk_cluster_stop(&c);
    for (int i = 0; i < 3; i++) {
        struct stat st;
        cr_assert_eq(kill(pids[i], 0), -1, "node %d (pid %d) still running", i, (int)pids[i]);
        cr_assert_eq(errno, ESRCH);
        cr_assert_neq(stat(dirs[i], &st), 0, "%s should be removed", dirs[i]);
        cr_assert_eq(c.node[i].pid, 0);
    }
    tk_cluster_stop(&c); /* twice is harmless */
}

Test(tk_cluster_start, rejects_bad_sizes)
{
    struct tk_cluster c;
    cr_assert_eq(tk_cluster_start(&c, 0, 0), -EINVAL);
    cr_assert_eq(tk_cluster_start(&c, 3, 5), -EINVAL, "18 nodes are over the limit");
    cr_assert_eq(tk_cluster_start(&c, 1, -1), -EINVAL);
}

/* A client that writes keys of one slot and follows MOVED, ASK and TRYAGAIN, on its own
 * thread (no Criterion asserts there: it records, the test checks). */
struct writer {
    const struct tk_cluster *c;
    int node; /* where it sends first */
    redisContext *ctx[TK_CLUSTER_MAX_NODES];
    atomic_bool stop;
    atomic_long incrs; /* INCR {mv}:n answered */
    atomic_long sets;  /* SET {mv}:k:<i> i answered for i < sets */
    atomic_long moved, asked, tryagain;
    atomic_bool failed; /* error is set: read it after the join */
    char error[256];
};

static redisContext *writer_ctx(struct writer *w, int node)
{
    if (!w->ctx[node]) {
        struct timeval tv = {.tv_sec = 5};
        w->ctx[node] = redisConnectWithTimeout("127.0.0.1", w->c->node[node].port, tv);
    }
    return w->ctx[node] && !w->ctx[node]->err ? w->ctx[node] : NULL;
}

static int node_of_port(const struct tk_cluster *c, int port)
{
    for (int i = 0; i < c->nnodes; i++) {
        if (c->node[i].port == port) {
            return i;
        }
    }
    return -1;
}

/* Sends argv until it is answered other than by a redirect. Returns the reply or NULL (error
 * set). */
static redisReply *writer_send(struct writer *w, int argc, const char **argv)
{
    bool asking = false;
    int node = w->node;
    for (int attempt = 0; attempt < 100; attempt++) {
        redisContext *ctx = writer_ctx(w, node);
        if (!ctx) {
            snprintf(w->error, sizeof(w->error), "connect to node %d failed", node);
            return NULL;
        }
        if (asking) {
            freeReplyObject(redisCommand(ctx, "ASKING"));
        }
        redisReply *r = redisCommandArgv(ctx, argc, argv, NULL);
        if (!r) {
            snprintf(w->error, sizeof(w->error), "%s: %s", argv[0], ctx->errstr);
            return NULL;
        }
        if (r->type != REDIS_REPLY_ERROR) {
            return r;
        }
        bool ask;
        unsigned slot;
        char host[64];
        int port;
        if (lslot_parse_redirect(r->str, r->len, &ask, &slot, host, sizeof(host), &port) == 0) {
            int to = node_of_port(w->c, port);
            if (to < 0) {
                snprintf(w->error, sizeof(w->error), "redirect to unknown %s", r->str);
                freeReplyObject(r);
                return NULL;
            }
            asking = ask;
            node = to;
            if (ask) {
                w->asked++;
            } else {
                w->moved++;
                w->node = to; /* the slot map of this one-slot client */
            }
        } else if (strncmp(r->str, "TRYAGAIN", 8) == 0) {
            w->tryagain++;
            asking = false;
            nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
        } else {
            snprintf(w->error, sizeof(w->error), "%s: %s", argv[0], r->str);
            freeReplyObject(r);
            return NULL;
        }
        freeReplyObject(r);
    }
    snprintf(w->error, sizeof(w->error), "%s: too many redirects", argv[0]);
    return NULL;
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    while (!w->stop) {
        const char *incr[] = {"INCR", "{mv}:n"};
        redisReply *r = writer_send(w, 2, incr);
        if (!r) {
            w->failed = true;
            break;
        }
        freeReplyObject(r);
        w->incrs++;
        char key[64], val[32];
        long i = w->sets;
        snprintf(key, sizeof(key), "{mv}:k:%ld", i);
        snprintf(val, sizeof(val), "%ld", i);
        const char *set[] = {"SET", key, val};
        r = writer_send(w, 3, set);
        if (!r) {
            w->failed = true;
            break;
        }
        freeReplyObject(r);
        w->sets++;
    }
    for (int i = 0; i < TK_CLUSTER_MAX_NODES; i++) {
        if (w->ctx[i]) {
            redisFree(w->ctx[i]);
        }
    }
    return NULL;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

Test(tk_cluster_move_slot, moves_a_slot_while_a_client_writes_it, .timeout = 120)
{
    struct tk_cluster c;
    cr_assert_eq(tk_cluster_start(&c, 3, 1), 0);
    cr_assert_eq(c.nnodes, 6);
    unsigned slot = lslot_of("{mv}", 4);
    int src = tk_cluster_master_of(&c, slot);
    cr_assert_geq(src, 0);
    cr_assert_lt(src, 3);
    int dst = (src + 1) % 3;

    /* Keys to migrate, so that the move takes a while (MIGRATE 10 at a time). */
    redisContext *ctx = tk_cluster_connect_node(&c, src);
    enum { PRELOAD = 3000 };
    for (int i = 0; i < PRELOAD; i++) {
        redisAppendCommand(ctx, "SET {mv}:pre:%d %d", i, i);
    }
    for (int i = 0; i < PRELOAD; i++) {
        void *reply = NULL;
        cr_assert_eq(redisGetReply(ctx, &reply), REDIS_OK);
        cr_assert_eq(((redisReply *)reply)->type, REDIS_REPLY_STATUS);
        freeReplyObject(reply);
    }
    redisFree(ctx);

    static struct writer w;
    memset(&w, 0, sizeof(w));
    w.c = &c;
    w.node = src;
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, writer_main, &w), 0);
    /* Let it write before the move begins. */
    int64_t deadline = mono_ms() + 10000;
    while (w.incrs < 100 && !w.failed && mono_ms() < deadline) {
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    int rc = tk_cluster_move_slot(&c, slot, dst);
    /* Then until it has been told MOVED, and a little more. */
    while (w.moved == 0 && !w.failed && mono_ms() < deadline) {
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    long after = w.incrs + 50;
    while (w.incrs < after && !w.failed && mono_ms() < deadline) {
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    w.stop = true;
    pthread_join(th, NULL);
    cr_assert_eq(rc, 0);
    cr_assert_str_eq(w.error, "", "writer: %s", w.error);
    cr_assert_gt(w.moved, 0, "the writer was never redirected");
    cr_log_info("move under writes: %ld INCRs, %ld SETs, %ld MOVED, %ld ASK, %ld TRYAGAIN",
                (long)w.incrs, (long)w.sets, (long)w.moved, (long)w.asked, (long)w.tryagain);
    cr_assert_gt(w.asked, 0, "no write came during the migration (ASK)");

    /* The slot is the target's now, everywhere; nothing was lost on the way. */
    cr_assert_eq(tk_cluster_master_of(&c, slot), dst);
    ctx = tk_cluster_connect_node(&c, dst);
    cr_assert_eq(get_int(ctx, "{mv}:n"), (long long)w.incrs, "an INCR was lost");
    for (long i = 0; i < w.sets; i++) {
        char key[64];
        snprintf(key, sizeof(key), "{mv}:k:%ld", i);
        cr_assert_eq(get_int(ctx, key), i, "%s", key);
    }
    redisReply *r = must(ctx, "CLUSTER COUNTKEYSINSLOT %u", slot);
    cr_assert_eq(r->integer, PRELOAD + w.sets + 1);
    freeReplyObject(r);
    cr_assert_eq(get_int(ctx, "{mv}:pre:2999"), 2999);
    redisFree(ctx);
    ctx = tk_cluster_connect_node(&c, src);
    r = must(ctx, "CLUSTER COUNTKEYSINSLOT %u", slot);
    cr_assert_eq(r->integer, 0, "keys left behind at the source");
    freeReplyObject(r);
    r = must(ctx, "GET {mv}:n");
    cr_assert_eq(r->type, REDIS_REPLY_ERROR);
    cr_assert(strncmp(r->str, "MOVED ", 6) == 0, "%s", r->str);
    freeReplyObject(r);
    redisFree(ctx);
    /* Every node, replicas included, names the new owner. */
    for (int i = 0; i < c.nnodes; i++) {
        ctx = tk_cluster_connect_node(&c, i);
        r = must(ctx, "CLUSTER SLOTS");
        struct lslot_map m;
        cr_assert_eq(lslot_map_from_reply(r, "127.0.0.1", c.node[i].port, &m), 0);
        cr_assert_geq(m.owner[slot], 0);
        cr_assert_eq(m.nodes[m.owner[slot]].port, c.node[dst].port, "node %d's view", i);
        lslot_map_free(&m);
        freeReplyObject(r);
        redisFree(ctx);
    }
    /* Moving it to where it is changes nothing; to a replica is refused. */
    cr_assert_eq(tk_cluster_move_slot(&c, slot, dst), 0);
    cr_assert_eq(tk_cluster_move_slot(&c, slot, 3), -EINVAL);
    tk_cluster_stop(&c);
}

Test(tk_cluster_failover, promotes_the_replica, .timeout = 120)
{
    struct tk_cluster c;
    cr_assert_eq(tk_cluster_start(&c, 3, 1), 0);
    unsigned slot = lslot_of("fo:{x}", 6);
    int master = tk_cluster_master_of(&c, slot);
    cr_assert_geq(master, 0);
    redisContext *ctx = tk_cluster_connect_node(&c, master);
    freeReplyObject(must(ctx, "SET fo:{x} 42"));
    /* The replica has it before the failover starts (a manual failover waits anyway). */
    redisReply *r = must(ctx, "WAIT 1 5000");
    cr_assert_eq(r->integer, 1);
    freeReplyObject(r);
    redisFree(ctx);

    int promoted = tk_cluster_failover(&c, master);
    cr_assert_geq(promoted, 3, "a replica (index >= 3) takes over: got %d", promoted);
    cr_assert_eq(tk_cluster_master_of(&c, slot), promoted);
    ctx = tk_cluster_connect_node(&c, promoted);
    cr_assert_eq(get_int(ctx, "fo:{x}"), 42);
    r = must(ctx, "ROLE");
    cr_assert_str_eq(r->element[0]->str, "master");
    freeReplyObject(r);
    redisFree(ctx);
    /* The old master follows the new one and redirects to it. */
    ctx = tk_cluster_connect_node(&c, master);
    r = must(ctx, "ROLE");
    cr_assert_str_eq(r->element[0]->str, "slave");
    freeReplyObject(r);
    r = must(ctx, "SET fo:{x} 43");
    char moved[64];
    snprintf(moved, sizeof(moved), "MOVED %u 127.0.0.1:%d", slot, c.node[promoted].port);
    cr_assert_str_eq(r->str, moved);
    freeReplyObject(r);
    redisFree(ctx);
    /* And back: the old master was a replica of the promoted one. */
    cr_assert_eq(tk_cluster_failover(&c, promoted), master);
    cr_assert_eq(tk_cluster_master_of(&c, slot), master);
    /* A master without replicas cannot fail over. */
    tk_cluster_stop(&c);
    cr_assert_eq(tk_cluster_start(&c, 3, 0), 0);
    cr_assert_eq(tk_cluster_failover(&c, 0), -ENOENT);
    tk_cluster_stop(&c);
}

Test(tk_cluster_start_with, appendonly_keeps_an_aof, .timeout = 60)
{
    struct tk_cluster c;
    cr_assert_eq(tk_cluster_start_with(&c, 3, 0, true), 0);
    redisContext *ctx = tk_cluster_connect_node(&c, 1);
    redisReply *r = must(ctx, "CONFIG GET appendonly");
    cr_assert_str_eq(r->element[1]->str, "yes");
    freeReplyObject(r);
    r = must(ctx, "CONFIG GET appendfsync");
    cr_assert_str_eq(r->element[1]->str, "always");
    freeReplyObject(r);
    redisFree(ctx);
    tk_cluster_stop(&c);
}
