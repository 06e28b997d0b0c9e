/* send: the gift path's ledger operations — sends coalesced per loop turn into one script call
 * (gift.lua), each with its own outcome; the idempotency lookup of a send refused locally. */
#include "ledger_client/ledger_client.h"
#include "ledger_client/ledger_client_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Arguments of one send in gift.lua's ARGV (see the script's header). */
enum {
    A_PREFIX,
    A_SUB,
    A_ID,
    A_DIGEST,
    A_COST,
    A_CREATOR,
    A_ROOM,
    A_COUNT,
    A_DIAMONDS,
    A_NAME,
    A_FROMGIFT,
    A_GIFT,
    A__COUNT,
};
/* Cluster: the outbox sweep's period, the slices it cuts the partitions into, and the most
 * entries it takes from one partition at a time. */
#define SWEEP_TICK_MS 250
#define SWEEP_SLICES  16
#define SWEEP_MAX     64

/* Arguments before the sends: numkeys, now, ttl, combo window, history cap, day, transaction
 * history cap and ttl (ms), room history ttl (ms). */
#define HEAD_ARGS 9

struct ledger_gift_op {
    struct ledger_gift_op *next; /* in the queue, then in its batch */
    struct lgift_queue *q;
    ledger_gift_cb *cb; /* NULL once answered or cancelled */
    void *ud;
    int64_t start_ms;
    char *arg[A__COUNT];
    size_t len[A__COUNT];
    /* argument bytes follow */
};

struct batch {
    struct lgift_queue *q;
    struct ledger_gift_op *ops; /* in ARGV order */
    size_t n;
};

struct lgift_queue {
    struct ledger *l;
    struct ledger_gift_op *head, *tail;
    size_t queued;
    long batches_inflight;
    uv_check_t check;
    uv_timer_t hold;        /* a batch waiting for LEDGER_GIFT_BATCH_INTERVAL_MS to pass */
    uint64_t last_batch_ns; /* when the last batch left */
    uv_timer_t sweep;       /* cluster: the outbox sweep */
    long sweep_next;        /* the slice of partitions it visits next */
    bool closing;
    struct ledger_gift_stats stats;
};

static void op_answer(struct ledger_gift_op *op, int status, const struct ledger_gift_reply *r)
{
    ledger_gift_cb *cb = op->cb;
    op->cb = NULL;
    if (cb) {
        cb(op->ud, status, r);
    }
}

/* A send's outcome from its three reply values (gift.lua, debit.lua): 0 refusal balance, 1 or
 * 2 balance seq (committed now, a retry of a committed send), -1 (the id was reused). */
static struct ledger_gift_reply outcome_of(redisReply *const *e)
{
    struct ledger_gift_reply r = {0};
    long long kind = e[0]->integer;
    if (kind == 0 && e[1]->type == REDIS_REPLY_STRING) {
        r.outcome = LEDGER_GIFT_REFUSED;
        r.refusal =
            strcmp(e[1]->str, "budget_exceeded") == 0 ? "budget_exceeded" : "insufficient_funds";
        r.balance = e[2]->integer;
    } else {
        r.outcome = kind == 1   ? LEDGER_GIFT_COMMITTED
                    : kind == 2 ? LEDGER_GIFT_DUPLICATE
                                : LEDGER_GIFT_ID_REUSED;
        r.balance = e[1]->integer;
        r.seq = e[2]->integer;
    }
    return r;
}

static void batch_reply(void *ud, int status, const redisReply *rep)
{
    struct batch *b = ud;
    struct lgift_queue *q = b->q;
    q->batches_inflight--;
    bool ok = status == 0 && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 * b->n;
    if (status == 0 && !ok) {
        status = -EPROTO;
    }
    struct ledger_gift_op *op = b->ops;
    for (size_t i = 0; op; i++) {
        struct ledger_gift_op *next = op->next;
        if (ok) {
            struct ledger_gift_reply r = outcome_of(rep->element + 3 * i);
            if (r.outcome == LEDGER_GIFT_COMMITTED) {
                q->stats.committed++;
            }
            op_answer(op, 0, &r);
        } else {
            op_answer(op, status, NULL);
        }
        free(op);
        op = next;
    }
    free(b);
}

/* ---- Redis Cluster: debit, publish, outbox ----
 * A user's partition and a room live on different slots, so a send takes two scripts: debit.lua
 * on the partition (charge, and leave the event in the partition's outbox), then publish.lua
 * on the room (number and broadcast it once), then outbox_done.lua (clear the entry, give the
 * idempotency record its seq). The sends of a batch go as one debit per partition and one
 * publish per room of it; each keeps its own outcome. A node that dies between the steps
 * leaves the entry in the outbox, and the sweep (below) publishes it. */

