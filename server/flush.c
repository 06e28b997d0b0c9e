/* flush: the batch flusher (SPEC 7) — settles each partition's pending earnings into
 * settlement rows on the sink, exactly once in effect, and credits the creators' diamonds.
 *
 * Per partition n (all keys of steps 1 and 4 carry the hash tag {p<n>}):
 *   1. settle_begin, under the partition's flush lease: the log the gift scripts append to is
 *      folded into pending, then pending -> settling with a new batch id, or the settling
 *      batch a crash left, with its old id.
 *   2. the sink, idempotent per batch: redis-stream (one script on the stream's slot that skips
 *      a batch already written) or PostgreSQL (ON CONFLICT DO NOTHING on the batch's key).
 *   3. settle_credit per creator of the batch, on the creator's partition, once per batch.
 *   4. settle_end: settling is deleted if it still holds this batch.
 * A crash anywhere re-runs from 1 and changes nothing twice.
 *
 * The keys and scripts of each step are the ledger's (ledger_client/ops_settle.c: the
 * ledger_settle_* operations). The flush lease is its own key, not the outbox sweeper's: it
 * lives 3 x flush.interval_ms + 500 ms (the sweeper's follows ledger.outbox_grace_ms), is
 * taken only for a partition with something to settle (an idle partition is only read), and a
 * node that shuts down gives its leases up. Leases are an
 * economy, not the safety: two nodes settling one batch at once still change nothing twice.
 * Idempotence: batch ids are "p<n>-<seq>-<ms>", seq rising by one per batch of the partition,
 * and a batch begins only once the one before it ended, so "already applied" is "seq at or
 * below the last seq applied for partition n": the stream script keeps that per partition in
 * a hash on the stream's slot ("{<flush.stream>}:settled", or "<flush.stream>:settled" when
 * the stream name has a hash tag), the credit script per creator in
 * giftd:{p<m>}:credited:<creator> beside giftd:{p<m>}:dia:<creator>. Both are bounded (one
 * field per partition) and never expire. PostgreSQL dedups on its primary key instead. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "config/config.h"
#include "ledger_client/ledger_client.h"
#include "protocol/protocol.h"
#include "server/app.h"
#include "server/flush.h"
#include "server/flush_pg.h"
#include "server/log.h"

#define FLUSH_WINDOW         256  /* partitions being settled at once */
#define FLUSH_BACKOFF_MIN_MS 250  /* after a sink failure, first wait */
#define FLUSH_BACKOFF_MAX_MS 5000 /* longest wait between sink retries */
#define FLUSH_FINAL_MS       5000 /* bound of the last pass at shutdown */
#define FLUSH_LAT_BUCKETS    13
/* Every this many passes, and on request (a room closing, shutdown, the first pass), a pass
 * visits every partition; the others visit only the partitions this node debited into since
 * (or could not settle): what another node left (it died, or it holds the lease) is found by
 * the full passes. A partition visit is one script call: 1,024 of them per interval and node
 * were most of an idle node's Redis load. */
#define FLUSH_FULL_EVERY 10

static const double lat_bounds_s[FLUSH_LAT_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                       0.25,  0.5,    1.0,   2.5,  5.0,   10.0};

enum sink_kind { SINK_STREAM, SINK_POSTGRES };

enum final_state { FINAL_NONE, FINAL_WAIT, FINAL_RUNNING, FINAL_DONE };

struct flusher {
    struct app *app;
    uv_timer_t timer;
    enum sink_kind sink;
    struct pg_sink *pg;
    unsigned nparts;
    int64_t *oldest; /* per partition: first_ts_ms of its unsettled batch's oldest row, 0 none */
    long lease_ms;   /* the flush lease's length; 0 at shutdown: leases are given up */
    /* The current pass over the partitions. */
    bool pass_running;
    bool again;      /* another pass was asked for while one ran */
    bool again_full; /* ... and it must visit every partition */
    bool pass_full;  /* the current pass visits every partition, not just the dirty ones */
    unsigned long passes;
    unsigned char *dirty; /* per partition: this node debited into it since its last visit */
    unsigned cursor;
    long active; /* partition jobs in flight */
    enum final_state final;
    int64_t final_deadline_ms;
    bool stopping;
    /* Sink failures: no pass before resume_ms. */
    long backoff_ms;
    int64_t resume_ms;
    /* Metrics. */
    uint64_t batches;
    uint64_t rows;
    uint64_t errors;
    uint64_t redeliveries;
    uint64_t coins;
    uint64_t diamonds;
    uint64_t lat_le[FLUSH_LAT_BUCKETS];
    uint64_t lat_count;
    double lat_sum_s;
};

