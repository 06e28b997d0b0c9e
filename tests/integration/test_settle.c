/* Integration: the settlement scripts (settle_begin, settle_stream, settle_credit, settle_end)
 * against a real redis-server — batch ids, leases, idempotent re-runs after a crash at any
 * step (SPEC 4.4, ARCHITECTURE "Settlement"). */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/testkit.h"

/* The scripts as giftd embeds them (ledger_scripts.c, generated from the .lua files). */
extern const char ledger_script_settle_begin[];
extern const char ledger_script_settle_stream[];
extern const char ledger_script_settle_credit[];
extern const char ledger_script_settle_end[];

#define US     "\x1f"
#define STREAM "giftd:settlements"
#define MARKS  "{giftd:settlements}:settled"

static struct tk_redis redis;
static redisContext *rc;

static void setup(void)
{
    cr_assert_eq(tk_redis_start(&redis), 0);
    rc = tk_redis_connect(&redis);
}

static void teardown(void)
{
    redisFree(rc);
    tk_redis_stop(&redis);
}

TestSuite(settle, .init = setup, .fini = teardown, .timeout = 60);

/* EVAL src with numkeys keys then args; NULL-terminated list of strings. **new** reply. */
static redisReply *eval(const char *src, int numkeys, ...)
{
    const char *argv[64];
    char nk[8];
    snprintf(nk, sizeof(nk), "%d", numkeys);
    int argc = 0;
    argv[argc++] = "EVAL";
    argv[argc++] = src;
    argv[argc++] = nk;
    va_list ap;
    va_start(ap, numkeys);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        cr_assert(argc < 64);
        argv[argc++] = a;
    }
    va_end(ap);
    redisReply *r = redisCommandArgv(rc, argc, argv, NULL);
    cr_assert_not_null(r);
    cr_assert_neq(r->type, REDIS_REPLY_ERROR, "script error: %s", r->str);
    return r;
}

static redisReply *cmd(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    cr_assert_not_null(r);
    return r;
}

static long long cmd_int(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    cr_assert_not_null(r);
    long long v = r->type == REDIS_REPLY_INTEGER  ? r->integer
                  : r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10)
                                                  : 0;
    freeReplyObject(r);
    return v;
}

/* The keys of partition n. */
struct pkeys {
    char part[8];
    char pending[64], settling[64], batch[64], seq[64], lease[64], log[64];
};

static void pkeys_init(struct pkeys *k, int n)
{
    snprintf(k->part, sizeof(k->part), "%d", n);
    snprintf(k->pending, sizeof(k->pending), "giftd:{p%d}:pending", n);
    snprintf(k->settling, sizeof(k->settling), "giftd:{p%d}:settling", n);
    snprintf(k->batch, sizeof(k->batch), "giftd:{p%d}:settling_batch", n);
    snprintf(k->seq, sizeof(k->seq), "giftd:{p%d}:batchseq", n);
    snprintf(k->lease, sizeof(k->lease), "giftd:{p%d}:flushlease", n);
    snprintf(k->log, sizeof(k->log), "giftd:{p%d}:pendlog", n);
}

static redisReply *begin(const struct pkeys *k, const char *node)
{
    return eval(ledger_script_settle_begin, 6, k->pending, k->settling, k->batch, k->seq, k->lease,
                k->log, node, "10000", k->part, "1700000000000", NULL);
}

static void add_pending(const struct pkeys *k, const char *creator, const char *room,
                        const char *gift, const char *value)
{
    char field[200];
    snprintf(field, sizeof(field), "%s" US "%s" US "%s", creator, room, gift);
    freeReplyObject(cmd("HSET %s %s %s", k->pending, field, value));
}

/* Appends a row to the pending log, as gift.lua and debit.lua do ("count coins diamonds ts"). */
static void log_pending(const struct pkeys *k, const char *creator, const char *room,
                        const char *gift, const char *value)
{
    char row[200];
    snprintf(row, sizeof(row), "%s" US "%s" US "%s\x1e%s", creator, room, gift, value);
    freeReplyObject(cmd("RPUSH %s %s", k->log, row));
}

