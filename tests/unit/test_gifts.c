/* Unit tests for gifts/: catalog parsing and validation, lookups, availability, JSON views. */
#include "gifts/gifts.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SHIPPED_CATALOG GIFTD_SOURCE_DIR "/config/catalog.json"

/* Epoch milliseconds of a few UTC instants used below. */
#define MS_2026_10_25 1792886400000LL /* pumpkin from */
#define MS_2026_10_26 1792972800000LL
#define MS_2026_11_01 1793491200000LL /* pumpkin until, snowflake from */
#define MS_2026_11_22 1795305600000LL
#define MS_2027_01_07 1799280000000LL /* snowflake until */

#define ROSE_JSON                                                                                  \
    "{\"id\":\"rose\",\"name\":\"Rose\",\"coins\":1,\"diamonds\":1,\"tier\":\"small\","            \
    "\"animation\":\"rose\",\"streakable\":true}"

/* A gift object built from raw JSON tokens: NULL keeps the lion default, OMIT drops the key. */
struct gspec {
    const char *id, *name, *coins, *diamonds, *tier, *animation, *streakable, *from, *until;
};

static const char OMIT[] = "<omit>";

static void append_field(char *buf, size_t n, const char *key, const char *val, const char *dflt)
{
    if (val == OMIT || (val == NULL && dflt == NULL)) {
        return;
    }
    size_t used = strlen(buf);
    snprintf(buf + used, n - used, "%s\"%s\":%s", buf[used - 1] == '{' ? "" : ",", key,
             val != NULL ? val : dflt);
}

static void gift_json(char *buf, size_t n, const struct gspec *s)
{
    snprintf(buf, n, "{");
    append_field(buf, n, "id", s->id, "\"lion\"");
    append_field(buf, n, "name", s->name, "\"Lion\"");
    append_field(buf, n, "coins", s->coins, "29999");
    append_field(buf, n, "diamonds", s->diamonds, "14999");
    append_field(buf, n, "tier", s->tier, "\"legendary\"");
    append_field(buf, n, "animation", s->animation, "\"lion\"");
    append_field(buf, n, "streakable", s->streakable, "false");
    append_field(buf, n, "available_from", s->from, NULL);
    append_field(buf, n, "available_until", s->until, NULL);
    size_t used = strlen(buf);
    snprintf(buf + used, n - used, "}");
}

static void expect_error(const char *json, const char *want)
{
    struct gifts_catalog *cat = (struct gifts_catalog *)&cat; /* must be reset to NULL */
    char err[256] = "";
    int rc = gifts_catalog_parse(json, strlen(json), &cat, err, sizeof(err));
    cr_assert_eq(rc, -EINVAL, "rc %d for %s", rc, json);
    cr_assert_null(cat);
    cr_assert(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\" (input %s)", err, want, json);
}

/* The spec'd gift sits at index 1, after a valid rose. */
static void expect_gift_error(struct gspec s, const char *want)
{
    char gift[1024], json[2048];
    gift_json(gift, sizeof(gift), &s);
    snprintf(json, sizeof(json), "{\"gifts\":[" ROSE_JSON ",%s]}", gift);
    expect_error(json, want);
}

static struct gifts_catalog *parse_ok(const char *json)
{
    struct gifts_catalog *cat = NULL;
    char err[256] = "";
    int rc = gifts_catalog_parse(json, strlen(json), &cat, err, sizeof(err));
    cr_assert_eq(rc, 0, "rc %d: %s (input %s)", rc, err, json);
    cr_assert_not_null(cat);
    return cat;
}

static struct gifts_catalog *parse_gift_ok(struct gspec s)
{
    char gift[1024], json[2048];
    gift_json(gift, sizeof(gift), &s);
    snprintf(json, sizeof(json), "{\"gifts\":[" ROSE_JSON ",%s]}", gift);
    return parse_ok(json);
}

static struct gifts_catalog *load_shipped(void)
{
    struct gifts_catalog *cat = NULL;
    char err[256] = "";
    int rc = gifts_catalog_load(SHIPPED_CATALOG, &cat, err, sizeof(err));
    cr_assert_eq(rc, 0, "load %s: %d %s", SHIPPED_CATALOG, rc, err);
    return cat;
}

/* ---- the shipped catalog ---- */

Test(gifts_catalog_load, shipped_catalog_has_rose_and_lion)
{
    struct gifts_catalog *cat = load_shipped();
    cr_assert_geq(gifts_count(cat), 10);

    const struct gift *rose = gifts_find(cat, "rose");
    cr_assert_not_null(rose);
    cr_assert_str_eq(rose->name, "Rose");
    cr_assert_eq(rose->coins, 1);
    cr_assert_eq(rose->diamonds, 1);
    cr_assert_eq(rose->tier, GIFTS_TIER_SMALL);
    cr_assert(rose->streakable);
    cr_assert_eq(rose->available_from_ms, 0);
    cr_assert_eq(rose->available_until_ms, 0);

    const struct gift *lion = gifts_find(cat, "lion");
    cr_assert_not_null(lion);
    cr_assert_str_eq(lion->name, "Lion");
    cr_assert_eq(lion->coins, 29999);
    cr_assert_eq(lion->diamonds, 14999);
    cr_assert_eq(lion->tier, GIFTS_TIER_LEGENDARY);
    cr_assert_not(lion->streakable);
    gifts_catalog_free(cat);
}

