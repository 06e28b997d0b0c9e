/* app: one giftd process's state — lws on a libuv loop it owns; the lws context's user pointer. */
#ifndef GIFTD_SERVER_APP_H
#define GIFTD_SERVER_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "config/config.h"
#include "protocol/protocol.h"
#include "server/metrics.h"

struct flusher;
struct gifts_catalog;
struct ledger;
struct lws_context;
struct lws_vhost;
struct room;
struct session;
struct user_bucket;

struct app {
    struct config cfg;
    struct gifts_catalog *catalog;
    bool dev;
    uv_loop_t *loop;
    struct lws_context *ctx;
    struct lws_vhost *vhost;
    struct ledger *ledger;
    char node_id[40];
    struct metrics m;
    struct session *sessions;
    struct room **rooms; /* hash table */
    size_t rooms_cap;
    long nrooms;
    struct proto_buf scratch;          /* batch frames and one-off encodings, reused */
    struct room *parked_rooms;         /* rooms with joins waiting for their subscription */
    struct room *dirty_rooms;          /* rooms whose viewers have events to be passed */
    uv_check_t fanout_check;           /* runs rooms_fanout_pass after each I/O poll */
    uv_idle_t fanout_idle;             /* active while a pass is unfinished: poll, don't wait */
    uint64_t trimmed_at_connections;   /* connections_total at the last malloc_trim */
    int presence_slice;                /* the slice of rooms the next presence tick visits */
    struct user_bucket **user_buckets; /* limits.gifts_per_sec per user */
    size_t user_buckets_cap;
    struct ip_count *ip_counts; /* limits.connections_per_ip_per_sec (limits.c) */
    long open_sockets;          /* accepted sockets lws holds (WSI_CREATE..DESTROY) */
    long max_connections;       /* limits.max_connections, resolved */
    uv_timer_t accept_pause;    /* out of descriptors: accept again after a pause */
    uv_timer_t presence_timer;
    uv_timer_t shutdown_timer;
    uv_timer_t combo_timer;
    uv_signal_t sigterm, sigint, sighup;
    uv_poll_t listen_poll;
    int listen_fd;
    bool shutting_down;
    bool dev_done;
    int worker; /* index of this worker process, 0 with one process */
    long nworkers;
    int64_t started_ms;
    struct flusher *flusher; /* flush.c */
};

#endif
