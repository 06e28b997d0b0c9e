/* giftd: entry point — configuration, the libuv loop, lws context, ledger, signals, --dev. */
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <uv.h>

#include "auth/auth.h"
#include "config/config.h"
#include "gifts/gifts.h"
#include "ledger_client/ledger_client.h"
#include "protocol/protocol.h"
#include "server/app.h"
#include "server/flush.h"
#include "server/limits.h"
#include "server/listener.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/redis_child.h"
#include "server/rooms.h"
#include "server/session.h"
#include "server/workers.h"
#include "server/ws.h"

#define PROG "giftd" /* the name messages start with */

extern char **environ;

void log_msg(const char *level, const char *fmt, ...)
{
    char ts[40];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000);
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s %s giftd[%d] %s\n", ts, level, (int)getpid(), line);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: giftd [--config FILE] [--dev] [--check-config] [--KEY=VALUE ...]\n"
                 "\n"
                 "  --config FILE   JSON configuration file (keys below; nested or dotted)\n"
                 "  --dev           open a demo room, credit demo users, print tokens and URLs\n"
                 "  --check-config  validate the configuration and the catalog, then exit\n"
                 "  --version       print the version and exit\n"
                 "  --help          this text\n"
                 "\n"
                 "Configuration keys: flags beat GIFTD_* environment variables, which beat the\n"
                 "file, which beats the defaults.\n\n");
    config_print_help(out);
}

/* Frees the catalog in force and installs cat (steals). */
static void app_set_catalog(struct app *app, struct gifts_catalog *cat)
{
    gifts_catalog_free(app->catalog);
    app->catalog = cat;
}

static void app_load_catalog_or_keep(struct app *app)
{
    char err[512];
    struct gifts_catalog *cat = NULL;
    if (gifts_catalog_load(app->cfg.gifts_catalog, &cat, err, sizeof(err)) < 0) {
        log_err("SIGHUP: catalog %s refused, the old one stays in force: %s",
                app->cfg.gifts_catalog, err);
        return;
    }
    app_set_catalog(app, cat);
    log_info("SIGHUP: catalog %s reloaded (%zu gifts)", app->cfg.gifts_catalog, gifts_count(cat));
}

static void finish_shutdown(struct app *app)
{
    uv_timer_stop(&app->shutdown_timer);
    uv_timer_stop(&app->presence_timer);
    uv_timer_stop(&app->combo_timer);
    rooms_presence_tick(app, false, -1);
    if (app->ctx) {
        lws_context_destroy(app->ctx);
        app->ctx = NULL;
    }
    ws_parked_tick(app, true); /* their sessions are gone: the joins are dropped */
    rooms_free_all(app);
    limits_gc(app, 0, true);
    flush_stop(app);
    ledger_free(app->ledger);
    app->ledger = NULL;
    uv_close((uv_handle_t *)&app->presence_timer, NULL);
    uv_close((uv_handle_t *)&app->shutdown_timer, NULL);
    uv_close((uv_handle_t *)&app->combo_timer, NULL);
    uv_check_stop(&app->fanout_check);
    uv_close((uv_handle_t *)&app->fanout_check, NULL);
    uv_idle_stop(&app->fanout_idle);
    uv_close((uv_handle_t *)&app->fanout_idle, NULL);
    uv_close((uv_handle_t *)&app->sigterm, NULL);
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_close((uv_handle_t *)&app->sighup, NULL);
}

static void shutdown_tick(uv_timer_t *t)
{
    struct app *app = t->data;
    int64_t waited = ledger_now_ms() - app->started_ms;
    /* started_ms is reused as the moment shutdown began. */
    if (!app->sessions || waited > 3000) {
        /* Settle what is pending while Redis is still connected (bounded in time). */
        if (!flush_final(app)) {
            return;
        }
        if (app->sessions) {
            log_warn("shutdown: %ld connections did not close in time", app->m.connections);
        }
        finish_shutdown(app);
    }
}

