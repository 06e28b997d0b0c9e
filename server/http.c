/* http: the HTTP API of SPEC 5 — health, metrics, catalog, rooms, recharge, balance, budget. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#include "auth/auth.h"
#include "config/config.h"
#include "gifts/gifts.h"
#include "httpapi/httpapi.h"
#include "ledger_client/ledger_client.h"
#include "protocol/protocol.h"
#include "server/app.h"
#include "server/flush.h"
#include "server/http.h"
#include "server/metrics.h"
#include "server/pending.h"
#include "server/rooms.h"
#include "server/ws.h"

#define HTTP_MAX_BODY (64 * 1024)

static void reset(struct http_req *h)
{
    pending_detach_all(&h->pendings);
    free(h->body);
    free(h->resp);
    h->body = NULL;
    h->resp = NULL;
    h->body_len = 0;
    h->resp_len = 0;
    h->stage = 0;
}

void http_cleanup(struct http_req *h)
{
    reset(h);
    h->app = NULL;
}

int http_begin(struct http_req *h, struct lws *wsi, const char *uri, size_t len)
{
    struct app *app = lws_context_user(lws_get_context(wsi));
    if (h->kind == CONN_HTTP) {
        reset(h); /* keep-alive: the previous request's leftovers */
    }
    memset(h, 0, sizeof(*h));
    h->kind = CONN_HTTP;
    h->wsi = wsi;
    h->app = app;
    app->m.http_requests++;
    snprintf(h->path, sizeof(h->path), "%.*s", (int)len, uri);
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI)) {
        h->method = HTTPAPI_GET;
    } else if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI)) {
        h->method = HTTPAPI_POST;
    } else if (lws_hdr_total_length(wsi, WSI_TOKEN_PUT_URI)) {
        h->method = HTTPAPI_PUT;
    } else if (lws_hdr_total_length(wsi, WSI_TOKEN_DELETE_URI)) {
        h->method = HTTPAPI_DELETE;
    } else {
        h->method = HTTPAPI_OTHER;
    }
    char auth[PROTO_TOKEN_MAX + 32];
    int n = lws_hdr_copy(wsi, auth, sizeof(auth), WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n > 0) {
        h->have_auth = true;
        const char *secret = app->cfg.auth_secret;
        if (strncmp(auth, "Bearer ", 7) != 0 ||
            auth_jwt_verify(auth + 7, (size_t)n - 7, secret, strlen(secret),
                            ledger_now_ms() / 1000, &h->claims) < 0) {
            h->auth_bad = true;
        }
    }
    char cl[32];
    long content_length = 0;
    if (lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
        content_length = strtol(cl, NULL, 10);
    }
    if (content_length > HTTP_MAX_BODY) {
        http_error(h, PROTO_ERR_TOO_LARGE, "request body too large");
        return 0;
    }
    if ((h->method == HTTPAPI_POST || h->method == HTTPAPI_PUT) && content_length > 0) {
        return 0; /* dispatched at LWS_CALLBACK_HTTP_BODY_COMPLETION */
    }
    return http_dispatch(h);
}

void http_body(struct http_req *h, const char *in, size_t len)
{
    if (h->too_large || h->stage) {
        return;
    }
    if (h->body_len + len > HTTP_MAX_BODY) {
        h->too_large = true;
        return;
    }
    char *b = realloc(h->body, h->body_len + len + 1);
    if (!b) {
        h->too_large = true;
        return;
    }
    memcpy(b + h->body_len, in, len);
    h->body = b;
    h->body_len += len;
    h->body[h->body_len] = '\0';
}

static void respond_type(struct http_req *h, int status, const char *ctype, const char *text,
                         size_t len)
{
    if (h->stage) {
        return;
    }
    free(h->resp);
    h->resp = malloc(LWS_PRE + len + 1);
    if (!h->resp) {
        lws_callback_on_writable(h->wsi);
        return;
    }
    memcpy(h->resp + LWS_PRE, text, len);
    h->resp_len = len;
    h->status = status;
    snprintf(h->ctype, sizeof(h->ctype), "%s", ctype);
    h->stage = 1;
    lws_callback_on_writable(h->wsi);
}

void http_respond(struct http_req *h, int status, const char *json, size_t len)
{
    respond_type(h, status, "application/json", json, len);
}

void http_respond_buf(struct http_req *h, int status, struct proto_buf *b)
{
    if (b->oom) {
        http_error(h, PROTO_ERR_INTERNAL, "out of memory");
        return;
    }
    http_respond(h, status, proto_buf_text(b), b->len);
}

