/* flush: the settlement flusher (SPEC 7) — settles pending earnings into rows on the sink. */
#ifndef GIFTD_SERVER_FLUSH_H
#define GIFTD_SERVER_FLUSH_H

#include <stdbool.h>

struct app;
struct proto_buf;

/** Starts the flusher (its timer, and the PostgreSQL thread for that sink). 0 or -errno. */
int flush_start(struct app *app);
/** Settles every partition this node may flush now (a room closed), not waiting for the
 * timer; a pass already running is followed by another. */
void flush_request(struct app *app);
/** This node is debiting into partition: its next pass visits it (the others only every
 * FLUSH_FULL_EVERY passes). */
void flush_note_partition(struct app *app, unsigned partition);
/** Shutdown: starts a last pass (first call) and returns true once it is done or its time
 * (a few seconds) is up; the node's partition leases are released by it. */
bool flush_final(struct app *app);
/** Stops the flusher: call before ledger_free, which answers its requests; its memory is
 * freed when the loop runs again. NULL flusher: no-op. */
void flush_stop(struct app *app);
/** Appends the giftd_flush_* metrics. */
void flush_metrics_render(struct app *app, struct proto_buf *b);

#endif
