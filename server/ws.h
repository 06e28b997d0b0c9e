/* ws: the lws protocol callback and the per-session data it serves — a WebSocket session or
 * an HTTP request. */
#ifndef GIFTD_SERVER_WS_H
#define GIFTD_SERVER_WS_H

#include <stddef.h>

#include <libwebsockets.h>

#include "server/http.h"
#include "server/session.h"

/* The `kind` tag, the first member of struct session and of struct http_req. */
enum { CONN_WS = 1, CONN_HTTP = 2 };

/* One connection's per-session data (lws allocates it): a WebSocket session or an HTTP
 * request, never both; `kind` tells which. */
union conn {
    struct session s;
    struct http_req h;
};

/** The protocol callback for /ws and HTTP (lws protocols[0]). */
int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                size_t len);

#endif