/* The next begin of k: a new batch, the partition's second, whose only row is row. */
static void expect_second_batch(const struct pkeys *k, const char *node, const char *row)
{
    redisReply *b = begin(k, node);
    cr_assert_eq(b->element[2]->integer, 2);
    cr_assert_str_eq(b->element[4]->str, row);
    freeReplyObject(b);
}

/* One full settlement of the begin reply b (kind 2) with the stream sink, stopping after
 * `steps` steps (1 sink, 2 credits, 3 end): a crash in between. */
static void settle(const struct pkeys *k, const redisReply *b, int steps)
{
    cr_assert_eq(b->element[0]->integer, 2);
    const char *batch = b->element[1]->str;
    char seq[24];
    snprintf(seq, sizeof(seq), "%lld", b->element[2]->integer);
    if (steps >= 1) {
        const char *argv[64];
        int argc = 0;
        argv[argc++] = "EVAL";
        argv[argc++] = ledger_script_settle_stream;
        argv[argc++] = "2";
        argv[argc++] = STREAM;
        argv[argc++] = MARKS;
        argv[argc++] = batch;
        argv[argc++] = k->part;
        argv[argc++] = seq;
        char parts[8][3][65];
        char nums[8][5][24];
        size_t rows = (b->elements - 3) / 2;
        cr_assert(rows <= 6);
        for (size_t i = 0; i < rows; i++) {
            cr_assert_eq(sscanf(b->element[3 + 2 * i]->str, "%64[^\x1f]\x1f%64[^\x1f]\x1f%64s",
                                parts[i][0], parts[i][1], parts[i][2]),
                         3);
            cr_assert_eq(sscanf(b->element[4 + 2 * i]->str, "%23s %23s %23s %23s %23s", nums[i][0],
                                nums[i][1], nums[i][2], nums[i][3], nums[i][4]),
                         5);
            for (int j = 0; j < 3; j++) {
                argv[argc++] = parts[i][j];
            }
            for (int j = 0; j < 5; j++) {
                argv[argc++] = nums[i][j];
            }
        }
        redisReply *r = redisCommandArgv(rc, argc, argv, NULL);
        cr_assert(r && r->type == REDIS_REPLY_INTEGER, "stream: %s", r ? r->str : "no reply");
        freeReplyObject(r);
        if (steps >= 2) {
            /* One credit per creator of the batch, with the sum of their diamonds. */
            for (size_t i = 0; i < rows; i++) {
                bool first = true;
                long long dia = 0;
                for (size_t j = 0; j < rows; j++) {
                    if (strcmp(parts[j][0], parts[i][0]) == 0) {
                        first = first && j >= i;
                        dia += strtoll(nums[j][2], NULL, 10);
                    }
                }
                if (!first) {
                    continue;
                }
                char kdia[100], kmark[100], sdia[24];
                snprintf(kdia, sizeof(kdia), "test:dia:%.64s", parts[i][0]);
                snprintf(kmark, sizeof(kmark), "test:credited:%.64s", parts[i][0]);
                snprintf(sdia, sizeof(sdia), "%lld", dia);
                freeReplyObject(
                    eval(ledger_script_settle_credit, 2, kdia, kmark, k->part, seq, sdia, NULL));
            }
        }
    }
    if (steps >= 3) {
        freeReplyObject(eval(ledger_script_settle_end, 2, k->settling, k->batch, batch, NULL));
    }
}

/* A visit while b1's batch is unsettled (a crash, or the sink down) hands the same batch back,
 * row unchanged, and leaves what was debited since (logged or pending) to the next batch: the
 * batch is then settled and the next one expected to carry next_row. Frees b1. */
static void expect_same_batch_then_next(const struct pkeys *k, redisReply *b1, const char *node,
                                        const char *row, const char *next_row)
{
    redisReply *b2 = begin(k, node);
    cr_assert_str_eq(b2->element[1]->str, b1->element[1]->str, "the same batch");
    cr_assert_eq(b2->elements, 5);
    cr_assert_str_eq(b2->element[4]->str, row, "its row unchanged");
    cr_assert_eq(cmd_int("EXISTS %s", k->log), 0, "the log is folded on every visit");
    cr_assert_eq(cmd_int("HLEN %s", k->pending), 1, "new pending must wait for the next batch");
    settle(k, b2, 3);
    freeReplyObject(b1);
    freeReplyObject(b2);
    expect_second_batch(k, node, next_row);
}