/* The keys and arguments of a script call, built as owned strings. */
struct argvec {
    char **v;
    size_t *len;
    size_t n, cap;
    bool oom;
};

static void av_add(struct argvec *a, const char *s, size_t len)
{
    if (a->oom) {
        return;
    }
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        char **v = realloc(a->v, cap * sizeof(*v));
        size_t *l = v ? realloc(a->len, cap * sizeof(*l)) : NULL;
        if (!v || !l) {
            a->v = v ? v : a->v;
            a->oom = true;
            return;
        }
        a->v = v;
        a->len = l;
        a->cap = cap;
    }
    char *c = malloc(len + 1);
    if (!c) {
        a->oom = true;
        return;
    }
    memcpy(c, s, len);
    c[len] = '\0';
    a->v[a->n] = c;
    a->len[a->n++] = len;
}

static void av_str(struct argvec *a, const char *s)
{
    av_add(a, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void av_fmt(struct argvec *a, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        a->oom = true;
        return;
    }
    av_add(a, buf, (size_t)n);
}

static void av_free(struct argvec *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->v[i]);
    }
    free(a->v);
    free(a->len);
}

/* Submits script with a's arguments (a is freed). */
static int av_script(struct ledger *l, enum ledger_script script, struct argvec *a,
                     ledger_reply_cb *cb, void *ud, int64_t start_ms)
{
    int rc = a->oom ? -ENOMEM
                    : lscript_since(l, script, (int)a->n, (const char *const *)a->v, a->len, cb, ud,
                                    start_ms);
    av_free(a);
    return rc;
}

/* A group of sends of one call: a partition's debit, or a room's publish. */
struct cgroup {
    struct lgift_queue *q;
    size_t n;
    int64_t start_ms; /* the deadline runs from the oldest send's start */
    int64_t now_ms;   /* the debit's time: its records' and the gift events' ts_ms */
    int *pending;     /* debit: the batch's debit calls not answered yet */
    struct ledger_gift_op **ops;
    long long *bal; /* publish: each send's balance after it, from the debit */
    int *kind;      /* publish: 1 charged now, 3 a retry of a charged send */
};

static struct cgroup *cgroup_new(struct lgift_queue *q, size_t n, int64_t start_ms, int64_t now_ms)
{
    struct cgroup *g = calloc(1, sizeof(*g));
    if (!g) {
        return NULL;
    }
    g->ops = calloc(n, sizeof(*g->ops));
    g->bal = calloc(n, sizeof(*g->bal));
    g->kind = calloc(n, sizeof(*g->kind));
    if (!g->ops || !g->bal || !g->kind) {
        free(g->ops);
        free(g->bal);
        free(g->kind);
        free(g);
        return NULL;
    }
    g->q = q;
    g->start_ms = start_ms;
    g->now_ms = now_ms;
    return g;
}

static void cgroup_free(struct cgroup *g)
{
    free(g->ops);
    free(g->bal);
    free(g->kind);
    free(g);
}

/* Answers and frees every send of g still there (status < 0). */
static void cgroup_fail(struct cgroup *g, int status)
{
    for (size_t i = 0; i < g->n; i++) {
        if (g->ops[i]) {
            op_answer(g->ops[i], status, NULL);
            free(g->ops[i]);
        }
    }
    cgroup_free(g);
}

static void outbox_done_reply(void *ud, int status, const redisReply *rep)
{
    (void)ud;
    (void)status;
    (void)rep; /* an entry left behind is cleared by the sweep */
}

/* outbox_done.lua for the sends of one partition (prefix) that were published. */
static void outbox_done(struct ledger *l, const char *prefix, size_t n, const char *const *sub,
                        const char *const *id, const char *const *digest, const long long *bal,
                        const long long *seq)
{
    struct argvec a = {0};
    av_fmt(&a, "%zu", n + 1);
    av_fmt(&a, "%soutbox", prefix);
    for (size_t i = 0; i < n; i++) {
        av_fmt(&a, "%sidem:%s:%s", prefix, id[i], sub[i]);
    }
    for (size_t i = 0; i < n; i++) {
        av_fmt(&a, "%s|%s", sub[i], id[i]);
        av_fmt(&a, "%s|%lld|%lld", digest[i], bal[i], seq[i]);
    }
    av_script(l, LEDGER_SCRIPT_OUTBOX_DONE, &a, outbox_done_reply, NULL, ledger_now_ms());
}