Test(gifts_catalog_load, shipped_catalog_has_ids_other_code_relies_on)
{
    struct gifts_catalog *cat = load_shipped();
    static const struct {
        const char *id;
        long coins;
        enum gifts_tier tier;
        bool streakable;
    } want[] = {
        {"finger_heart", 5, GIFTS_TIER_SMALL, true},
        {"doughnut", 30, GIFTS_TIER_MEDIUM, true},
        {"galaxy", 1000, GIFTS_TIER_LARGE, false},
        {"pumpkin", 66, GIFTS_TIER_MEDIUM, true},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct gift *g = gifts_find(cat, want[i].id);
        cr_assert_not_null(g, "%s missing", want[i].id);
        cr_assert_eq(g->coins, want[i].coins, "%s coins", want[i].id);
        cr_assert_eq(g->tier, want[i].tier, "%s tier", want[i].id);
        cr_assert_eq(g->streakable, want[i].streakable, "%s streakable", want[i].id);
    }
    gifts_catalog_free(cat);
}

Test(gifts_catalog_load, shipped_catalog_covers_all_tiers_with_sane_diamonds)
{
    struct gifts_catalog *cat = load_shipped();
    bool seen[4] = {false, false, false, false};
    for (size_t i = 0; i < gifts_count(cat); i++) {
        const struct gift *g = gifts_at(cat, i);
        seen[g->tier] = true;
        cr_assert_geq(g->diamonds, 1, "%s", g->id);
        cr_assert_leq(g->diamonds, g->coins, "%s", g->id);
    }
    for (int t = 0; t < 4; t++) {
        cr_assert(seen[t], "no %s gift", gifts_tier_name((enum gifts_tier)t));
    }
    gifts_catalog_free(cat);
}

Test(gifts_catalog_load, shipped_catalog_has_event_windows)
{
    struct gifts_catalog *cat = load_shipped();
    const struct gift *pumpkin = gifts_find(cat, "pumpkin");
    cr_assert_not_null(pumpkin);
    cr_assert_eq(pumpkin->available_from_ms, MS_2026_10_25);
    cr_assert_eq(pumpkin->available_until_ms, MS_2026_11_01);
    const struct gift *snow = gifts_find(cat, "snowflake");
    cr_assert_not_null(snow);
    cr_assert_eq(snow->available_from_ms, MS_2026_11_01);
    cr_assert_eq(snow->available_until_ms, MS_2027_01_07);
    gifts_catalog_free(cat);
}

Test(gifts_catalog_load, shipped_catalog_has_five_packages)
{
    struct gifts_catalog *cat = load_shipped();
    cr_assert_eq(gifts_package_count(cat), 5);
    static const struct {
        const char *id;
        long coins, cents;
    } want[] = {{"p70", 70, 99},
                {"p350", 350, 499},
                {"p700", 700, 999},
                {"p1400", 1400, 1999},
                {"p3500", 3500, 4999}};
    for (size_t i = 0; i < 5; i++) {
        const struct gifts_package *p = gifts_package_at(cat, i);
        cr_assert_str_eq(p->id, want[i].id);
        cr_assert_eq(p->coins, want[i].coins);
        cr_assert_eq(p->price_cents, want[i].cents);
        cr_assert_str_eq(p->currency, "USD");
        cr_assert_eq(gifts_find_package(cat, want[i].id), p);
    }
    gifts_catalog_free(cat);
}

Test(gifts_catalog_load, unreadable_file_is_eio_naming_path)
{
    struct gifts_catalog *cat = (struct gifts_catalog *)&cat;
    char err[256] = "";
    const char *path = "/nonexistent/giftd/catalog.json";
    cr_assert_eq(gifts_catalog_load(path, &cat, err, sizeof(err)), -EIO);
    cr_assert_null(cat);
    cr_assert(strstr(err, path) != NULL, "%s", err);
}

Test(gifts_catalog_load, directory_is_eio)
{
    struct gifts_catalog *cat = NULL;
    char err[256] = "";
    cr_assert_eq(gifts_catalog_load(GIFTD_SOURCE_DIR "/config", &cat, err, sizeof(err)), -EIO);
    cr_assert_null(cat);
    cr_assert(strstr(err, "/config") != NULL, "%s", err);
}