Test(settle, begin_moves_pending_to_a_new_batch)
{
    struct pkeys k;
    pkeys_init(&k, 7);
    add_pending(&k, "cara", "r1", "rose", "3 3 3 100 200");
    redisReply *b = begin(&k, "node-a");
    cr_assert_eq(b->type, REDIS_REPLY_ARRAY);
    cr_assert_eq(b->element[0]->integer, 2);
    cr_assert_str_eq(b->element[1]->str, "p7-1-1700000000000");
    cr_assert_eq(b->element[2]->integer, 1);
    cr_assert_eq(b->elements, 5);
    cr_assert_str_eq(b->element[3]->str, "cara" US "r1" US "rose");
    cr_assert_str_eq(b->element[4]->str, "3 3 3 100 200");
    freeReplyObject(b);
    cr_assert_eq(cmd_int("EXISTS %s", k.pending), 0);
    cr_assert_eq(cmd_int("HLEN %s", k.settling), 1);
}

Test(settle, begin_after_a_crash_returns_the_same_batch_and_leaves_new_pending_alone)
{
    struct pkeys k;
    pkeys_init(&k, 8);
    add_pending(&k, "cara", "r1", "rose", "3 3 3 100 200");
    redisReply *b1 = begin(&k, "node-a");
    /* The node died; new sends arrive; the batch is retried (by another node here). */
    add_pending(&k, "cara", "r1", "rose", "1 1 1 300 300");
    cmd_int("DEL %s", k.lease);
    /* The next batch takes the new pending row with the next seq. */
    expect_same_batch_then_next(&k, b1, "node-b", "3 3 3 100 200", "1 1 1 300 300");
}

Test(settle, begin_folds_the_log_into_pending_summing_rows_and_keeping_first_and_last)
{
    struct pkeys k;
    pkeys_init(&k, 14);
    /* A row already pending (an earlier fold, or a v1 node's), then three logged batches. */
    add_pending(&k, "cara", "r1", "rose", "3 3 3 100 200");
    log_pending(&k, "cara", "r1", "rose", "1 1 1 300");
    log_pending(&k, "dan", "r2", "lion", "2 58 29 310");
    log_pending(&k, "cara", "r1", "rose", "2 2 2 320");
    redisReply *b = begin(&k, "node-a");
    cr_assert_eq(b->element[0]->integer, 2);
    cr_assert_eq(b->elements, 7, "two rows: the log's are merged by creator, room and gift");
    for (size_t i = 3; i < 7; i += 2) {
        if (strcmp(b->element[i]->str, "cara" US "r1" US "rose") == 0) {
            cr_assert_str_eq(b->element[i + 1]->str, "6 6 6 100 320");
        } else {
            cr_assert_str_eq(b->element[i]->str, "dan" US "r2" US "lion");
            cr_assert_str_eq(b->element[i + 1]->str, "2 58 29 310 310");
        }
    }
    freeReplyObject(b);
    cr_assert_eq(cmd_int("EXISTS %s", k.log), 0, "the log is gone with the fold");
    cr_assert_eq(cmd_int("EXISTS %s", k.pending), 0);
}

Test(settle, the_log_is_folded_while_a_batch_is_settling_and_waits_for_the_next)
{
    struct pkeys k;
    pkeys_init(&k, 15);
    log_pending(&k, "cara", "r1", "rose", "3 3 3 100");
    redisReply *b1 = begin(&k, "node-a");
    cr_assert_str_eq(b1->element[4]->str, "3 3 3 100 100");
    /* The sink is down: the batch stays. Gifts go on, and each visit folds them away. */
    log_pending(&k, "cara", "r1", "rose", "1 1 1 300");
    expect_same_batch_then_next(&k, b1, "node-a", "3 3 3 100 100", "1 1 1 300 300");
}

Test(settle, a_partition_leased_by_another_node_keeps_its_log)
{
    struct pkeys k;
    pkeys_init(&k, 16);
    log_pending(&k, "cara", "r1", "rose", "3 3 3 100");
    freeReplyObject(cmd("SET %s node-a PX 10000", k.lease));
    redisReply *b = begin(&k, "node-b");
    cr_assert_eq(b->element[0]->integer, 0);
    freeReplyObject(b);
    cr_assert_eq(cmd_int("LLEN %s", k.log), 1, "only the lease holder folds");
}

