/* End-to-end: the batch flusher (SPEC 4.4, 4.6, 7) through real giftd nodes, a real
 * redis-server and a real PostgreSQL — conservation after a drain (coins recharged = coins in
 * balances + coins in settlements; each creator's diamonds = the diamonds of their rows) after
 * a normal run on two nodes, kill -9 of a node over and over, PostgreSQL stopped for 10 s, and
 * Redis restarted with its AOF; a room's totals settle when it closes. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ledger_client/ledger_client.h"
#include "tests/support/fixture.h"

#define PARTITIONS  1024 /* ledger.partitions, the default */
#define NROOMS      4
#define MAX_SENDERS 16
#define STREAM      "giftd:settlements"

static struct fx f;
static struct tk_pg pg;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void teardown(void)
{
    fx_stop(&f);
    tk_pg_stop(&pg);
}

TestSuite(flush, .fini = teardown, .timeout = 150);

/* ---- the load: senders in NROOMS rooms on two nodes, pipelined sends ---- */

struct gift_kind {
    const char *id;
    long count;
    long coins; /* per gift, from config/catalog.json */
};

static const struct gift_kind kinds[] = {
    {"rose", 1, 1}, {"finger_heart", 2, 5}, {"doughnut", 1, 30}, {"ice_cream", 3, 9}};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

struct sender {
    struct tk_ws *ws; /* NULL while its node is down */
    int node;
    char sub[32];
    char room[32];
    long next;        /* next send number */
    long outstanding; /* sent, not yet answered */
    bool reversed;    /* its second payment was reversed */
};

struct load {
    struct sender s[MAX_SENDERS];
    int n;
    char tag[24];
    long sent;
    long acked;
    long long acked_coins;
    long unavailable;   /* ledger_unavailable answers */
    long long reversed; /* coins taken back by load_reverse */
    long lost;          /* sends whose connection died before the answer */
};

static void load_init(struct load *L, int nsenders, int nodes, const char *tag)
{
    memset(L, 0, sizeof(*L));
    L->n = nsenders;
    snprintf(L->tag, sizeof(L->tag), "%s", tag);
    for (int r = 0; r < NROOMS; r++) {
        char room[32], creator[32];
        snprintf(room, sizeof(room), "%s-r%d", tag, r);
        snprintf(creator, sizeof(creator), "%s-c%d", tag, r);
        fx_open_room(&f, room, creator);
    }
    for (int i = 0; i < nsenders; i++) {
        struct sender *s = &L->s[i];
        snprintf(s->sub, sizeof(s->sub), "%s-u%d", tag, i);
        snprintf(s->room, sizeof(s->room), "%s-r%d", tag, i % NROOMS);
        s->node = nodes > 1 ? i % nodes : 0;
        fx_recharge(&f, s->sub, 10000000);
        /* A second payment, reversed in the middle of the load (load_reverse). */
        char body[160];
        snprintf(body, sizeof(body), "{\"payment_id\":\"%s-rv\",\"user\":\"%s\",\"coins\":1000}",
                 s->sub, s->sub);
        struct tk_http_resp r = {0};
        cr_assert_eq(tk_http(f.node[0].port, "POST", "/v1/recharge", f.service, body, &r), 0);
        cr_assert_eq(r.status, 200, "%s", r.body);
        tk_http_resp_cleanup(&r);
        s->ws = fx_viewer(&f, s->node, s->sub, s->room);
    }
}

/* Reverses the second payment of every other sender while gifts are in flight, through node
 * node; an answer lost to a dying node or Redis is asked again (reversals are idempotent). */
static void load_reverse(struct load *L, int node)
{
    for (int i = 0; i < L->n; i += 2) {
        char body[160];
        snprintf(body, sizeof(body), "{\"payment_id\":\"%s-rv\",\"user\":\"%s\"}", L->s[i].sub,
                 L->s[i].sub);
        for (int attempt = 0;; attempt++) {
            struct tk_http_resp r = {0};
            int rc =
                tk_http(f.node[node].port, "POST", "/v1/recharge/reverse", f.service, body, &r);
            int status = r.status;
            tk_http_resp_cleanup(&r);
            if (rc == 0 && status == 200) { /* now, or before with its answer lost */
                if (!L->s[i].reversed) {
                    L->reversed += 1000;
                    L->s[i].reversed = true;
                }
                break;
            }
            cr_assert_lt(attempt, 100, "reversal of %s: status %d", L->s[i].sub, status);
            nap_ms(100);
        }
    }
}

static void load_cleanup(struct load *L)
{
    for (int i = 0; i < L->n; i++) {
        tk_ws_free(L->s[i].ws);
        L->s[i].ws = NULL;
    }
}

/* Connects again the senders of node (after a restart). */
static void load_reconnect(struct load *L, int node)
{
    for (int i = 0; i < L->n; i++) {
        struct sender *s = &L->s[i];
        if (s->node == node && !s->ws) {
            s->ws = fx_viewer(&f, node, s->sub, s->room);
        }
    }
}

/* Drops the connections of node's senders (its process was killed). */
static void load_drop(struct load *L, int node)
{
    for (int i = 0; i < L->n; i++) {
        struct sender *s = &L->s[i];
        if (s->node == node && s->ws) {
            L->lost += s->outstanding;
            s->outstanding = 0;
            tk_ws_free(s->ws);
            s->ws = NULL;
        }
    }
}