static void error_status(struct http_req *h, int status, enum proto_err e, const char *message)
{
    struct proto_buf b;
    proto_buf_init(&b, 0);
    proto_buf_puts(&b, "{\"error\":{\"code\":");
    proto_buf_json_cstr(&b, proto_err_code(e));
    proto_buf_puts(&b, ",\"message\":");
    proto_buf_json_cstr(&b, message ? message : proto_err_message(e));
    proto_buf_puts(&b, "}}");
    h->app->m.errors[e]++;
    http_respond_buf(h, status, &b);
    proto_buf_cleanup(&b);
}

void http_error(struct http_req *h, enum proto_err e, const char *message)
{
    error_status(h, proto_err_http_status(e), e, message);
}

int http_writeable(struct http_req *h)
{
    struct lws *wsi = h->wsi;
    if (h->stage == 1) {
        if (!h->resp) {
            return -1;
        }
        unsigned char hdr[LWS_PRE + 512];
        unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr) - 1;
        if (lws_add_http_common_headers(wsi, (unsigned int)h->status, h->ctype, h->resp_len, &p,
                                        end) ||
            lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                        (const unsigned char *)"no-store", 8, &p, end) ||
            lws_finalize_write_http_header(wsi, start, &p, end)) {
            return -1;
        }
        h->stage = 2;
        lws_callback_on_writable(wsi);
        return 0;
    }
    if (h->stage == 2) {
        int n = lws_write(wsi, (unsigned char *)h->resp + LWS_PRE, h->resp_len,
                          LWS_WRITE_HTTP_FINAL);
        reset(h);
        if (n < 0) {
            return -1;
        }
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    return 0;
}

/* ---- helpers ---- */

static bool require_auth(struct http_req *h)
{
    if (!h->have_auth || h->auth_bad) {
        http_error(h, PROTO_ERR_UNAUTHORIZED,
                   h->auth_bad ? "invalid or expired token" : "Authorization: Bearer required");
        return false;
    }
    return true;
}

static bool require_service(struct http_req *h)
{
    if (!require_auth(h)) {
        return false;
    }
    if (h->claims.role != AUTH_ROLE_SERVICE) {
        http_error(h, PROTO_ERR_FORBIDDEN, "a service token is required");
        return false;
    }
    return true;
}

static bool require_user_or_service(struct http_req *h, const char *user)
{
    if (!require_auth(h)) {
        return false;
    }
    if (h->claims.role == AUTH_ROLE_SERVICE ||
        (h->claims.role == AUTH_ROLE_VIEWER && strcmp(h->claims.sub, user) == 0)) {
        return true;
    }
    http_error(h, PROTO_ERR_FORBIDDEN, "only that user or a service token");
    return false;
}

/* False (answered) when the body went over HTTP_MAX_BODY; httpapi parses the rest. */
static bool body_fits(struct http_req *h)
{
    if (h->too_large) {
        http_error(h, PROTO_ERR_TOO_LARGE, "request body too large");
        return false;
    }
    return true;
}

/* First step of a typed callback for an HTTP request: untracks p, then answers the request
 * when the operation failed. True when the callback has nothing more to answer (failed, or
 * the request went away). */
static bool ledger_failed(struct pending *p, int status)
{
    pending_answered(p);
    if (!p->h) {
        return true;
    }
    switch (status) {
    case 0:
        return false;
    case -EPROTO: /* Redis answered with an error */
        http_error(p->h, PROTO_ERR_INTERNAL, "redis script error");
        break;
    case -EBADMSG:
        http_error(p->h, PROTO_ERR_INTERNAL, "unexpected reply");
        break;
    case -ENOMEM:
        http_error(p->h, PROTO_ERR_INTERNAL, "out of memory");
        break;
    default: /* no reply: timed out, connection lost */
        http_error(p->h, PROTO_ERR_LEDGER_UNAVAILABLE, NULL);
        break;
    }
    return true;
}

/* After a typed ledger call for p (its result rc): tracks the request, or answers h and frees
 * p when nothing was sent. Returns 0 (the dispatcher's result). */
static int started(struct http_req *h, struct pending *p, int rc)
{
    if (rc < 0) {
        free(p);
        http_error(h, PROTO_ERR_LEDGER_UNAVAILABLE, NULL);
    } else {
        pending_track(p);
    }
    return 0;
}

/* ---- rooms ---- */

