/* fuzz_http: HTTP API requests (method, path, body) through httpapi's routing and body parsers. */
#include <string.h>

#include "fuzz/fuzz.h"
#include "gifts/gifts.h"
#include "httpapi/httpapi.h"
#include "protocol/protocol.h"

/*
 * An input is a request as text: "METHOD PATH", a newline, then the body (none when empty).
 * The path is cut at 255 bytes (or a NUL) as server/http.c's http_begin does; the body goes to
 * the parser of the route, as http_dispatch would send it.
 */

/* The catalog recharge looks packages up in. */
static const char catalog_json[] =
    "{\"gifts\":[{\"id\":\"rose\",\"name\":\"Rose\",\"coins\":1,\"diamonds\":1,"
    "\"tier\":\"small\",\"animation\":\"rose\"}],"
    "\"packages\":[{\"id\":\"coins_100\",\"coins\":100,\"price_cents\":99,\"currency\":\"USD\"},"
    "{\"id\":\"coins_5000\",\"coins\":5000,\"price_cents\":4499,\"currency\":\"EUR\"}]}";
static struct gifts_catalog *catalog;

static enum httpapi_method method_of(const char *s, size_t n)
{
    static const struct {
        const char *name;
        enum httpapi_method m;
    } methods[] = {
        {"GET", HTTPAPI_GET},
        {"POST", HTTPAPI_POST},
        {"PUT", HTTPAPI_PUT},
        {"DELETE", HTTPAPI_DELETE},
    };
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        if (strlen(methods[i].name) == n && memcmp(methods[i].name, s, n) == 0) {
            return methods[i].m;
        }
    }
    return HTTPAPI_OTHER;
}

static bool is_id(const char *s)
{
    return proto_valid_id(s, strlen(s));
}

/* The route and its id agree with the path. */
static void check_route(enum httpapi_method m, const char *path, enum httpapi_route r,
                        const char *id)
{
    switch (r) {
    case HTTPAPI_ROOM_INFO:
    case HTTPAPI_ROOM_OPEN:
    case HTTPAPI_ROOM_CLOSE:
        CHECK(is_id(id) && strncmp(path, "/v1/rooms/", 10) == 0 && strcmp(path + 10, id) == 0);
        CHECK(r != HTTPAPI_ROOM_INFO || m == HTTPAPI_GET);
        break;
    case HTTPAPI_GOAL_SET:
    case HTTPAPI_GOAL_CLEAR: {
        size_t n = strlen(id);
        CHECK(is_id(id) && strncmp(path, "/v1/rooms/", 10) == 0 && strncmp(path + 10, id, n) == 0);
        CHECK(strcmp(path + 10 + n, "/goal") == 0);
        CHECK(m == (r == HTTPAPI_GOAL_SET ? HTTPAPI_PUT : HTTPAPI_DELETE));
        break;
    }
    case HTTPAPI_ROOM_EVENTS:
    case HTTPAPI_OVERLAY: {
        size_t n = strlen(id);
        CHECK(is_id(id) && strncmp(path, "/v1/rooms/", 10) == 0 && strncmp(path + 10, id, n) == 0);
        CHECK(strcmp(path + 10 + n, r == HTTPAPI_ROOM_EVENTS ? "/events" : "/overlay") == 0);
        CHECK(m == (r == HTTPAPI_ROOM_EVENTS ? HTTPAPI_GET : HTTPAPI_POST));
        break;
    }
    case HTTPAPI_BALANCE:
    case HTTPAPI_BUDGET:
    case HTTPAPI_TRANSACTIONS: {
        size_t n = strlen(id);
        CHECK(is_id(id) && strncmp(path, "/v1/users/", 10) == 0 && strncmp(path + 10, id, n) == 0);
        CHECK(strcmp(path + 10 + n, r == HTTPAPI_BALANCE  ? "/balance"
                                    : r == HTTPAPI_BUDGET ? "/budget"
                                                          : "/transactions") == 0);
        break;
    }
    case HTTPAPI_BAD_ID:
        CHECK(id[0] == '\0');
        CHECK(strncmp(path, "/v1/rooms/", 10) == 0 || strncmp(path, "/v1/users/", 10) == 0);
        break;
    default:
        CHECK(id[0] == '\0');
        break;
    }
}

static void check_failure(enum proto_err e, const char *detail)
{
    CHECK(e == PROTO_ERR_BAD_JSON || e == PROTO_ERR_BAD_REQUEST ||
          e == PROTO_ERR_PACKAGE_UNAVAILABLE);
    CHECK(detail != NULL && detail[0] != '\0');
}

static void room_open(const char *body, size_t len)
{
    struct httpapi_room_open o;
    const char *detail;
    enum proto_err e = httpapi_parse_room_open(body, len, &o, &detail);
    if (e != PROTO_OK) {
        check_failure(e, detail);
        return;
    }
    CHECK(is_id(o.creator_id));
    CHECK(proto_valid_name(o.creator_name, strlen(o.creator_name)));
    CHECK(strlen(o.title) <= HTTPAPI_TITLE_MAX && (o.has_title || o.title[0] == '\0'));
}

