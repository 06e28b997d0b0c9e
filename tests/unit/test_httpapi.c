/* Unit tests for httpapi: request routing and the bodies of the HTTP API's write endpoints. */
#include "httpapi/httpapi.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "gifts/gifts.h"

static char id[65];

static enum httpapi_route route(enum httpapi_method m, const char *path)
{
    memset(id, 'x', sizeof id); /* a stale id must not survive a route without one */
    return httpapi_route(m, path, id);
}

/* ---- routes --------------------------------------------------------------------------------- */

Test(httpapi_route, fixed_paths_answer_get_only)
{
    static const struct {
        const char *path;
        enum httpapi_route r;
    } fixed[] = {
        {"/healthz", HTTPAPI_HEALTHZ},      {"/readyz", HTTPAPI_READYZ},
        {"/metrics", HTTPAPI_METRICS},      {"/v1/gifts", HTTPAPI_GIFTS},
        {"/v1/packages", HTTPAPI_PACKAGES},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        cr_assert_eq(route(HTTPAPI_GET, fixed[i].path), fixed[i].r, "%s", fixed[i].path);
        cr_assert_str_eq(id, "");
        cr_assert_eq(route(HTTPAPI_POST, fixed[i].path), HTTPAPI_NOT_FOUND, "%s", fixed[i].path);
        cr_assert_eq(route(HTTPAPI_OTHER, fixed[i].path), HTTPAPI_NOT_FOUND, "%s", fixed[i].path);
    }
    cr_assert_eq(route(HTTPAPI_GET, "/healthz/"), HTTPAPI_NOT_FOUND);
    cr_assert_eq(route(HTTPAPI_GET, "/v1/gifts/rose"), HTTPAPI_NOT_FOUND);
    cr_assert_eq(route(HTTPAPI_GET, ""), HTTPAPI_NOT_FOUND);
    cr_assert_eq(route(HTTPAPI_GET, "/"), HTTPAPI_NOT_FOUND);
}

Test(httpapi_route, recharge_is_post_only)
{
    cr_assert_eq(route(HTTPAPI_POST, "/v1/recharge"), HTTPAPI_RECHARGE);
    cr_assert_str_eq(id, "");
    cr_assert_eq(route(HTTPAPI_GET, "/v1/recharge"), HTTPAPI_NOT_FOUND);
    cr_assert_eq(route(HTTPAPI_PUT, "/v1/recharge"), HTTPAPI_NOT_FOUND);
}

Test(httpapi_route, room_methods)
{
    cr_assert_eq(route(HTTPAPI_GET, "/v1/rooms/r1"), HTTPAPI_ROOM_INFO);
    cr_assert_str_eq(id, "r1");
    cr_assert_eq(route(HTTPAPI_PUT, "/v1/rooms/Room_2.a:b-c"), HTTPAPI_ROOM_OPEN);
    cr_assert_str_eq(id, "Room_2.a:b-c");
    cr_assert_eq(route(HTTPAPI_DELETE, "/v1/rooms/r1"), HTTPAPI_ROOM_CLOSE);
    cr_assert_str_eq(id, "r1");
    cr_assert_eq(route(HTTPAPI_POST, "/v1/rooms/r1"), HTTPAPI_METHOD_NOT_ALLOWED);
    cr_assert_str_eq(id, "");
    cr_assert_eq(route(HTTPAPI_OTHER, "/v1/rooms/r1"), HTTPAPI_METHOD_NOT_ALLOWED);
}