static void publish_reply(void *ud, int status, const redisReply *rep)
{
    struct cgroup *g = ud;
    struct lgift_queue *q = g->q;
    if (status == 0 && (rep->type != REDIS_REPLY_ARRAY || rep->elements != g->n)) {
        status = -EPROTO;
    }
    if (status < 0) {
        /* Charged, and published or not (whatever the failure, a script error included): the
         * outbox has it and the sweep broadcasts it; the client is told to retry with the same
         * id, which learns its outcome. */
        cgroup_fail(g, -ETIMEDOUT);
        return;
    }
    const char *sub[LEDGER_GIFT_BATCH_MAX], *id[LEDGER_GIFT_BATCH_MAX],
        *digest[LEDGER_GIFT_BATCH_MAX];
    long long seq[LEDGER_GIFT_BATCH_MAX];
    for (size_t i = 0; i < g->n; i++) {
        struct ledger_gift_op *op = g->ops[i];
        seq[i] = rep->element[i]->type == REDIS_REPLY_INTEGER ? rep->element[i]->integer : 0;
        sub[i] = op->arg[A_SUB];
        id[i] = op->arg[A_ID];
        digest[i] = op->arg[A_DIGEST];
    }
    outbox_done(q->l, g->ops[0]->arg[A_PREFIX], g->n, sub, id, digest, g->bal, seq);
    for (size_t i = 0; i < g->n; i++) {
        struct ledger_gift_reply r = {.outcome = g->kind[i] == 1 ? LEDGER_GIFT_COMMITTED
                                                                 : LEDGER_GIFT_DUPLICATE,
                                      .balance = g->bal[i],
                                      .seq = seq[i]};
        if (g->kind[i] == 1) {
            q->stats.committed++;
        }
        op_answer(g->ops[i], 0, &r);
        free(g->ops[i]);
        g->ops[i] = NULL;
    }
    cgroup_free(g);
}

/* publish.lua for the sends of g (one room). */
static void publish_group(struct cgroup *g)
{
    struct ledger *l = g->q->l;
    const struct ledger_opts *o = lgift_opts(l);
    const char *room = g->ops[0]->arg[A_ROOM];
    char key[256];
    struct argvec a = {0};
    av_fmt(&a, "%zu", 6 + 2 * g->n);
    static const char *const suffix[6] = {"seq", "totals", "lb", "lbnames", "hist", "combodue"};
    for (size_t k = 0; k < 6; k++) {
        lkey_room(key, sizeof(key), room, suffix[k]);
        av_str(&a, key);
    }
    for (size_t i = 0; i < g->n; i++) {
        struct ledger_gift_op *op = g->ops[i];
        char s[160];
        snprintf(s, sizeof(s), "combos:%s", op->arg[A_SUB]);
        lkey_room(key, sizeof(key), room, s);
        av_str(&a, key);
        snprintf(s, sizeof(s), "pub:%s:%s", op->arg[A_ID], op->arg[A_SUB]);
        lkey_room(key, sizeof(key), room, s);
        av_str(&a, key);
    }
    av_fmt(&a, "%ld", o->combo_window_ms);
    av_fmt(&a, "%ld", o->history_size);
    av_fmt(&a, "%lld", (long long)o->history_ttl_s * 1000);
    /* The publish record goes a minute before the idempotency record: an id used again once
     * that has gone is a new send, and must not meet the old send's record. */
    av_fmt(&a, "%ld",
           o->idempotency_ttl_s > 120 ? o->idempotency_ttl_s - 60 : o->idempotency_ttl_s);
    av_str(&a, room);
    lkey_channel_arg(key, sizeof(key), l, room);
    av_str(&a, key);
    for (size_t i = 0; i < g->n; i++) {
        struct ledger_gift_op *op = g->ops[i];
        static const int fields[8] = {A_SUB,      A_ID,   A_COST,     A_COUNT,
                                      A_DIAMONDS, A_NAME, A_FROMGIFT, A_GIFT};
        for (size_t k = 0; k < 8; k++) {
            av_add(&a, op->arg[fields[k]], op->len[fields[k]]);
        }
        av_fmt(&a, "%lld", (long long)g->now_ms);
    }
    if (av_script(l, LEDGER_SCRIPT_PUBLISH, &a, publish_reply, g, g->start_ms) < 0) {
        /* Charged but not published: the sweep will, and a retry learns the seq. */
        cgroup_fail(g, -ETIMEDOUT);
    }
}