static void begin_shutdown(struct app *app, const char *why)
{
    if (app->shutting_down) {
        return;
    }
    app->shutting_down = true;
    log_info("%s: stop accepting, closing %ld connections with 1001", why, app->m.connections);
    listener_stop(app);
    for (struct session *s = app->sessions; s; s = s->anext) {
        s->going_away = true;
        session_wake(s);
    }
    app->started_ms = ledger_now_ms();
    uv_timer_start(&app->shutdown_timer, shutdown_tick, 0, 20);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct app *app = h->data;
    if (signum == SIGHUP) {
        app_load_catalog_or_keep(app);
        return;
    }
    begin_shutdown(app, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void fanout_fired(uv_check_t *c)
{
    rooms_fanout_pass(c->data);
}

static void combo_fired(uv_timer_t *t)
{
    rooms_combo_tick(t->data);
    ws_parked_tick(t->data, false);
}

static void presence_fired(uv_timer_t *t)
{
    struct app *app = t->data;
    int slice = app->presence_slice;
    app->presence_slice = (slice + 1) % ROOMS_PRESENCE_SLICES;
    rooms_presence_tick(app, true, slice);
    if (slice != 0) {
        return;
    }
    limits_gc(app, ledger_now_ms(), false);
    /* Hand memory freed since (handshake buffers of connection waves) back to the system:
     * an idle viewer then costs about its own structures, not the peak of a wave. Only after
     * connections came: a trim walks the whole heap, a stall the fan-out should not see
     * every interval. */
    if (app->m.connections_total != app->trimmed_at_connections) {
        app->trimmed_at_connections = app->m.connections_total;
        malloc_trim(0);
    }
}

/* ---- --dev ---- */

static void dev_setup(struct app *app)
{
    int64_t now = ledger_now_ms();
    /* Replies are not awaited: the ledger is up, and the banner below is what --dev is for. */
    struct ledger_room_open_req room = {.room = "demo",
                                        .creator_id = "demo_creator",
                                        .creator_name = "Demo Creator",
                                        .title = "giftd demo"};
    ledger_room_open(app->ledger, &room, NULL, NULL, NULL);
    const char *users[] = {"alice", "bob"};
    for (int i = 0; i < 2; i++) {
        char pay[128];
        snprintf(pay, sizeof(pay), "dev-credit-%s", users[i]);
        struct ledger_recharge_req rc = {.user = users[i], .payment_id = pay, .coins = 100000};
        ledger_recharge(app->ledger, &rc, NULL, NULL, NULL);
    }
    const char *secret = app->cfg.auth_secret;
    int64_t exp = now / 1000 + 7 * 86400;
    struct auth_claims c[4] = {
        {.sub = "alice", .name = "Alice", .role = AUTH_ROLE_VIEWER, .exp = exp},
        {.sub = "bob", .name = "Bob", .role = AUTH_ROLE_VIEWER, .exp = exp},
        {.sub = "demo_creator", .role = AUTH_ROLE_OVERLAY, .room = "demo", .exp = exp},
        {.sub = "platform", .role = AUTH_ROLE_SERVICE, .exp = exp},
    };
    char *tok[4] = {0};
    for (int i = 0; i < 4; i++) {
        if (auth_jwt_sign(&c[i], secret, strlen(secret), &tok[i]) < 0) {
            log_err("--dev: auth_jwt_sign failed");
        }
    }
    char host[128];
    int port = 0;
    config_listen_parse(app->cfg.listen, host, sizeof(host), &port);
    const char *h =
        (!host[0] || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0) ? "127.0.0.1" : host;
    const char *scheme = app->cfg.tls_cert ? "https" : "http";
    const char *wscheme = app->cfg.tls_cert ? "wss" : "ws";
    printf("\n"
           "giftd --dev is ready: room \"demo\" is live (creator demo_creator); alice and bob\n"
           "have 100000 coins each. Tokens are valid for 7 days.\n\n"
           "  overlay:      %s://%s:%d/overlay/?room=demo&token=%s\n"
           "  demo viewer:  %s://%s:%d/demo/?room=demo&token=%s\n"
           "  WebSocket:    %s://%s:%d/ws?room=demo&token=%s\n"
           "  bob's token:  %s\n"
           "  service:      %s\n"
           "\n"
           "  curl %s://%s:%d/v1/rooms/demo\n"
           "  curl -H 'Authorization: Bearer %s' %s://%s:%d/v1/users/alice/balance\n\n",
           scheme, h, port, tok[2] ? tok[2] : "", scheme, h, port, tok[0] ? tok[0] : "", wscheme, h,
           port, tok[0] ? tok[0] : "", tok[1] ? tok[1] : "", tok[3] ? tok[3] : "", scheme, h, port,
           tok[3] ? tok[3] : "", scheme, h, port);
    fflush(stdout);
    for (int i = 0; i < 4; i++) {
        free(tok[i]);
    }
}

/* Called when the ledger's state changes. */
static void app_ledger_state(void *ud, enum ledger_state st)
{
    struct app *app = ud;
    switch (st) {
    case LEDGER_UP:
        log_info("redis: connected, scripts loaded");
        if (app->dev && !app->dev_done && app->worker == 0) {
            app->dev_done = true;
            dev_setup(app);
        }
        rooms_presence_tick(app, true, -1);
        break;
    case LEDGER_DOWN:
        log_warn("redis: connection lost; reconnecting");
        break;
    case LEDGER_SUB_UP:
        rooms_resubscribe(app);
        break;
    }
}

static void on_room_message(void *ud, const char *room, long long epoch, const char *msg,
                            size_t len)
{
    rooms_on_message(ud, room, epoch, msg, len);
}

static void on_room_subscribed(void *ud, const char *room)
{
    ws_room_subscribed(ud, room);
}

static const struct lws_protocols protocols[] = {
    /* rx_buffer_size: without it lws gives every connection a receive buffer of
     * pt_serv_buf_size; client frames are small, larger ones arrive in pieces.
     * tx_packet_size: lws sends at most this much (or, when it is 0, rx_buffer_size) per
     * send() and keeps the rest for the next POLLOUT. With 0 every frame over 276 bytes went
     * out in 276-byte pieces, one loop turn each: a whole batch frame must go in one send. */
    {"giftd.v1", ws_callback, sizeof(union conn), 256, 0, NULL, FANOUT_TX_MAX},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static const struct lws_http_mount mount_demo = {
    .mountpoint = "/demo",
    .mountpoint_len = 5,
    .origin_protocol = LWSMPRO_FILE,
    .def = "index.html",
};

/* lws 4.1.6 knows no .mjs and answers it 415: the overlay's ES module client needs it served as
 * JavaScript (a browser refuses a module script of another type). */
static const struct lws_protocol_vhost_options mjs_mimetype = {NULL, NULL, ".mjs",
                                                               "text/javascript"};

static struct lws_http_mount mounts[2];

static int start_lws(struct app *app)
{
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    void *foreign[1] = {app->loop};
    /* No LWS_SERVER_OPTION_VALIDATE_UTF8: lws would close the connection (1007), while a frame
     * that is not valid UTF-8 JSON is answered bad_json and the connection stays open. */
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
                   LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.foreign_loops = foreign;
    info.protocols = protocols;
    info.user = app;
    info.pt_serv_buf_size = 64 * 1024;
    info.fd_limit_per_thread = 0;
    app->ctx = lws_create_context(&info);
    if (!app->ctx) {
        log_err("lws_create_context failed (is libwebsockets-evlib-uv installed?)");
        return -1;
    }
    static char overlay_origin[1024], demo_origin[1024];
    snprintf(overlay_origin, sizeof(overlay_origin), "%s", app->cfg.overlay_dir);
    snprintf(demo_origin, sizeof(demo_origin), "%s/demo", app->cfg.overlay_dir);
    mounts[0] = (struct lws_http_mount){
        .mountpoint = "/overlay",
        .mountpoint_len = 8,
        .origin = overlay_origin,
        .origin_protocol = LWSMPRO_FILE,
        .def = "index.html",
        .extra_mimetypes = &mjs_mimetype,
        .mount_next = &mounts[1],
    };
    mounts[1] = mount_demo;
    mounts[1].origin = demo_origin;

    memset(&info, 0, sizeof(info));
    /* No lws validity timer (its default pings an idle connection after 300 s): each one is
     * a node of lws's sorted timer list, kept in a linked list that every new connection
     * walks to its end, so 15,000 viewers made each join cost milliseconds. Dead peers are
     * found by TCP keepalive instead (listener.c). */
    static const lws_retry_bo_t no_validity_timer = {.secs_since_valid_ping = 0,
                                                     .secs_since_valid_hangup = 0};
    info.retry_and_idle_policy = &no_validity_timer;
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = protocols;
    info.mounts = mounts;
    info.vhost_name = "giftd";
    info.user = app;
    info.options = 0;
    info.ka_time = 0;
    if (app->cfg.tls_cert) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = app->cfg.tls_cert;
        info.ssl_private_key_filepath = app->cfg.tls_key;
    }
    app->vhost = lws_create_vhost(app->ctx, &info);
    if (!app->vhost) {
        log_err("lws_create_vhost failed");
        return -1;
    }
    return 0;
}

static int load_config(struct app *app, int argc, char **argv, bool *out_check, int *out_exit)
{
    char err[512];
    const char *file = NULL;
    *out_exit = -1;
    if (config_init(&app->cfg) < 0) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        return -1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            *out_exit = 0;
            return -1;
        }
        if (strcmp(a, "--version") == 0) {
            printf("giftd %s\n", GIFTD_VERSION);
            *out_exit = 0;
            return -1;
        }
        if (strcmp(a, "--dev") == 0) {
            app->dev = true;
        } else if (strcmp(a, "--check-config") == 0) {
            *out_check = true;
        } else if (strcmp(a, "--config") == 0 && i + 1 < argc) {
            file = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            file = a + 9;
        }
    }
    if (file && config_apply_file(&app->cfg, file, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: config: %s\n", PROG, err);
        return -1;
    }
    if (config_apply_env(&app->cfg, environ, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: environment: %s\n", PROG, err);
        return -1;
    }
    const char *unknown = config_unknown_env(environ);
    if (unknown) {
        fprintf(stderr, "%s: environment: %.*s: names no configuration key\n", PROG,
                (int)strcspn(unknown, "="), unknown);
        return -1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--dev") == 0 || strcmp(a, "--check-config") == 0 ||
            strncmp(a, "--config=", 9) == 0) {
            continue;
        }
        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", PROG, a);
            return -1;
        }
        char key[128];
        const char *eq = strchr(a + 2, '=');
        const char *val;
        if (eq) {
            snprintf(key, sizeof(key), "%.*s", (int)(eq - a - 2), a + 2);
            val = eq + 1;
        } else if (i + 1 < argc) {
            snprintf(key, sizeof(key), "%s", a + 2);
            val = argv[++i];
        } else {
            fprintf(stderr, "%s: %s: missing value\n", PROG, a + 2);
            return -1;
        }
        if (config_set(&app->cfg, key, val, err, sizeof(err)) < 0) {
            fprintf(stderr, "%s: flag --%s\n", PROG, err);
            return -1;
        }
    }
    if (app->dev && !app->cfg.auth_secret) {
        config_set(&app->cfg, "auth.secret", "dev-secret-not-for-production", err, sizeof(err));
    }
    if (config_validate(&app->cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: config: %s\n", PROG, err);
        return -1;
    }
    struct gifts_catalog *cat = NULL;
    if (gifts_catalog_load(app->cfg.gifts_catalog, &cat, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: gifts.catalog: %s\n", PROG, err);
        return -1;
    }
    app->catalog = cat;
    return 0;
}

int main(int argc, char **argv)
{
    static struct app app_storage;
    struct app *app = &app_storage;
    bool check = false;
    int code;
    signal(SIGPIPE, SIG_IGN);
    if (load_config(app, argc, argv, &check, &code) < 0) {
        config_cleanup(&app->cfg);
        gifts_catalog_free(app->catalog);
        return code >= 0 ? code : 2;
    }
    if (check) {
        printf("%s: configuration and catalog OK (%zu gifts, %zu packages)\n", PROG,
               gifts_count(app->catalog), gifts_package_count(app->catalog));
        config_cleanup(&app->cfg);
        gifts_catalog_free(app->catalog);
        return 0;
    }
    lws_set_log_level(LLL_ERR | LLL_WARN, NULL);

    struct redis_child rc = {0};
    if (!app->cfg.redis_url && !app->cfg.redis_cluster) {
        if (redis_child_start(&rc) < 0) {
            log_err("could not start a private redis-server (install redis-server, or set "
                    "redis.url)");
            return 1;
        }
        char url[400];
        snprintf(url, sizeof(url), "unix://%s", rc.sock);
        char err[256];
        config_set(&app->cfg, "redis.url", url, err, sizeof(err));
        log_info("private redis-server %d on %s", (int)rc.pid, rc.sock);
    }

    app->nworkers = app->cfg.workers > 0 ? app->cfg.workers : sysconf(_SC_NPROCESSORS_ONLN);
    if (app->nworkers > 1) {
        int sup = workers_supervise(app->nworkers, &app->worker);
        if (sup >= 0) {
            redis_child_stop(&rc);
            gifts_catalog_free(app->catalog);
            config_cleanup(&app->cfg);
            return sup;
        }
        rc.pid = 0; /* the supervisor owns the private redis-server, not its workers */
        rc.dir[0] = '\0';
    }

    uv_loop_t loop;
    uv_loop_init(&loop);
    app->loop = &loop;
    snprintf(app->node_id, sizeof(app->node_id), "%08lx-%d", (unsigned long)ledger_now_ms(),
             (int)getpid());
    proto_buf_init(&app->scratch, LWS_PRE);
    app->listen_fd = -1;

    struct ledger_opts lo = {
        .url = app->cfg.redis_url,
        .cluster = app->cfg.redis_cluster,
        .timeout_ms = app->cfg.ledger_timeout_ms,
        .max_inflight = app->cfg.ledger_max_inflight,
        .partitions = app->cfg.ledger_partitions,
        .idempotency_ttl_s = app->cfg.ledger_idempotency_ttl_s,
        .combo_window_ms = app->cfg.gifts_combo_window_ms,
        .history_size = app->cfg.rooms_history_size,
        .history_ttl_s = app->cfg.rooms_history_ttl_s,
        .tx_history_size = app->cfg.ledger_history_size,
        .tx_history_ttl_s = app->cfg.ledger_history_ttl_s,
        .outbox_grace_ms = app->cfg.ledger_outbox_grace_ms,
        .on_state = app_ledger_state,
        .on_room_message = on_room_message,
        .on_room_subscribed = on_room_subscribed,
        .ud = app,
    };
    int rcode = 1;
    if (ledger_new(&loop, &lo, &app->ledger) < 0) {
        log_err("%s: cannot use %s", app->cfg.redis_cluster ? "redis.cluster" : "redis.url",
                app->cfg.redis_cluster ? app->cfg.redis_cluster : app->cfg.redis_url);
        goto out;
    }
    if (flush_start(app) < 0) {
        log_err("flush: cannot start the flusher (out of memory or threads)");
        goto out;
    }
    if (start_lws(app) < 0 || listener_start(app) < 0) {
        goto out;
    }
    uv_timer_init(&loop, &app->presence_timer);
    uv_timer_init(&loop, &app->shutdown_timer);
    uv_timer_init(&loop, &app->combo_timer);
    app->presence_timer.data = app->shutdown_timer.data = app;
    app->combo_timer.data = app;
    uv_timer_start(&app->combo_timer, combo_fired, 25, 25);
    uv_check_init(&loop, &app->fanout_check);
    app->fanout_check.data = app;
    uv_check_start(&app->fanout_check, fanout_fired);
    uv_idle_init(&loop, &app->fanout_idle);
    app->fanout_idle.data = app;
    uint64_t presence_tick_ms =
        (uint64_t)app->cfg.rooms_presence_interval_ms / ROOMS_PRESENCE_SLICES;
    if (presence_tick_ms < 1) {
        presence_tick_ms = 1;
    }
    uv_timer_start(&app->presence_timer, presence_fired, presence_tick_ms, presence_tick_ms);
    uv_signal_init(&loop, &app->sigterm);
    uv_signal_init(&loop, &app->sigint);
    uv_signal_init(&loop, &app->sighup);
    app->sigterm.data = app->sigint.data = app->sighup.data = app;
    uv_signal_start(&app->sigterm, on_signal, SIGTERM);
    uv_signal_start(&app->sigint, on_signal, SIGINT);
    uv_signal_start(&app->sighup, on_signal, SIGHUP);
    log_info("giftd %s serving on %s (node %s, worker %d of %ld, redis %s)", GIFTD_VERSION,
             app->cfg.listen, app->node_id, app->worker, app->nworkers,
             app->cfg.redis_cluster                                                 ? "cluster"
             : app->cfg.redis_url && strncmp(app->cfg.redis_url, "unix://", 7) == 0 ? "unix"
                                                                                    : "tcp");

    uv_run(&loop, UV_RUN_DEFAULT);
    rcode = 0;
    log_info("stopped");
out:
    if (app->ctx) {
        lws_context_destroy(app->ctx);
        app->ctx = NULL;
    }
    flush_stop(app);
    if (app->ledger) {
        ledger_free(app->ledger);
        app->ledger = NULL;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    proto_buf_cleanup(&app->scratch);
    redis_child_stop(&rc);
    gifts_catalog_free(app->catalog);
    config_cleanup(&app->cfg);
    return rcode;
}
