/* flush_pg: the PostgreSQL settlement sink — a thread that owns one libpq connection and writes
 * queued batches, so giftd's event loop never waits for the database. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <libpq-fe.h>
#include <uv.h>

#include "ledger_client/ledger_client.h"
#include "server/flush_pg.h"

/* Batches queued together are written in one transaction (group commit): at most this many
 * rows per transaction, and at most this many rows per INSERT statement. */
#define GROUP_MAX_ROWS    20000
#define INSERT_CHUNK_ROWS 500
#define CONNECT_TIMEOUT_S "5"
#define STOP_WAIT_S       3 /* how long pg_sink_free waits for a thread stuck in libpq */
#define COLUMNS           9

static const char create_sql[] =
    "CREATE TABLE IF NOT EXISTS gift_settlements ("
    "batch text NOT NULL, creator text NOT NULL, room text NOT NULL, gift text NOT NULL, "
    "count bigint NOT NULL, coins bigint NOT NULL, diamonds bigint NOT NULL, "
    "first_ts_ms bigint NOT NULL, last_ts_ms bigint NOT NULL, "
    "PRIMARY KEY (batch, creator, room, gift))";

struct pg_job {
    struct pg_job *next;
    const char *batch;                    /* borrowed until cb */
    const struct ledger_settle_row *rows; /* borrowed until cb */
    size_t nrows;
    pg_sink_cb *cb;
    void *ud;
    int status;
};

struct job_list {
    struct pg_job *head, *tail;
};

struct pg_sink {
    uv_async_t async; /* wakes the loop when writes are done */
    pthread_t thread;
    bool thread_started;
    char *conninfo;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Guarded by mu. */
    struct job_list todo;
    struct job_list done;
    bool stop;
    /* Written by the thread only, under mu; the thread reads it without the lock. */
    PGconn *conn;
};

static void list_append(struct job_list *l, struct pg_job *j)
{
    j->next = NULL;
    if (l->tail) {
        l->tail->next = j;
    } else {
        l->head = j;
    }
    l->tail = j;
}

/* ---- the thread ---- */

static void drop_connection(struct pg_sink *s)
{
    /* Under the lock: pg_sink_free may be shutting the socket down. */
    pthread_mutex_lock(&s->mu);
    PQfinish(s->conn);
    s->conn = NULL;
    pthread_mutex_unlock(&s->mu);
}