static void recharge(const char *body, size_t len)
{
    struct httpapi_recharge r;
    const char *detail;
    enum proto_err e = httpapi_parse_recharge(body, len, catalog, 1800000000000LL, &r, &detail);
    if (e != PROTO_OK) {
        check_failure(e, detail);
        return;
    }
    CHECK(is_id(r.payment_id) && is_id(r.user));
    CHECK(r.coins >= 1 && r.coins <= 1000000000LL + 1000000000LL); /* a package: plus its bonus */
    CHECK(r.package[0] == '\0' || is_id(r.package));
}

static void reverse(const char *body, size_t len)
{
    struct httpapi_reverse v;
    const char *detail;
    enum proto_err e = httpapi_parse_reverse(body, len, &v, &detail);
    if (e != PROTO_OK) {
        check_failure(e, detail);
        return;
    }
    CHECK(is_id(v.payment_id) && is_id(v.user));
    CHECK(strlen(v.reason) <= HTTPAPI_REASON_MAX && (v.has_reason || v.reason[0] == '\0'));
}

static void goal(const char *body, size_t len)
{
    struct httpapi_goal g;
    const char *detail;
    enum proto_err e = httpapi_parse_goal(body, len, &g, &detail);
    if (e != PROTO_OK) {
        check_failure(e, detail);
        return;
    }
    CHECK(strlen(g.title) >= 1 && strlen(g.title) <= HTTPAPI_GOAL_TITLE_MAX);
    CHECK(g.target >= 1 && g.target <= 1000000000000LL);
    CHECK(g.gift[0] == '\0' || is_id(g.gift));
}

static void overlay(const char *body, size_t len)
{
    struct httpapi_overlay o;
    const char *detail;
    enum proto_err e = httpapi_parse_overlay(body, len, &o, &detail);
    if (e != PROTO_OK) {
        check_failure(e, detail);
        return;
    }
    CHECK(o.action >= HTTPAPI_OVERLAY_SKIP && o.action <= HTTPAPI_OVERLAY_REPLAY);
    CHECK(o.action == HTTPAPI_OVERLAY_REPLAY ? o.seq >= 1 : o.seq == 0);
}

static void budget(const char *body, size_t len)
{
    struct httpapi_budget b;
    const char *detail;
    enum proto_err e = httpapi_parse_budget(body, len, &b, &detail);
    if (e != PROTO_OK) {
        check_failure(e, detail);
        return;
    }
    const struct httpapi_cap *caps[2] = {&b.daily, &b.monthly};
    for (int i = 0; i < 2; i++) {
        const struct httpapi_cap *c = caps[i];
        CHECK(!c->clear || c->given);
        CHECK(c->given && !c->clear ? c->coins >= 0 && c->coins <= 1000000000000LL : c->coins == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (catalog == NULL) {
        CHECK(gifts_catalog_parse(catalog_json, sizeof catalog_json - 1, &catalog, NULL, 0) == 0);
    }
    const char *req = (const char *)data;
    const char *nl = memchr(req, '\n', size);
    size_t line = nl != NULL ? (size_t)(nl - req) : size;
    const char *sp = memchr(req, ' ', line);
    size_t mlen = sp != NULL ? (size_t)(sp - req) : line;
    const char *p = sp != NULL ? sp + 1 : req + line;
    size_t plen = line - (size_t)(p - req);

    char path[256];
    snprintf(path, sizeof path, "%.*s", (int)plen, p);
    /* An empty body is none (NULL), as the server sees a request without Content-Length. The
     * body is copied to a block of its own size, so that ASan catches a read past its end. */
    size_t blen = nl != NULL ? size - line - 1 : 0;
    char *body = blen > 0 ? malloc(blen) : NULL;
    if (body != NULL) {
        memcpy(body, nl + 1, blen);
    }

    enum httpapi_method m = method_of(req, mlen);
    char id[65];
    enum httpapi_route r = httpapi_route(m, path, id);
    check_route(m, path, r, id);
    switch (r) {
    case HTTPAPI_ROOM_OPEN:
        room_open(body, blen);
        break;
    case HTTPAPI_RECHARGE:
        recharge(body, blen);
        break;
    case HTTPAPI_REVERSE:
        reverse(body, blen);
        break;
    case HTTPAPI_GOAL_SET:
        goal(body, blen);
        break;
    case HTTPAPI_OVERLAY:
        overlay(body, blen);
        break;
    case HTTPAPI_BUDGET:
        if (m == HTTPAPI_PUT) {
            budget(body, blen);
        }
        break;
    default:
        break;
    }
    free(body);
    return 0;
}