static long send_cost(long k)
{
    const struct gift_kind *g = &kinds[k % (long)NKINDS];
    return g->coins * g->count;
}

/* Every live sender sends burst gifts without waiting. */
static void load_send(struct load *L, int burst)
{
    for (int i = 0; i < L->n; i++) {
        struct sender *s = &L->s[i];
        for (int b = 0; s->ws && b < burst; b++) {
            const struct gift_kind *g = &kinds[s->next % (long)NKINDS];
            char id[64];
            snprintf(id, sizeof(id), "%s-%d-%ld", L->tag, i, s->next);
            if (tk_ws_send_json(s->ws,
                                "{\"type\":\"gift\",\"id\":\"%s\",\"gift\":\"%s\",\"count\":%ld}",
                                id, g->id, g->count) < 0) {
                break;
            }
            s->next++;
            s->outstanding++;
            L->sent++;
        }
    }
}

/* Reads every sender's answers (other events are dropped). A connection that closes or stays
 * silent for timeout_ms loses its outstanding sends (their outcome is unknown). */
static void load_answers(struct load *L, int timeout_ms)
{
    for (int i = 0; i < L->n; i++) {
        struct sender *s = &L->s[i];
        while (s->ws && s->outstanding > 0) {
            json_t *j = tk_ws_recv(s->ws, timeout_ms);
            if (!j) {
                L->lost += s->outstanding;
                s->outstanding = 0;
                break;
            }
            const char *type = json_string_value(json_object_get(j, "type"));
            const char *id = json_string_value(json_object_get(j, "id"));
            if (type && id && strcmp(type, "ack") == 0) {
                s->outstanding--;
                L->acked++;
                L->acked_coins += send_cost(strtol(strrchr(id, '-') + 1, NULL, 10));
            } else if (type && id && strcmp(type, "error") == 0) {
                s->outstanding--;
                const char *code = json_string_value(json_object_get(j, "code"));
                cr_assert(code && strcmp(code, "ledger_unavailable") == 0,
                          "unexpected refusal of %s: %s", id, code ? code : "?");
                L->unavailable++;
            }
            json_decref(j);
        }
    }
}

static void load_round(struct load *L, int burst)
{
    load_send(L, burst);
    load_answers(L, 10000);
}

/* ---- Redis inspection ---- */

static long long reply_ll(redisReply *r)
{
    if (!r) {
        return 0;
    }
    if (r->type == REDIS_REPLY_INTEGER) {
        return r->integer;
    }
    if (r->type == REDIS_REPLY_STRING) {
        return strtoll(r->str, NULL, 10);
    }
    return 0;
}

/* Sums the reply of `fmt` (one or two %u: the partition) over every partition, pipelined. */
static long long sum_partitions(redisContext *c, const char *fmt)
{
    for (unsigned n = 0; n < PARTITIONS; n++) {
        cr_assert_eq(redisAppendCommand(c, fmt, n, n, n), REDIS_OK);
    }
    long long sum = 0;
    for (unsigned n = 0; n < PARTITIONS; n++) {
        redisReply *r = NULL;
        cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK, "redis: %s", c->errstr);
        sum += reply_ll(r);
        freeReplyObject(r);
    }
    return sum;
}

/* Waits until no partition has pending or settling earnings (seen twice, 300 ms apart). */
static void drain(int timeout_ms)
{
    redisContext *c = tk_redis_connect(&f.redis);
    int64_t end = mono_ms() + timeout_ms;
    int quiet = 0;
    long long left = 0;
    while (quiet < 2) {
        left = sum_partitions(
            c, "EXISTS giftd:{p%u}:pending giftd:{p%u}:settling giftd:{p%u}:pendlog");
        quiet = left == 0 ? quiet + 1 : 0;
        if (quiet < 2) {
            cr_assert(mono_ms() < end, "not drained after %d ms: %lld keys left", timeout_ms, left);
            nap_ms(left == 0 ? 300 : 100);
        }
    }
    redisFree(c);
}

/* One settlement row as the sink holds it. */
struct row {
    char batch[64], creator[65], room[65], gift[65];
    long long count, coins, diamonds, first_ts_ms, last_ts_ms;
    long long entry_ms; /* redis-stream: when it was written */
};

struct rows {
    struct row *v;
    size_t n, cap;
};

static struct row *rows_add(struct rows *R)
{
    if (R->n == R->cap) {
        R->cap = R->cap ? 2 * R->cap : 256;
        R->v = realloc(R->v, R->cap * sizeof(*R->v));
        cr_assert_not_null(R->v);
    }
    memset(&R->v[R->n], 0, sizeof(R->v[0]));
    return &R->v[R->n++];
}

