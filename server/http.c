/* http: the HTTP API of SPEC 5 — health, metrics, catalog, rooms, recharge, balance, budget. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
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

static void error_status(struct http_req *h, int status, enum proto_err e, const char *message);

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
            auth_jwt_verify(auth + 7, (size_t)n - 7, secret, strlen(secret), ledger_now_ms() / 1000,
                            &h->claims) < 0) {
            h->auth_bad = true;
        }
    }
    const char *over = lws_get_opaque_user_data(wsi); /* listener.c: over the limits */
    if (over) {
        error_status(h, 503, PROTO_ERR_RATE_LIMITED, over);
        return 0;
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
            (lws_get_opaque_user_data(wsi) &&
             lws_add_http_header_by_name(wsi, (const unsigned char *)"connection:",
                                         (const unsigned char *)"close", 5, &p, end)) ||
            lws_finalize_write_http_header(wsi, start, &p, end)) {
            return -1;
        }
        h->stage = 2;
        lws_callback_on_writable(wsi);
        return 0;
    }
    if (h->stage == 2) {
        int n =
            lws_write(wsi, (unsigned char *)h->resp + LWS_PRE, h->resp_len, LWS_WRITE_HTTP_FINAL);
        reset(h);
        if (n < 0 || lws_get_opaque_user_data(wsi)) {
            return -1; /* over the connection limits: the 503 ends the connection */
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

/* Answers a body that httpapi_parse_* refused (e, *detail) and returns true; false for
 * PROTO_OK. detail is read here, after the parse that sets it: as an argument it could be
 * read before the parse ran (C leaves the order of evaluation open; -O2 did exactly that). */
static bool body_refused(struct http_req *h, enum proto_err e, const char *const *detail)
{
    if (e == PROTO_OK) {
        return false;
    }
    http_error(h, e, *detail);
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
/* The pending request of an HTTP call that goes to Redis; NULL when out of memory (answered
 * 500). */
static struct pending *http_pending(struct http_req *h)
{
    struct pending *p = pending_new(h->app, NULL, h);
    if (!p) {
        http_error(h, PROTO_ERR_INTERNAL, "out of memory");
    }
    return p;
}

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
                rooms_opened(room);
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
    const char *detail = NULL;
    if (body_refused(h, httpapi_parse_room_open(h->body, h->body_len, &o, &detail), &detail)) {
        return 0;
    }
    struct pending *p = http_pending(h);
    if (!p) {
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
    struct pending *p = http_pending(h);
    if (!p) {
        return 0;
    }
    snprintf(p->room, sizeof(p->room), "%s", room);
    /* Open combos end first (their combo_end precedes room_closed on the same connection). */
    rooms_combo_sweep(h->app, room, true);
    return started(h, p, ledger_room_close(h->app->ledger, room, room_close_done, p, NULL));
}

/* The start of an answer about p's room: false (answered) when Redis failed or the room was
 * never opened; else b (initialised: the caller cleans it up) holds {"room":<room>. */
static bool room_answer(struct pending *p, int status, bool found, struct proto_buf *b)
{
    if (ledger_failed(p, status)) {
        return false;
    }
    if (!found) {
        http_error(p->h, PROTO_ERR_NOT_FOUND, "no such room");
        return false;
    }
    proto_buf_init(b, 0);
    proto_buf_puts(b, "{\"room\":");
    proto_buf_json_cstr(b, p->room);
    return true;
}

static void room_info_done(void *ud, int status, const struct ledger_room_info_reply *r)
{
    struct pending *p = ud;
    struct proto_buf b;
    if (room_answer(p, status, status == 0 && r->found, &b)) {
        struct http_req *h = p->h;
        proto_buf_printf(&b, ",\"live\":%s,\"creator\":{\"id\":", r->live ? "true" : "false");
        proto_buf_json_cstr(&b, r->creator_id);
        proto_buf_puts(&b, ",\"name\":");
        proto_buf_json_cstr(&b, r->creator_name);
        proto_buf_puts(&b, "},\"title\":");
        proto_buf_json_cstr(&b, r->title);
        proto_buf_printf(&b,
                         ",\"viewers\":%lld,\"seq\":%lld,\"epoch\":%lld,\"session\":%lld,"
                         "\"totals\":{\"gifts\":%lld,\"coins\":%lld,\"diamonds\":%lld},"
                         "\"top\":[",
                         r->viewers, r->seq, r->epoch, r->session, r->gifts, r->coins, r->diamonds);
        for (size_t i = 0; i < r->ntop; i++) {
            proto_buf_puts(&b, i ? ",{\"id\":" : "{\"id\":");
            proto_buf_json_cstr(&b, r->top[i].id);
            proto_buf_puts(&b, ",\"name\":"); /* stored as JSON text by publish */
            proto_buf_puts(&b, r->top[i].name_json);
            proto_buf_printf(&b, ",\"coins\":%lld}", r->top[i].coins);
        }
        proto_buf_puts(&b, "],\"goal\":");
        proto_buf_puts(&b, r->goal_json && r->goal_json[0] ? r->goal_json : "null");
        proto_buf_puts(&b, "}");
        http_respond_buf(h, 200, &b);
        proto_buf_cleanup(&b);
    }
    free(p);
}

static int room_info(struct http_req *h, const char *room)
{
    struct pending *p = http_pending(h);
    if (!p) {
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
        proto_buf_printf(&b, ",\"credited\":%lld,\"balance\":%lld,\"duplicate\":%s}", r->credited,
                         r->balance, r->duplicate ? "true" : "false");
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
    const char *detail = NULL;
    if (body_refused(h,
                     httpapi_parse_recharge(h->body, h->body_len, h->app->catalog, ledger_now_ms(),
                                            &r, &detail),
                     &detail)) {
        return 0;
    }
    struct pending *p = http_pending(h);
    if (!p) {
        return 0;
    }
    snprintf(p->sub, sizeof(p->sub), "%s", r.user);
    snprintf(p->id, sizeof(p->id), "%s", r.payment_id);
    struct ledger_recharge_req req = {
        .user = r.user, .payment_id = r.payment_id, .package = r.package, .coins = r.coins};
    return started(h, p, ledger_recharge(h->app->ledger, &req, recharge_done, p, NULL));
}

static void goal_done(void *ud, int status, const struct ledger_goal_reply *r)
{
    struct pending *p = ud;
    if (!ledger_failed(p, status)) {
        struct http_req *h = p->h;
        if (r->outcome == LEDGER_GOAL_NOT_LIVE) {
            error_status(h, 409, PROTO_ERR_ROOM_NOT_LIVE, "the room is not live"); /* SPEC 5 */
        } else if (r->outcome == LEDGER_GOAL_NOT_CREATOR) {
            http_error(h, PROTO_ERR_FORBIDDEN, "only the service or the room's creator");
        } else {
            struct proto_buf b;
            proto_buf_init(&b, 0);
            proto_buf_puts(&b, "{\"goal\":");
            proto_buf_puts(&b, r->goal_json);
            proto_buf_puts(&b, "}");
            http_respond_buf(h, 200, &b);
            proto_buf_cleanup(&b);
        }
    }
    free(p);
}

/* A room's creator's action (goal, overlay): a service token, or a viewer token that the
 * room's script checks against the creator; the body, when one is expected, within bounds.
 * *service says which. False when answered (401, 403, 413). */
static bool service_or_viewer(struct http_req *h, bool with_body, bool *service)
{
    if (!require_auth(h) || (with_body && !body_fits(h))) {
        return false;
    }
    *service = h->claims.role == AUTH_ROLE_SERVICE;
    if (!*service && h->claims.role != AUTH_ROLE_VIEWER) {
        http_error(h, PROTO_ERR_FORBIDDEN, "only the service or the room's creator");
        return false;
    }
    return true;
}

/* PUT (set) or DELETE (clear) /v1/rooms/{room}/goal: the service, or the room's creator (a
 * viewer token whose sub is the creator: the script checks it against the live session). */
static int goal(struct http_req *h, const char *room, bool clear)
{
    bool service = false;
    if (!service_or_viewer(h, !clear, &service)) {
        return 0;
    }
    struct httpapi_goal g = {0};
    const char *detail = NULL;
    if (!clear && body_refused(h, httpapi_parse_goal(h->body, h->body_len, &g, &detail), &detail)) {
        return 0;
    }
    if (!clear && g.gift[0] && !gifts_find(h->app->catalog, g.gift)) {
        http_error(h, PROTO_ERR_BAD_REQUEST, "gift: no such gift in the catalog");
        return 0;
    }
    struct proto_buf title;
    proto_buf_init(&title, 0);
    proto_buf_json_cstr(&title, g.title);
    struct pending *p = title.oom ? NULL : pending_new(h->app, NULL, h);
    if (!p) {
        proto_buf_cleanup(&title);
        http_error(h, PROTO_ERR_INTERNAL, "out of memory");
        return 0;
    }
    struct ledger_goal_req req = {.room = room,
                                  .clear = clear,
                                  .caller = service ? NULL : h->claims.sub,
                                  .gift = g.gift,
                                  .target = g.target,
                                  .title_json = proto_buf_text(&title)};
    int rc = started(h, p, ledger_goal(h->app->ledger, &req, goal_done, p, NULL));
    proto_buf_cleanup(&title);
    return rc;
}

static void reverse_done(void *ud, int status, const struct ledger_reverse_reply *r)
{
    struct pending *p = ud;
    if (!ledger_failed(p, status)) {
        struct http_req *h = p->h;
        if (r->outcome == LEDGER_REVERSE_NOT_FOUND) {
            http_error(h, PROTO_ERR_NOT_FOUND, "no recharge with this payment_id for this user");
        } else {
            struct proto_buf b;
            proto_buf_init(&b, 0);
            proto_buf_puts(&b, "{\"user\":");
            proto_buf_json_cstr(&b, p->sub);
            proto_buf_puts(&b, ",\"payment_id\":");
            proto_buf_json_cstr(&b, p->id);
            proto_buf_printf(&b, ",\"reversed\":%lld,\"balance\":%lld,\"duplicate\":%s}",
                             r->reversed, r->balance,
                             r->outcome == LEDGER_REVERSE_DUPLICATE ? "true" : "false");
            http_respond_buf(h, 200, &b);
            proto_buf_cleanup(&b);
        }
    }
    free(p);
}

static int reverse(struct http_req *h)
{
    if (!require_service(h) || !body_fits(h)) {
        return 0;
    }
    struct httpapi_reverse r;
    const char *detail = NULL;
    if (body_refused(h, httpapi_parse_reverse(h->body, h->body_len, &r, &detail), &detail)) {
        return 0;
    }
    struct proto_buf reason;
    proto_buf_init(&reason, 0);
    if (r.has_reason) {
        proto_buf_json_cstr(&reason, r.reason);
    }
    struct pending *p = reason.oom ? NULL : pending_new(h->app, NULL, h);
    if (!p) {
        proto_buf_cleanup(&reason);
        http_error(h, PROTO_ERR_INTERNAL, "out of memory");
        return 0;
    }
    snprintf(p->sub, sizeof(p->sub), "%s", r.user);
    snprintf(p->id, sizeof(p->id), "%s", r.payment_id);
    struct ledger_reverse_req req = {.user = r.user,
                                     .payment_id = r.payment_id,
                                     .reason_json = r.has_reason ? proto_buf_text(&reason) : NULL};
    int rc = started(h, p, ledger_reverse(h->app->ledger, &req, reverse_done, p, NULL));
    proto_buf_cleanup(&reason);
    return rc;
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
    struct pending *p = http_pending(h);
    if (!p) {
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
        if (!r->daily_capped) {
            proto_buf_puts(&b, ",\"daily_coins\":null");
        } else {
            proto_buf_printf(&b, ",\"daily_coins\":%lld", r->daily_coins);
        }
        if (!r->monthly_capped) {
            proto_buf_puts(&b, ",\"monthly_coins\":null");
        } else {
            proto_buf_printf(&b, ",\"monthly_coins\":%lld", r->monthly_coins);
        }
        proto_buf_printf(&b, ",\"spent_today\":%lld,\"spent_this_month\":%lld}", r->spent_today,
                         r->spent_this_month);
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
    struct ledger_budget_req req = {.user = user};
    if (h->method == HTTPAPI_PUT) {
        struct httpapi_budget b;
        const char *detail;
        if (!body_fits(h) ||
            body_refused(h, httpapi_parse_budget(h->body, h->body_len, &b, &detail), &detail)) {
            return 0;
        }
        req.daily = !b.daily.given  ? LEDGER_CAP_KEEP
                    : b.daily.clear ? LEDGER_CAP_CLEAR
                                    : LEDGER_CAP_SET;
        req.daily_coins = b.daily.coins;
        req.monthly = !b.monthly.given  ? LEDGER_CAP_KEEP
                      : b.monthly.clear ? LEDGER_CAP_CLEAR
                                        : LEDGER_CAP_SET;
        req.monthly_coins = b.monthly.coins;
    }
    struct pending *p = http_pending(h);
    if (!p) {
        return 0;
    }
    snprintf(p->sub, sizeof(p->sub), "%s", user);
    return started(h, p, ledger_budget(h->app->ledger, &req, budget_done, p, NULL));
}

static void transactions_done(void *ud, int status, const struct ledger_transactions_reply *r)
{
    struct pending *p = ud;
    if (!ledger_failed(p, status)) {
        struct proto_buf b;
        proto_buf_init(&b, 0);
        proto_buf_puts(&b, "{\"user\":");
        proto_buf_json_cstr(&b, p->sub);
        proto_buf_puts(&b, ",\"transactions\":[");
        for (size_t i = 0; i < r->n; i++) {
            if (i) {
                proto_buf_puts(&b, ",");
            }
            proto_buf_append(&b, r->entries[i], r->lens[i]); /* JSON the scripts wrote */
        }
        if (r->next_before < 0) {
            proto_buf_puts(&b, "],\"next_before\":null}");
        } else {
            proto_buf_printf(&b, "],\"next_before\":%lld}", r->next_before);
        }
        http_respond_buf(p->h, 200, &b);
        proto_buf_cleanup(&b);
    }
    free(p);
}

/* A query argument "name=" as a non-negative integer up to max: 1 read, 0 absent, -1 bad. */
static int query_num(struct http_req *h, const char *name, long long max, long long *out)
{
    char buf[64];
    const char *v = lws_get_urlarg_by_name(h->wsi, name, buf, sizeof(buf));
    if (!v) {
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (!*v || *end || errno || n < 0 || n > max || !(*v >= '0' && *v <= '9')) {
        return -1;
    }
    *out = n;
    return 1;
}

/* The query's limit= (1..1000) into *limit, kept when absent; false (answered 400) when bad. */
static bool query_limit(struct http_req *h, long long *limit)
{
    long long n = 0;
    int got = query_num(h, "limit=", 1000, &n);
    if (got < 0 || (got > 0 && n < 1)) {
        http_error(h, PROTO_ERR_BAD_REQUEST, "limit: must be an integer from 1 to 1000");
        return false;
    }
    if (got > 0) {
        *limit = n;
    }
    return true;
}

static int transactions(struct http_req *h, const char *user)
{
    if (!require_user_or_service(h, user)) {
        return 0;
    }
    struct ledger_transactions_req req = {.user = user, .limit = 50, .before = -1};
    long long limit = req.limit;
    if (!query_limit(h, &limit)) {
        return 0;
    }
    req.limit = (long)limit;
    if (query_num(h, "before=", INT64_MAX / 2, &req.before) < 0) {
        http_error(h, PROTO_ERR_BAD_REQUEST, "before: must be a ts_ms (a non-negative integer)");
        return 0;
    }
    struct pending *p = http_pending(h);
    if (!p) {
        return 0;
    }
    snprintf(p->sub, sizeof(p->sub), "%s", user);
    return started(h, p, ledger_transactions(h->app->ledger, &req, transactions_done, p, NULL));
}

/* ---- room events and overlay controls (SPEC 3.4, 5) ---- */

static void room_events_done(void *ud, int status, const struct ledger_room_events_reply *r)
{
    struct pending *p = ud;
    struct proto_buf b;
    if (room_answer(p, status, status == 0 && r->found, &b)) {
        struct http_req *h = p->h;
        proto_buf_printf(&b, ",\"epoch\":%lld,\"seq\":%lld,\"events\":[", r->epoch, r->seq);
        for (size_t i = 0; i < r->nevents; i++) {
            if (i) {
                proto_buf_puts(&b, ",");
            }
            proto_buf_append(&b, r->events[i], r->lens[i]);
        }
        proto_buf_printf(&b, "],\"complete\":%s}", r->complete ? "true" : "false");
        http_respond_buf(h, 200, &b);
        proto_buf_cleanup(&b);
    }
    free(p);
}

/* GET /v1/rooms/{room}/events?since_seq=S&limit=N: anyone. */
static int room_events(struct http_req *h, const char *room)
{
    long long since = 0, limit = 1000;
    if (query_num(h, "since_seq=", INT64_MAX / 2, &since) < 0) {
        http_error(h, PROTO_ERR_BAD_REQUEST, "since_seq: must be an integer >= 0");
        return 0;
    }
    if (!query_limit(h, &limit)) {
        return 0;
    }
    struct pending *p = http_pending(h);
    if (!p) {
        return 0;
    }
    snprintf(p->room, sizeof(p->room), "%s", room);
    return started(
        h, p,
        ledger_room_events(h->app->ledger, room, since, (long)limit, room_events_done, p, NULL));
}

static void overlay_done(void *ud, int status, const struct ledger_overlay_reply *r)
{
    struct pending *p = ud;
    if (!ledger_failed(p, status)) {
        struct http_req *h = p->h;
        if (r->outcome == LEDGER_OVERLAY_NO_ROOM) {
            http_error(h, PROTO_ERR_NOT_FOUND, "no such room");
        } else if (r->outcome == LEDGER_OVERLAY_NOT_CREATOR) {
            http_error(h, PROTO_ERR_FORBIDDEN, "only the service or the room's creator");
        } else if (r->outcome == LEDGER_OVERLAY_NOT_KEPT) {
            http_error(h, PROTO_ERR_NOT_FOUND, "seq: no such event is kept in the room's history");
        } else {
            /* The answer is the overlay event the room's overlays were sent. */
            http_respond(h, 200, r->event_json, strlen(r->event_json));
        }
    }
    free(p);
}

/* POST /v1/rooms/{room}/overlay: the service, or the room's creator. */
static int overlay(struct http_req *h, const char *room)
{
    bool service = false;
    if (!service_or_viewer(h, true, &service)) {
        return 0;
    }
    struct httpapi_overlay o = {0};
    const char *detail = NULL;
    if (body_refused(h, httpapi_parse_overlay(h->body, h->body_len, &o, &detail), &detail)) {
        return 0;
    }
    struct pending *p = http_pending(h);
    if (!p) {
        return 0;
    }
    struct ledger_overlay_req req = {.room = room,
                                     .action = (enum ledger_overlay_action)(
                                         LEDGER_OVERLAY_SKIP + (o.action - HTTPAPI_OVERLAY_SKIP)),
                                     .seq = o.seq,
                                     .caller = service ? NULL : h->claims.sub};
    return started(h, p, ledger_overlay(h->app->ledger, &req, overlay_done, p, NULL));
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
        respond_new_json(h, gifts_packages_json(app->catalog, ledger_now_ms()));
        return 0;
    case HTTPAPI_RECHARGE:
        return recharge(h);
    case HTTPAPI_REVERSE:
        return reverse(h);
    case HTTPAPI_GOAL_SET:
        return goal(h, id, false);
    case HTTPAPI_GOAL_CLEAR:
        return goal(h, id, true);
    case HTTPAPI_ROOM_INFO:
        return room_info(h, id);
    case HTTPAPI_ROOM_EVENTS:
        return room_events(h, id);
    case HTTPAPI_OVERLAY:
        return overlay(h, id);
    case HTTPAPI_ROOM_OPEN:
        return room_open(h, id);
    case HTTPAPI_ROOM_CLOSE:
        return room_close(h, id);
    case HTTPAPI_BALANCE:
        return balance(h, id);
    case HTTPAPI_BUDGET:
        return budget(h, id);
    case HTTPAPI_TRANSACTIONS:
        return transactions(h, id);
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
