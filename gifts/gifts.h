/* gifts: the gift catalog (SPEC 6) — load, validate, look up, availability windows, JSON views. */
#ifndef GIFTD_GIFTS_H
#define GIFTD_GIFTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum gifts_tier {
    GIFTS_TIER_SMALL = 0,
    GIFTS_TIER_MEDIUM,
    GIFTS_TIER_LARGE,
    GIFTS_TIER_LEGENDARY,
};

struct gift {
    char id[65];
    char name[65];
    long coins;    /* >= 1 */
    long diamonds; /* >= 0 */
    enum gifts_tier tier;
    char animation[65];
    bool streakable;
    int64_t available_from_ms;  /* 0: no lower bound */
    int64_t available_until_ms; /* 0: no upper bound */
};

struct gifts_package {
    char id[65];
    long coins;                 /* >= 1 */
    long bonus_coins;           /* >= 0: a promotion's extra coins, credited with coins */
    long price_cents;           /* >= 0 */
    char currency[4];           /* ISO 4217, three upper-case letters */
    int64_t available_from_ms;  /* 0: no lower bound (a promotion's window) */
    int64_t available_until_ms; /* 0: no upper bound */
};

struct gifts_catalog;

/** "small", "medium", "large", "legendary". */
const char *gifts_tier_name(enum gifts_tier tier);

/**
 * Parses and validates a catalog from JSON text (borrowed). Rules: top-level object with array
 * "gifts" (at least one) and optional array "packages"; every gift has id (identifier), name
 * (display name), coins (integer >= 1), diamonds (integer >= 0), tier (one of the four),
 * animation (identifier), streakable (bool, default false), optional available_from /
 * available_until (RFC 3339 UTC "YYYY-MM-DDTHH:MM:SSZ", from < until); ids unique among gifts
 * and among packages; every package has id, coins >= 1, price_cents >= 0, currency [A-Z]{3},
 * optional bonus_coins >= 0 and available_from / available_until as for gifts.
 * On success *out is **new** (gifts_catalog_free) and 0 is returned. On failure returns
 * -EINVAL and err receives a message naming the entry and field, e.g.
 * "gifts[3] (lion): coins: must be an integer >= 1".
 */
int gifts_catalog_parse(const char *json, size_t len, struct gifts_catalog **out, char *err,
                        size_t errlen);

/** gifts_catalog_parse of a file's contents; -EIO with err naming the path if unreadable. */
int gifts_catalog_load(const char *path, struct gifts_catalog **out, char *err, size_t errlen);

/** Frees a catalog; NULL is a no-op. */
void gifts_catalog_free(struct gifts_catalog *cat);

/** The gift with this id (borrowed, valid while cat lives), or NULL. id borrowed. */
const struct gift *gifts_find(const struct gifts_catalog *cat, const char *id);
/** The package with this id (borrowed), or NULL. */
const struct gifts_package *gifts_find_package(const struct gifts_catalog *cat, const char *id);

/** True when now_ms lies in [available_from, available_until) (open bounds when 0). */
bool gifts_available(const struct gift *g, int64_t now_ms);
/** The same for a package (a promotion runs while it is available). */
bool gifts_package_available(const struct gifts_package *p, int64_t now_ms);

size_t gifts_count(const struct gifts_catalog *cat);
/** The i-th gift in file order (borrowed). */
const struct gift *gifts_at(const struct gifts_catalog *cat, size_t i);
size_t gifts_package_count(const struct gifts_catalog *cat);
const struct gifts_package *gifts_package_at(const struct gifts_catalog *cat, size_t i);

/**
 * {"gifts":[…]} of the gifts available at now_ms, each with id, name, coins, diamonds, tier,
 * animation, streakable and, when set, available_from/available_until as RFC 3339 strings.
 * Returns a **new** NUL-terminated string (free()), or NULL on OOM.
 */
char *gifts_catalog_json(const struct gifts_catalog *cat, int64_t now_ms);

/** {"packages":[{"id","coins","bonus_coins","price_cents","currency","available_until"}…]}:
 * the packages available at now_ms (available_until null when the package has no end);
 * **new** string or NULL. */
char *gifts_packages_json(const struct gifts_catalog *cat, int64_t now_ms);

#endif