enum job_stage { JOB_BEGIN, JOB_SINK, JOB_CREDIT, JOB_END };

/* The settlement of one partition, from settle_begin to settle_end. */
struct job {
    struct flusher *fl;
    unsigned part;
    enum job_stage stage;
    char batch[64];
    long long seq;
    struct ledger_settle_row *rows;
    size_t nrows;
    long credits_waiting;
    bool credit_failed;
    struct timespec t0;
};

static double since_s(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static void pump(struct flusher *fl);

/* ---- pass scheduling ---- */

static void start_pass(struct flusher *fl, bool full)
{
    if (fl->stopping) {
        return;
    }
    if (fl->pass_running) {
        fl->again = true;
        fl->again_full = fl->again_full || full;
        return;
    }
    fl->pass_full = full || fl->passes % FLUSH_FULL_EVERY == 0 || fl->final != FINAL_NONE;
    fl->passes++;
    fl->again = false;
    fl->again_full = false;
    fl->pass_running = true;
    fl->cursor = 0;
    pump(fl);
}

static void pass_done(struct flusher *fl)
{
    if (fl->final == FINAL_WAIT) {
        /* The pass that was running when shutdown began is over: now the last one. */
        fl->final = FINAL_RUNNING;
        fl->lease_ms = 0; /* give the leases up */
        start_pass(fl, true);
    } else if (fl->final == FINAL_RUNNING) {
        fl->final = FINAL_DONE;
    } else if (fl->again && ledger_now_ms() >= fl->resume_ms) {
        start_pass(fl, fl->again_full);
    }
}

static void job_free(struct job *j)
{
    free(j->rows);
    free(j);
}

/* A job is over (settled, nothing to do, or failed: the next pass retries it). */
static void job_done(struct job *j)
{
    struct flusher *fl = j->fl;
    job_free(j);
    fl->active--;
    if (!fl->stopping) {
        pump(fl);
    }
}

static void job_failed(struct job *j)
{
    if (!j->fl->stopping) {
        j->fl->errors++;
    }
    j->fl->dirty[j->part] = 1; /* the next pass tries it again */
    job_done(j);
}

static void sink_failed(struct flusher *fl, const char *why)
{
    int64_t now = ledger_now_ms();
    if (now >= fl->resume_ms) {
        if (!fl->backoff_ms) {
            log_warn("flush: %s sink: %s; batches wait in Redis and are retried with backoff",
                     fl->sink == SINK_POSTGRES ? "postgres" : "redis-stream", why);
        }
        fl->backoff_ms = fl->backoff_ms ? fl->backoff_ms * 2 : FLUSH_BACKOFF_MIN_MS;
        if (fl->backoff_ms > FLUSH_BACKOFF_MAX_MS) {
            fl->backoff_ms = FLUSH_BACKOFF_MAX_MS;
        }
        fl->resume_ms = now + fl->backoff_ms;
    }
}

static void sink_ok(struct flusher *fl)
{
    if (fl->backoff_ms) {
        log_info("flush: the %s sink accepts batches again",
                 fl->sink == SINK_POSTGRES ? "postgres" : "redis-stream");
        fl->backoff_ms = 0;
        fl->resume_ms = 0;
    }
}

/* ---- step 4: settle_end ---- */

static void on_end(void *ud, int status, const struct ledger_settle_end_reply *r)
{
    struct job *j = ud;
    struct flusher *fl = j->fl;
    if (fl->stopping || status < 0) {
        job_failed(j);
        return;
    }
    /* Not ended: another node ended this batch meanwhile (our lease had lapsed): settled all
     * the same. */
    fl->oldest[j->part] = 0;
    if (r->ended) {
        fl->batches++;
        fl->rows += j->nrows;
        for (size_t i = 0; i < j->nrows; i++) {
            fl->coins += (uint64_t)j->rows[i].coins;
            fl->diamonds += (uint64_t)j->rows[i].diamonds;
        }
        double s = since_s(&j->t0);
        for (int i = 0; i < FLUSH_LAT_BUCKETS; i++) {
            if (s <= lat_bounds_s[i]) {
                fl->lat_le[i]++;
            }
        }
        fl->lat_count++;
        fl->lat_sum_s += s;
    }
    job_done(j);
}

static void end_batch(struct job *j)
{
    struct flusher *fl = j->fl;
    j->stage = JOB_END;
    struct ledger_settle_end_req req = {.partition = j->part, .batch = j->batch};
    if (ledger_settle_end(fl->app->ledger, &req, on_end, j, NULL) < 0) {
        job_failed(j);
    }
}

/* ---- step 3: credit the creators ---- */

/* One credit answered (ok or not); the last one moves the job on. */
static void credit_answered(struct job *j, bool ok)
{
    if (!ok) {
        j->credit_failed = true;
    }
    if (--j->credits_waiting > 0) {
        return;
    }
    if (j->credit_failed || j->fl->stopping) {
        job_failed(j);
    } else {
        end_batch(j);
    }
}

static void on_credit(void *ud, int status, const struct ledger_settle_credit_reply *r)
{
    (void)r; /* credited now, or already: either way this batch's diamonds are in */
    credit_answered(ud, status == 0);
}

static int by_creator(const void *a, const void *b)
{
    return strcmp(((const struct ledger_settle_row *)a)->creator,
                  ((const struct ledger_settle_row *)b)->creator);
}

static void credit_creators(struct job *j)
{
    struct flusher *fl = j->fl;
    struct app *app = fl->app;
    j->stage = JOB_CREDIT;
    qsort(j->rows, j->nrows, sizeof(*j->rows), by_creator);
    /* One credit per creator; the count is held at one until every request is out, so a
     * reply cannot end the job while others are still being sent. */
    j->credits_waiting = 1;
    for (size_t i = 0; i < j->nrows;) {
        const char *creator = j->rows[i].creator;
        long long dia = 0;
        size_t k = i;
        for (; k < j->nrows && strcmp(j->rows[k].creator, creator) == 0; k++) {
            dia += j->rows[k].diamonds;
        }
        struct ledger_settle_credit_req req = {
            .creator = creator, .partition = j->part, .seq = j->seq, .diamonds = dia};
        if (ledger_settle_credit(app->ledger, &req, on_credit, j, NULL) < 0) {
            j->credit_failed = true;
            break;
        }
        j->credits_waiting++;
        i = k;
    }
    credit_answered(j, true);
}

/* ---- step 2: the sink ---- */

static void on_pg(void *ud, int status)
{
    struct job *j = ud;
    struct flusher *fl = j->fl;
    if (fl->stopping) {
        job_failed(j);
        return;
    }
    if (status < 0) {
        sink_failed(fl, status == -ECONNREFUSED ? "cannot connect to PostgreSQL"
                                                : "the transaction failed");
        job_failed(j);
        return;
    }
    sink_ok(fl);
    credit_creators(j);
}

static void on_stream(void *ud, int status, const struct ledger_settle_stream_reply *r)
{
    struct job *j = ud;
    struct flusher *fl = j->fl;
    if (fl->stopping) {
        job_failed(j);
        return;
    }
    if (status < 0) {
        if (status == -EPROTO) {
            log_warn("flush: writing batch %s to %s: %s", j->batch, fl->app->cfg.flush_stream,
                     r->error);
            sink_failed(fl, "the stream script failed");
        }
        job_failed(j);
        return;
    }
    if (r->added <= 0) {
        /* Already written: a batch retried after a crash (0), or one that a node whose lease
         * had lapsed re-delivered after a later batch of the partition (-1). */
        fl->redeliveries++;
    }
    sink_ok(fl);
    credit_creators(j);
}

static void write_stream(struct job *j)
{
    struct flusher *fl = j->fl;
    struct ledger_settle_stream_req req = {.stream = fl->app->cfg.flush_stream,
                                           .partition = j->part,
                                           .batch = j->batch,
                                           .seq = j->seq,
                                           .rows = j->rows,
                                           .nrows = j->nrows};
    if (ledger_settle_stream(fl->app->ledger, &req, on_stream, j, NULL) < 0) {
        job_failed(j);
    }
}

static void write_sink(struct job *j)
{
    j->stage = JOB_SINK;
    if (j->fl->sink == SINK_POSTGRES) {
        if (pg_sink_write(j->fl->pg, j->batch, j->rows, j->nrows, on_pg, j) < 0) {
            job_failed(j);
        }
        return;
    }
    write_stream(j);
}

/* ---- step 1: settle_begin ---- */

static void on_begin(void *ud, int status, const struct ledger_settle_begin_reply *r)
{
    struct job *j = ud;
    struct flusher *fl = j->fl;
    if (fl->stopping || status < 0) {
        if (!fl->stopping && status == -EPROTO) {
            log_warn("flush: settle_begin of partition %u: %s", j->part, r->error);
        } else if (!fl->stopping && status == -EBADMSG) {
            /* Pending rows are written only by the debit script: one that does not parse is a
             * bug. The batch stays in Redis (nothing is lost). */
            log_err("flush: partition %u: malformed settle_begin reply or a pending row that "
                    "does not parse; batch held",
                    j->part);
        }
        job_failed(j);
        return;
    }
    if (r->outcome != LEDGER_SETTLE_BATCH) {
        /* Held: another node holds the partition (what this node added since may be left for
         * the next pass); idle: nothing pending. */
        if (r->outcome == LEDGER_SETTLE_HELD) {
            fl->dirty[j->part] = 1;
        }
        fl->oldest[j->part] = 0;
        job_done(j);
        return;
    }
    /* This node holds the partition now: visit it again next pass, until it is idle (which
     * gives the lease up), so that what other nodes add meanwhile does not wait for the lease
     * to lapse. */
    fl->dirty[j->part] = 1;
    snprintf(j->batch, sizeof(j->batch), "%s", r->batch);
    j->seq = r->seq;
    j->rows = malloc((r->nrows ? r->nrows : 1) * sizeof(*j->rows));
    if (!j->rows) {
        job_failed(j);
        return;
    }
    if (r->nrows) {
        memcpy(j->rows, r->rows, r->nrows * sizeof(*j->rows));
    }
    j->nrows = r->nrows;
    int64_t oldest = 0;
    for (size_t i = 0; i < j->nrows; i++) {
        int64_t first = j->rows[i].first_ts_ms;
        if (!oldest || first < oldest) {
            oldest = first;
        }
    }
    fl->oldest[j->part] = oldest;
    if (j->nrows == 0) {
        end_batch(j);
        return;
    }
    write_sink(j);
}

/* Starts the settlement of partition n. Returns 0 or a negative errno (nothing started). */
static int begin_partition(struct flusher *fl, unsigned n)
{
    struct job *j = calloc(1, sizeof(*j));
    if (!j) {
        return -ENOMEM;
    }
    j->fl = fl;
    j->part = n;
    j->stage = JOB_BEGIN;
    clock_gettime(CLOCK_MONOTONIC, &j->t0);
    struct ledger_settle_begin_req req = {
        .partition = n, .node_id = fl->app->node_id, .lease_ms = fl->lease_ms};
    int rc = ledger_settle_begin(fl->app->ledger, &req, on_begin, j, NULL);
    if (rc < 0) {
        free(j);
        return rc;
    }
    fl->active++;
    return 0;
}

/* Starts partition jobs while the window has room; ends the pass when all are done. */
static void pump(struct flusher *fl)
{
    if (fl->final != FINAL_RUNNING && ledger_now_ms() < fl->resume_ms) {
        fl->cursor = fl->nparts; /* the sink just failed: the rest waits for the backoff */
    }
    while (fl->pass_running && !fl->stopping && fl->cursor < fl->nparts &&
           fl->active < FLUSH_WINDOW) {
        unsigned n = fl->cursor++;
        if (!fl->pass_full && !fl->dirty[n]) {
            continue;
        }
        fl->dirty[n] = 0;
        if (begin_partition(fl, n) < 0) {
            /* Redis is down (or out of memory): the rest of this pass would fail the same. */
            fl->dirty[n] = 1;
            fl->cursor = fl->nparts;
        }
    }
    if (fl->pass_running && fl->cursor >= fl->nparts && fl->active == 0) {
        fl->pass_running = false;
        pass_done(fl);
    }
}

static void timer_fired(uv_timer_t *t)
{
    struct flusher *fl = t->data;
    if (ledger_now_ms() < fl->resume_ms) {
        return; /* the sink failed a moment ago: wait out the backoff */
    }
    if (ledger_ready(fl->app->ledger)) {
        start_pass(fl, false);
    }
}

/* ---- public ---- */

int flush_start(struct app *app)
{
    struct flusher *fl = calloc(1, sizeof(*fl));
    if (!fl) {
        return -ENOMEM;
    }
    fl->app = app;
    fl->nparts = (unsigned)app->cfg.ledger_partitions;
    fl->oldest = calloc(fl->nparts, sizeof(*fl->oldest));
    fl->dirty = calloc(fl->nparts, 1);
    if (!fl->oldest || !fl->dirty) {
        free(fl->oldest);
        free(fl->dirty);
        free(fl);
        return -ENOMEM;
    }
    /* The lease outlives a few passes, so a live node keeps its partitions; a dead node's
     * partitions are taken over once it lapses. */
    fl->lease_ms = 3 * app->cfg.flush_interval_ms + 500;
    if (strcmp(app->cfg.flush_sink, "postgres") == 0) {
        fl->sink = SINK_POSTGRES;
        int rc = pg_sink_new(app->loop, app->cfg.flush_postgres, &fl->pg);
        if (rc < 0) {
            free(fl->oldest);
            free(fl->dirty);
            free(fl);
            return rc;
        }
    }
    uv_timer_init(app->loop, &fl->timer);
    fl->timer.data = fl;
    uv_timer_start(&fl->timer, timer_fired, (uint64_t)app->cfg.flush_interval_ms,
                   (uint64_t)app->cfg.flush_interval_ms);
    app->flusher = fl;
    return 0;
}

void flush_request(struct app *app)
{
    struct flusher *fl = app->flusher;
    if (fl && fl->final == FINAL_NONE && ledger_now_ms() >= fl->resume_ms) {
        start_pass(fl, true);
    }
}

void flush_note_partition(struct app *app, unsigned partition)
{
    struct flusher *fl = app->flusher;
    if (fl && partition < fl->nparts) {
        fl->dirty[partition] = 1;
    }
}

bool flush_final(struct app *app)
{
    struct flusher *fl = app->flusher;
    if (!fl || fl->stopping) {
        return true;
    }
    if (fl->final == FINAL_NONE) {
        uv_timer_stop(&fl->timer);
        fl->final_deadline_ms = ledger_now_ms() + FLUSH_FINAL_MS;
        fl->final = FINAL_WAIT;
        if (!fl->pass_running) {
            pass_done(fl); /* FINAL_WAIT -> the last pass */
        }
    }
    if (fl->final == FINAL_DONE) {
        return true;
    }
    if (ledger_now_ms() > fl->final_deadline_ms) {
        log_warn("flush: the last pass did not finish in %d ms; what is left is settled by "
                 "another node or the next start",
                 FLUSH_FINAL_MS);
        return true;
    }
    return false;
}

static void free_after_close(uv_handle_t *h)
{
    struct flusher *fl = h->data;
    free(fl->oldest);
    free(fl->dirty);
    free(fl);
}

void flush_stop(struct app *app)
{
    struct flusher *fl = app->flusher;
    if (!fl) {
        return;
    }
    fl->stopping = true;
    uv_timer_stop(&fl->timer);
    pg_sink_free(fl->pg); /* answers its writes: those jobs end here */
    fl->pg = NULL;
    app->flusher = NULL;
    uv_close((uv_handle_t *)&fl->timer, free_after_close);
}

void flush_metrics_render(struct app *app, struct proto_buf *b)
{
    struct flusher *fl = app->flusher;
    if (!fl) {
        return;
    }
    proto_buf_printf(b,
                     "# HELP giftd_flush_batches_total settlement batches this node settled\n"
                     "# TYPE giftd_flush_batches_total counter\n"
                     "giftd_flush_batches_total %llu\n"
                     "# HELP giftd_flush_rows_total settlement rows this node wrote\n"
                     "# TYPE giftd_flush_rows_total counter\n"
                     "giftd_flush_rows_total %llu\n"
                     "# HELP giftd_flush_coins_total coins in the rows this node settled\n"
                     "# TYPE giftd_flush_coins_total counter\n"
                     "giftd_flush_coins_total %llu\n"
                     "# HELP giftd_flush_diamonds_total diamonds credited by this node\n"
                     "# TYPE giftd_flush_diamonds_total counter\n"
                     "giftd_flush_diamonds_total %llu\n"
                     "# HELP giftd_flush_errors_total failed settlement attempts (retried)\n"
                     "# TYPE giftd_flush_errors_total counter\n"
                     "giftd_flush_errors_total %llu\n"
                     "# HELP giftd_flush_redeliveries_total batches the sink already had\n"
                     "# TYPE giftd_flush_redeliveries_total counter\n"
                     "giftd_flush_redeliveries_total %llu\n",
                     (unsigned long long)fl->batches, (unsigned long long)fl->rows,
                     (unsigned long long)fl->coins, (unsigned long long)fl->diamonds,
                     (unsigned long long)fl->errors, (unsigned long long)fl->redeliveries);
    proto_buf_puts(b, "# HELP giftd_flush_latency_seconds time to settle one batch\n"
                      "# TYPE giftd_flush_latency_seconds histogram\n");
    for (int i = 0; i < FLUSH_LAT_BUCKETS; i++) {
        proto_buf_printf(b, "giftd_flush_latency_seconds_bucket{le=\"%g\"} %llu\n", lat_bounds_s[i],
                         (unsigned long long)fl->lat_le[i]);
    }
    proto_buf_printf(b,
                     "giftd_flush_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
                     "giftd_flush_latency_seconds_sum %.6f\n"
                     "giftd_flush_latency_seconds_count %llu\n",
                     (unsigned long long)fl->lat_count, fl->lat_sum_s,
                     (unsigned long long)fl->lat_count);
    int64_t oldest = 0;
    for (unsigned i = 0; i < fl->nparts; i++) {
        if (fl->oldest[i] && (!oldest || fl->oldest[i] < oldest)) {
            oldest = fl->oldest[i];
        }
    }
    int64_t now = ledger_now_ms();
    double lag = oldest && now > oldest ? (double)(now - oldest) / 1000.0 : 0.0;
    proto_buf_printf(b,
                     "# HELP giftd_flush_lag_seconds age of the oldest unsettled row this node "
                     "knows of\n"
                     "# TYPE giftd_flush_lag_seconds gauge\n"
                     "giftd_flush_lag_seconds %.3f\n"
                     "# HELP giftd_flush_backoff_seconds wait before the sink is tried again\n"
                     "# TYPE giftd_flush_backoff_seconds gauge\n"
                     "giftd_flush_backoff_seconds %.3f\n",
                     lag, fl->resume_ms > now ? (double)(fl->resume_ms - now) / 1000.0 : 0.0);
}