Test(gifts_catalog_load, invalid_file_contents_is_einval)
{
    char path[] = "/tmp/test_gifts_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    const char body[] = "{\"gifts\":[]}";
    cr_assert_eq(write(fd, body, sizeof(body) - 1), (ssize_t)(sizeof(body) - 1));
    close(fd);
    struct gifts_catalog *cat = NULL;
    char err[256] = "";
    int rc = gifts_catalog_load(path, &cat, err, sizeof(err));
    unlink(path);
    cr_assert_eq(rc, -EINVAL);
    cr_assert_null(cat);
    cr_assert(strstr(err, "gifts") != NULL, "%s", err);
}

/* ---- parse: structure ---- */

Test(gifts_catalog_parse, accepts_minimal_catalog_with_defaults)
{
    struct gifts_catalog *cat = parse_gift_ok((struct gspec){.streakable = OMIT});
    cr_assert_eq(gifts_count(cat), 2);
    cr_assert_eq(gifts_package_count(cat), 0);
    cr_assert_null(gifts_package_at(cat, 0));
    const struct gift *lion = gifts_at(cat, 1);
    cr_assert_str_eq(lion->id, "lion");
    cr_assert_str_eq(lion->animation, "lion");
    cr_assert_not(lion->streakable, "streakable defaults to false");
    cr_assert_eq(lion->available_from_ms, 0);
    cr_assert_eq(lion->available_until_ms, 0);
    gifts_catalog_free(cat);
}

Test(gifts_catalog_parse, rejects_not_json)
{
    expect_error("{\"gifts\": [", "catalog: invalid JSON");
    expect_error("", "catalog: invalid JSON");
    expect_error("rose", "catalog: invalid JSON");
}

Test(gifts_catalog_parse, rejects_top_level_non_object)
{
    expect_error("[" ROSE_JSON "]", "catalog: must be a JSON object");
}

Test(gifts_catalog_parse, rejects_missing_gifts_array)
{
    expect_error("{\"packages\":[]}", "gifts: must be an array");
    expect_error("{\"gifts\":{}}", "gifts: must be an array");
}

Test(gifts_catalog_parse, rejects_empty_gifts)
{
    expect_error("{\"gifts\":[]}", "gifts: must contain at least one gift");
}

Test(gifts_catalog_parse, rejects_gift_that_is_not_an_object)
{
    expect_error("{\"gifts\":[" ROSE_JSON ",\"lion\"]}", "gifts[1]: must be an object");
}

Test(gifts_catalog_parse, rejects_duplicate_object_keys)
{
    expect_error("{\"gifts\":[" ROSE_JSON "],\"gifts\":[]}", "catalog: invalid JSON");
}

/* ---- parse: gift fields ---- */

Test(gifts_catalog_parse, rejects_missing_id)
{
    expect_gift_error((struct gspec){.id = OMIT}, "gifts[1]: id: must be an identifier");
}

Test(gifts_catalog_parse, rejects_invalid_id)
{
    expect_gift_error((struct gspec){.id = "\"\""}, "gifts[1]: id: must be an identifier");
    expect_gift_error((struct gspec){.id = "\"big lion\""}, "gifts[1]: id: must be an identifier");
    expect_gift_error((struct gspec){.id = "\"li/on\""}, "gifts[1]: id: must be an identifier");
    expect_gift_error((struct gspec){.id = "42"}, "gifts[1]: id: must be an identifier");
    expect_gift_error(
        (struct gspec){.id = "\"a12345678901234567890123456789012345678901234567890123456789012"
                             "34\""},
        "gifts[1]: id: must be an identifier");
}

Test(gifts_catalog_parse, accepts_64_byte_id_with_all_allowed_punctuation)
{
    const char *id = "Ab9_.:-123456789012345678901234567890123456789012345678901234567";
    cr_assert_eq(strlen(id), 64);
    char tok[80];
    snprintf(tok, sizeof(tok), "\"%s\"", id);
    struct gifts_catalog *cat = parse_gift_ok((struct gspec){.id = tok});
    cr_assert_not_null(gifts_find(cat, id));
    gifts_catalog_free(cat);
}

Test(gifts_catalog_parse, rejects_bad_name)
{
    const char *want = "gifts[1] (lion): name: must be a display name";
    expect_gift_error((struct gspec){.name = OMIT}, want);
    expect_gift_error((struct gspec){.name = "\"\""}, want);
    expect_gift_error((struct gspec){.name = "7"}, want);
    expect_gift_error((struct gspec){.name = "\"Li\\non\""}, want);
    expect_gift_error((struct gspec){.name = "\"Li\\u007fon\""}, want);
    expect_gift_error((struct gspec){.name = "\"Li\\u0085on\""}, want);
    expect_gift_error(
        (struct gspec){.name = "\"L12345678901234567890123456789012345678901234567890123456789012"
                               "34\""},
        want);
}

Test(gifts_catalog_parse, accepts_utf8_name)
{
    /* "Rosé 🌹": a two-byte and a four-byte sequence. */
    struct gifts_catalog *cat =
        parse_gift_ok((struct gspec){.name = "\"Ros\xc3\xa9 \xf0\x9f\x8c\xb9\""});
    cr_assert_str_eq(gifts_find(cat, "lion")->name, "Ros\xc3\xa9 \xf0\x9f\x8c\xb9");
    gifts_catalog_free(cat);
}

Test(gifts_catalog_parse, rejects_zero_coins_with_exact_message)
{
    char gift[1024], json[2048], err[256] = "";
    struct gspec s = {.coins = "0"};
    gift_json(gift, sizeof(gift), &s);
    /* The bad lion sits at index 3, after three good gifts. */
    snprintf(json, sizeof(json),
             "{\"gifts\":[" ROSE_JSON ",{\"id\":\"a\",\"name\":\"A\",\"coins\":2,\"diamonds\":1,"
             "\"tier\":\"small\",\"animation\":\"a\"},{\"id\":\"b\",\"name\":\"B\",\"coins\":2,"
             "\"diamonds\":1,\"tier\":\"small\",\"animation\":\"b\"},%s]}",
             gift);
    struct gifts_catalog *cat = NULL;
    cr_assert_eq(gifts_catalog_parse(json, strlen(json), &cat, err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "gifts[3] (lion): coins: must be an integer >= 1");
}

Test(gifts_catalog_parse, rejects_negative_coins)
{
    expect_gift_error((struct gspec){.coins = "-5"}, "gifts[1] (lion): coins: must be an integer");
}

Test(gifts_catalog_parse, rejects_fractional_coins)
{
    expect_gift_error((struct gspec){.coins = "1.5"}, "gifts[1] (lion): coins: must be an integer");
    expect_gift_error((struct gspec){.coins = "1.0"}, "gifts[1] (lion): coins: must be an integer");
}

Test(gifts_catalog_parse, rejects_string_or_missing_coins)
{
    expect_gift_error((struct gspec){.coins = "\"10\""},
                      "gifts[1] (lion): coins: must be an integer");
    expect_gift_error((struct gspec){.coins = OMIT}, "gifts[1] (lion): coins: must be an integer");
}

Test(gifts_catalog_parse, rejects_negative_diamonds)
{
    expect_gift_error((struct gspec){.diamonds = "-1"},
                      "gifts[1] (lion): diamonds: must be an integer >= 0");
    expect_gift_error((struct gspec){.diamonds = OMIT},
                      "gifts[1] (lion): diamonds: must be an integer >= 0");
}

Test(gifts_catalog_parse, accepts_zero_diamonds)
{
    struct gifts_catalog *cat = parse_gift_ok((struct gspec){.diamonds = "0"});
    cr_assert_eq(gifts_find(cat, "lion")->diamonds, 0);
    gifts_catalog_free(cat);
}

Test(gifts_catalog_parse, rejects_unknown_tier)
{
    const char *want = "gifts[1] (lion): tier: must be one of small, medium, large, legendary";
    expect_gift_error((struct gspec){.tier = "\"epic\""}, want);
    expect_gift_error((struct gspec){.tier = "\"Small\""}, want);
    expect_gift_error((struct gspec){.tier = "2"}, want);
    expect_gift_error((struct gspec){.tier = OMIT}, want);
}

Test(gifts_catalog_parse, parses_every_tier)
{
    static const char *const toks[] = {"\"small\"", "\"medium\"", "\"large\"", "\"legendary\""};
    for (int t = 0; t < 4; t++) {
        struct gifts_catalog *cat = parse_gift_ok((struct gspec){.tier = toks[t]});
        cr_assert_eq((int)gifts_find(cat, "lion")->tier, t);
        gifts_catalog_free(cat);
    }
}

Test(gifts_catalog_parse, rejects_bad_animation)
{
    const char *want = "gifts[1] (lion): animation: must be an identifier";
    expect_gift_error((struct gspec){.animation = "\"lion roar\""}, want);
    expect_gift_error((struct gspec){.animation = "\"\""}, want);
    expect_gift_error((struct gspec){.animation = OMIT}, want);
}

Test(gifts_catalog_parse, rejects_non_bool_streakable)
{
    const char *want = "gifts[1] (lion): streakable: must be true or false";
    expect_gift_error((struct gspec){.streakable = "1"}, want);
    expect_gift_error((struct gspec){.streakable = "\"true\""}, want);
}

Test(gifts_catalog_parse, rejects_bad_date_text)
{
    static const char *const bad[] = {
        "\"2026-10-25\"",
        "\"2026-10-25 00:00:00Z\"",
        "\"2026-10-25T00:00:00\"",
        "\"2026-10-25T00:00:00+01:00\"",
        "\"2026-10-25T00:00:00.000Z\"",
        "\"2026-13-01T00:00:00Z\"",
        "\"2026-02-29T00:00:00Z\"",
        "\"2026-04-31T00:00:00Z\"",
        "\"2026-10-25T24:00:00Z\"",
        "\"2026-10-25T00:60:00Z\"",
        "\"2026-1a-25T00:00:00Z\"",
        "\"1970-01-01T00:00:00Z\"",
        "\"1969-12-31T23:59:59Z\"",
        "1792886400",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect_gift_error((struct gspec){.from = bad[i]}, "gifts[1] (lion): available_from: must");
        expect_gift_error((struct gspec){.until = bad[i]},
                          "gifts[1] (lion): available_until: must");
    }
}

Test(gifts_catalog_parse, accepts_leap_day_and_null_bounds)
{
    struct gifts_catalog *cat =
        parse_gift_ok((struct gspec){.from = "\"2028-02-29T12:34:56Z\"", .until = "null"});
    const struct gift *g = gifts_find(cat, "lion");
    cr_assert_eq(g->available_from_ms, 1835440496000LL);
    cr_assert_eq(g->available_until_ms, 0);
    gifts_catalog_free(cat);
}

Test(gifts_catalog_parse, rejects_from_not_before_until)
{
    const char *want = "gifts[1] (lion): available_until: must be later than available_from";
    expect_gift_error(
        (struct gspec){.from = "\"2026-11-01T00:00:00Z\"", .until = "\"2026-11-01T00:00:00Z\""},
        want);
    expect_gift_error(
        (struct gspec){.from = "\"2026-11-01T00:00:01Z\"", .until = "\"2026-11-01T00:00:00Z\""},
        want);
}

Test(gifts_catalog_parse, rejects_duplicate_gift_id)
{
    expect_error("{\"gifts\":[" ROSE_JSON "," ROSE_JSON "]}", "gifts[1] (rose): id: duplicate");
}

/* ---- parse: packages ---- */

#define PKG(id, coins, cents, cur)                                                                 \
    "{\"id\":" id ",\"coins\":" coins ",\"price_cents\":" cents ",\"currency\":" cur "}"
#define WITH_PACKAGES(pkgs) "{\"gifts\":[" ROSE_JSON "],\"packages\":[" pkgs "]}"

Test(gifts_catalog_parse, rejects_duplicate_package_id)
{
    expect_error(WITH_PACKAGES(PKG("\"p70\"", "70", "99", "\"USD\"") "," PKG(
                     "\"p350\"", "350", "499", "\"USD\"") "," PKG("\"p70\"", "1", "1", "\"EUR\"")),
                 "packages[2] (p70): id: duplicate");
}

Test(gifts_catalog_parse, rejects_bad_package_fields)
{
    expect_error(WITH_PACKAGES(PKG("\"p70\"", "0", "99", "\"USD\"")),
                 "packages[0] (p70): coins: must be an integer >= 1");
    expect_error(WITH_PACKAGES(PKG("\"p70\"", "70", "-1", "\"USD\"")),
                 "packages[0] (p70): price_cents: must be an integer >= 0");
    expect_error(WITH_PACKAGES(PKG("\"p 70\"", "70", "99", "\"USD\"")),
                 "packages[0]: id: must be an identifier");
    expect_error(WITH_PACKAGES("7"), "packages[0]: must be an object");
    expect_error("{\"gifts\":[" ROSE_JSON "],\"packages\":{}}", "packages: must be an array");
}

Test(gifts_catalog_parse, rejects_lowercase_currency)
{
    char err[256] = "";
    const char *json = WITH_PACKAGES(PKG("\"p70\"", "70", "99", "\"usd\""));
    struct gifts_catalog *cat = NULL;
    cr_assert_eq(gifts_catalog_parse(json, strlen(json), &cat, err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "packages[0] (p70): currency: must be three upper-case letters");
    expect_error(WITH_PACKAGES(PKG("\"p70\"", "70", "99", "\"US\"")),
                 "packages[0] (p70): currency: must be three upper-case letters");
    expect_error(WITH_PACKAGES(PKG("\"p70\"", "70", "99", "\"USDT\"")),
                 "packages[0] (p70): currency: must be three upper-case letters");
}

Test(gifts_catalog_parse, accepts_free_package)
{
    struct gifts_catalog *cat = parse_ok(WITH_PACKAGES(PKG("\"promo\"", "10", "0", "\"EUR\"")));
    const struct gifts_package *p = gifts_find_package(cat, "promo");
    cr_assert_not_null(p);
    cr_assert_eq(p->price_cents, 0);
    cr_assert_str_eq(p->currency, "EUR");
    gifts_catalog_free(cat);
}

/* ---- parse: error buffer handling ---- */

Test(gifts_catalog_parse, truncates_error_to_errlen)
{
    char err[8];
    memset(err, 'x', sizeof(err));
    const char *json = "{\"gifts\":[]}";
    struct gifts_catalog *cat = NULL;
    cr_assert_eq(gifts_catalog_parse(json, strlen(json), &cat, err, sizeof(err)), -EINVAL);
    cr_assert_eq(strlen(err), sizeof(err) - 1);
}

Test(gifts_catalog_parse, tolerates_null_error_buffer)
{
    const char *json = "{\"gifts\":[]}";
    struct gifts_catalog *cat = NULL;
    cr_assert_eq(gifts_catalog_parse(json, strlen(json), &cat, NULL, 0), -EINVAL);
    cr_assert_null(cat);
}

Test(gifts_catalog_parse, honours_len_not_nul)
{
    /* Only the first len bytes are the document; trailing garbage must not be read. */
    const char *json = "{\"gifts\":[" ROSE_JSON "]}garbage";
    struct gifts_catalog *cat = NULL;
    char err[256] = "";
    cr_assert_eq(gifts_catalog_parse(json, strlen(json) - 7, &cat, err, sizeof(err)), 0, "%s", err);
    gifts_catalog_free(cat);
}

/* ---- lookups ---- */

Test(gifts_find, finds_by_exact_id)
{
    struct gifts_catalog *cat = load_shipped();
    const struct gift *g = gifts_find(cat, "galaxy");
    cr_assert_not_null(g);
    cr_assert_str_eq(g->id, "galaxy");
    cr_assert_null(gifts_find(cat, "Galaxy"));
    cr_assert_null(gifts_find(cat, "galax"));
    cr_assert_null(gifts_find(cat, "galaxy "));
    cr_assert_null(gifts_find(cat, ""));
    cr_assert_null(gifts_find(cat, "p70"), "packages are not gifts");
    cr_assert_null(gifts_find(cat, NULL));
    cr_assert_null(gifts_find(NULL, "rose"));
    gifts_catalog_free(cat);
}

Test(gifts_find, finds_every_gift_in_a_large_catalog)
{
    enum { N = 900 };
    size_t cap = (size_t)N * 160 + 64;
    char *json = malloc(cap);
    cr_assert_not_null(json);
    size_t used = (size_t)snprintf(json, cap, "{\"gifts\":[");
    for (int i = 0; i < N; i++) {
        used += (size_t)snprintf(json + used, cap - used,
                                 "%s{\"id\":\"g%d\",\"name\":\"G %d\",\"coins\":%d,\"diamonds\":0,"
                                 "\"tier\":\"small\",\"animation\":\"a\"}",
                                 i ? "," : "", i, i, i + 1);
    }
    snprintf(json + used, cap - used, "]}");
    struct gifts_catalog *cat = parse_ok(json);
    free(json);
    cr_assert_eq(gifts_count(cat), N);
    char id[16];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "g%d", i);
        const struct gift *g = gifts_find(cat, id);
        cr_assert_not_null(g, "%s", id);
        cr_assert_eq(g->coins, i + 1);
        cr_assert_eq(gifts_at(cat, (size_t)i), g, "file order kept");
    }
    cr_assert_null(gifts_find(cat, "g900"));
    cr_assert_null(gifts_at(cat, N));
    gifts_catalog_free(cat);
}

Test(gifts_find_package, finds_and_misses)
{
    struct gifts_catalog *cat = load_shipped();
    const struct gifts_package *p = gifts_find_package(cat, "p1400");
    cr_assert_not_null(p);
    cr_assert_eq(p->coins, 1400);
    cr_assert_null(gifts_find_package(cat, "p1401"));
    cr_assert_null(gifts_find_package(cat, "rose"));
    gifts_catalog_free(cat);
}

Test(gifts_find_package, misses_when_catalog_has_no_packages)
{
    struct gifts_catalog *cat = parse_ok("{\"gifts\":[" ROSE_JSON "]}");
    cr_assert_null(gifts_find_package(cat, "p70"));
    gifts_catalog_free(cat);
}

Test(gifts_catalog_free, accepts_null)
{
    gifts_catalog_free(NULL);
}

Test(gifts_tier_name, names_each_tier)
{
    cr_assert_str_eq(gifts_tier_name(GIFTS_TIER_SMALL), "small");
    cr_assert_str_eq(gifts_tier_name(GIFTS_TIER_MEDIUM), "medium");
    cr_assert_str_eq(gifts_tier_name(GIFTS_TIER_LARGE), "large");
    cr_assert_str_eq(gifts_tier_name(GIFTS_TIER_LEGENDARY), "legendary");
}

/* ---- availability ---- */

Test(gifts_available, open_bounds_always_available)
{
    struct gift g = {.available_from_ms = 0, .available_until_ms = 0};
    cr_assert(gifts_available(&g, 0));
    cr_assert(gifts_available(&g, MS_2026_11_22));
    cr_assert(gifts_available(&g, INT64_MAX));
}

Test(gifts_available, from_is_inclusive)
{
    struct gift g = {.available_from_ms = MS_2026_10_25, .available_until_ms = MS_2026_11_01};
    cr_assert_not(gifts_available(&g, MS_2026_10_25 - 1));
    cr_assert(gifts_available(&g, MS_2026_10_25));
    cr_assert(gifts_available(&g, MS_2026_10_26));
}

Test(gifts_available, until_is_exclusive)
{
    struct gift g = {.available_from_ms = MS_2026_10_25, .available_until_ms = MS_2026_11_01};
    cr_assert(gifts_available(&g, MS_2026_11_01 - 1));
    cr_assert_not(gifts_available(&g, MS_2026_11_01));
    cr_assert_not(gifts_available(&g, MS_2026_11_22));
}

Test(gifts_available, one_sided_bounds)
{
    struct gift from_only = {.available_from_ms = MS_2026_11_01};
    cr_assert_not(gifts_available(&from_only, MS_2026_10_26));
    cr_assert(gifts_available(&from_only, INT64_MAX));
    struct gift until_only = {.available_until_ms = MS_2026_11_01};
    cr_assert(gifts_available(&until_only, 1));
    cr_assert_not(gifts_available(&until_only, MS_2026_11_22));
}

/* ---- JSON views ---- */

static json_t *find_in(json_t *arr, const char *id)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (strcmp(json_string_value(json_object_get(v, "id")), id) == 0) {
            return v;
        }
    }
    return NULL;
}