static void debit_reply(void *ud, int status, const redisReply *rep)
{
    struct cgroup *g = ud;
    struct lgift_queue *q = g->q;
    if (--*g->pending == 0) {
        free(g->pending);
        q->batches_inflight--;
    }
    if (status == 0 && (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 * g->n)) {
        status = -EPROTO;
    }
    if (status < 0) {
        cgroup_fail(g, status);
        return;
    }
    /* The sends to publish, by room. */
    struct cgroup *rooms[LEDGER_GIFT_BATCH_MAX];
    size_t nrooms = 0;
    for (size_t i = 0; i < g->n; i++) {
        struct ledger_gift_op *op = g->ops[i];
        redisReply *const *e = rep->element + 3 * i;
        long long kind = e[0]->integer;
        struct ledger_gift_reply r = {0};
        if (kind == 1 || kind == 3) {
            size_t k = 0;
            while (k < nrooms && strcmp(rooms[k]->ops[0]->arg[A_ROOM], op->arg[A_ROOM]) != 0) {
                k++;
            }
            if (k == nrooms) {
                rooms[k] = cgroup_new(q, g->n, g->start_ms, g->now_ms);
                if (!rooms[k]) {
                    op_answer(op, -ETIMEDOUT, NULL); /* charged; the sweep publishes it */
                    free(op);
                    continue;
                }
                nrooms++;
            }
            struct cgroup *rg = rooms[k];
            rg->ops[rg->n] = op;
            rg->bal[rg->n] = e[1]->integer;
            rg->kind[rg->n] = (int)kind;
            rg->n++;
            continue;
        }
        r = outcome_of(e); /* refused, a retry of a send published before, or a reused id */
        op_answer(op, 0, &r);
        free(op);
    }
    g->n = 0;
    cgroup_free(g);
    for (size_t k = 0; k < nrooms; k++) {
        publish_group(rooms[k]);
    }
}

/* debit.lua for the sends of g (one partition). */
static void debit_group(struct cgroup *g)
{
    struct lgift_queue *q = g->q;
    struct ledger *l = q->l;
    const struct ledger_opts *o = lgift_opts(l);
    const char *prefix = g->ops[0]->arg[A_PREFIX];
    struct argvec a = {0};
    av_fmt(&a, "%zu", 2 + 4 * g->n);
    av_fmt(&a, "%spendlog", prefix);
    av_fmt(&a, "%soutbox", prefix);
    for (size_t i = 0; i < g->n; i++) {
        const char *sub = g->ops[i]->arg[A_SUB];
        av_fmt(&a, "%sidem:%s:%s", prefix, g->ops[i]->arg[A_ID], sub);
        av_fmt(&a, "%sbal:%s", prefix, sub);
        av_fmt(&a, "%slimits:%s", prefix, sub);
        av_fmt(&a, "%stx:%s", prefix, sub);
    }
    char day[16];
    lkey_utc_day(day, sizeof(day));
    av_fmt(&a, "%lld", (long long)g->now_ms);
    av_fmt(&a, "%ld", o->idempotency_ttl_s);
    av_str(&a, day);
    av_fmt(&a, "%ld", o->tx_history_size);
    av_fmt(&a, "%lld", (long long)o->tx_history_ttl_s * 1000);
    for (size_t i = 0; i < g->n; i++) {
        struct ledger_gift_op *op = g->ops[i];
        static const int fields[11] = {A_SUB,   A_ID,       A_DIGEST, A_COST,     A_CREATOR, A_ROOM,
                                       A_COUNT, A_DIAMONDS, A_NAME,   A_FROMGIFT, A_GIFT};
        for (size_t k = 0; k < 11; k++) {
            av_add(&a, op->arg[fields[k]], op->len[fields[k]]);
        }
    }
    if (av_script(l, LEDGER_SCRIPT_DEBIT, &a, debit_reply, g, g->start_ms) < 0) {
        /* Not sent: nothing was charged. */
        debit_reply(g, -EAGAIN, NULL);
    }
}

