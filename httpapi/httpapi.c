/* httpapi: the HTTP API's request vocabulary (SPEC 5) — routes and request bodies, no sockets. */
#include "httpapi/httpapi.h"

#include <jansson.h>
#include <string.h>

#include "gifts/gifts.h"

/* ---- routes --------------------------------------------------------------------------------- */

/* Copies the path segment after prefix up to the next '/' or the end into out[65]; the rest of
 * the path (from that '/') is returned. NULL when the segment is not a valid identifier. */
static const char *path_segment(const char *path, const char *prefix, char out[65])
{
    size_t pl = strlen(prefix);
    if (strncmp(path, prefix, pl) != 0) {
        return NULL;
    }
    const char *seg = path + pl;
    size_t n = strcspn(seg, "/");
    if (!proto_valid_id(seg, n)) {
        return NULL;
    }
    memcpy(out, seg, n);
    out[n] = '\0';
    return seg + n;
}

static enum httpapi_route route(enum httpapi_method method, const char *path, char id[65])
{
    bool get = method == HTTPAPI_GET;
    const char *rest;
    if (strcmp(path, "/healthz") == 0 && get) {
        return HTTPAPI_HEALTHZ;
    }
    if (strcmp(path, "/readyz") == 0 && get) {
        return HTTPAPI_READYZ;
    }
    if (strcmp(path, "/metrics") == 0 && get) {
        return HTTPAPI_METRICS;
    }
    if (strcmp(path, "/v1/gifts") == 0 && get) {
        return HTTPAPI_GIFTS;
    }
    if (strcmp(path, "/v1/packages") == 0 && get) {
        return HTTPAPI_PACKAGES;
    }
    if (strcmp(path, "/v1/recharge") == 0 && method == HTTPAPI_POST) {
        return HTTPAPI_RECHARGE;
    }
    if (strcmp(path, "/v1/recharge/reverse") == 0 && method == HTTPAPI_POST) {
        return HTTPAPI_REVERSE;
    }
    if ((rest = path_segment(path, "/v1/rooms/", id)) != NULL && strcmp(rest, "/goal") == 0) {
        switch (method) {
        case HTTPAPI_PUT:
            return HTTPAPI_GOAL_SET;
        case HTTPAPI_DELETE:
            return HTTPAPI_GOAL_CLEAR;
        default:
            return HTTPAPI_METHOD_NOT_ALLOWED;
        }
    }
    if ((rest = path_segment(path, "/v1/rooms/", id)) != NULL && strcmp(rest, "/events") == 0) {
        return get ? HTTPAPI_ROOM_EVENTS : HTTPAPI_METHOD_NOT_ALLOWED;
    }
    if ((rest = path_segment(path, "/v1/rooms/", id)) != NULL && strcmp(rest, "/overlay") == 0) {
        return method == HTTPAPI_POST ? HTTPAPI_OVERLAY : HTTPAPI_METHOD_NOT_ALLOWED;
    }
    if ((rest = path_segment(path, "/v1/rooms/", id)) != NULL && *rest == '\0') {
        switch (method) {
        case HTTPAPI_GET:
            return HTTPAPI_ROOM_INFO;
        case HTTPAPI_PUT:
            return HTTPAPI_ROOM_OPEN;
        case HTTPAPI_DELETE:
            return HTTPAPI_ROOM_CLOSE;
        default:
            return HTTPAPI_METHOD_NOT_ALLOWED;
        }
    }
    if ((rest = path_segment(path, "/v1/users/", id)) != NULL) {
        if (strcmp(rest, "/balance") == 0 && get) {
            return HTTPAPI_BALANCE;
        }
        if (strcmp(rest, "/budget") == 0 && (get || method == HTTPAPI_PUT)) {
            return HTTPAPI_BUDGET;
        }
        if (strcmp(rest, "/transactions") == 0 && get) {
            return HTTPAPI_TRANSACTIONS;
        }
        if (strcmp(rest, "/balance") == 0 || strcmp(rest, "/budget") == 0 ||
            strcmp(rest, "/transactions") == 0) {
            return HTTPAPI_METHOD_NOT_ALLOWED;
        }
        return HTTPAPI_NOT_FOUND;
    }
    if (strcmp(path, "/ws") == 0) {
        return HTTPAPI_UPGRADE_REQUIRED;
    }
    /* A longer path under a valid room id lands here too: /v1/rooms/{room}/ has no children. */
    if (strncmp(path, "/v1/rooms/", 10) == 0 || strncmp(path, "/v1/users/", 10) == 0) {
        return HTTPAPI_BAD_ID;
    }
    return HTTPAPI_NOT_FOUND;
}