static void read_stream(struct rows *R)
{
    redisContext *c = tk_redis_connect(&f.redis);
    char last[64] = "";
    for (;;) {
        char start[80];
        snprintf(start, sizeof(start), last[0] ? "(%s" : "-", last);
        redisReply *r = redisCommand(c, "XRANGE %s %s + COUNT 1000", STREAM, start);
        cr_assert(r && r->type == REDIS_REPLY_ARRAY);
        for (size_t i = 0; i < r->elements; i++) {
            redisReply *e = r->element[i];
            struct row *w = rows_add(R);
            snprintf(last, sizeof(last), "%s", e->element[0]->str);
            w->entry_ms = strtoll(last, NULL, 10);
            redisReply *fl = e->element[1];
            for (size_t k = 0; k + 1 < fl->elements; k += 2) {
                const char *name = fl->element[k]->str, *v = fl->element[k + 1]->str;
                if (strcmp(name, "batch") == 0) {
                    snprintf(w->batch, sizeof(w->batch), "%s", v);
                } else if (strcmp(name, "creator") == 0) {
                    snprintf(w->creator, sizeof(w->creator), "%s", v);
                } else if (strcmp(name, "room") == 0) {
                    snprintf(w->room, sizeof(w->room), "%s", v);
                } else if (strcmp(name, "gift") == 0) {
                    snprintf(w->gift, sizeof(w->gift), "%s", v);
                } else if (strcmp(name, "count") == 0) {
                    w->count = strtoll(v, NULL, 10);
                } else if (strcmp(name, "coins") == 0) {
                    w->coins = strtoll(v, NULL, 10);
                } else if (strcmp(name, "diamonds") == 0) {
                    w->diamonds = strtoll(v, NULL, 10);
                } else if (strcmp(name, "first_ts_ms") == 0) {
                    w->first_ts_ms = strtoll(v, NULL, 10);
                } else if (strcmp(name, "last_ts_ms") == 0) {
                    w->last_ts_ms = strtoll(v, NULL, 10);
                }
            }
        }
        size_t n = r->elements;
        freeReplyObject(r);
        if (n < 1000) {
            break;
        }
    }
    redisFree(c);
}

static void read_postgres(struct rows *R)
{
    PGconn *c = tk_pg_connect(&pg);
    PGresult *res = PQexec(c, "SELECT batch, creator, room, gift, count, coins, diamonds, "
                              "first_ts_ms, last_ts_ms FROM gift_settlements");
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
    for (int i = 0; i < PQntuples(res); i++) {
        struct row *w = rows_add(R);
        snprintf(w->batch, sizeof(w->batch), "%s", PQgetvalue(res, i, 0));
        snprintf(w->creator, sizeof(w->creator), "%s", PQgetvalue(res, i, 1));
        snprintf(w->room, sizeof(w->room), "%s", PQgetvalue(res, i, 2));
        snprintf(w->gift, sizeof(w->gift), "%s", PQgetvalue(res, i, 3));
        w->count = strtoll(PQgetvalue(res, i, 4), NULL, 10);
        w->coins = strtoll(PQgetvalue(res, i, 5), NULL, 10);
        w->diamonds = strtoll(PQgetvalue(res, i, 6), NULL, 10);
        w->first_ts_ms = strtoll(PQgetvalue(res, i, 7), NULL, 10);
        w->last_ts_ms = strtoll(PQgetvalue(res, i, 8), NULL, 10);
    }
    PQclear(res);
    /* No row twice: the key is unique (also the table's primary key). */
    res = PQexec(c, "SELECT count(*) - count(DISTINCT (batch, creator, room, gift)) "
                    "FROM gift_settlements");
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    cr_assert_str_eq(PQgetvalue(res, 0, 0), "0");
    PQclear(res);
    PQfinish(c);
}

static int row_key_cmp(const void *a, const void *b)
{
    const struct row *x = a, *y = b;
    int c = strcmp(x->batch, y->batch);
    c = c ? c : strcmp(x->creator, y->creator);
    c = c ? c : strcmp(x->room, y->room);
    return c ? c : strcmp(x->gift, y->gift);
}

/* The money check of SPEC 4.6 after a drain; returns the settled coins. */
static long long check_conservation(struct rows *R, const struct load *L)
{
    drain(40000);
    redisContext *c = tk_redis_connect(&f.redis);
    long long recharged = sum_partitions(c, "GET giftd:{p%u}:recharged");
    long long reversed = sum_partitions(c, "GET giftd:{p%u}:reversed");
    cr_assert_eq(reversed, L->reversed, "reversed %lld, asked %lld", reversed, L->reversed);
    long long balances = 0;
    char cursor[32] = "0";
    do {
        redisReply *r = redisCommand(c, "SCAN %s MATCH giftd:{p*}:bal:* COUNT 1000", cursor);
        cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            redisReply *v = redisCommand(c, "GET %s", keys->element[i]->str);
            long long bal = reply_ll(v);
            cr_assert(bal >= 0, "balance of %s below zero", keys->element[i]->str);
            balances += bal;
            freeReplyObject(v);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);

    /* No row twice (the same batch key), and the settled totals. */
    qsort(R->v, R->n, sizeof(*R->v), row_key_cmp);
    long long settled = 0;
    for (size_t i = 0; i < R->n; i++) {
        cr_assert(i == 0 || row_key_cmp(&R->v[i - 1], &R->v[i]) != 0, "row %s/%s/%s/%s twice",
                  R->v[i].batch, R->v[i].creator, R->v[i].room, R->v[i].gift);
        cr_assert(R->v[i].count > 0 && R->v[i].first_ts_ms <= R->v[i].last_ts_ms);
        settled += R->v[i].coins;
    }
    cr_assert_eq(recharged - reversed, balances + settled,
                 "conservation: recharged %lld - reversed %lld != balances %lld + settled %lld",
                 recharged, reversed, balances, settled);
    /* Every acknowledged send is settled; nothing beyond what was sent. */
    cr_assert(settled >= L->acked_coins, "settled %lld < acknowledged %lld", settled,
              L->acked_coins);

    /* Each creator's diamonds = the diamonds of their rows. */
    for (int r = 0; r < NROOMS; r++) {
        char creator[32];
        snprintf(creator, sizeof(creator), "%s-c%d", L->tag, r);
        long long dia = 0;
        for (size_t i = 0; i < R->n; i++) {
            if (strcmp(R->v[i].creator, creator) == 0) {
                dia += R->v[i].diamonds;
            }
        }
        redisReply *v = redisCommand(c, "GET giftd:{p%u}:dia:%s",
                                     ledger_partition(creator, PARTITIONS), creator);
        cr_assert_eq(reply_ll(v), dia, "creator %s: diamonds %lld, rows %lld", creator, reply_ll(v),
                     dia);
        freeReplyObject(v);
    }
    redisFree(c);
    return settled;
}

