/* metrics: /metrics in the Prometheus text format, giftd_ prefixed. */
#include <stdint.h>
#include <unistd.h>

#include "ledger_client/ledger_client.h"
#include "protocol/protocol.h"
#include "server/app.h"
#include "server/flush.h"
#include "server/metrics.h"
#include "server/rooms.h"
#include "server/session.h"

static void counter(struct proto_buf *b, const char *name, const char *help, uint64_t v)
{
    proto_buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
                     (unsigned long long)v);
}

static void gauge(struct proto_buf *b, const char *name, const char *help, long long v)
{
    proto_buf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", name, help, name, name, v);
}

static void by_code(struct proto_buf *b, const char *name, const char *help, const uint64_t *counts)
{
    proto_buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (int e = 1; e < PROTO_ERR__COUNT; e++) {
        proto_buf_printf(b, "%s{code=\"%s\"} %llu\n", name, proto_err_code((enum proto_err)e),
                         (unsigned long long)counts[e]);
    }
}

void metrics_render(struct app *app, struct proto_buf *b)
{
    const struct metrics *m = &app->m;
    /* Each worker process answers for itself: scrape every worker (or sum by node). */
    proto_buf_printf(b,
                     "# HELP giftd_worker_info this process: worker index, node id and pid\n"
                     "# TYPE giftd_worker_info gauge\n"
                     "giftd_worker_info{worker=\"%d\",node=\"%s\",pid=\"%d\"} 1\n",
                     app->worker, app->node_id, (int)getpid());
    gauge(b, "giftd_connections", "open WebSocket connections", m->connections);
    counter(b, "giftd_connections_total", "WebSocket connections accepted", m->connections_total);
    counter(b, "giftd_connections_refused_total",
            "connections refused (1013 or 503) over limits.max_connections or "
            "limits.connections_per_ip_per_sec",
            m->connections_refused_total);
    gauge(b, "giftd_open_sockets", "accepted sockets open (WebSocket and HTTP)", app->open_sockets);
    gauge(b, "giftd_rooms", "rooms with viewers on this process", app->nrooms);
    counter(b, "giftd_frames_in_total", "WebSocket frames received", m->frames_in);
    counter(b, "giftd_frames_out_total", "WebSocket frames sent", m->frames_out);
    counter(b, "giftd_bytes_out_total", "WebSocket payload bytes sent", m->bytes_out);
    counter(b, "giftd_fanout_events_total", "room events delivered to viewers", m->events_out);
    counter(b, "giftd_fanout_batch_frames_total", "frames that packed several events",
            m->batch_frames);
    counter(b, "giftd_slow_consumers_total", "viewers closed 4008 for falling behind",
            m->slow_consumers);
    counter(b, "giftd_gap_fills_total",
            "history reads that filled a seq gap in a room's pub/sub stream", m->gap_fills);
    counter(b, "giftd_gap_events_total", "events those reads brought back", m->gap_events);
    counter(b, "giftd_gaps_unfilled_total",
            "seq gaps passed on as they were (history dropped or Redis unreachable)",
            m->gaps_unfilled);
    counter(b, "giftd_replayed_events_total", "events replayed to resuming connections",
            m->replayed_events);
    proto_buf_printf(b,
                     "# HELP giftd_resumes_total joins with since_seq, by where the missed events "
                     "came from (none: resumed false)\n"
                     "# TYPE giftd_resumes_total counter\n"
                     "giftd_resumes_total{source=\"ring\"} %llu\n"
                     "giftd_resumes_total{source=\"redis\"} %llu\n"
                     "giftd_resumes_total{source=\"none\"} %llu\n",
                     (unsigned long long)m->resumes[0], (unsigned long long)m->resumes[1],
                     (unsigned long long)m->resumes[2]);
    /* Events per frame: how much packing the fan-out does. */
    static const char *const le[6] = {"1", "4", "16", "64", "256", "+Inf"};
    proto_buf_puts(b, "# HELP giftd_fanout_batch_events events packed per frame sent to a viewer\n"
                      "# TYPE giftd_fanout_batch_events histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i < 6; i++) {
        cum += m->batch_le[i];
        proto_buf_printf(b, "giftd_fanout_batch_events_bucket{le=\"%s\"} %llu\n", le[i],
                         (unsigned long long)cum);
    }
    proto_buf_printf(b,
                     "giftd_fanout_batch_events_sum %llu\ngiftd_fanout_batch_events_count %llu\n",
                     (unsigned long long)m->events_out, (unsigned long long)cum);
    /* Ring depth: how far the furthest-behind viewer is (events not yet sent to it). */
    uint64_t lag = 0;
    for (struct session *s = app->sessions; s; s = s->anext) {
        if (s->room && s->room->head - s->cursor > lag) {
            lag = s->room->head - s->cursor;
        }
    }
    gauge(b, "giftd_fanout_max_lag_events", "events the furthest-behind viewer has pending",
          (long long)lag);
    counter(b, "giftd_http_requests_total", "HTTP requests", m->http_requests);
    by_code(b, "giftd_errors_total", "error answers sent, by code", m->errors);
    counter(b, "giftd_gifts_accepted_total", "gift sends debited", m->gifts_accepted);
    counter(b, "giftd_gifts_duplicate_total", "retries answered with their first outcome",
            m->gifts_duplicate);
    by_code(b, "giftd_gifts_rejected_total", "gift sends refused, by code", m->gifts_rejected);
    counter(b, "giftd_coins_debited_total", "coins debited for gifts", m->coins_debited);
    counter(b, "giftd_events_published_total", "gift events published by this process",
            m->events_published);
    struct ledger_gift_stats gs;
    ledger_get_gift_stats(app->ledger, &gs);
    counter(b, "giftd_ledger_gift_batches_total", "script calls carrying gift sends", gs.batches);
    counter(b, "giftd_ledger_gift_batched_sends_total", "gift sends in those calls",
            gs.batched_sends);
    counter(b, "giftd_ledger_gift_expired_total",
            "gift sends that waited past ledger.timeout_ms unsent (nothing charged)", gs.expired);
    counter(b, "giftd_ledger_gift_shed_total",
            "gift sends refused at once because Redis was not keeping up (nothing charged)",
            gs.shed);
    gauge(b, "giftd_ledger_gift_queued", "gift sends waiting for the next batch", (long)gs.queued);
    counter(b, "giftd_ledger_outbox_swept_total",
            "Redis Cluster: charged sends this node published from a partition's outbox",
            gs.swept);

    struct ledger_stats ls;
    ledger_get_stats(app->ledger, &ls);
    gauge(b, "giftd_ledger_up", "1 when Redis answers", ledger_ready(app->ledger) ? 1 : 0);
    gauge(b, "giftd_ledger_inflight", "Redis requests in flight", ls.inflight);
    gauge(b, "giftd_ledger_queued", "Redis requests waiting for a pipeline slot", ls.queued);
    counter(b, "giftd_ledger_requests_total", "Redis requests", ls.requests);
    counter(b, "giftd_ledger_timeouts_total", "Redis requests past ledger.timeout_ms", ls.timeouts);
    counter(b, "giftd_ledger_errors_total", "Redis requests without a reply", ls.errors);
    counter(b, "giftd_ledger_connects_total", "Redis connection attempts", ls.reconnects);
    counter(b, "giftd_ledger_redirects_total",
            "Redis Cluster: MOVED, ASK, TRYAGAIN and CLUSTERDOWN answers followed", ls.redirects);
    proto_buf_puts(b, "# HELP giftd_ledger_latency_seconds Redis round-trip time\n"
                      "# TYPE giftd_ledger_latency_seconds histogram\n");
    for (size_t i = 0; i < 12; i++) {
        proto_buf_printf(b, "giftd_ledger_latency_seconds_bucket{le=\"%g\"} %llu\n",
                         ledger_latency_bounds_s[i], (unsigned long long)ls.latency_le[i]);
    }
    proto_buf_printf(b,
                     "giftd_ledger_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
                     "giftd_ledger_latency_seconds_sum %.6f\n"
                     "giftd_ledger_latency_seconds_count %llu\n",
                     (unsigned long long)ls.latency_count, ls.latency_sum_s,
                     (unsigned long long)ls.latency_count);
    flush_metrics_render(app, b);
}