Test(settle, begin_skips_a_partition_leased_by_another_node)
{
    struct pkeys k;
    pkeys_init(&k, 9);
    add_pending(&k, "cara", "r1", "rose", "3 3 3 100 200");
    freeReplyObject(cmd("SET %s node-a PX 10000", k.lease));
    redisReply *b = begin(&k, "node-b");
    cr_assert_eq(b->elements, 1);
    cr_assert_eq(b->element[0]->integer, 0);
    freeReplyObject(b);
    cr_assert_eq(cmd_int("HLEN %s", k.pending), 1);
    cr_assert_eq(cmd_int("EXISTS %s", k.settling), 0);
    /* The holder itself renews and settles. */
    b = begin(&k, "node-a");
    cr_assert_eq(b->element[0]->integer, 2);
    freeReplyObject(b);
    cr_assert(cmd_int("PTTL %s", k.lease) > 9000);
}

Test(settle, begin_with_nothing_pending_returns_one)
{
    struct pkeys k;
    pkeys_init(&k, 10);
    redisReply *b = begin(&k, "node-a");
    cr_assert_eq(b->elements, 1);
    cr_assert_eq(b->element[0]->integer, 1);
    freeReplyObject(b);
    cr_assert_eq(cmd_int("EXISTS %s", k.batch), 0);
    cr_assert_eq(cmd_int("EXISTS %s", k.lease), 0, "an idle partition is not written to");
}

Test(settle, begin_with_nothing_pending_gives_the_callers_lease_up)
{
    struct pkeys k;
    pkeys_init(&k, 31);
    freeReplyObject(cmd("SET %s node-a PX 10000", k.lease));
    redisReply *b = begin(&k, "node-a");
    cr_assert_eq(b->element[0]->integer, 1);
    freeReplyObject(b);
    cr_assert_eq(cmd_int("EXISTS %s", k.lease), 0, "an idle partition keeps no lease");
    /* Another node's lease stays. */
    freeReplyObject(cmd("SET %s node-a PX 10000", k.lease));
    b = begin(&k, "node-b");
    cr_assert_eq(b->element[0]->integer, 0);
    freeReplyObject(b);
    cr_assert_eq(cmd_int("EXISTS %s", k.lease), 1);
}

Test(settle, begin_of_a_leaving_node_gives_its_lease_up)
{
    struct pkeys k;
    pkeys_init(&k, 13);
    add_pending(&k, "cara", "r1", "rose", "3 3 3 100 200");
    freeReplyObject(cmd("SET %s node-a PX 10000", k.lease));
    redisReply *b = eval(ledger_script_settle_begin, 6, k.pending, k.settling, k.batch, k.seq,
                         k.lease, k.log, "node-a", "0", k.part, "1700000000000", NULL);
    cr_assert_eq(b->element[0]->integer, 2, "the leaving node still settles the batch");
    freeReplyObject(b);
    cr_assert_eq(cmd_int("EXISTS %s", k.lease), 0);
}

Test(settle, stream_writes_a_batch_once_and_refuses_older_batches)
{
    struct pkeys k;
    pkeys_init(&k, 11);
    const char *row[] = {"cara", "r1", "rose", "3", "3", "3", "100", "200"};
    redisReply *r = eval(ledger_script_settle_stream, 2, STREAM, MARKS, "p11-5-1", "11", "5",
                         row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], NULL);
    cr_assert_eq(r->integer, 1);
    freeReplyObject(r);
    r = eval(ledger_script_settle_stream, 2, STREAM, MARKS, "p11-5-1", "11", "5", row[0], row[1],
             row[2], row[3], row[4], row[5], row[6], row[7], NULL);
    cr_assert_eq(r->integer, 0, "a re-delivery writes nothing");
    freeReplyObject(r);
    r = eval(ledger_script_settle_stream, 2, STREAM, MARKS, "p11-4-1", "11", "4", row[0], row[1],
             row[2], row[3], row[4], row[5], row[6], row[7], NULL);
    cr_assert_eq(r->integer, -1, "an older batch of the partition writes nothing");
    freeReplyObject(r);
    cr_assert_eq(cmd_int("XLEN %s", STREAM), 1);
    r = cmd("XRANGE %s - +", STREAM);
    redisReply *fields = r->element[0]->element[1];
    const char *want[] = {"batch",    "p11-5-1", "creator",     "cara", "room",       "r1",
                          "gift",     "rose",    "count",       "3",    "coins",      "3",
                          "diamonds", "3",       "first_ts_ms", "100",  "last_ts_ms", "200"};
    cr_assert_eq(fields->elements, 18);
    for (size_t i = 0; i < 18; i++) {
        cr_assert_str_eq(fields->element[i]->str, want[i]);
    }
    freeReplyObject(r);
}

