/* http: the HTTP API of SPEC 5 — health, metrics, catalog, rooms, recharge, balance, budget. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "server/server.h"

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
        h->method = HTTP_GET;
    } else if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI)) {
        h->method = HTTP_POST;
    } else if (lws_hdr_total_length(wsi, WSI_TOKEN_PUT_URI)) {
        h->method = HTTP_PUT;
    } else if (lws_hdr_total_length(wsi, WSI_TOKEN_DELETE_URI)) {
        h->method = HTTP_DELETE;
    } else {
        h->method = HTTP_OTHER;
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
    if ((h->method == HTTP_POST || h->method == HTTP_PUT) && content_length > 0) {
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

/* Copies the path segment after prefix up to the next '/' or the end into out; the rest of
 * the path (from that '/') is returned. NULL when the segment is not a valid identifier. */
static const char *path_segment(const char *path, const char *prefix, char *out, size_t outlen)
{
    size_t pl = strlen(prefix);
    if (strncmp(path, prefix, pl) != 0) {
        return NULL;
    }
    const char *seg = path + pl;
    size_t n = strcspn(seg, "/");
    if (n == 0 || n >= outlen || !proto_valid_id(seg, n)) {
        return NULL;
    }
    memcpy(out, seg, n);
    out[n] = '\0';
    return seg + n;
}

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

static json_t *body_json(struct http_req *h)
{
    if (h->too_large) {
        http_error(h, PROTO_ERR_TOO_LARGE, "request body too large");
        return NULL;
    }
    json_error_t jerr;
    json_t *j = h->body ? json_loadb(h->body, h->body_len, 0, &jerr) : NULL;
    if (!j || !json_is_object(j)) {
        json_decref(j);
        http_error(h, PROTO_ERR_BAD_JSON, "the body is not a JSON object");
        return NULL;
    }
    return j;
}

static bool ledger_failed(struct pending *p, int status, const redisReply *r)
{
    if (!p->h) {
        return true;
    }
    if (status < 0 || !r || r->type == REDIS_REPLY_ERROR) {
        http_error(p->h, status == 0 ? PROTO_ERR_INTERNAL : PROTO_ERR_LEDGER_UNAVAILABLE,
                   status == 0 && r ? "redis script error" : NULL);
        return true;
    }
    return false;
}

static int submit_or_fail(struct http_req *h, struct pending *p, int script, int argc,
                          const char **argv)
{
    int rc = script >= 0 ? pending_script(p, (enum ledger_script)script, argc, argv, NULL)
                         : pending_command(p, argc, argv, NULL);
    if (rc < 0) {
        http_error(h, PROTO_ERR_LEDGER_UNAVAILABLE, NULL);
    }
    return 0;
}

/* ---- rooms ---- */

