/* listener: giftd owns its listening socket (SO_REUSEPORT) and hands accepted sockets to lws. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <uv.h>

#include "config/config.h"
#include "ledger_client/ledger_client.h"
#include "server/app.h"
#include "server/limits.h"
#include "server/listener.h"
#include "server/log.h"

#define ACCEPT_PAUSE_MS 100 /* out of descriptors or memory: wait this long to accept again */
#define FD_RESERVE      64  /* descriptors kept for Redis, PostgreSQL and files */

static void on_acceptable(uv_poll_t *h, int status, int events);

static void accept_resume(uv_timer_t *t)
{
    struct app *app = t->data;
    if (app->listen_fd >= 0 && !app->shutting_down &&
        !uv_is_closing((uv_handle_t *)&app->listen_poll)) {
        uv_poll_start(&app->listen_poll, UV_READABLE, on_acceptable);
    }
}

static void on_acceptable(uv_poll_t *h, int status, int events)
{
    struct app *app = h->data;
    (void)events;
    if (status < 0 || app->shutting_down) {
        return;
    }
    /* Accept a bounded number per wake-up so one burst of connects cannot starve the loop. */
    for (int i = 0; i < 256; i++) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof(peer);
        int fd = accept4(app->listen_fd, (struct sockaddr *)&peer, &peer_len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* The connection stays in the backlog and the socket stays readable: without a
                 * pause the loop would spin on it. */
                log_warn("accept4: %s; accepting again in %d ms", strerror(errno), ACCEPT_PAUSE_MS);
                uv_poll_stop(&app->listen_poll);
                uv_timer_start(&app->accept_pause, accept_resume, ACCEPT_PAUSE_MS, 0);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                       errno != ECONNABORTED) {
                log_warn("accept4: %s", strerror(errno));
            }
            return;
        }
        /* Over the limits, the connection is still accepted, so that it hears why: 1013 for a
         * WebSocket, 503 for HTTP (ws.c, http.c read the reason back from the wsi). */
        const char *over = limits_connection(app, (struct sockaddr *)&peer, ledger_now_ms());
        if (over) {
            app->m.connections_refused_total++;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        /* A fixed send buffer: the kernel would otherwise grow it up to tcp_wmem's maximum
         * (4 MiB) for a viewer that stopped reading. 256 KiB holds the largest batch frame;
         * behind that the ring and fanout.max_queue take over. */
        int sndbuf = 256 * 1024;
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
        /* A viewer that vanished without a FIN (a phone that lost its network) is found by
         * the kernel: probes after 60 s idle, dropped after 6 unanswered ones 10 s apart. */
        int idle = 60, intvl = 10, cnt = 6;
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
        struct lws *wsi = lws_adopt_socket_vhost(app->vhost, fd);
        if (!wsi) {
            /* lws closes the descriptor when adoption fails. */
            log_warn("lws_adopt_socket_vhost failed");
        } else if (over) {
            lws_set_opaque_user_data(wsi, (void *)over);
        }
    }
}

int listener_start(struct app *app)
{
    char host[256];
    int port;
    if (config_listen_parse(app->cfg.listen, host, sizeof(host), &port) < 0) {
        log_err("listen: cannot parse %s", app->cfg.listen);
        return -EINVAL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char ports[16];
    snprintf(ports, sizeof(ports), "%d", port);
    int rc = getaddrinfo(host[0] ? host : NULL, ports, &hints, &res);
    if (rc != 0) {
        log_err("listen: getaddrinfo(%s): %s", host, gai_strerror(rc));
        return -EINVAL;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 4096) == 0) {
            break;
        }
        log_err("listen: bind/listen %s: %s", app->cfg.listen, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        return -EADDRINUSE;
    }
    app->listen_fd = fd;
    /* limits.max_connections 0: the open-file limit, less some for Redis, PostgreSQL, files. */
    app->max_connections = app->cfg.limits_max_connections;
    struct rlimit rl;
    if (app->max_connections == 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
        rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > 2 * FD_RESERVE) {
        app->max_connections = (long)rl.rlim_cur - FD_RESERVE;
    }
    uv_timer_init(app->loop, &app->accept_pause);
    app->accept_pause.data = app;
    uv_poll_init(app->loop, &app->listen_poll, fd);
    app->listen_poll.data = app;
    uv_poll_start(&app->listen_poll, UV_READABLE, on_acceptable);
    return 0;
}

static void listener_closed(uv_handle_t *h)
{
    struct app *app = h->data;
    if (app->listen_fd >= 0) {
        close(app->listen_fd);
        app->listen_fd = -1;
    }
}

void listener_stop(struct app *app)
{
    if (app->listen_fd >= 0 && !uv_is_closing((uv_handle_t *)&app->listen_poll)) {
        uv_poll_stop(&app->listen_poll);
        uv_close((uv_handle_t *)&app->listen_poll, listener_closed);
        uv_close((uv_handle_t *)&app->accept_pause, NULL);
    }
    limits_connection_cleanup(app);
}
