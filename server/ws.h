/* ws: the lws protocol callback and the per-session data it serves — a WebSocket session or
 * an HTTP request. */
#ifndef GIFTD_SERVER_WS_H
#define GIFTD_SERVER_WS_H

#include <stdbool.h>
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

/** Redis confirmed the subscription of a room's channel: its joins waiting for that go on. */
void ws_room_subscribed(struct app *app, const char *room);
/** Joins that waited for their room's subscription longer than ledger.timeout_ms go on
 * without it (all: every one, at shutdown). */
void ws_parked_tick(struct app *app, bool all);

#endif