Test(httpapi_route, room_ids_are_identifiers_of_at_most_64_bytes)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/rooms/%064d", 7);
    cr_assert_eq(route(HTTPAPI_GET, path), HTTPAPI_ROOM_INFO);
    cr_assert_eq(strlen(id), 64);
    snprintf(path, sizeof path, "/v1/rooms/%065d", 7);
    cr_assert_eq(route(HTTPAPI_GET, path), HTTPAPI_BAD_ID);
    cr_assert_str_eq(id, "");
    cr_assert_eq(route(HTTPAPI_GET, "/v1/rooms/"), HTTPAPI_BAD_ID);
    cr_assert_eq(route(HTTPAPI_GET, "/v1/rooms/a b"), HTTPAPI_BAD_ID);
    cr_assert_eq(route(HTTPAPI_GET, "/v1/rooms/r%20"), HTTPAPI_BAD_ID);
    cr_assert_eq(route(HTTPAPI_GET, "/v1/rooms//r1"), HTTPAPI_BAD_ID);
    cr_assert_eq(route(HTTPAPI_GET, "/v1/rooms"), HTTPAPI_NOT_FOUND);
}

Test(httpapi_route, room_events_and_overlay)
{
    cr_assert_eq(route(HTTPAPI_GET, "/v1/rooms/r1/events"), HTTPAPI_ROOM_EVENTS);
    cr_assert_str_eq(id, "r1");
    cr_assert_eq(route(HTTPAPI_POST, "/v1/rooms/r2/overlay"), HTTPAPI_OVERLAY);
    cr_assert_str_eq(id, "r2");
    cr_assert_eq(route(HTTPAPI_POST, "/v1/rooms/r1/events"), HTTPAPI_METHOD_NOT_ALLOWED);
    cr_assert_eq(route(HTTPAPI_GET, "/v1/rooms/r1/overlay"), HTTPAPI_METHOD_NOT_ALLOWED);
    cr_assert_str_eq(id, "");
    cr_assert_eq(route(HTTPAPI_GET, "/v1/rooms/r%201/events"), HTTPAPI_BAD_ID);
}

Test(httpapi_route, nothing_lives_under_a_room)
{
    cr_assert_eq(route(HTTPAPI_GET, "/v1/rooms/r1/"), HTTPAPI_BAD_ID);
    cr_assert_eq(route(HTTPAPI_GET, "/v1/rooms/r1/viewers"), HTTPAPI_BAD_ID);
    cr_assert_str_eq(id, "");
}

Test(httpapi_route, user_balance_and_budget)
{
    cr_assert_eq(route(HTTPAPI_GET, "/v1/users/alice/balance"), HTTPAPI_BALANCE);
    cr_assert_str_eq(id, "alice");
    cr_assert_eq(route(HTTPAPI_GET, "/v1/users/bob/budget"), HTTPAPI_BUDGET);
    cr_assert_str_eq(id, "bob");
    cr_assert_eq(route(HTTPAPI_PUT, "/v1/users/bob/budget"), HTTPAPI_BUDGET);
    cr_assert_eq(route(HTTPAPI_PUT, "/v1/users/bob/balance"), HTTPAPI_METHOD_NOT_ALLOWED);
    cr_assert_eq(route(HTTPAPI_DELETE, "/v1/users/bob/budget"), HTTPAPI_METHOD_NOT_ALLOWED);
    cr_assert_str_eq(id, "");
    cr_assert_eq(route(HTTPAPI_GET, "/v1/users/cy/transactions"), HTTPAPI_TRANSACTIONS);
    cr_assert_str_eq(id, "cy");
    cr_assert_eq(route(HTTPAPI_POST, "/v1/users/cy/transactions"), HTTPAPI_METHOD_NOT_ALLOWED);
}

Test(httpapi_route, unknown_user_paths)
{
    cr_assert_eq(route(HTTPAPI_GET, "/v1/users/alice"), HTTPAPI_NOT_FOUND);
    cr_assert_eq(route(HTTPAPI_GET, "/v1/users/alice/"), HTTPAPI_NOT_FOUND);
    cr_assert_eq(route(HTTPAPI_GET, "/v1/users/alice/balance/x"), HTTPAPI_NOT_FOUND);
    cr_assert_str_eq(id, "");
    cr_assert_eq(route(HTTPAPI_GET, "/v1/users/al ice/balance"), HTTPAPI_BAD_ID);
    cr_assert_eq(route(HTTPAPI_GET, "/v1/users//balance"), HTTPAPI_BAD_ID);
}