/* A cluster batch: its sends by partition, one debit call each. */
static void cluster_send(struct lgift_queue *q, struct ledger_gift_op *ops, size_t n)
{
    struct cgroup *parts[LEDGER_GIFT_BATCH_MAX];
    size_t nparts = 0;
    int64_t start = ops ? ops->start_ms : ledger_now_ms();
    int *pending = malloc(sizeof(*pending));
    while (ops) {
        struct ledger_gift_op *op = ops;
        ops = op->next;
        op->next = NULL;
        if (op->start_ms < start) {
            start = op->start_ms;
        }
        size_t k = 0;
        while (k < nparts && strcmp(parts[k]->ops[0]->arg[A_PREFIX], op->arg[A_PREFIX]) != 0) {
            k++;
        }
        if (k == nparts) {
            parts[k] = pending ? cgroup_new(q, n, 0, 0) : NULL;
            if (!parts[k]) {
                op_answer(op, -EAGAIN, NULL);
                free(op);
                continue;
            }
            nparts++;
        }
        parts[k]->ops[parts[k]->n++] = op;
    }
    if (nparts == 0) {
        free(pending);
        return;
    }
    /* The batch counts as one against LEDGER_GIFT_BATCHES_INFLIGHT until its last debit. */
    *pending = (int)nparts;
    q->batches_inflight++;
    int64_t now = ledger_now_ms();
    for (size_t k = 0; k < nparts; k++) {
        parts[k]->start_ms = start;
        parts[k]->now_ms = now;
        parts[k]->pending = pending;
        debit_group(parts[k]);
    }
}

/* Sends up to LEDGER_GIFT_BATCH_MAX queued sends as one script call. Returns 0, or -ENOMEM
 * (nothing taken from the queue). */
static int send_batch(struct lgift_queue *q)
{
    const struct ledger_opts *o = lgift_opts(q->l);
    size_t n = q->queued < LEDGER_GIFT_BATCH_MAX ? q->queued : LEDGER_GIFT_BATCH_MAX;
    if (lreq_cluster(q->l)) {
        struct ledger_gift_op *ops = q->head, *last = q->head;
        for (size_t i = 1; i < n; i++) {
            last = last->next;
        }
        q->head = last->next;
        last->next = NULL;
        q->queued -= n;
        if (!q->head) {
            q->tail = NULL;
        }
        q->stats.batches++;
        q->last_batch_ns = uv_hrtime();
        q->stats.batched_sends += n;
        cluster_send(q, ops, n);
        return 0;
    }
    struct batch *b = calloc(1, sizeof(*b));
    size_t argc = HEAD_ARGS + n * A__COUNT;
    const char **argv = malloc(argc * sizeof(*argv));
    size_t *lens = malloc(argc * sizeof(*lens));
    if (!b || !argv || !lens) {
        free(b);
        free(argv);
        free(lens);
        return -ENOMEM; /* tried again next turn; the deadline bounds the wait */
    }
    char now[24], ttl[24], window[24], cap[24], day[16], txcap[24], txttl[24], histttl[24];
    snprintf(now, sizeof(now), "%lld", (long long)ledger_now_ms());
    snprintf(ttl, sizeof(ttl), "%ld", o->idempotency_ttl_s);
    snprintf(window, sizeof(window), "%ld", o->combo_window_ms);
    snprintf(cap, sizeof(cap), "%ld", o->history_size);
    lkey_utc_day(day, sizeof(day));
    snprintf(txcap, sizeof(txcap), "%ld", o->tx_history_size);
    snprintf(txttl, sizeof(txttl), "%lld", (long long)o->tx_history_ttl_s * 1000);
    snprintf(histttl, sizeof(histttl), "%lld", (long long)o->history_ttl_s * 1000);
    const char *head[HEAD_ARGS] = {"0", now, ttl, window, cap, day, txcap, txttl, histttl};
    for (size_t i = 0; i < HEAD_ARGS; i++) {
        argv[i] = head[i];
        lens[i] = strlen(head[i]);
    }
    b->q = q;
    b->n = n;
    struct ledger_gift_op **tail = &b->ops;
    for (size_t i = 0; i < n; i++) {
        struct ledger_gift_op *op = q->head;
        q->head = op->next;
        q->queued--;
        op->next = NULL;
        *tail = op;
        tail = &op->next;
        for (size_t k = 0; k < A__COUNT; k++) {
            argv[HEAD_ARGS + i * A__COUNT + k] = op->arg[k];
            lens[HEAD_ARGS + i * A__COUNT + k] = op->len[k];
        }
    }
    if (!q->head) {
        q->tail = NULL;
    }
    q->stats.batches++;
    q->last_batch_ns = uv_hrtime();
    q->stats.batched_sends += n;
    int rc = ledger_script(q->l, LEDGER_SCRIPT_GIFT, (int)argc, argv, lens, batch_reply, b, NULL);
    free(argv);
    free(lens);
    if (rc < 0) {
        /* Not sent: nothing was charged. */
        q->batches_inflight++;
        batch_reply(b, -EAGAIN, NULL);
        return 0;
    }
    q->batches_inflight++;
    return 0;
}

static void flush_queue(struct lgift_queue *q);