/* A metric's value on node i (0 when absent). */
static double metric(int node, const char *name)
{
    struct tk_http_resp r = {0};
    cr_assert_eq(tk_http(f.node[node].port, "GET", "/metrics", NULL, NULL, &r), 0);
    double v = 0;
    size_t n = strlen(name);
    for (const char *p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, name, n) == 0 && p[n] == ' ') {
            v = strtod(p + n + 1, NULL);
            break;
        }
    }
    tk_http_resp_cleanup(&r);
    return v;
}

/* ---- the tests ---- */

static const char *const base_flags[] = {
    "--limits.gifts_per_sec=1000000",
    "--limits.frames_per_sec=1000000",
    "--ledger.outbox_grace_ms=1000",
    "--flush.interval_ms=200",
    NULL,
};

Test(flush, normal_run_on_two_nodes_conserves_coins_and_diamonds)
{
    fx_start(&f, 2, base_flags);
    struct load L;
    load_init(&L, 12, 2, "nr");
    for (int round = 0; round < 14; round++) {
        if (round == 7) {
            load_send(&L, 25); /* reversals race the gifts in flight */
            load_reverse(&L, 1);
            load_answers(&L, 10000);
        }
        load_round(&L, 25);
    }
    cr_assert_eq(L.acked, L.sent, "every send is acknowledged (%ld of %ld)", L.acked, L.sent);
    cr_assert(L.sent >= 4000);
    struct rows R = {0};
    drain(20000);
    read_stream(&R);
    long long settled = check_conservation(&R, &L);
    cr_assert_eq(settled, L.acked_coins);

    /* Settlement lag: from a row's oldest gift to its stream entry. */
    long long max_lag = 0, sum_lag = 0;
    for (size_t i = 0; i < R.n; i++) {
        long long lag = R.v[i].entry_ms - R.v[i].first_ts_ms;
        max_lag = lag > max_lag ? lag : max_lag;
        sum_lag += lag;
    }
    fprintf(stderr,
            "flush: %ld gifts, %zu rows; gift-to-settlement lag avg %lld ms, max %lld ms "
            "(flush.interval_ms=200)\n",
            L.sent, R.n, R.n ? sum_lag / (long long)R.n : 0, max_lag);
    cr_assert(max_lag < 200 + 1000, "a row took %lld ms to settle", max_lag);

    /* The rows the nodes report settling add up to the sink's. */
    double rows0 = metric(0, "giftd_flush_rows_total"), rows1 = metric(1, "giftd_flush_rows_total");
    fprintf(stderr, "flush: rows settled by node 0: %g, node 1: %g\n", rows0, rows1);
    cr_assert_eq((long long)(rows0 + rows1), (long long)R.n);
    cr_assert_eq(metric(0, "giftd_flush_errors_total") + metric(1, "giftd_flush_errors_total"), 0);
    /* Which node's passes do the settling is a race for the leases: one of them did. */
    cr_assert(metric(0, "giftd_flush_latency_seconds_count") +
                  metric(1, "giftd_flush_latency_seconds_count") >
              0);

    /* giftctl settlements prints the same rows. */
    char url[64];
    tk_redis_url(&f.redis, url, sizeof(url));
    const char *argv[] = {GIFTCTL_BIN, "settlements", "--redis", url, NULL};
    char *out = NULL, *err = NULL;
    cr_assert_eq(tk_run(argv, NULL, 20000, &out, &err), 0, "giftctl: %s", err);
    size_t lines = 0;
    long long coins = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *j = json_loads(line, 0, NULL);
        cr_assert_not_null(j, "not JSON: %s", line);
        coins += fx_int(j, "coins");
        cr_assert(json_is_string(json_object_get(j, "batch")));
        json_decref(j);
        lines++;
    }
    cr_assert_eq(lines, R.n);
    cr_assert_eq(coins, settled);
    free(out);
    free(err);
    free(R.v);
    load_cleanup(&L);
}