Test(httpapi_route, ws_without_upgrade)
{
    cr_assert_eq(route(HTTPAPI_GET, "/ws"), HTTPAPI_UPGRADE_REQUIRED);
    cr_assert_eq(route(HTTPAPI_POST, "/ws"), HTTPAPI_UPGRADE_REQUIRED);
    cr_assert_eq(route(HTTPAPI_GET, "/ws/"), HTTPAPI_NOT_FOUND);
}

Test(httpapi_route, null_path_is_not_found)
{
    cr_assert_eq(route(HTTPAPI_GET, NULL), HTTPAPI_NOT_FOUND);
    cr_assert_str_eq(id, "");
}

/* ---- bodies --------------------------------------------------------------------------------- */

static enum proto_err room_open(const char *body, struct httpapi_room_open *o, const char **detail)
{
    return httpapi_parse_room_open(body, body != NULL ? strlen(body) : 0, o, detail);
}

Test(httpapi_parse_room_open, accepts_creator_and_title)
{
    struct httpapi_room_open o;
    const char *detail = "unset";
    cr_assert_eq(
        room_open("{\"creator\":{\"id\":\"c1\",\"name\":\"Zoë\"},\"title\":\"Hi\"}", &o, &detail),
        PROTO_OK);
    cr_assert_null(detail);
    cr_assert_str_eq(o.creator_id, "c1");
    cr_assert_str_eq(o.creator_name, "Zoë");
    cr_assert(o.has_title);
    cr_assert_str_eq(o.title, "Hi");
}

Test(httpapi_parse_room_open, title_is_optional)
{
    struct httpapi_room_open o;
    cr_assert_eq(room_open("{\"creator\":{\"id\":\"c1\",\"name\":\"C\"}}", &o, NULL), PROTO_OK);
    cr_assert_not(o.has_title);
    cr_assert_eq(room_open("{\"creator\":{\"id\":\"c1\",\"name\":\"C\"},\"title\":null}", &o, NULL),
                 PROTO_OK);
    cr_assert_not(o.has_title);
    cr_assert_eq(room_open("{\"creator\":{\"id\":\"c1\",\"name\":\"C\"},\"title\":\"\"}", &o, NULL),
                 PROTO_OK);
    cr_assert(o.has_title);
    cr_assert_str_eq(o.title, "");
}

Test(httpapi_parse_room_open, title_of_200_bytes_but_not_201)
{
    char body[512], title[202];
    struct httpapi_room_open o;
    const char *detail;
    memset(title, 't', 200);
    title[200] = '\0';
    snprintf(body, sizeof body, "{\"creator\":{\"id\":\"c\",\"name\":\"C\"},\"title\":\"%s\"}",
             title);
    cr_assert_eq(room_open(body, &o, NULL), PROTO_OK);
    cr_assert_eq(strlen(o.title), 200);
    memset(title, 't', 201);
    title[201] = '\0';
    snprintf(body, sizeof body, "{\"creator\":{\"id\":\"c\",\"name\":\"C\"},\"title\":\"%s\"}",
             title);
    cr_assert_eq(room_open(body, &o, &detail), PROTO_ERR_BAD_REQUEST);
    cr_assert_not_null(strstr(detail, "title"));
}