static void room_open_done(void *ud, int status, const struct ledger_room_open_reply *r)
{
    struct pending *p = ud;
    if (!ledger_failed(p, status)) {
        struct http_req *h = p->h;
        if (!r->accepted) {
            error_status(h, 409, PROTO_ERR_BAD_REQUEST,
                         "the room is live with another creator; close it first");
        } else {
            struct proto_buf b;
            proto_buf_init(&b, 0);
            proto_buf_puts(&b, "{\"room\":");
            proto_buf_json_cstr(&b, p->room);
            proto_buf_puts(&b, ",\"live\":true,\"creator\":{\"id\":");
            proto_buf_json_cstr(&b, p->creator_id);
            proto_buf_puts(&b, ",\"name\":");
            proto_buf_json_cstr(&b, p->name);
            proto_buf_printf(&b, "},\"session\":%lld,\"opened\":%s}", r->session,
                             r->opened ? "true" : "false");
            http_respond_buf(h, 200, &b);
            proto_buf_cleanup(&b);
            struct room *room = rooms_get(p->app, p->room, false);
            if (room) {
                room->live = true;
            }
        }
    }
    free(p);
}

static int room_open(struct http_req *h, const char *room)
{
    if (!require_service(h) || !body_fits(h)) {
        return 0;
    }
    struct httpapi_room_open o;
    const char *detail;
    enum proto_err e = httpapi_parse_room_open(h->body, h->body_len, &o, &detail);
    if (e != PROTO_OK) {
        http_error(h, e, detail);
        return 0;
    }
    struct pending *p = pending_new(h->app, NULL, h);
    if (!p) {
        http_error(h, PROTO_ERR_INTERNAL, "out of memory");
        return 0;
    }
    snprintf(p->room, sizeof(p->room), "%s", room);
    snprintf(p->creator_id, sizeof(p->creator_id), "%s", o.creator_id);
    snprintf(p->name, sizeof(p->name), "%s", o.creator_name);
    struct ledger_room_open_req req = {.room = room,
                                       .creator_id = o.creator_id,
                                       .creator_name = o.creator_name,
                                       .title = o.has_title ? o.title : NULL};
    return started(h, p, ledger_room_open(h->app->ledger, &req, room_open_done, p, NULL));
}

static void room_close_done(void *ud, int status, const struct ledger_room_close_reply *r)
{
    struct pending *p = ud;
    if (status == 0 && r->found) {
        flush_request(p->app); /* the room's pending totals are settled now (SPEC 5) */
    }
    if (!ledger_failed(p, status)) {
        struct http_req *h = p->h;
        if (!r->found) {
            http_error(h, PROTO_ERR_NOT_FOUND, "no such room");
        } else {
            struct proto_buf b;
            proto_buf_init(&b, 0);
            proto_buf_puts(&b, "{\"room\":");
            proto_buf_json_cstr(&b, p->room);
            proto_buf_printf(&b, ",\"live\":false,\"closed\":%s}", r->closed ? "true" : "false");
            http_respond_buf(h, 200, &b);
            proto_buf_cleanup(&b);
        }
    }
    free(p);
}

static int room_close(struct http_req *h, const char *room)
{
    if (!require_service(h)) {
        return 0;
    }
    struct pending *p = pending_new(h->app, NULL, h);
    if (!p) {
        http_error(h, PROTO_ERR_INTERNAL, "out of memory");
        return 0;
    }
    snprintf(p->room, sizeof(p->room), "%s", room);
    /* Open combos end first (their combo_end precedes room_closed on the same connection). */
    rooms_combo_sweep(h->app, room, true);
    return started(h, p, ledger_room_close(h->app->ledger, room, room_close_done, p, NULL));
}

