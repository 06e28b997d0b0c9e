/* metrics: giftd's counters (struct metrics, kept in struct app) and their /metrics text. */
#ifndef GIFTD_SERVER_METRICS_H
#define GIFTD_SERVER_METRICS_H

#include <stdint.h>

#include "protocol/protocol.h"

struct app;

struct metrics {
    uint64_t connections_total;
    uint64_t connections_refused_total; /* over limits.max_connections or per-address rate */
    long connections;
    uint64_t frames_in;
    uint64_t frames_out;
    uint64_t bytes_out;
    uint64_t events_out;     /* room events delivered (one frame may carry several) */
    uint64_t batch_frames;   /* frames that packed more than one event */
    uint64_t batch_le[6];    /* frames by events packed: <=1, <=4, <=16, <=64, <=256, more */
    uint64_t slow_consumers; /* closed 4008 */
    uint64_t errors[PROTO_ERR__COUNT];
    uint64_t gifts_accepted;
    uint64_t gifts_duplicate;
    uint64_t gifts_rejected[PROTO_ERR__COUNT];
    uint64_t coins_debited;
    uint64_t events_published; /* gift events this node's sends published */
    uint64_t http_requests;
    uint64_t gap_fills;       /* history reads that filled a seq gap of a room's stream */
    uint64_t gap_events;      /* events they brought back */
    uint64_t gaps_unfilled;   /* gaps passed on as they were (history dropped or unreachable) */
    uint64_t resumes[3];      /* joins with since_seq: from the ring, from Redis, not resumed */
    uint64_t replayed_events; /* events replayed to resuming connections */
};

/** Appends the Prometheus text of every giftd_ metric. */
void metrics_render(struct app *app, struct proto_buf *out);

#endif