static json_t *catalog_view(const struct gifts_catalog *cat, int64_t now_ms)
{
    char *s = gifts_catalog_json(cat, now_ms);
    cr_assert_not_null(s);
    json_error_t jerr;
    json_t *root = json_loads(s, 0, &jerr);
    cr_assert_not_null(root, "%s: %s", jerr.text, s);
    cr_assert_null(strchr(s, '\n'), "compact output");
    free(s);
    cr_assert(json_is_array(json_object_get(root, "gifts")));
    return root;
}

Test(gifts_catalog_json, lists_only_gifts_available_now)
{
    struct gifts_catalog *cat = load_shipped();

    json_t *late = catalog_view(cat, MS_2026_11_22);
    json_t *arr = json_object_get(late, "gifts");
    cr_assert_null(find_in(arr, "pumpkin"), "pumpkin ended 2026-11-01");
    cr_assert_not_null(find_in(arr, "snowflake"));
    cr_assert_eq(json_array_size(arr), gifts_count(cat) - 1);
    json_decref(late);

    json_t *early = catalog_view(cat, MS_2026_10_26);
    arr = json_object_get(early, "gifts");
    cr_assert_not_null(find_in(arr, "pumpkin"));
    cr_assert_null(find_in(arr, "snowflake"), "snowflake starts 2026-11-01");
    json_decref(early);
    gifts_catalog_free(cat);
}