static void hold_fired(uv_timer_t *t)
{
    flush_queue(t->data);
}

/* End of a loop turn: the sends that arrived in it leave as one call (or a few, when more than
 * a batch arrived). Under load they wait a little to travel together: a batch leaves at most
 * every LEDGER_GIFT_BATCH_INTERVAL_MS, and not while LEDGER_GIFT_BATCHES_INFLIGHT batches are
 * waiting for Redis; meanwhile the sends that arrive join it. Idle, a send leaves at once.
 * A send that waited past the ledger's deadline without being sent is answered -EAGAIN
 * (nothing was charged). */
static void check_fired(uv_check_t *h)
{
    flush_queue(h->data);
}

static void flush_queue(struct lgift_queue *q)
{
    int64_t limit = ledger_now_ms() - lgift_opts(q->l)->timeout_ms;
    while (q->head && q->head->start_ms <= limit) {
        struct ledger_gift_op *op = q->head;
        q->head = op->next;
        q->queued--;
        q->stats.expired++;
        op_answer(op, -EAGAIN, NULL);
        free(op);
    }
    if (!q->head) {
        q->tail = NULL;
    }
    while (q->head && q->batches_inflight < LEDGER_GIFT_BATCHES_INFLIGHT && ledger_ready(q->l)) {
        uint64_t since = uv_hrtime() - q->last_batch_ns;
        uint64_t interval = (uint64_t)LEDGER_GIFT_BATCH_INTERVAL_MS * 1000000u;
        if (since < interval && q->queued < LEDGER_GIFT_BATCH_MAX) {
            if (!uv_is_active((uv_handle_t *)&q->hold)) {
                uv_timer_start(&q->hold, hold_fired, (interval - since) / 1000000u + 1, 0);
            }
            break;
        }
        if (send_batch(q) < 0) {
            break;
        }
    }
    if (!q->head) {
        uv_check_stop(&q->check);
    }
}

static void sweep_fired(uv_timer_t *t);

struct lgift_queue *lgift_queue_new(struct ledger *l, uv_loop_t *loop)
{
    struct lgift_queue *q = calloc(1, sizeof(*q));
    if (!q) {
        return NULL;
    }
    q->l = l;
    uv_check_init(loop, &q->check);
    uv_timer_init(loop, &q->hold);
    uv_timer_init(loop, &q->sweep);
    q->check.data = q->hold.data = q->sweep.data = q;
    if (lreq_cluster(l)) {
        uv_timer_start(&q->sweep, sweep_fired, SWEEP_TICK_MS, SWEEP_TICK_MS);
        uv_unref((uv_handle_t *)&q->sweep);
    }
    return q;
}

static void queue_closed(uv_handle_t *h)
{
    free(h->data);
}

void lgift_queue_free(struct lgift_queue *q)
{
    if (!q) {
        return;
    }
    q->closing = true;
    while (q->head) {
        struct ledger_gift_op *op = q->head;
        q->head = op->next;
        op_answer(op, -ECANCELED, NULL);
        free(op);
    }
    uv_close((uv_handle_t *)&q->hold, NULL);
    uv_close((uv_handle_t *)&q->sweep, NULL);
    uv_close((uv_handle_t *)&q->check, queue_closed);
}

static struct ledger_gift_op *op_new(struct lgift_queue *q, const char *const val[A__COUNT],
                                     const size_t vlen[A__COUNT], ledger_gift_cb *cb, void *ud)
{
    size_t bytes = 0;
    for (size_t k = 0; k < A__COUNT; k++) {
        bytes += vlen[k] + 1;
    }
    struct ledger_gift_op *op = calloc(1, sizeof(*op) + bytes);
    if (!op) {
        return NULL;
    }
    char *p = (char *)(op + 1);
    for (size_t k = 0; k < A__COUNT; k++) {
        memcpy(p, val[k], vlen[k]);
        p[vlen[k]] = '\0';
        op->arg[k] = p;
        op->len[k] = vlen[k];
        p += vlen[k] + 1;
    }
    op->q = q;
    op->cb = cb;
    op->ud = ud;
    op->start_ms = ledger_now_ms();
    return op;
}

/* ---- Redis Cluster: the outbox sweep ----
 * Every node visits a slice of the partitions every SWEEP_TICK_MS (all of them every
 * SWEEP_SLICES ticks) and publishes the outbox entries older than ledger.outbox_grace_ms:
 * sends charged by a node that died, or lost Redis, before publishing them. publish.lua
 * publishes a send at most once, so two nodes sweeping the same entry, or a sweep racing the
 * send's own node, broadcast it once. */