Test(settle, credit_applies_once_per_batch_of_a_partition)
{
    for (int i = 0; i < 3; i++) {
        freeReplyObject(eval(ledger_script_settle_credit, 2, "t:dia:cara", "t:cred:cara", "3", "1",
                             "10", NULL));
    }
    cr_assert_eq(cmd_int("GET t:dia:cara"), 10);
    /* Another partition's batch 1 is another credit; an older batch of partition 3 is not. */
    freeReplyObject(
        eval(ledger_script_settle_credit, 2, "t:dia:cara", "t:cred:cara", "4", "1", "5", NULL));
    freeReplyObject(
        eval(ledger_script_settle_credit, 2, "t:dia:cara", "t:cred:cara", "3", "2", "7", NULL));
    redisReply *r =
        eval(ledger_script_settle_credit, 2, "t:dia:cara", "t:cred:cara", "3", "1", "10", NULL);
    cr_assert_eq(r->integer, 0);
    freeReplyObject(r);
    cr_assert_eq(cmd_int("GET t:dia:cara"), 22);
}

Test(settle, end_only_ends_the_batch_it_names)
{
    struct pkeys k;
    pkeys_init(&k, 12);
    add_pending(&k, "cara", "r1", "rose", "3 3 3 100 200");
    redisReply *b = begin(&k, "node-a");
    redisReply *r = eval(ledger_script_settle_end, 2, k.settling, k.batch, "p12-99-1", NULL);
    cr_assert_eq(r->integer, 0);
    freeReplyObject(r);
    cr_assert_eq(cmd_int("EXISTS %s", k.settling), 1);
    r = eval(ledger_script_settle_end, 2, k.settling, k.batch, b->element[1]->str, NULL);
    cr_assert_eq(r->integer, 1);
    freeReplyObject(r);
    freeReplyObject(b);
    cr_assert_eq(cmd_int("EXISTS %s", k.settling), 0);
    cr_assert_eq(cmd_int("EXISTS %s", k.batch), 0);
}

Test(settle, a_crash_after_any_step_changes_nothing_twice)
{
    /* For each crash point, settle two rows with a crash after `crash` steps, then run the
     * whole protocol again from settle_begin (as the next pass or another node does). */
    for (int crash = 0; crash <= 3; crash++) {
        struct pkeys k;
        pkeys_init(&k, 20 + crash);
        char creator[32];
        snprintf(creator, sizeof(creator), "crash%d", crash);
        add_pending(&k, creator, "r1", "rose", "3 3 3 100 200");
        add_pending(&k, creator, "r2", "lion", "1 29999 14999 150 150");
        long long before = cmd_int("XLEN %s", STREAM);
        redisReply *b = begin(&k, "node-a");
        settle(&k, b, crash);
        freeReplyObject(b);
        cmd_int("DEL %s", k.lease);
        b = begin(&k, "node-b");
        if (crash == 3) {
            cr_assert_eq(b->element[0]->integer, 1, "crash %d: the batch was over", crash);
        } else {
            settle(&k, b, 3);
        }
        freeReplyObject(b);
        cr_assert_eq(cmd_int("XLEN %s", STREAM) - before, 2, "crash after step %d", crash);
        char kdia[100];
        snprintf(kdia, sizeof(kdia), "test:dia:%s", creator);
        cr_assert_eq(cmd_int("GET %s", kdia), 15002, "crash after step %d", crash);
        cr_assert_eq(cmd_int("EXISTS %s", k.settling), 0);
        cr_assert_eq(cmd_int("EXISTS %s", k.pending), 0);
    }
}