Test(gifts_catalog_json, entries_carry_every_field)
{
    struct gifts_catalog *cat = load_shipped();
    json_t *root = catalog_view(cat, MS_2026_10_26);
    json_t *arr = json_object_get(root, "gifts");

    json_t *lion = find_in(arr, "lion");
    cr_assert_not_null(lion);
    cr_assert_str_eq(json_string_value(json_object_get(lion, "name")), "Lion");
    cr_assert_eq(json_integer_value(json_object_get(lion, "coins")), 29999);
    cr_assert_eq(json_integer_value(json_object_get(lion, "diamonds")), 14999);
    cr_assert_str_eq(json_string_value(json_object_get(lion, "tier")), "legendary");
    cr_assert_str_eq(json_string_value(json_object_get(lion, "animation")), "lion");
    cr_assert(json_is_false(json_object_get(lion, "streakable")));
    cr_assert_null(json_object_get(lion, "available_from"));
    cr_assert_null(json_object_get(lion, "available_until"));

    json_t *pumpkin = find_in(arr, "pumpkin");
    cr_assert(json_is_true(json_object_get(pumpkin, "streakable")));
    cr_assert_str_eq(json_string_value(json_object_get(pumpkin, "available_from")),
                     "2026-10-25T00:00:00Z");
    cr_assert_str_eq(json_string_value(json_object_get(pumpkin, "available_until")),
                     "2026-11-01T00:00:00Z");
    json_decref(root);
    gifts_catalog_free(cat);
}

