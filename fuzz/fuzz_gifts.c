/* fuzz_gifts: catalog JSON through gifts_catalog_parse, lookups, and the JSON views read back. */
#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "gifts/gifts.h"

#define NOW_MS 1793000000000LL /* 2026-10-26, inside the shipped catalog's event windows */

/* A display name as SPEC 6 and gifts.h define it: 1-64 bytes of UTF-8 (jansson's test), no C0,
 * DEL or C1 control character. */
static bool display_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F) {
            return false;
        }
        if (c == 0xC2 && i + 1 < n && (unsigned char)s[i + 1] <= 0x9F) {
            return false; /* C1 controls, U+0080..U+009F */
        }
    }
    json_t *v = json_string(s);
    json_decref(v);
    return v != NULL;
}

static void check_gift(const struct gifts_catalog *cat, const struct gift *g)
{
    CHECK(gifts_find(cat, g->id) == g); /* ids are unique and the index finds each */
    CHECK(strlen(g->id) >= 1 && strlen(g->animation) >= 1);
    CHECK(display_name(g->name));
    CHECK(g->coins >= 1 && g->diamonds >= 0);
    CHECK(strcmp(gifts_tier_name(g->tier), "unknown") != 0);
    CHECK(g->available_from_ms >= 0 && g->available_until_ms >= 0);
    CHECK(g->available_from_ms % 1000 == 0 && g->available_until_ms % 1000 == 0);
    if (g->available_from_ms != 0 && g->available_until_ms != 0) {
        CHECK(g->available_from_ms < g->available_until_ms);
        CHECK(!gifts_available(g, g->available_from_ms - 1));
        CHECK(gifts_available(g, g->available_from_ms));
        CHECK(!gifts_available(g, g->available_until_ms));
    }
}

/* The gifts of the JSON view at NOW_MS parse back to the same gifts: times survive RFC 3339
 * formatting and parsing, names survive escaping. */
static void check_view(const struct gifts_catalog *cat)
{
    char *text = gifts_catalog_json(cat, NOW_MS);
    CHECK(text != NULL);
    size_t available = 0;
    for (size_t i = 0; i < gifts_count(cat); i++) {
        available += gifts_available(gifts_at(cat, i), NOW_MS);
    }
    struct gifts_catalog *back = NULL;
    char err[256];
    int rc = gifts_catalog_parse(text, strlen(text), &back, err, sizeof err);
    if (available == 0) {
        CHECK(rc == -EINVAL); /* {"gifts":[]} is not a catalog */
    } else {
        if (rc != 0) {
            fprintf(stderr, "view does not parse back: %s\n%s\n", err, text);
        }
        CHECK(rc == 0);
        CHECK(gifts_count(back) == available && gifts_package_count(back) == 0);
        for (size_t i = 0; i < gifts_count(back); i++) {
            const struct gift *b = gifts_at(back, i);
            const struct gift *g = gifts_find(cat, b->id);
            CHECK(g != NULL);
            CHECK(strcmp(g->name, b->name) == 0 && strcmp(g->animation, b->animation) == 0);
            CHECK(g->coins == b->coins && g->diamonds == b->diamonds && g->tier == b->tier);
            CHECK(g->streakable == b->streakable);
            CHECK(g->available_from_ms == b->available_from_ms);
            CHECK(g->available_until_ms == b->available_until_ms);
        }
    }
    gifts_catalog_free(back);
    free(text);

    text = gifts_packages_json(cat, NOW_MS);
    CHECK(text != NULL);
    json_t *v = json_loads(text, 0, NULL);
    size_t listed = 0; /* the packages available at NOW_MS: a promotion outside its window is not */
    for (size_t i = 0; i < gifts_package_count(cat); i++) {
        const struct gifts_package *p = gifts_package_at(cat, i);
        CHECK(p->bonus_coins >= 0);
        CHECK(p->available_from_ms == 0 || p->available_until_ms == 0 ||
              p->available_from_ms < p->available_until_ms);
        listed += gifts_package_available(p, NOW_MS);
    }
    CHECK(json_array_size(json_object_get(v, "packages")) == listed);
    json_decref(v);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gifts_catalog *cat = (struct gifts_catalog *)1;
    char err[256] = "";
    int rc = gifts_catalog_parse((const char *)data, size, &cat, err, sizeof err);
    if (rc != 0) {
        CHECK(rc == -EINVAL && cat == NULL);
        CHECK(err[0] != '\0');
        return 0;
    }
    CHECK(cat != NULL && gifts_count(cat) >= 1);
    for (size_t i = 0; i < gifts_count(cat); i++) {
        check_gift(cat, gifts_at(cat, i));
    }
    for (size_t i = 0; i < gifts_package_count(cat); i++) {
        const struct gifts_package *p = gifts_package_at(cat, i);
        CHECK(gifts_find_package(cat, p->id) == p);
        CHECK(p->coins >= 1 && p->price_cents >= 0 && strlen(p->currency) == 3);
    }
    CHECK(gifts_find(cat, "") == NULL && gifts_find_package(cat, "") == NULL);
    check_view(cat);
    gifts_catalog_free(cat);
    return 0;
}