static bool exec_ok(PGconn *conn, const char *sql)
{
    PGresult *r = PQexec(conn, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
}

/* Connects (when not connected) and makes sure the table exists. 0 or -ECONNREFUSED. */
static int ensure_connection(struct pg_sink *s)
{
    if (s->conn && PQstatus(s->conn) == CONNECTION_OK) {
        return 0;
    }
    if (s->conn) {
        drop_connection(s);
    }
    /* The conninfo is expanded from "dbname"; its own connect_timeout, if any, wins. */
    const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *const vals[] = {CONNECT_TIMEOUT_S, "giftd", s->conninfo, NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (!conn || PQstatus(conn) != CONNECTION_OK || !exec_ok(conn, create_sql)) {
        PQfinish(conn);
        return -ECONNREFUSED;
    }
    pthread_mutex_lock(&s->mu);
    s->conn = conn;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* One INSERT of rows[0..n) of a batch. */
static bool insert_rows(PGconn *conn, const char *batch, const struct ledger_settle_row *rows,
                        size_t n)
{
    size_t nparams = n * COLUMNS;
    const char **vals = calloc(nparams, sizeof(*vals));
    char(*nums)[5][24] = calloc(n, sizeof(*nums));
    size_t sqlcap = 200 + n * 64;
    char *sql = malloc(sqlcap);
    bool ok = false;
    if (!vals || !nums || !sql) {
        goto out;
    }
    size_t len = (size_t)snprintf(sql, sqlcap,
                                  "INSERT INTO gift_settlements (batch, creator, room, gift, "
                                  "count, coins, diamonds, first_ts_ms, last_ts_ms) VALUES ");
    for (size_t i = 0; i < n; i++) {
        const struct ledger_settle_row *r = &rows[i];
        size_t b = i * COLUMNS;
        len += (size_t)snprintf(sql + len, sqlcap - len,
                                "%s($%zu,$%zu,$%zu,$%zu,$%zu::bigint,$%zu::bigint,$%zu::bigint,"
                                "$%zu::bigint,$%zu::bigint)",
                                i ? "," : "", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7,
                                b + 8, b + 9);
        long long v[5] = {r->count, r->coins, r->diamonds, r->first_ts_ms, r->last_ts_ms};
        vals[b] = batch;
        vals[b + 1] = r->creator;
        vals[b + 2] = r->room;
        vals[b + 3] = r->gift;
        for (int k = 0; k < 5; k++) {
            snprintf(nums[i][k], sizeof(nums[i][k]), "%lld", v[k]);
            vals[b + 4 + (size_t)k] = nums[i][k];
        }
    }
    snprintf(sql + len, sqlcap - len, " ON CONFLICT DO NOTHING");
    PGresult *res = PQexecParams(conn, sql, (int)nparams, NULL, vals, NULL, NULL, 0);
    ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
out:
    free(vals);
    free(nums);
    free(sql);
    return ok;
}

/* Writes a group of batches in one transaction. 0, -ECONNREFUSED or -EIO. */
static int write_group(struct pg_sink *s, struct pg_job *group)
{
    int rc = ensure_connection(s);
    if (rc < 0) {
        return rc;
    }
    bool ok = exec_ok(s->conn, "BEGIN");
    for (struct pg_job *j = group; ok && j; j = j->next) {
        for (size_t off = 0; ok && off < j->nrows; off += INSERT_CHUNK_ROWS) {
            size_t n = j->nrows - off < INSERT_CHUNK_ROWS ? j->nrows - off : INSERT_CHUNK_ROWS;
            ok = insert_rows(s->conn, j->batch, j->rows + off, n);
        }
    }
    ok = ok && exec_ok(s->conn, "COMMIT");
    if (ok) {
        return 0;
    }
    /* A failed COMMIT may or may not have applied: the retry is harmless either way (ON
     * CONFLICT DO NOTHING on the batch's key). */
    if (PQstatus(s->conn) != CONNECTION_OK || !exec_ok(s->conn, "ROLLBACK")) {
        drop_connection(s);
    }
    return -EIO;
}

static void *thread_main(void *arg)
{
    struct pg_sink *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && !s->todo.head) {
            pthread_cond_wait(&s->cv, &s->mu);
        }
        if (s->stop) {
            break;
        }
        /* Take what is queued, up to GROUP_MAX_ROWS rows (always at least one batch). */
        struct pg_job *group = s->todo.head, *last = group;
        size_t rows = group->nrows;
        while (last->next && rows + last->next->nrows <= GROUP_MAX_ROWS) {
            last = last->next;
            rows += last->nrows;
        }
        s->todo.head = last->next;
        if (!s->todo.head) {
            s->todo.tail = NULL;
        }
        last->next = NULL;
        pthread_mutex_unlock(&s->mu);

        int rc = write_group(s, group);

        pthread_mutex_lock(&s->mu);
        for (struct pg_job *j = group, *next; j; j = next) {
            next = j->next;
            j->status = rc;
            list_append(&s->done, j);
        }
        if (!s->stop) {
            /* Once stopping, the handle may be closing: pg_sink_free collects the results. */
            uv_async_send(&s->async);
        }
    }
    pthread_mutex_unlock(&s->mu);
    drop_connection(s);
    return NULL;
}

/* ---- the loop side ---- */

static void answer(struct job_list *l)
{
    while (l->head) {
        struct pg_job *j = l->head;
        l->head = j->next;
        if (!l->head) {
            l->tail = NULL;
        }
        j->cb(j->ud, j->status);
        free(j);
    }
}

static void on_async(uv_async_t *a)
{
    struct pg_sink *s = a->data;
    pthread_mutex_lock(&s->mu);
    struct job_list done = s->done;
    s->done.head = s->done.tail = NULL;
    pthread_mutex_unlock(&s->mu);
    answer(&done);
}

int pg_sink_new(uv_loop_t *loop, const char *conninfo, struct pg_sink **out)
{
    struct pg_sink *s = calloc(1, sizeof(*s));
    if (!s) {
        return -ENOMEM;
    }
    s->conninfo = strdup(conninfo ? conninfo : "");
    if (!s->conninfo) {
        free(s);
        return -ENOMEM;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    int rc = uv_async_init(loop, &s->async, on_async);
    if (rc < 0) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s->conninfo);
        free(s);
        return rc;
    }
    s->async.data = s;
    rc = pthread_create(&s->thread, NULL, thread_main, s);
    if (rc != 0) {
        s->thread_started = false;
        pg_sink_free(s);
        return -rc;
    }
    s->thread_started = true;
    *out = s;
    return 0;
}

int pg_sink_write(struct pg_sink *s, const char *batch, const struct ledger_settle_row *rows,
                  size_t nrows, pg_sink_cb *cb, void *ud)
{
    struct pg_job *j = calloc(1, sizeof(*j));
    if (!j) {
        return -ENOMEM;
    }
    j->batch = batch;
    j->rows = rows;
    j->nrows = nrows;
    j->cb = cb;
    j->ud = ud;
    pthread_mutex_lock(&s->mu);
    list_append(&s->todo, j);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static void free_after_close(uv_handle_t *h)
{
    struct pg_sink *s = h->data;
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->conninfo);
    free(s);
}

void pg_sink_free(struct pg_sink *s)
{
    if (!s) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    if (s->conn && PQsocket(s->conn) >= 0) {
        /* Ends a statement the thread may be waiting on (PostgreSQL hung or slow): its libpq
         * call fails at once. (PQcancel would itself wait for a hung server.) */
        shutdown(PQsocket(s->conn), SHUT_RDWR);
    }
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->thread_started) {
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += STOP_WAIT_S;
        if (pthread_timedjoin_np(s->thread, NULL, &deadline) != 0) {
            /* Stuck in a connection attempt (bounded by connect_timeout): leave it, and s, to
             * the process exit rather than hold up the shutdown; its writes are never
             * answered. It no longer touches the handle (stop is set). */
            pthread_detach(s->thread);
            uv_close((uv_handle_t *)&s->async, NULL);
            return;
        }
    }
    for (struct pg_job *j = s->todo.head; j; j = j->next) {
        j->status = -ECANCELED;
    }
    struct job_list done = s->done;
    struct job_list todo = s->todo;
    s->done.head = s->done.tail = s->todo.head = s->todo.tail = NULL;
    answer(&done);
    answer(&todo);
    uv_close((uv_handle_t *)&s->async, free_after_close);
}