Test(gifts_catalog_json, output_parses_back_as_the_same_catalog)
{
    struct gifts_catalog *cat = load_shipped();
    char *s = gifts_catalog_json(cat, MS_2026_10_26);
    cr_assert_not_null(s);
    struct gifts_catalog *again = parse_ok(s);
    free(s);
    for (size_t i = 0; i < gifts_count(again); i++) {
        const struct gift *b = gifts_at(again, i);
        const struct gift *a = gifts_find(cat, b->id);
        cr_assert_not_null(a, "%s", b->id);
        cr_assert_str_eq(a->name, b->name);
        cr_assert_eq(a->coins, b->coins);
        cr_assert_eq(a->diamonds, b->diamonds);
        cr_assert_eq(a->tier, b->tier);
        cr_assert_str_eq(a->animation, b->animation);
        cr_assert_eq(a->streakable, b->streakable);
        cr_assert_eq(a->available_from_ms, b->available_from_ms);
        cr_assert_eq(a->available_until_ms, b->available_until_ms);
    }
    gifts_catalog_free(again);
    gifts_catalog_free(cat);
}

Test(gifts_catalog_json, exact_compact_output_without_expired_gift)
{
    struct gifts_catalog *cat = parse_gift_ok(
        (struct gspec){.from = "\"2026-10-25T00:00:00Z\"", .until = "\"2026-11-01T00:00:00Z\""});
    char *s = gifts_catalog_json(cat, MS_2026_11_22);
    cr_assert_not_null(s);
    cr_assert_str_eq(s, "{\"gifts\":[{\"id\":\"rose\",\"name\":\"Rose\",\"coins\":1,\"diamonds\":"
                        "1,\"tier\":\"small\",\"animation\":\"rose\",\"streakable\":true}]}");
    free(s);
    gifts_catalog_free(cat);
}