enum httpapi_route httpapi_route(enum httpapi_method method, const char *path, char out_id[65])
{
    char id[65] = "";
    enum httpapi_route r = path != NULL ? route(method, path, id) : HTTPAPI_NOT_FOUND;
    switch (r) {
    case HTTPAPI_ROOM_INFO:
    case HTTPAPI_ROOM_OPEN:
    case HTTPAPI_ROOM_CLOSE:
    case HTTPAPI_GOAL_SET:
    case HTTPAPI_GOAL_CLEAR:
    case HTTPAPI_ROOM_EVENTS:
    case HTTPAPI_OVERLAY:
    case HTTPAPI_BALANCE:
    case HTTPAPI_BUDGET:
    case HTTPAPI_TRANSACTIONS:
        memcpy(out_id, id, sizeof id);
        break;
    default:
        out_id[0] = '\0';
        break;
    }
    return r;
}

/* ---- bodies --------------------------------------------------------------------------------- */

/* The body as a JSON object: a **new** reference, or NULL (sets *detail) when it is not one. */
static json_t *load_body(const char *body, size_t len, const char **detail)
{
    json_t *j = body != NULL ? json_loadb(body, len, 0, NULL) : NULL;
    if (!json_is_object(j)) {
        json_decref(j);
        *detail = "the body is not a JSON object";
        return NULL;
    }
    return j;
}

/* Copies string v (its length checked by the caller to be below cap) into dst. */
static void copy_str(char *dst, size_t cap, const json_t *v)
{
    size_t n = json_string_length(v);
    if (n >= cap) {
        n = cap - 1;
    }
    memcpy(dst, json_string_value(v), n);
    dst[n] = '\0';
}

/* True when v is a string holding an identifier. */
static bool is_id(const json_t *v)
{
    return json_is_string(v) && proto_valid_id(json_string_value(v), json_string_length(v));
}

/* Reads the fields of one body from j (borrowed) into out, or names the bad field in *detail
 * (static text). ctx: what the endpoint needs besides the body (may be NULL). */
typedef enum proto_err body_fields_fn(const json_t *j, const void *ctx, void *out,
                                      const char **detail);

/* What every httpapi_parse_* does around its fields: out (out_size bytes) zeroed, the body
 * loaded as a JSON object (else bad_json), fields read, *out_detail set (NULL on success). */
static enum proto_err parse_body(const char *body, size_t len, body_fields_fn *fields,
                                 const void *ctx, void *out, size_t out_size,
                                 const char **out_detail)
{
    const char *detail = NULL;
    enum proto_err rc = PROTO_ERR_BAD_JSON;
    memset(out, 0, out_size);
    json_t *j = load_body(body, len, &detail);
    if (j != NULL) {
        rc = fields(j, ctx, out, &detail);
        json_decref(j);
    }
    if (out_detail != NULL) {
        *out_detail = rc == PROTO_OK ? NULL : detail;
    }
    return rc;
}

static enum proto_err room_open_fields(const json_t *j, const void *ctx, void *vout,
                                       const char **detail)
{
    struct httpapi_room_open *out = vout;
    (void)ctx;
    const json_t *creator = json_object_get(j, "creator");
    const json_t *cid = json_object_get(creator, "id");
    const json_t *cname = json_object_get(creator, "name");
    const json_t *title = json_object_get(j, "title");
    if (!is_id(cid)) {
        *detail = "creator.id: must be an identifier";
        return PROTO_ERR_BAD_REQUEST;
    }
    if (!json_is_string(cname) ||
        !proto_valid_name(json_string_value(cname), json_string_length(cname))) {
        *detail = "creator.name: must be 1-64 bytes of UTF-8";
        return PROTO_ERR_BAD_REQUEST;
    }
    if (title != NULL && !json_is_null(title) &&
        (!json_is_string(title) || json_string_length(title) > HTTPAPI_TITLE_MAX)) {
        *detail = "title: must be a string of at most 200 bytes";
        return PROTO_ERR_BAD_REQUEST;
    }
    copy_str(out->creator_id, sizeof out->creator_id, cid);
    copy_str(out->creator_name, sizeof out->creator_name, cname);
    out->has_title = json_is_string(title);
    if (out->has_title) {
        copy_str(out->title, sizeof out->title, title);
    }
    return PROTO_OK;
}

