/* flush_pg: the PostgreSQL settlement sink of the flusher. */
#ifndef GIFTD_SERVER_FLUSH_PG_H
#define GIFTD_SERVER_FLUSH_PG_H

#include <stddef.h>

#include <uv.h>

struct ledger_settle_row;

/* The PostgreSQL sink: a thread owns the libpq connection, so the loop never blocks. */
struct pg_sink;
/** status 0 (written, or already there) or negative errno (-EIO, -ECONNREFUSED, -ECANCELED). */
typedef void pg_sink_cb(void *ud, int status);
/** Starts the thread; conninfo (borrowed, copied) is used on the first write. out: **new**. */
int pg_sink_new(uv_loop_t *loop, const char *conninfo, struct pg_sink **out);
/** Queues one batch: its rows are inserted in one transaction (several batches queued
 * together share one), ON CONFLICT DO NOTHING. batch and rows are borrowed until cb, which
 * runs on the loop. Returns 0 or -ENOMEM. */
int pg_sink_write(struct pg_sink *s, const char *batch, const struct ledger_settle_row *rows,
                  size_t nrows, pg_sink_cb *cb, void *ud);
/** Stops the thread (cancelling a running statement), answers every queued write (its result,
 * or -ECANCELED) before returning; memory is freed when the loop runs again. NULL: no-op. */
void pg_sink_free(struct pg_sink *s);

#endif