Test(gifts_packages_json, lists_packages_in_file_order)
{
    struct gifts_catalog *cat = parse_ok(WITH_PACKAGES(
        PKG("\"p70\"", "70", "99", "\"USD\"") "," PKG("\"p350\"", "350", "499", "\"EUR\"")));
    char *s = gifts_packages_json(cat, 1800000000000LL);
    cr_assert_not_null(s);
    cr_assert_str_eq(s, "{\"packages\":[{\"id\":\"p70\",\"coins\":70,\"bonus_coins\":0,"
                        "\"price_cents\":99,\"currency\":\"USD\",\"available_until\":null},"
                        "{\"id\":\"p350\",\"coins\":350,\"bonus_coins\":0,\"price_cents\":499,"
                        "\"currency\":\"EUR\",\"available_until\":null}]}");
    free(s);
    gifts_catalog_free(cat);
}

/* A promotion: bonus coins and a window; outside it the package is not listed. */
Test(gifts_packages_json, lists_promotions_only_while_they_run)
{
    struct gifts_catalog *cat = parse_ok(
        WITH_PACKAGES("{\"id\":\"fall\",\"coins\":350,\"bonus_coins\":35,\"price_cents\":499,"
                      "\"currency\":\"USD\",\"available_from\":\"2026-11-25T00:00:00Z\","
                      "\"available_until\":\"2026-12-02T00:00:00Z\"}"));
    const struct gifts_package *p = gifts_find_package(cat, "fall");
    cr_assert_not_null(p);
    cr_assert_eq(p->bonus_coins, 35);
    int64_t before = 1764633600000LL; /* 2025-12-02T00:00:00Z: a year before */
    cr_assert_not(gifts_package_available(p, before));
    int64_t from = 1795564800000LL; /* 2026-11-25T00:00:00Z */
    cr_assert(gifts_package_available(p, from));
    cr_assert(gifts_package_available(p, from + 86400000LL));
    cr_assert_not(gifts_package_available(p, from + 7 * 86400000LL), "until is exclusive");
    char *s = gifts_packages_json(cat, from + 1000);
    cr_assert_str_eq(s, "{\"packages\":[{\"id\":\"fall\",\"coins\":350,\"bonus_coins\":35,"
                        "\"price_cents\":499,\"currency\":\"USD\","
                        "\"available_until\":\"2026-12-02T00:00:00Z\"}]}");
    free(s);
    s = gifts_packages_json(cat, from - 1000);
    cr_assert_str_eq(s, "{\"packages\":[]}");
    free(s);
    gifts_catalog_free(cat);
}

Test(gifts_packages_json, shipped_catalog_parses_back)
{
    struct gifts_catalog *cat = load_shipped();
    char *s = gifts_packages_json(cat, 1800000000000LL);
    cr_assert_not_null(s);
    json_t *root = json_loads(s, 0, NULL);
    free(s);
    cr_assert_not_null(root);
    json_t *arr = json_object_get(root, "packages");
    cr_assert_eq(json_array_size(arr), 5);
    json_t *p = json_array_get(arr, 4);
    cr_assert_str_eq(json_string_value(json_object_get(p, "id")), "p3500");
    cr_assert_eq(json_integer_value(json_object_get(p, "price_cents")), 4999);
    json_decref(root);
    gifts_catalog_free(cat);
}

Test(gifts_packages_json, empty_list_without_packages)
{
    struct gifts_catalog *cat = parse_ok("{\"gifts\":[" ROSE_JSON "]}");
    char *s = gifts_packages_json(cat, 1800000000000LL);
    cr_assert_str_eq(s, "{\"packages\":[]}");
    free(s);
    gifts_catalog_free(cat);
}