enum proto_err httpapi_parse_room_open(const char *body, size_t len, struct httpapi_room_open *out,
                                       const char **out_detail)
{
    return parse_body(body, len, room_open_fields, NULL, out, sizeof *out, out_detail);
}

/* recharge_fields' context: the catalog and the time its packages' windows are judged at. */
struct recharge_ctx {
    const struct gifts_catalog *cat;
    int64_t now_ms;
};

static enum proto_err recharge_fields(const json_t *j, const void *ctx, void *vout,
                                      const char **detail)
{
    const struct gifts_catalog *cat = ((const struct recharge_ctx *)ctx)->cat;
    int64_t now_ms = ((const struct recharge_ctx *)ctx)->now_ms;
    struct httpapi_recharge *out = vout;
    const json_t *pay = json_object_get(j, "payment_id");
    const json_t *user = json_object_get(j, "user");
    const json_t *jpkg = json_object_get(j, "package");
    const json_t *jcoins = json_object_get(j, "coins");
    const struct gifts_package *pkg = NULL;
    if (!is_id(pay)) {
        *detail = "payment_id: must be an identifier";
        return PROTO_ERR_BAD_REQUEST;
    }
    if (!is_id(user)) {
        *detail = "user: must be an identifier";
        return PROTO_ERR_BAD_REQUEST;
    }
    if ((jpkg != NULL) == (jcoins != NULL)) {
        *detail = "give exactly one of package and coins";
        return PROTO_ERR_BAD_REQUEST;
    }
    if (jpkg != NULL && (!json_is_string(jpkg) ||
                         (pkg = gifts_find_package(cat, json_string_value(jpkg))) == NULL)) {
        *detail = "package: no such package";
        return PROTO_ERR_BAD_REQUEST;
    }
    if (jcoins != NULL && (!json_is_integer(jcoins) || json_integer_value(jcoins) < 1 ||
                           json_integer_value(jcoins) > 1000000000)) {
        *detail = "coins: must be an integer from 1 to 1000000000";
        return PROTO_ERR_BAD_REQUEST;
    }
    if (pkg != NULL && !gifts_package_available(pkg, now_ms)) {
        *detail = "package: not available now (its promotion is not running)";
        return PROTO_ERR_PACKAGE_UNAVAILABLE;
    }
    copy_str(out->payment_id, sizeof out->payment_id, pay);
    copy_str(out->user, sizeof out->user, user);
    out->coins = pkg != NULL ? pkg->coins + pkg->bonus_coins : json_integer_value(jcoins);
    if (pkg != NULL) {
        copy_str(out->package, sizeof out->package, jpkg);
    }
    return PROTO_OK;
}

enum proto_err httpapi_parse_recharge(const char *body, size_t len, const struct gifts_catalog *cat,
                                      int64_t now_ms, struct httpapi_recharge *out,
                                      const char **out_detail)
{
    const struct recharge_ctx ctx = {cat, now_ms};
    return parse_body(body, len, recharge_fields, &ctx, out, sizeof *out, out_detail);
}

static enum proto_err goal_fields(const json_t *j, const void *ctx, void *vout, const char **detail)
{
    struct httpapi_goal *out = vout;
    (void)ctx;
    const json_t *title = json_object_get(j, "title");
    const json_t *target = json_object_get(j, "target");
    const json_t *gift = json_object_get(j, "gift");
    if (!json_is_string(title) || json_string_length(title) < 1 ||
        json_string_length(title) > HTTPAPI_GOAL_TITLE_MAX) {
        *detail = "title: must be a string of 1 to 100 bytes";
        return PROTO_ERR_BAD_REQUEST;
    }
    if (!json_is_integer(target) || json_integer_value(target) < 1 ||
        json_integer_value(target) > 1000000000000LL) {
        *detail = "target: must be an integer from 1 to 1000000000000";
        return PROTO_ERR_BAD_REQUEST;
    }
    if (gift != NULL && !json_is_null(gift) && !is_id(gift)) {
        *detail = "gift: must be null or a gift id";
        return PROTO_ERR_BAD_REQUEST;
    }
    copy_str(out->title, sizeof out->title, title);
    if (is_id(gift)) {
        copy_str(out->gift, sizeof out->gift, gift);
    }
    out->target = json_integer_value(target);
    return PROTO_OK;
}