Test(httpapi_parse_room_open, refuses_bad_fields_naming_them)
{
    static const struct {
        const char *body, *field;
    } bad[] = {
        {"{}", "creator.id"},
        {"{\"creator\":\"c1\"}", "creator.id"},
        {"{\"creator\":{\"id\":\"c 1\",\"name\":\"C\"}}", "creator.id"},
        {"{\"creator\":{\"id\":7,\"name\":\"C\"}}", "creator.id"},
        {"{\"creator\":{\"id\":\"c1\"}}", "creator.name"},
        {"{\"creator\":{\"id\":\"c1\",\"name\":\"\"}}", "creator.name"},
        {"{\"creator\":{\"id\":\"c1\",\"name\":\"a\\nb\"}}", "creator.name"},
        {"{\"creator\":{\"id\":\"c1\",\"name\":\"C\"},\"title\":5}", "title"},
        {"{\"creator\":{\"id\":\"c1\",\"name\":\"C\"},\"title\":[\"x\"]}", "title"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct httpapi_room_open o;
        const char *detail = NULL;
        cr_assert_eq(room_open(bad[i].body, &o, &detail), PROTO_ERR_BAD_REQUEST, "%s", bad[i].body);
        cr_assert_not_null(detail);
        cr_assert_not_null(strstr(detail, bad[i].field), "%s: %s", bad[i].body, detail);
    }
}

Test(httpapi_parse_room_open, refuses_what_is_not_a_json_object)
{
    static const char *const bad[] = {"", "{nope", "[]", "\"s\"", "null", "{\"a\":1} x"};
    struct httpapi_room_open o;
    const char *detail = NULL;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(room_open(bad[i], &o, &detail), PROTO_ERR_BAD_JSON, "%s", bad[i]);
        cr_assert_str_eq(detail, "the body is not a JSON object");
    }
    cr_assert_eq(room_open(NULL, &o, &detail), PROTO_ERR_BAD_JSON);
}

static struct gifts_catalog *catalog(void)
{
    static const char json[] =
        "{\"gifts\":[{\"id\":\"rose\",\"name\":\"Rose\",\"coins\":1,\"diamonds\":1,"
        "\"tier\":\"small\",\"animation\":\"rose\"}],"
        "\"packages\":[{\"id\":\"coins_100\",\"coins\":100,\"price_cents\":99,"
        "\"currency\":\"USD\"},"
        /* A promotion: 1800000000000 (the tests' now) is 2027-01-15T08:00:00Z. */
        "{\"id\":\"winter\",\"coins\":100,\"bonus_coins\":25,\"price_cents\":99,"
        "\"currency\":\"USD\",\"available_from\":\"2027-01-01T00:00:00Z\","
        "\"available_until\":\"2027-02-01T00:00:00Z\"},"
        "{\"id\":\"fall\",\"coins\":100,\"bonus_coins\":50,\"price_cents\":99,"
        "\"currency\":\"USD\",\"available_until\":\"2026-12-01T00:00:00Z\"}]}";
    struct gifts_catalog *cat = NULL;
    cr_assert_eq(gifts_catalog_parse(json, strlen(json), &cat, NULL, 0), 0);
    return cat;
}

static enum proto_err recharge(const char *body, const struct gifts_catalog *cat,
                               struct httpapi_recharge *r, const char **detail)
{
    return httpapi_parse_recharge(body, strlen(body), cat, 1800000000000LL, r, detail);
}

Test(httpapi_parse_recharge, a_promotion_credits_its_bonus_while_it_runs)
{
    struct gifts_catalog *cat = catalog();
    struct httpapi_recharge r;
    const char *detail = NULL;
    cr_assert_eq(recharge("{\"payment_id\":\"p1\",\"user\":\"u1\",\"package\":\"winter\"}", cat, &r,
                          &detail),
                 PROTO_OK);
    cr_assert_eq(r.coins, 125, "coins and bonus_coins, in one credit");
    cr_assert_str_eq(r.package, "winter");
    cr_assert_eq(
        recharge("{\"payment_id\":\"p2\",\"user\":\"u1\",\"package\":\"fall\"}", cat, &r, &detail),
        PROTO_ERR_PACKAGE_UNAVAILABLE);
    cr_assert_not_null(strstr(detail, "not available"));
    cr_assert_eq(proto_err_http_status(PROTO_ERR_PACKAGE_UNAVAILABLE), 409);
    gifts_catalog_free(cat);
}