static void sweep_reply(void *ud, int status, const redisReply *rep)
{
    struct lgift_queue *q = ud;
    if (status < 0 || q->closing || rep->type != REDIS_REPLY_ARRAY || rep->elements < 2) {
        return;
    }
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        const redisReply *f = rep->element[i], *e = rep->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || e->type != REDIS_REPLY_STRING) {
            continue;
        }
        /* field "sub|id"; entry: ts, room, cost, count, diamonds, name, from+gift, gift|s|a,
         * digest, balance (US separated, debit.lua) */
        char field[200], entry[4096];
        if (f->len >= sizeof(field) || e->len >= sizeof(entry)) {
            continue;
        }
        memcpy(field, f->str, f->len);
        field[f->len] = '\0';
        memcpy(entry, e->str, e->len);
        entry[e->len] = '\0';
        char *bar = strchr(field, '|');
        char *part[10];
        size_t np = 0;
        for (char *p = entry; np < 10; np++) {
            part[np] = p;
            char *us = strchr(p, '\x1f');
            if (!us) {
                np++;
                break;
            }
            *us = '\0';
            p = us + 1;
        }
        if (!bar || np != 10) {
            continue;
        }
        *bar = '\0';
        char prefix[64];
        lkey_partition(prefix, sizeof(prefix),
                       ledger_partition(field, lgift_opts(q->l)->partitions));
        const char *val[A__COUNT] = {
            [A_PREFIX] = prefix,  [A_SUB] = field,        [A_ID] = bar + 1,
            [A_DIGEST] = part[8], [A_COST] = part[2],     [A_CREATOR] = "",
            [A_ROOM] = part[1],   [A_COUNT] = part[3],    [A_DIAMONDS] = part[4],
            [A_NAME] = part[5],   [A_FROMGIFT] = part[6], [A_GIFT] = part[7],
        };
        size_t vlen[A__COUNT];
        for (size_t k = 0; k < A__COUNT; k++) {
            vlen[k] = strlen(val[k]);
        }
        struct ledger_gift_op *op = op_new(q, val, vlen, NULL, NULL);
        struct cgroup *g =
            op ? cgroup_new(q, 1, ledger_now_ms(), strtoll(part[0], NULL, 10)) : NULL;
        if (!g) {
            free(op);
            continue;
        }
        g->ops[0] = op;
        g->bal[0] = strtoll(part[9], NULL, 10);
        g->kind[0] = 3;
        g->n = 1;
        q->stats.swept++;
        publish_group(g);
    }
}

static void sweep_fired(uv_timer_t *t)
{
    struct lgift_queue *q = t->data;
    struct ledger *l = q->l;
    if (!ledger_ready(l)) {
        return;
    }
    const struct ledger_opts *o = lgift_opts(l);
    long parts = o->partitions > 0 ? o->partitions : 1;
    long grace = o->outbox_grace_ms > 0 ? o->outbox_grace_ms : 5000;
    for (long p = q->sweep_next; p < parts; p += SWEEP_SLICES) {
        char key[64], now[24], g[24], max[24];
        lkey_partition_key(key, sizeof(key), (unsigned)p, "outbox");
        snprintf(now, sizeof(now), "%lld", (long long)ledger_now_ms());
        snprintf(g, sizeof(g), "%ld", grace);
        snprintf(max, sizeof(max), "%d", SWEEP_MAX);
        const char *argv[] = {"1", key, now, g, max};
        ledger_script(l, LEDGER_SCRIPT_OUTBOX_SWEEP, 5, argv, NULL, sweep_reply, q, NULL);
    }
    q->sweep_next = (q->sweep_next + 1) % SWEEP_SLICES;
}