enum proto_err httpapi_parse_goal(const char *body, size_t len, struct httpapi_goal *out,
                                  const char **out_detail)
{
    return parse_body(body, len, goal_fields, NULL, out, sizeof *out, out_detail);
}

static enum proto_err overlay_fields(const json_t *j, const void *ctx, void *vout,
                                     const char **detail)
{
    static const char *const names[] = {"skip", "pause", "resume", "replay"};
    struct httpapi_overlay *out = vout;
    (void)ctx;
    const char *action = json_string_value(json_object_get(j, "action"));
    for (size_t i = 0; action && i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(action, names[i]) == 0) {
            out->action = (enum httpapi_overlay_action)(HTTPAPI_OVERLAY_SKIP + (int)i);
        }
    }
    if (!out->action) {
        *detail = "action: must be \"skip\", \"pause\", \"resume\" or \"replay\"";
        return PROTO_ERR_BAD_REQUEST;
    }
    if (out->action == HTTPAPI_OVERLAY_REPLAY) {
        const json_t *seq = json_object_get(j, "seq");
        if (!json_is_integer(seq) || json_integer_value(seq) < 1) {
            *detail = "seq: replay needs the seq of a room event (an integer >= 1)";
            return PROTO_ERR_BAD_REQUEST;
        }
        out->seq = json_integer_value(seq);
    }
    return PROTO_OK;
}

enum proto_err httpapi_parse_overlay(const char *body, size_t len, struct httpapi_overlay *out,
                                     const char **out_detail)
{
    return parse_body(body, len, overlay_fields, NULL, out, sizeof *out, out_detail);
}

static enum proto_err reverse_fields(const json_t *j, const void *ctx, void *vout,
                                     const char **detail)
{
    struct httpapi_reverse *out = vout;
    (void)ctx;
    const json_t *pay = json_object_get(j, "payment_id");
    const json_t *user = json_object_get(j, "user");
    const json_t *reason = json_object_get(j, "reason");
    if (!is_id(pay)) {
        *detail = "payment_id: must be an identifier";
        return PROTO_ERR_BAD_REQUEST;
    }
    if (!is_id(user)) {
        *detail = "user: must be an identifier";
        return PROTO_ERR_BAD_REQUEST;
    }
    if (reason != NULL && !json_is_null(reason) &&
        (!json_is_string(reason) || json_string_length(reason) > HTTPAPI_REASON_MAX)) {
        *detail = "reason: must be null or a string of at most 200 bytes";
        return PROTO_ERR_BAD_REQUEST;
    }
    copy_str(out->payment_id, sizeof out->payment_id, pay);
    copy_str(out->user, sizeof out->user, user);
    if (json_is_string(reason)) {
        out->has_reason = true;
        copy_str(out->reason, sizeof out->reason, reason);
    }
    return PROTO_OK;
}

enum proto_err httpapi_parse_reverse(const char *body, size_t len, struct httpapi_reverse *out,
                                     const char **out_detail)
{
    return parse_body(body, len, reverse_fields, NULL, out, sizeof *out, out_detail);
}

static bool parse_cap(const json_t *j, const char *key, struct httpapi_cap *out)
{
    const json_t *v = json_object_get(j, key);
    out->given = v != NULL;
    out->clear = json_is_null(v);
    out->coins = 0;
    if (v == NULL || out->clear) {
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > 1000000000000LL) {
        return false;
    }
    out->coins = json_integer_value(v);
    return true;
}

static enum proto_err budget_fields(const json_t *j, const void *ctx, void *vout,
                                    const char **detail)
{
    struct httpapi_budget *out = vout;
    (void)ctx;
    if (!parse_cap(j, "daily_coins", &out->daily)) {
        *detail = "daily_coins: must be null or an integer from 0 to 1000000000000";
        return PROTO_ERR_BAD_REQUEST;
    }
    if (!parse_cap(j, "monthly_coins", &out->monthly)) {
        *detail = "monthly_coins: must be null or an integer from 0 to 1000000000000";
        return PROTO_ERR_BAD_REQUEST;
    }
    return PROTO_OK;
}

enum proto_err httpapi_parse_budget(const char *body, size_t len, struct httpapi_budget *out,
                                    const char **out_detail)
{
    return parse_body(body, len, budget_fields, NULL, out, sizeof *out, out_detail);
}