Test(flush, kill_9_of_a_node_at_random_moments_loses_and_doubles_nothing)
{
    const char *const flags[] = {
        "--limits.gifts_per_sec=1000000",
        "--limits.frames_per_sec=1000000",
        "--ledger.outbox_grace_ms=1000",
        "--flush.interval_ms=100",
        NULL,
    };
    fx_start(&f, 2, flags);
    struct load L;
    load_init(&L, 9, 2, "kl");
    srand((unsigned)time(NULL));
    const int cycles = 22;
    for (int cycle = 0; cycle < cycles; cycle++) {
        load_round(&L, 10);
        /* Sends in flight on both nodes, and flushes under way, when node 1 dies. */
        load_send(&L, 10);
        if (cycle == cycles / 2) {
            load_reverse(&L, 0);
        }
        nap_ms(rand() % 120);
        cr_assert_eq(tk_giftd_signal(&f.node[1], SIGKILL), 0);
        cr_assert_eq(tk_giftd_wait_exit(&f.node[1], 10000, NULL), 0);
        unlink(f.node[1].log_path);
        load_drop(&L, 1);
        load_answers(&L, 10000);
        fx_start_node(&f, 1, flags);
        load_reconnect(&L, 1);
    }
    load_round(&L, 10);
    cr_assert(L.acked > 0);
    struct rows R = {0};
    drain(20000);
    read_stream(&R);
    long long settled = check_conservation(&R, &L);
    fprintf(stderr,
            "flush: %d kills; %ld sent, %ld acked, %ld lost with the node; settled %lld "
            "coins in %zu rows; node 0 took over %g batches already written\n",
            cycles, L.sent, L.acked, L.lost, settled, R.n,
            metric(0, "giftd_flush_redeliveries_total"));
    free(R.v);
    load_cleanup(&L);
}

Test(flush, postgres_stopped_for_10s_delays_settlement_and_loses_nothing)
{
    cr_assert_eq(tk_pg_start(&pg), 0, "PostgreSQL did not start");
    char conninfo[400], pgflag[450];
    tk_pg_conninfo(&pg, conninfo, sizeof(conninfo));
    snprintf(pgflag, sizeof(pgflag), "--flush.postgres=%s", conninfo);
    const char *const flags[] = {
        "--limits.gifts_per_sec=1000000",
        "--limits.frames_per_sec=1000000",
        "--flush.interval_ms=200",
        "--flush.sink=postgres",
        pgflag,
        NULL,
    };
    fx_start(&f, 2, flags);
    struct load L;
    load_init(&L, 8, 2, "pg");
    for (int round = 0; round < 4; round++) {
        load_round(&L, 25);
    }
    nap_ms(600);
    PGconn *c = tk_pg_connect(&pg);
    PGresult *res = PQexec(c, "SELECT count(*) FROM gift_settlements");
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    long before = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    PQfinish(c);
    cr_assert(before > 0, "rows reach PostgreSQL while it is up");

    /* PostgreSQL down for 10 s while gifts go on. */
    tk_pg_kill(&pg, SIGINT);
    int64_t down = mono_ms();
    while (mono_ms() - down < 10000) {
        load_round(&L, 10);
        nap_ms(100);
    }
    double lag = metric(0, "giftd_flush_lag_seconds") > metric(1, "giftd_flush_lag_seconds")
                     ? metric(0, "giftd_flush_lag_seconds")
                     : metric(1, "giftd_flush_lag_seconds");
    double errors = metric(0, "giftd_flush_errors_total") + metric(1, "giftd_flush_errors_total");
    cr_assert(lag > 5.0, "flush lag grows while the sink is down (%.3f s)", lag);
    cr_assert(errors > 0);
    cr_assert_eq(tk_pg_restart(&pg), 0);
    int64_t up = mono_ms();
    for (int round = 0; round < 3; round++) {
        load_round(&L, 10);
    }
    cr_assert_eq(L.acked, L.sent, "sends do not depend on the sink");
    drain(30000);
    int64_t caught_up = mono_ms() - up;
    struct rows R = {0};
    read_postgres(&R);
    long long settled = check_conservation(&R, &L);
    cr_assert_eq(settled, L.acked_coins);
    fprintf(stderr,
            "flush: postgres down 10 s: lag reached %.1f s, %g failed attempts; drained %lld ms "
            "after it came back; %zu rows\n",
            lag, errors, (long long)caught_up, R.n);

    /* giftctl settlements reads the table too. */
    const char *argv[] = {GIFTCTL_BIN, "settlements", "--postgres", conninfo, NULL};
    char *out = NULL, *err = NULL;
    cr_assert_eq(tk_run(argv, NULL, 20000, &out, &err), 0, "giftctl: %s", err);
    size_t lines = 0;
    for (char *p = out; (p = strchr(p, '\n')); p++) {
        lines++;
    }
    cr_assert_eq(lines, R.n);
    free(out);
    free(err);
    free(R.v);
    load_cleanup(&L);
}