Test(httpapi_parse_recharge, coins_or_a_package)
{
    struct gifts_catalog *cat = catalog();
    struct httpapi_recharge r;
    const char *detail = "unset";
    cr_assert_eq(
        recharge("{\"payment_id\":\"p1\",\"user\":\"u1\",\"coins\":1000000000}", cat, &r, &detail),
        PROTO_OK);
    cr_assert_null(detail);
    cr_assert_str_eq(r.payment_id, "p1");
    cr_assert_str_eq(r.user, "u1");
    cr_assert_eq(r.coins, 1000000000);
    cr_assert_eq(recharge("{\"payment_id\":\"p2\",\"user\":\"u1\",\"package\":\"coins_100\"}", cat,
                          &r, NULL),
                 PROTO_OK);
    cr_assert_eq(r.coins, 100);
    gifts_catalog_free(cat);
}

Test(httpapi_parse_recharge, refuses_bad_fields_naming_them)
{
    static const struct {
        const char *body, *field;
    } bad[] = {
        {"{\"user\":\"u\",\"coins\":1}", "payment_id"},
        {"{\"payment_id\":\"p/1\",\"user\":\"u\",\"coins\":1}", "payment_id"},
        {"{\"payment_id\":\"p\",\"coins\":1}", "user"},
        {"{\"payment_id\":\"p\",\"user\":true,\"coins\":1}", "user"},
        {"{\"payment_id\":\"p\",\"user\":\"u\"}", "exactly one"},
        {"{\"payment_id\":\"p\",\"user\":\"u\",\"coins\":1,\"package\":\"coins_100\"}",
         "exactly one"},
        {"{\"payment_id\":\"p\",\"user\":\"u\",\"package\":\"coins_7\"}", "package"},
        {"{\"payment_id\":\"p\",\"user\":\"u\",\"package\":100}", "package"},
        {"{\"payment_id\":\"p\",\"user\":\"u\",\"package\":null}", "package"},
        {"{\"payment_id\":\"p\",\"user\":\"u\",\"coins\":0}", "coins"},
        {"{\"payment_id\":\"p\",\"user\":\"u\",\"coins\":1000000001}", "coins"},
        {"{\"payment_id\":\"p\",\"user\":\"u\",\"coins\":1.5}", "coins"},
        {"{\"payment_id\":\"p\",\"user\":\"u\",\"coins\":\"5\"}", "coins"},
    };
    struct gifts_catalog *cat = catalog();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct httpapi_recharge r;
        const char *detail = NULL;
        cr_assert_eq(recharge(bad[i].body, cat, &r, &detail), PROTO_ERR_BAD_REQUEST, "%s",
                     bad[i].body);
        cr_assert_not_null(strstr(detail, bad[i].field), "%s: %s", bad[i].body, detail);
    }
    gifts_catalog_free(cat);
}

Test(httpapi_parse_recharge, no_catalog_has_no_packages)
{
    struct httpapi_recharge r;
    const char *detail = NULL;
    cr_assert_eq(recharge("{\"payment_id\":\"p\",\"user\":\"u\",\"package\":\"coins_100\"}", NULL,
                          &r, &detail),
                 PROTO_ERR_BAD_REQUEST);
    cr_assert_str_eq(detail, "package: no such package");
    cr_assert_eq(recharge("[1]", NULL, &r, &detail), PROTO_ERR_BAD_JSON);
}

static enum proto_err budget(const char *body, struct httpapi_budget *b, const char **detail)
{
    return httpapi_parse_budget(body, strlen(body), b, detail);
}