static void room_info_done(void *ud, int status, const struct ledger_room_info_reply *r)
{
    struct pending *p = ud;
    if (!ledger_failed(p, status)) {
        struct http_req *h = p->h;
        if (!r->found) {
            http_error(h, PROTO_ERR_NOT_FOUND, "no such room");
        } else {
            struct proto_buf b;
            proto_buf_init(&b, 0);
            proto_buf_puts(&b, "{\"room\":");
            proto_buf_json_cstr(&b, p->room);
            proto_buf_printf(&b, ",\"live\":%s,\"creator\":{\"id\":", r->live ? "true" : "false");
            proto_buf_json_cstr(&b, r->creator_id);
            proto_buf_puts(&b, ",\"name\":");
            proto_buf_json_cstr(&b, r->creator_name);
            proto_buf_puts(&b, "},\"title\":");
            proto_buf_json_cstr(&b, r->title);
            proto_buf_printf(&b,
                             ",\"viewers\":%lld,\"seq\":%lld,\"session\":%lld,"
                             "\"totals\":{\"gifts\":%lld,\"coins\":%lld,\"diamonds\":%lld},"
                             "\"top\":[",
                             r->viewers, r->seq, r->session, r->gifts, r->coins, r->diamonds);
            for (size_t i = 0; i < r->ntop; i++) {
                proto_buf_puts(&b, i ? ",{\"id\":" : "{\"id\":");
                proto_buf_json_cstr(&b, r->top[i].id);
                proto_buf_puts(&b, ",\"name\":"); /* stored as JSON text by publish */
                proto_buf_puts(&b, r->top[i].name_json);
                proto_buf_printf(&b, ",\"coins\":%lld}", r->top[i].coins);
            }
            proto_buf_puts(&b, "]}");
            http_respond_buf(h, 200, &b);
            proto_buf_cleanup(&b);
        }
    }
    free(p);
}

static int room_info(struct http_req *h, const char *room)
{
    struct pending *p = pending_new(h->app, NULL, h);
    if (!p) {
        http_error(h, PROTO_ERR_INTERNAL, "out of memory");
        return 0;
    }
    snprintf(p->room, sizeof(p->room), "%s", room);
    int rc = ledger_room_info(h->app->ledger, room, h->app->cfg.rooms_leaderboard_size,
                              room_info_done, p, NULL);
    return started(h, p, rc);
}

/* ---- money ---- */

static void recharge_done(void *ud, int status, const struct ledger_recharge_reply *r)
{
    struct pending *p = ud;
    if (!ledger_failed(p, status)) {
        struct http_req *h = p->h;
        struct proto_buf b;
        proto_buf_init(&b, 0);
        proto_buf_puts(&b, "{\"user\":");
        proto_buf_json_cstr(&b, p->sub);
        proto_buf_puts(&b, ",\"payment_id\":");
        proto_buf_json_cstr(&b, p->id);
        proto_buf_printf(&b, ",\"credited\":%lld,\"balance\":%lld,\"duplicate\":%s}",
                         r->credited, r->balance, r->duplicate ? "true" : "false");
        http_respond_buf(h, 200, &b);
        proto_buf_cleanup(&b);
    }
    free(p);
}

static int recharge(struct http_req *h)
{
    if (!require_service(h) || !body_fits(h)) {
        return 0;
    }
    struct httpapi_recharge r;
    const char *detail;
    enum proto_err e = httpapi_parse_recharge(h->body, h->body_len, h->app->catalog, &r, &detail);
    if (e != PROTO_OK) {
        http_error(h, e, detail);
        return 0;
    }
    struct pending *p = pending_new(h->app, NULL, h);
    if (!p) {
        http_error(h, PROTO_ERR_INTERNAL, "out of memory");
        return 0;
    }
    snprintf(p->sub, sizeof(p->sub), "%s", r.user);
    snprintf(p->id, sizeof(p->id), "%s", r.payment_id);
    struct ledger_recharge_req req = {.user = r.user, .payment_id = r.payment_id, .coins = r.coins};
    return started(h, p, ledger_recharge(h->app->ledger, &req, recharge_done, p, NULL));
}

static void balance_done(void *ud, int status, const struct ledger_balance_reply *r)
{
    struct pending *p = ud;
    if (!ledger_failed(p, status)) {
        struct http_req *h = p->h;
        struct proto_buf b;
        proto_buf_init(&b, 0);
        proto_buf_puts(&b, "{\"user\":");
        proto_buf_json_cstr(&b, p->sub);
        proto_buf_printf(&b, ",\"coins\":%lld,\"diamonds\":%lld}", r->coins, r->diamonds);
        http_respond_buf(h, 200, &b);
        proto_buf_cleanup(&b);
    }
    free(p);
}

static int balance(struct http_req *h, const char *user)
{
    if (!require_user_or_service(h, user)) {
        return 0;
    }
    struct pending *p = pending_new(h->app, NULL, h);
    if (!p) {
        http_error(h, PROTO_ERR_INTERNAL, "out of memory");
        return 0;
    }
    snprintf(p->sub, sizeof(p->sub), "%s", user);
    return started(h, p, ledger_balance(h->app->ledger, user, balance_done, p, NULL));
}