Test(flush, redis_restarted_with_aof_mid_load_loses_and_doubles_nothing)
{
    fx_start_aof(&f, 2, base_flags);
    struct load L;
    load_init(&L, 8, 2, "ao");
    for (int round = 0; round < 5; round++) {
        load_round(&L, 20);
    }
    /* kill -9 with sends in flight, then the same server again on its AOF. */
    load_send(&L, 20);
    nap_ms(5);
    int port = f.redis.port;
    tk_redis_kill(&f.redis, SIGKILL);
    load_answers(&L, 10000);
    cr_assert_eq(tk_redis_start_on(&f.redis, port, true), 0);
    for (int i = 0; i < f.nodes; i++) {
        cr_assert_eq(tk_giftd_wait_ready(&f.node[i], 15000), 0);
    }
    load_send(&L, 20); /* reversals race the gifts in flight */
    load_reverse(&L, 1);
    load_answers(&L, 10000);
    for (int round = 0; round < 5; round++) {
        load_round(&L, 20);
    }
    cr_assert(L.acked > 0);
    struct rows R = {0};
    drain(20000);
    read_stream(&R);
    long long settled = check_conservation(&R, &L);
    fprintf(stderr, "flush: redis restart: %ld sent, %ld acked, %ld unavailable; settled %lld\n",
            L.sent, L.acked, L.unavailable, settled);
    free(R.v);
    load_cleanup(&L);
}

/* Polls the stream until the rows of room add up to coins; returns the time it took. */
static int64_t wait_room_settled(const char *room, long long coins, int timeout_ms)
{
    int64_t t0 = mono_ms();
    for (;;) {
        struct rows R = {0};
        read_stream(&R);
        long long got = 0;
        for (size_t i = 0; i < R.n; i++) {
            if (strcmp(R.v[i].room, room) == 0) {
                got += R.v[i].coins;
            }
        }
        free(R.v);
        int64_t took = mono_ms() - t0;
        if (got == coins) {
            return took;
        }
        cr_assert(got < coins, "room %s: %lld coins settled, %lld sent", room, got, coins);
        cr_assert(took < timeout_ms, "room %s: %lld of %lld coins settled after %lld ms", room, got,
                  coins, (long long)took);
        nap_ms(20);
    }
}

Test(flush, closing_a_room_settles_its_pending_totals_at_once)
{
    /* A long interval: only the close can explain a prompt settlement. */
    const char *const flags[] = {"--flush.interval_ms=30000", NULL};
    fx_start(&f, 1, flags);
    fx_open_room(&f, "cl1", "cara");
    fx_recharge(&f, "ann", 1000);
    struct tk_ws *ann = fx_viewer(&f, 0, "ann", "cl1");
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof(id), "c-%d", i);
        fx_send_gift(ann, id, "doughnut", 1);
        json_t *a = fx_answer(ann, id, 5000);
        cr_assert_str_eq(fx_str(a, "type"), "ack");
        json_decref(a);
    }
    nap_ms(300);
    redisContext *c = tk_redis_connect(&f.redis);
    redisReply *r = redisCommand(c, "XLEN %s", STREAM);
    cr_assert_eq(r->integer, 0, "nothing settles before the interval or the close");
    freeReplyObject(r);
    redisFree(c);
    fx_close_room(&f, "cl1");
    int64_t took = wait_room_settled("cl1", 150, 1000);
    fprintf(stderr, "flush: room closed -> settled in %lld ms (interval 30 s)\n", (long long)took);
    /* The creator is credited right after the rows are written. */
    c = tk_redis_connect(&f.redis);
    long long dia = 0;
    for (int64_t end = mono_ms() + 1000; dia != 75 && mono_ms() < end; nap_ms(10)) {
        r = redisCommand(c, "GET giftd:{p%u}:dia:cara", ledger_partition("cara", PARTITIONS));
        dia = reply_ll(r);
        freeReplyObject(r);
    }
    cr_assert_eq(dia, 75);
    redisFree(c);
    tk_ws_free(ann);
}

Test(flush, closing_a_room_on_two_nodes_settles_within_one_interval)
{
    const char *const flags[] = {"--flush.interval_ms=1000", NULL};
    fx_start(&f, 2, flags);
    /* Senders on both nodes, so rows sit in partitions leased by either node. */
    fx_open_room(&f, "cl2", "cara");
    struct tk_ws *ws[6];
    long long coins = 0;
    for (int i = 0; i < 6; i++) {
        char sub[16], id[16];
        snprintf(sub, sizeof(sub), "v%d", i);
        snprintf(id, sizeof(id), "w-%d", i);
        fx_recharge(&f, sub, 100);
        ws[i] = fx_viewer(&f, i % 2, sub, "cl2");
        fx_send_gift(ws[i], id, "perfume", 1);
        json_t *a = fx_answer(ws[i], id, 5000);
        cr_assert_str_eq(fx_str(a, "type"), "ack");
        json_decref(a);
        coins += 20;
    }
    fx_close_room(&f, "cl2");
    int64_t took = wait_room_settled("cl2", coins, 1000 + 300);
    fprintf(stderr, "flush: room closed on two nodes -> settled in %lld ms (interval 1 s)\n",
            (long long)took);
    for (int i = 0; i < 6; i++) {
        tk_ws_free(ws[i]);
    }
}