int ledger_gift_send(struct ledger *l, const struct ledger_gift_req *req, ledger_gift_cb *cb,
                     void *ud, struct ledger_gift_op **out_op)
{
    struct lgift_queue *q = lgift_queue_of(l);
    if (!ledger_accepting(l) || q->closing) {
        return -EAGAIN;
    }
    if (req->count < 1 || req->coins < 0 || req->diamonds < 0) {
        return -EINVAL;
    }
    /* Overload: the oldest waiting send has used half its time, so Redis takes sends slower
     * than they come. A new one would only wait for its deadline: refuse it now, while an
     * answer is cheap, and let the queue drain at Redis's pace. */
    if (q->head && ledger_now_ms() - q->head->start_ms > lgift_opts(l)->timeout_ms / 2) {
        q->stats.shed++;
        return -EBUSY;
    }
    char prefix[32], digest[100], cost[24], count[24], dia[24], gift[80];
    lkey_partition(prefix, sizeof(prefix), ledger_partition(req->sub, lgift_opts(l)->partitions));
    snprintf(digest, sizeof(digest), "%s:%ld", req->gift, req->count);
    snprintf(cost, sizeof(cost), "%ld", req->coins * req->count);
    snprintf(count, sizeof(count), "%ld", req->count);
    snprintf(dia, sizeof(dia), "%ld", req->diamonds * req->count);
    snprintf(gift, sizeof(gift), "%s|%d|%d", req->gift, req->streakable ? 1 : 0,
             req->anonymous ? 1 : 0);
    const char *val[A__COUNT] = {
        [A_PREFIX] = prefix,
        [A_SUB] = req->sub,
        [A_ID] = req->id,
        [A_DIGEST] = digest,
        [A_COST] = cost,
        [A_CREATOR] = req->creator,
        [A_ROOM] = req->room,
        [A_COUNT] = count,
        [A_DIAMONDS] = dia,
        [A_NAME] = req->name_json,
        [A_FROMGIFT] = req->event_from_gift,
        [A_GIFT] = gift,
    };
    size_t vlen[A__COUNT];
    for (size_t k = 0; k < A__COUNT; k++) {
        vlen[k] = strlen(val[k]);
    }
    struct ledger_gift_op *op = op_new(q, val, vlen, cb, ud);
    if (!op) {
        return -ENOMEM;
    }
    if (q->tail) {
        q->tail->next = op;
    } else {
        q->head = op;
    }
    q->tail = op;
    if (q->queued++ == 0) {
        uv_check_start(&q->check, check_fired);
    }
    if (out_op) {
        *out_op = op;
    }
    return 0;
}

void ledger_gift_cancel(struct ledger_gift_op *op)
{
    if (op) {
        op->cb = NULL;
    }
}

/* ---- idempotency lookup ---- */

static void lookup_reply(void *ud, int status, const redisReply *rep)
{
    struct ledger_gift_op *op = ud;
    if (status < 0) {
        op_answer(op, status, NULL);
    } else if (rep->type == REDIS_REPLY_NIL) {
        op_answer(op, -ENOENT, NULL);
    } else if (rep->type != REDIS_REPLY_STRING) {
        op_answer(op, -EPROTO, NULL);
    } else {
        /* "digest|balance|seq" (a v1 record has the publish payload where seq is now). */
        struct ledger_gift_reply r = {.outcome = LEDGER_GIFT_ID_REUSED};
        const char *bar = memchr(rep->str, '|', rep->len);
        size_t dlen = op->len[A_DIGEST];
        if (bar && (size_t)(bar - rep->str) == dlen &&
            memcmp(rep->str, op->arg[A_DIGEST], dlen) == 0) {
            char *end;
            r.outcome = LEDGER_GIFT_DUPLICATE;
            r.balance = strtoll(bar + 1, &end, 10);
            r.seq = *end == '|' ? strtoll(end + 1, NULL, 10) : 0;
        }
        op_answer(op, 0, &r);
    }
    free(op);
}

int ledger_gift_lookup(struct ledger *l, const char *sub, const char *id, const char *gift,
                       long count, ledger_gift_cb *cb, void *ud, struct ledger_gift_op **out_op)
{
    char key[256], digest[100], kind[80];
    snprintf(kind, sizeof(kind), "idem:%s", id);
    lkey_user(key, sizeof(key), lgift_opts(l)->partitions, kind, sub);
    snprintf(digest, sizeof(digest), "%s:%ld", gift, count);
    const char *val[A__COUNT] = {[A_DIGEST] = digest};
    size_t vlen[A__COUNT] = {0};
    for (size_t k = 0; k < A__COUNT; k++) {
        if (!val[k]) {
            val[k] = "";
        }
        vlen[k] = strlen(val[k]);
    }
    struct ledger_gift_op *op = op_new(lgift_queue_of(l), val, vlen, cb, ud);
    if (!op) {
        return -ENOMEM;
    }
    const char *argv[] = {"GET", key};
    int rc = ledger_command(l, 2, argv, NULL, lookup_reply, op, NULL);
    if (rc < 0) {
        free(op);
        return rc;
    }
    if (out_op) {
        *out_op = op;
    }
    return 0;
}

void ledger_get_gift_stats(const struct ledger *l, struct ledger_gift_stats *out)
{
    const struct lgift_queue *q = lgift_queue_of((struct ledger *)l);
    *out = q->stats;
    out->queued = q->queued;
}