static void budget_done(void *ud, int status, const struct ledger_budget_reply *r)
{
    struct pending *p = ud;
    if (!ledger_failed(p, status)) {
        struct http_req *h = p->h;
        struct proto_buf b;
        proto_buf_init(&b, 0);
        proto_buf_puts(&b, "{\"user\":");
        proto_buf_json_cstr(&b, p->sub);
        if (!r->capped) {
            proto_buf_puts(&b, ",\"daily_coins\":null");
        } else {
            proto_buf_printf(&b, ",\"daily_coins\":%lld", r->daily_coins);
        }
        proto_buf_printf(&b, ",\"spent_today\":%lld}", r->spent_today);
        http_respond_buf(h, 200, &b);
        proto_buf_cleanup(&b);
    }
    free(p);
}

static int budget(struct http_req *h, const char *user)
{
    if (!require_user_or_service(h, user)) {
        return 0;
    }
    struct ledger_budget_req req = {.user = user, .op = LEDGER_BUDGET_GET};
    if (h->method == HTTPAPI_PUT) {
        struct httpapi_budget b;
        const char *detail;
        if (!body_fits(h)) {
            return 0;
        }
        enum proto_err e = httpapi_parse_budget(h->body, h->body_len, &b, &detail);
        if (e != PROTO_OK) {
            http_error(h, e, detail);
            return 0;
        }
        req.op = b.clear ? LEDGER_BUDGET_CLEAR : LEDGER_BUDGET_SET;
        req.daily_coins = b.daily_coins;
    }
    struct pending *p = pending_new(h->app, NULL, h);
    if (!p) {
        http_error(h, PROTO_ERR_INTERNAL, "out of memory");
        return 0;
    }
    snprintf(p->sub, sizeof(p->sub), "%s", user);
    return started(h, p, ledger_budget(h->app->ledger, &req, budget_done, p, NULL));
}

/* ---- dispatch ---- */

/* Answers 200 with j (steals it; NULL, out of memory, answers internal). */
static void respond_new_json(struct http_req *h, char *j)
{
    if (!j) {
        http_error(h, PROTO_ERR_INTERNAL, "out of memory");
        return;
    }
    http_respond(h, 200, j, strlen(j));
    free(j);
}

int http_dispatch(struct http_req *h)
{
    struct app *app = h->app;
    if (!app || h->stage) {
        return 0;
    }
    char id[65];
    switch (httpapi_route(h->method, h->path, id)) {
    case HTTPAPI_HEALTHZ:
        http_respond(h, 200, "{\"status\":\"ok\"}", 15);
        return 0;
    case HTTPAPI_READYZ:
        if (ledger_ready(app->ledger) && !app->shutting_down) {
            http_respond(h, 200, "{\"status\":\"ready\"}", 18);
        } else {
            http_error(h, PROTO_ERR_LEDGER_UNAVAILABLE,
                       app->shutting_down ? "shutting down" : "redis is not answering");
        }
        return 0;
    case HTTPAPI_METRICS: {
        struct proto_buf b;
        proto_buf_init(&b, 0);
        metrics_render(app, &b);
        respond_type(h, 200, "text/plain; version=0.0.4", proto_buf_text(&b), b.len);
        proto_buf_cleanup(&b);
        return 0;
    }
    case HTTPAPI_GIFTS:
        respond_new_json(h, gifts_catalog_json(app->catalog, ledger_now_ms()));
        return 0;
    case HTTPAPI_PACKAGES:
        respond_new_json(h, gifts_packages_json(app->catalog));
        return 0;
    case HTTPAPI_RECHARGE:
        return recharge(h);
    case HTTPAPI_ROOM_INFO:
        return room_info(h, id);
    case HTTPAPI_ROOM_OPEN:
        return room_open(h, id);
    case HTTPAPI_ROOM_CLOSE:
        return room_close(h, id);
    case HTTPAPI_BALANCE:
        return balance(h, id);
    case HTTPAPI_BUDGET:
        return budget(h, id);
    case HTTPAPI_METHOD_NOT_ALLOWED:
        error_status(h, 405, PROTO_ERR_BAD_REQUEST, "method not allowed");
        return 0;
    case HTTPAPI_UPGRADE_REQUIRED:
        error_status(h, 426, PROTO_ERR_BAD_REQUEST, "WebSocket upgrade required");
        return 0;
    case HTTPAPI_BAD_ID:
        http_error(h, PROTO_ERR_BAD_REQUEST, "bad identifier in the path");
        return 0;
    case HTTPAPI_NOT_FOUND:
        break;
    }
    http_error(h, PROTO_ERR_NOT_FOUND, "no such resource");
    return 0;
}