static void room_open_done(struct pending *p, int status, const redisReply *r)
{
    if (!ledger_failed(p, status, r)) {
        struct http_req *h = p->h;
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 2) {
            http_error(h, PROTO_ERR_INTERNAL, "unexpected reply");
        } else if (r->element[0]->integer == 0) {
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
            proto_buf_printf(&b, "},\"session\":%lld,\"opened\":%s}", r->element[1]->integer,
                             r->elements > 2 && r->element[2]->integer ? "true" : "false");
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
    if (!require_service(h)) {
        return 0;
    }
    json_t *j = body_json(h);
    if (!j) {
        return 0;
    }
    json_t *creator = json_object_get(j, "creator");
    const char *cid = json_string_value(json_object_get(creator, "id"));
    const char *cname = json_string_value(json_object_get(creator, "name"));
    json_t *jt = json_object_get(j, "title");
    const char *title = json_string_value(jt);
    if (!cid || !proto_valid_id(cid, strlen(cid))) {
        http_error(h, PROTO_ERR_BAD_REQUEST, "creator.id: must be an identifier");
    } else if (!cname || !proto_valid_name(cname, strlen(cname))) {
        http_error(h, PROTO_ERR_BAD_REQUEST, "creator.name: must be 1-64 bytes of UTF-8");
    } else if (jt && !json_is_null(jt) && (!title || strlen(title) > 200)) {
        http_error(h, PROTO_ERR_BAD_REQUEST, "title: must be a string of at most 200 bytes");
    } else {
        struct pending *p = pending_new(h->app, NULL, h, room_open_done);
        if (!p) {
            http_error(h, PROTO_ERR_INTERNAL, "out of memory");
        } else {
            snprintf(p->room, sizeof(p->room), "%s", room);
            snprintf(p->creator_id, sizeof(p->creator_id), "%s", cid);
            snprintf(p->name, sizeof(p->name), "%s", cname);
            struct room_open_args a;
            rooms_open_args_init(&a, room, cid, cname, title);
            submit_or_fail(h, p, LEDGER_SCRIPT_ROOM_OPEN, a.argc, a.argv);
            rooms_open_args_cleanup(&a);
        }
    }
    json_decref(j);
    return 0;
}

static void room_close_done(struct pending *p, int status, const redisReply *r)
{
    if (status == 0 && r->type == REDIS_REPLY_INTEGER && r->integer >= 0) {
        flush_request(p->app); /* the room's pending totals are settled now (SPEC 5) */
    }
    if (!ledger_failed(p, status, r)) {
        struct http_req *h = p->h;
        if (r->type != REDIS_REPLY_INTEGER) {
            http_error(h, PROTO_ERR_INTERNAL, "unexpected reply");
        } else if (r->integer < 0) {
            http_error(h, PROTO_ERR_NOT_FOUND, "no such room");
        } else {
            struct proto_buf b;
            proto_buf_init(&b, 0);
            proto_buf_puts(&b, "{\"room\":");
            proto_buf_json_cstr(&b, p->room);
            proto_buf_printf(&b, ",\"live\":false,\"closed\":%s}",
                             r->integer == 1 ? "true" : "false");
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
    struct pending *p = pending_new(h->app, NULL, h, room_close_done);
    if (!p) {
        http_error(h, PROTO_ERR_INTERNAL, "out of memory");
        return 0;
    }
    snprintf(p->room, sizeof(p->room), "%s", room);
    /* Open combos end first (their combo_end precedes room_closed on the same connection). */
    rooms_combo_sweep(h->app, room, "all");
    char k1[160], ch[128], now[24], ev[128];
    rooms_key(k1, sizeof(k1), room, "meta");
    rooms_channel(ch, sizeof(ch), room);
    snprintf(now, sizeof(now), "%lld", (long long)ledger_now_ms());
    snprintf(ev, sizeof(ev), "{\"type\":\"room_closed\",\"room\":\"%s\"}", room);
    const char *argv[] = {"1", k1, now, ch, ev};
    return submit_or_fail(h, p, LEDGER_SCRIPT_ROOM_CLOSE, 5, argv);
}

static void room_info_done(struct pending *p, int status, const redisReply *r)
{
    if (!ledger_failed(p, status, r)) {
        struct http_req *h = p->h;
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
            http_error(h, PROTO_ERR_INTERNAL, "unexpected reply");
        } else if (r->element[0]->integer < 0 || r->elements < 11) {
            http_error(h, PROTO_ERR_NOT_FOUND, "no such room");
        } else {
            redisReply **e = r->element;
            struct proto_buf b;
            proto_buf_init(&b, 0);
            proto_buf_puts(&b, "{\"room\":");
            proto_buf_json_cstr(&b, p->room);
            proto_buf_printf(&b, ",\"live\":%s,\"creator\":{\"id\":",
                             e[0]->integer == 1 ? "true" : "false");
            proto_buf_json_cstr(&b, e[1]->str);
            proto_buf_puts(&b, ",\"name\":");
            proto_buf_json_cstr(&b, e[2]->str);
            proto_buf_puts(&b, "},\"title\":");
            proto_buf_json_cstr(&b, e[3]->str);
            proto_buf_printf(&b,
                             ",\"viewers\":%lld,\"seq\":%lld,\"session\":%lld,"
                             "\"totals\":{\"gifts\":%lld,\"coins\":%lld,\"diamonds\":%lld},"
                             "\"top\":[",
                             e[7]->integer, e[8]->integer, e[9]->integer, e[4]->integer,
                             e[5]->integer, e[6]->integer);
            redisReply *top = e[10];
            for (size_t i = 0; top->type == REDIS_REPLY_ARRAY && i + 2 < top->elements; i += 3) {
                proto_buf_puts(&b, i ? ",{\"id\":" : "{\"id\":");
                proto_buf_json_cstr(&b, top->element[i]->str);
                proto_buf_puts(&b, ",\"name\":"); /* stored as JSON text by publish */
                proto_buf_puts(&b, top->element[i + 2]->str);
                proto_buf_printf(&b, ",\"coins\":%lld}", strtoll(top->element[i + 1]->str, NULL, 10));
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
    struct pending *p = pending_new(h->app, NULL, h, room_info_done);
    if (!p) {
        http_error(h, PROTO_ERR_INTERNAL, "out of memory");
        return 0;
    }
    snprintf(p->room, sizeof(p->room), "%s", room);
    char k[6][160], now[24], top[16];
    const char *suffix[6] = {"meta", "totals", "lb", "lbnames", "presence", "seq"};
    for (int i = 0; i < 6; i++) {
        rooms_key(k[i], sizeof(k[i]), room, suffix[i]);
    }
    snprintf(now, sizeof(now), "%lld", (long long)ledger_now_ms());
    snprintf(top, sizeof(top), "%ld", h->app->cfg.rooms_leaderboard_size);
    const char *argv[] = {"6", k[0], k[1], k[2], k[3], k[4], k[5], now, top};
    return submit_or_fail(h, p, LEDGER_SCRIPT_ROOM_INFO, 9, argv);
}

/* ---- money ---- */

static void recharge_done(struct pending *p, int status, const redisReply *r)
{
    if (!ledger_failed(p, status, r)) {
        struct http_req *h = p->h;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
            http_error(h, PROTO_ERR_INTERNAL, "unexpected reply");
        } else {
            struct proto_buf b;
            proto_buf_init(&b, 0);
            proto_buf_puts(&b, "{\"user\":");
            proto_buf_json_cstr(&b, p->sub);
            proto_buf_puts(&b, ",\"payment_id\":");
            proto_buf_json_cstr(&b, p->id);
            proto_buf_printf(&b, ",\"credited\":%lld,\"balance\":%lld,\"duplicate\":%s}",
                             r->element[1]->integer, r->element[2]->integer,
                             r->element[0]->integer == 1 ? "false" : "true");
            http_respond_buf(h, 200, &b);
            proto_buf_cleanup(&b);
        }
    }
    free(p);
}

static int recharge(struct http_req *h)
{
    if (!require_service(h)) {
        return 0;
    }
    json_t *j = body_json(h);
    if (!j) {
        return 0;
    }
    const char *pay = json_string_value(json_object_get(j, "payment_id"));
    const char *user = json_string_value(json_object_get(j, "user"));
    json_t *jpkg = json_object_get(j, "package");
    json_t *jcoins = json_object_get(j, "coins");
    long long coins = 0;
    const struct gifts_package *pkg = NULL;
    if (!pay || !proto_valid_id(pay, strlen(pay))) {
        http_error(h, PROTO_ERR_BAD_REQUEST, "payment_id: must be an identifier");
    } else if (!user || !proto_valid_id(user, strlen(user))) {
        http_error(h, PROTO_ERR_BAD_REQUEST, "user: must be an identifier");
    } else if ((jpkg != NULL) == (jcoins != NULL)) {
        http_error(h, PROTO_ERR_BAD_REQUEST, "give exactly one of package and coins");
    } else if (jpkg && (!json_is_string(jpkg) ||
                        !(pkg = gifts_find_package(h->app->catalog, json_string_value(jpkg))))) {
        http_error(h, PROTO_ERR_BAD_REQUEST, "package: no such package");
    } else if (jcoins && (!json_is_integer(jcoins) || json_integer_value(jcoins) < 1 ||
                          json_integer_value(jcoins) > 1000000000)) {
        http_error(h, PROTO_ERR_BAD_REQUEST, "coins: must be an integer from 1 to 1000000000");
    } else {
        coins = pkg ? pkg->coins : json_integer_value(jcoins);
        struct pending *p = pending_new(h->app, NULL, h, recharge_done);
        if (!p) {
            http_error(h, PROTO_ERR_INTERNAL, "out of memory");
        } else {
            snprintf(p->sub, sizeof(p->sub), "%s", user);
            snprintf(p->id, sizeof(p->id), "%s", pay);
            char kbal[200], kpay[300], kind[100], ktot[100], scoins[24];
            user_key(h->app, kbal, sizeof(kbal), "bal", user);
            snprintf(kind, sizeof(kind), "pay:%s", pay);
            user_key(h->app, kpay, sizeof(kpay), kind, user);
            partition_prefix(ktot, sizeof(ktot) - 12,
                             ledger_partition(user, h->app->cfg.ledger_partitions));
            strcat(ktot, "recharged");
            snprintf(scoins, sizeof(scoins), "%lld", coins);
            const char *argv[] = {"3", kbal, kpay, ktot, scoins};
            submit_or_fail(h, p, LEDGER_SCRIPT_RECHARGE, 5, argv);
        }
    }
    json_decref(j);
    return 0;
}

static void balance_done(struct pending *p, int status, const redisReply *r)
{
    if (!ledger_failed(p, status, r)) {
        struct http_req *h = p->h;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            http_error(h, PROTO_ERR_INTERNAL, "unexpected reply");
        } else {
            struct proto_buf b;
            proto_buf_init(&b, 0);
            proto_buf_puts(&b, "{\"user\":");
            proto_buf_json_cstr(&b, p->sub);
            proto_buf_printf(&b, ",\"coins\":%lld,\"diamonds\":%lld}",
                             r->element[0]->str ? strtoll(r->element[0]->str, NULL, 10) : 0,
                             r->element[1]->str ? strtoll(r->element[1]->str, NULL, 10) : 0);
            http_respond_buf(h, 200, &b);
            proto_buf_cleanup(&b);
        }
    }
    free(p);
}

static int balance(struct http_req *h, const char *user)
{
    if (!require_user_or_service(h, user)) {
        return 0;
    }
    struct pending *p = pending_new(h->app, NULL, h, balance_done);
    if (!p) {
        http_error(h, PROTO_ERR_INTERNAL, "out of memory");
        return 0;
    }
    snprintf(p->sub, sizeof(p->sub), "%s", user);
    char kbal[200], kdia[200];
    user_key(h->app, kbal, sizeof(kbal), "bal", user);
    user_key(h->app, kdia, sizeof(kdia), "dia", user);
    const char *argv[] = {"MGET", kbal, kdia};
    return submit_or_fail(h, p, -1, 3, argv);
}

static void budget_done(struct pending *p, int status, const redisReply *r)
{
    if (!ledger_failed(p, status, r)) {
        struct http_req *h = p->h;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            http_error(h, PROTO_ERR_INTERNAL, "unexpected reply");
        } else {
            struct proto_buf b;
            proto_buf_init(&b, 0);
            proto_buf_puts(&b, "{\"user\":");
            proto_buf_json_cstr(&b, p->sub);
            if (r->element[0]->integer < 0) {
                proto_buf_puts(&b, ",\"daily_coins\":null");
            } else {
                proto_buf_printf(&b, ",\"daily_coins\":%lld", r->element[0]->integer);
            }
            proto_buf_printf(&b, ",\"spent_today\":%lld}", r->element[1]->integer);
            http_respond_buf(h, 200, &b);
            proto_buf_cleanup(&b);
        }
    }
    free(p);
}

/* "YYYYMMDD" of the current UTC day: the daily budget's period. */
static void utc_day(char *out, size_t len)
{
    time_t t = (time_t)(ledger_now_ms() / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, "%Y%m%d", &tm);
}

void gift_spent_key(const struct app *app, char *out, size_t len, const char *sub)
{
    char day[16], kind[32];
    utc_day(day, sizeof(day));
    snprintf(kind, sizeof(kind), "spent:%s", day);
    user_key(app, out, len, kind, sub);
}

static int budget(struct http_req *h, const char *user)
{
    if (!require_user_or_service(h, user)) {
        return 0;
    }
    char cap[24] = "?";
    if (h->method == HTTP_PUT) {
        json_t *j = body_json(h);
        if (!j) {
            return 0;
        }
        json_t *d = json_object_get(j, "daily_coins");
        if (!d || (!json_is_null(d) && (!json_is_integer(d) || json_integer_value(d) < 0 ||
                                        json_integer_value(d) > 1000000000000LL))) {
            json_decref(j);
            http_error(h, PROTO_ERR_BAD_REQUEST,
                       "daily_coins: must be null or an integer from 0 to 1000000000000");
            return 0;
        }
        if (json_is_null(d)) {
            cap[0] = '\0';
        } else {
            snprintf(cap, sizeof(cap), "%lld", (long long)json_integer_value(d));
        }
        json_decref(j);
    }
    struct pending *p = pending_new(h->app, NULL, h, budget_done);
    if (!p) {
        http_error(h, PROTO_ERR_INTERNAL, "out of memory");
        return 0;
    }
    snprintf(p->sub, sizeof(p->sub), "%s", user);
    char kb[200], ks[200];
    user_key(h->app, kb, sizeof(kb), "budget", user);
    gift_spent_key(h->app, ks, sizeof(ks), user);
    const char *argv[] = {"2", kb, ks, cap};
    return submit_or_fail(h, p, LEDGER_SCRIPT_BUDGET, 4, argv);
}

/* ---- dispatch ---- */

int http_dispatch(struct http_req *h)
{
    struct app *app = h->app;
    if (!app || h->stage) {
        return 0;
    }
    const char *path = h->path;
    char id[65];
    const char *rest;
    bool get = h->method == HTTP_GET;
    if (strcmp(path, "/healthz") == 0 && get) {
        http_respond(h, 200, "{\"status\":\"ok\"}", 15);
        return 0;
    }
    if (strcmp(path, "/readyz") == 0 && get) {
        if (ledger_ready(app->ledger) && !app->shutting_down) {
            http_respond(h, 200, "{\"status\":\"ready\"}", 18);
        } else {
            http_error(h, PROTO_ERR_LEDGER_UNAVAILABLE,
                       app->shutting_down ? "shutting down" : "redis is not answering");
        }
        return 0;
    }
    if (strcmp(path, "/metrics") == 0 && get) {
        struct proto_buf b;
        proto_buf_init(&b, 0);
        metrics_render(app, &b);
        respond_type(h, 200, "text/plain; version=0.0.4", proto_buf_text(&b), b.len);
        proto_buf_cleanup(&b);
        return 0;
    }
    if (strcmp(path, "/v1/gifts") == 0 && get) {
        char *j = gifts_catalog_json(app->catalog, ledger_now_ms());
        if (!j) {
            http_error(h, PROTO_ERR_INTERNAL, "out of memory");
        } else {
            http_respond(h, 200, j, strlen(j));
            free(j);
        }
        return 0;
    }
    if (strcmp(path, "/v1/packages") == 0 && get) {
        char *j = gifts_packages_json(app->catalog);
        if (!j) {
            http_error(h, PROTO_ERR_INTERNAL, "out of memory");
        } else {
            http_respond(h, 200, j, strlen(j));
            free(j);
        }
        return 0;
    }
    if (strcmp(path, "/v1/recharge") == 0 && h->method == HTTP_POST) {
        return recharge(h);
    }
    if ((rest = path_segment(path, "/v1/rooms/", id, sizeof(id))) && !*rest) {
        switch (h->method) {
        case HTTP_GET:
            return room_info(h, id);
        case HTTP_PUT:
            return room_open(h, id);
        case HTTP_DELETE:
            return room_close(h, id);
        default:
            break;
        }
        error_status(h, 405, PROTO_ERR_BAD_REQUEST, "method not allowed");
        return 0;
    }
    if ((rest = path_segment(path, "/v1/users/", id, sizeof(id)))) {
        if (strcmp(rest, "/balance") == 0 && get) {
            return balance(h, id);
        }
        if (strcmp(rest, "/budget") == 0 && (get || h->method == HTTP_PUT)) {
            return budget(h, id);
        }
        if (strcmp(rest, "/balance") == 0 || strcmp(rest, "/budget") == 0) {
            error_status(h, 405, PROTO_ERR_BAD_REQUEST, "method not allowed");
            return 0;
        }
        http_error(h, PROTO_ERR_NOT_FOUND, "no such resource");
        return 0;
    }
    if (strcmp(path, "/ws") == 0) {
        error_status(h, 426, PROTO_ERR_BAD_REQUEST, "WebSocket upgrade required");
        return 0;
    }
    if (strncmp(path, "/v1/rooms/", 10) == 0 || strncmp(path, "/v1/users/", 10) == 0) {
        http_error(h, PROTO_ERR_BAD_REQUEST, "bad identifier in the path");
        return 0;
    }
    http_error(h, PROTO_ERR_NOT_FOUND, "no such resource");
    return 0;
}