Test(flush, graceful_shutdown_settles_what_is_pending)
{
    const char *const flags[] = {"--flush.interval_ms=30000", NULL};
    fx_start(&f, 1, flags);
    fx_open_room(&f, "sd1", "cara");
    fx_recharge(&f, "ann", 1000);
    struct tk_ws *ann = fx_viewer(&f, 0, "ann", "sd1");
    fx_send_gift(ann, "s-1", "galaxy", 1);
    json_t *a = fx_answer(ann, "s-1", 5000);
    cr_assert_str_eq(fx_str(a, "type"), "ack");
    json_decref(a);
    tk_ws_free(ann);
    int status = -1;
    cr_assert_eq(tk_giftd_signal(&f.node[0], SIGTERM), 0);
    cr_assert_eq(tk_giftd_wait_exit(&f.node[0], 10000, &status), 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct rows R = {0};
    read_stream(&R);
    cr_assert_eq(R.n, 1, "the pending row settles at shutdown");
    cr_assert_eq(R.v[0].coins, 1000);
    cr_assert_eq(R.v[0].diamonds, 500);
    cr_assert_str_eq(R.v[0].gift, "galaxy");
    free(R.v);
    /* The lease was released: a new node settles at once what comes next (no lapse wait). */
    redisContext *c = tk_redis_connect(&f.redis);
    redisReply *r = redisCommand(c, "PTTL giftd:{p%u}:flushlease", ledger_partition("ann", 1024));
    cr_assert(r->integer < 0, "lease left with %lld ms", r->integer);
    freeReplyObject(r);
    redisFree(c);
}

/* XADDs one settlement row after a moment, while giftctl follows the stream. */
static void *add_row_later(void *arg)
{
    const struct tk_redis *r = arg;
    nap_ms(400);
    struct timeval tv = {.tv_sec = 5, .tv_usec = 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    if (c && !c->err) {
        freeReplyObject(redisCommand(c,
                                     "XADD %s * batch p1-3-1 creator cara room r1 gift rose "
                                     "count 1 coins 1 diamonds 1 first_ts_ms 5 last_ts_ms 5",
                                     STREAM));
    }
    redisFree(c);
    return NULL;
}

Test(flush, giftctl_settlements_prints_the_last_rows_and_follows)
{
    fx_start(&f, 0, NULL);
    redisContext *c = tk_redis_connect(&f.redis);
    for (int i = 1; i <= 2; i++) {
        freeReplyObject(redisCommand(c,
                                     "XADD %s * batch p1-%d-1 creator cara room r1 gift rose "
                                     "count %d coins %d diamonds %d first_ts_ms 1 last_ts_ms 2",
                                     STREAM, i, i, i, i));
    }
    redisFree(c);
    char url[64];
    tk_redis_url(&f.redis, url, sizeof(url));
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, add_row_later, &f.redis), 0);
    const char *argv[] = {GIFTCTL_BIN, "settlements", "--redis",  url,
                          "--count",   "1",           "--follow", NULL};
    char *out = NULL, *err = NULL;
    int rc = tk_run(argv, NULL, 1500, &out, &err);
    pthread_join(t, NULL);
    cr_assert_eq(rc, -ETIMEDOUT, "--follow runs until stopped (%d: %s)", rc, err);
    /* The last row that was there, then the one added while following. */
    char *second = strchr(out, '\n');
    cr_assert_not_null(second, "output: %s", out);
    *second++ = '\0';
    json_t *a = json_loads(out, 0, NULL), *b = json_loads(second, 0, NULL);
    cr_assert(a && b, "output: %s / %s", out, second);
    cr_assert_str_eq(fx_str(a, "batch"), "p1-2-1");
    cr_assert_eq(fx_int(a, "coins"), 2);
    cr_assert_str_eq(fx_str(b, "batch"), "p1-3-1");
    cr_assert_eq(fx_int(b, "first_ts_ms"), 5);
    cr_assert(json_is_string(json_object_get(b, "id")));
    json_decref(a);
    json_decref(b);
    free(out);
    free(err);
}

/* SIGSTOP (or SIGCONT) the postmaster and its children (the backends): a hung PostgreSQL. */
static void pg_freeze(int sig)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pg.pid, (int)pg.pid);
    FILE *fp = fopen(path, "r");
    cr_assert_not_null(fp);
    int child;
    while (fscanf(fp, "%d", &child) == 1) {
        kill(child, sig);
    }
    fclose(fp);
    kill(pg.pid, sig);
}