Test(httpapi_parse_budget, sets_clears_or_keeps_each_cap)
{
    struct httpapi_budget b;
    cr_assert_eq(budget("{\"daily_coins\":0}", &b, NULL), PROTO_OK);
    cr_assert(b.daily.given);
    cr_assert_not(b.daily.clear);
    cr_assert_eq(b.daily.coins, 0);
    cr_assert_not(b.monthly.given, "absent: kept");
    cr_assert_eq(budget("{\"daily_coins\":1000000000000,\"monthly_coins\":null}", &b, NULL),
                 PROTO_OK);
    cr_assert_eq(b.daily.coins, 1000000000000LL);
    cr_assert(b.monthly.given);
    cr_assert(b.monthly.clear);
    cr_assert_eq(budget("{\"monthly_coins\":500}", &b, NULL), PROTO_OK);
    cr_assert_not(b.daily.given);
    cr_assert_eq(b.monthly.coins, 500);
    cr_assert_eq(budget("{\"daily_coins\":null}", &b, NULL), PROTO_OK);
    cr_assert(b.daily.clear);
    cr_assert_eq(budget("{}", &b, NULL), PROTO_OK, "nothing given: both kept (a read)");
    cr_assert_not(b.daily.given);
    cr_assert_not(b.monthly.given);
}

Test(httpapi_parse_budget, refuses_out_of_range_or_not_integers)
{
    static const char *const bad[] = {"{\"daily_coins\":-1}",    "{\"daily_coins\":1000000000001}",
                                      "{\"daily_coins\":\"5\"}", "{\"daily_coins\":2.0}",
                                      "{\"monthly_coins\":-1}",  "{\"monthly_coins\":true}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct httpapi_budget b;
        const char *detail = NULL;
        cr_assert_eq(budget(bad[i], &b, &detail), PROTO_ERR_BAD_REQUEST, "%s", bad[i]);
        cr_assert_not_null(strstr(detail, i < 4 ? "daily_coins" : "monthly_coins"), "%s", detail);
    }
    struct httpapi_budget b;
    cr_assert_eq(budget("not json", &b, NULL), PROTO_ERR_BAD_JSON);
}

/* ---- overlay controls ----------------------------------------------------------------------- */

static enum proto_err overlay(const char *s, struct httpapi_overlay *o, const char **detail)
{
    return httpapi_parse_overlay(s, strlen(s), o, detail);
}

Test(httpapi_parse_overlay, four_actions_replay_with_its_seq)
{
    static const char *const names[] = {"skip", "pause", "resume"};
    for (int i = 0; i < 3; i++) {
        char body[64];
        snprintf(body, sizeof body, "{\"action\":\"%s\",\"seq\":\"ignored\"}", names[i]);
        struct httpapi_overlay o;
        cr_assert_eq(overlay(body, &o, NULL), PROTO_OK, "%s", body);
        cr_assert_eq(o.action, HTTPAPI_OVERLAY_SKIP + i);
    }
    struct httpapi_overlay o;
    cr_assert_eq(overlay("{\"action\":\"replay\",\"seq\":12}", &o, NULL), PROTO_OK);
    cr_assert_eq(o.action, HTTPAPI_OVERLAY_REPLAY);
    cr_assert_eq(o.seq, 12);
}

Test(httpapi_parse_overlay, refuses_unknown_actions_and_a_replay_without_seq)
{
    static const char *const bad[] = {"{}",
                                      "{\"action\":\"dance\"}",
                                      "{\"action\":5}",
                                      "{\"action\":\"SKIP\"}",
                                      "{\"action\":\"replay\"}",
                                      "{\"action\":\"replay\",\"seq\":0}",
                                      "{\"action\":\"replay\",\"seq\":\"3\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct httpapi_overlay o;
        const char *detail = NULL;
        cr_assert_eq(overlay(bad[i], &o, &detail), PROTO_ERR_BAD_REQUEST, "%s", bad[i]);
        cr_assert_not_null(strstr(detail, i < 4 ? "action" : "seq"), "%s: %s", bad[i], detail);
    }
    struct httpapi_overlay o;
    cr_assert_eq(overlay("[1]", &o, NULL), PROTO_ERR_BAD_JSON);
}