Test(flush, shutdown_with_a_hung_postgres_is_bounded_and_loses_nothing)
{
    cr_assert_eq(tk_pg_start(&pg), 0, "PostgreSQL did not start");
    char conninfo[400], pgflag[450];
    tk_pg_conninfo(&pg, conninfo, sizeof(conninfo));
    snprintf(pgflag, sizeof(pgflag), "--flush.postgres=%s", conninfo);
    const char *const flags[] = {"--flush.interval_ms=30000", "--flush.sink=postgres", pgflag,
                                 NULL};
    fx_start(&f, 1, flags);
    fx_open_room(&f, "hg1", "cara");
    fx_open_room(&f, "hg2", "cara");
    fx_recharge(&f, "ann", 1000);
    struct tk_ws *ann = fx_viewer(&f, 0, "ann", "hg1");
    fx_send_gift(ann, "h-1", "doughnut", 1);
    json_t *a = fx_answer(ann, "h-1", 5000);
    cr_assert_str_eq(fx_str(a, "type"), "ack");
    json_decref(a);
    tk_ws_free(ann);
    /* The close settles hg1 (so giftd holds a connection), then PostgreSQL hangs. */
    fx_close_room(&f, "hg1");
    PGconn *c = tk_pg_connect(&pg);
    for (int64_t end = mono_ms() + 3000;; nap_ms(20)) {
        PGresult *res = PQexec(c, "SELECT count(*) FROM gift_settlements");
        bool one =
            PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "1") == 0;
        PQclear(res);
        if (one) {
            break;
        }
        cr_assert(mono_ms() < end, "hg1 did not settle");
    }
    PQfinish(c);
    ann = fx_viewer(&f, 0, "ann", "hg2");
    fx_send_gift(ann, "h-2", "rose", 1);
    a = fx_answer(ann, "h-2", 5000);
    cr_assert_str_eq(fx_str(a, "type"), "ack");
    json_decref(a);
    tk_ws_free(ann);
    pg_freeze(SIGSTOP);
    int64_t t0 = mono_ms();
    int status = -1;
    cr_assert_eq(tk_giftd_signal(&f.node[0], SIGTERM), 0);
    int rc = tk_giftd_wait_exit(&f.node[0], 15000, &status);
    int64_t took = mono_ms() - t0;
    pg_freeze(SIGCONT);
    cr_assert_eq(rc, 0, "giftd did not exit with PostgreSQL hung");
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status 0x%x", status);
    fprintf(stderr, "flush: shutdown with PostgreSQL hung took %lld ms\n", (long long)took);
    cr_assert(took < 12000);
    /* The batch waits in Redis; the next node settles it (its lease was given up). */
    const char *const again[] = {"--flush.interval_ms=200", "--flush.sink=postgres", pgflag, NULL};
    fx_start_node(&f, 0, again);
    drain(20000);
    struct rows R = {0};
    read_postgres(&R);
    cr_assert_eq(R.n, 2);
    long long coins = R.v[0].coins + R.v[1].coins;
    cr_assert_eq(coins, 31);
    free(R.v);
}

Test(flush, a_batch_left_by_a_dead_node_at_any_step_is_finished_once)
{
    /* The state a node killed during settlement leaves, for each step it may have finished:
     * 0 none (batch begun), 1 rows written, 2 rows written and creator credited. */
    const char *const flags[] = {"--flush.interval_ms=200", NULL};
    fx_start(&f, 0, NULL);
    redisContext *c = tk_redis_connect(&f.redis);
    for (int step = 0; step <= 2; step++) {
        unsigned n = 100 + (unsigned)step;
        char creator[32], batch[64], field[128];
        snprintf(creator, sizeof(creator), "dead%d", step);
        snprintf(batch, sizeof(batch), "p%u-7-1700000000000", n);
        snprintf(field, sizeof(field), "%s\x1fr%d\x1flion", creator, step);
        unsigned m = ledger_partition(creator, PARTITIONS);
        freeReplyObject(redisCommand(c, "HSET giftd:{p%u}:settling %s %s", n, field,
                                     "2 59998 29998 1000 2000"));
        freeReplyObject(redisCommand(c, "SET giftd:{p%u}:settling_batch %s", n, batch));
        freeReplyObject(redisCommand(c, "SET giftd:{p%u}:batchseq 7", n));
        freeReplyObject(redisCommand(c, "SET giftd:{p%u}:flushlease dead-node PX 300", n));
        if (step >= 1) {
            char room[8];
            snprintf(room, sizeof(room), "r%d", step);
            freeReplyObject(
                redisCommand(c,
                             "XADD %s * batch %s creator %s room %s gift lion count 2 coins 59998 "
                             "diamonds 29998 first_ts_ms 1000 last_ts_ms 2000",
                             STREAM, batch, creator, room));
            freeReplyObject(redisCommand(c, "HSET {%s}:settled %u 7", STREAM, n));
        }
        if (step >= 2) {
            freeReplyObject(redisCommand(c, "SET giftd:{p%u}:dia:%s 29998", m, creator));
            freeReplyObject(redisCommand(c, "HSET giftd:{p%u}:credited:%s %u 7", m, creator, n));
        }
    }
    f.nodes = 1;
    fx_start_node(&f, 0, flags);
    drain(10000);
    struct rows R = {0};
    read_stream(&R);
    cr_assert_eq(R.n, 3, "one row per batch: %zu", R.n);
    for (int step = 0; step <= 2; step++) {
        char creator[32];
        snprintf(creator, sizeof(creator), "dead%d", step);
        redisReply *r = redisCommand(c, "GET giftd:{p%u}:dia:%s",
                                     ledger_partition(creator, PARTITIONS), creator);
        cr_assert_eq(reply_ll(r), 29998, "step %d: diamonds %lld", step, reply_ll(r));
        freeReplyObject(r);
        size_t rows = 0;
        for (size_t i = 0; i < R.n; i++) {
            rows += strcmp(R.v[i].creator, creator) == 0;
        }
        cr_assert_eq(rows, 1, "step %d: %zu rows", step, rows);
    }
    free(R.v);
    redisFree(c);
    cr_assert_eq(metric(0, "giftd_flush_redeliveries_total"), 2);
}
