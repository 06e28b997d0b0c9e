/* gifts: the gift catalog (SPEC 6) — load, validate, look up, availability windows, JSON views. */
#include "gifts/gifts.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A catalog file larger than this is certainly a mistake; refuse it rather than allocate. */
#define CATALOG_MAX_BYTES (16u * 1024u * 1024u)
#define FIELD_MAX         64u
#define RFC3339_LEN       20u

/* Open-addressing table of entry indices (plus one, so 0 marks an empty slot), keyed by id. */
struct id_index {
    size_t *slots;
    size_t mask;
};

struct gifts_catalog {
    struct gift *gifts;
    size_t ngifts;
    struct gifts_package *packages;
    size_t npackages;
    struct id_index gift_index;
    struct id_index package_index;
};

static const char *const tier_names[] = {"small", "medium", "large", "legendary"};

const char *gifts_tier_name(enum gifts_tier tier)
{
    if ((unsigned)tier < sizeof(tier_names) / sizeof(tier_names[0])) {
        return tier_names[tier];
    }
    return "unknown";
}

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
                                                          ...)
{
    if (err == NULL || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- syntax helpers ---- */

static bool is_ident_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '-';
}

static bool valid_identifier(const char *s, size_t len)
{
    if (len == 0 || len > FIELD_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_ident_char((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

/*
 * Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF) without control
 * characters: C0, DEL and C1 would let a display name smuggle line breaks or terminal escapes.
 */
static bool valid_display_name(const char *s, size_t len)
{
    if (len == 0 || len > FIELD_MAX) {
        return false;
    }
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        uint32_t cp;
        size_t n;
        if (c < 0x80) {
            cp = c;
            n = 1;
        } else if (c >= 0xC2 && c <= 0xDF) {
            cp = c & 0x1Fu;
            n = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            cp = c & 0x0Fu;
            n = 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            cp = c & 0x07u;
            n = 4;
        } else {
            return false;
        }
        if (n > len - i) {
            return false;
        }
        for (size_t k = 1; k < n; k++) {
            unsigned char cc = p[i + k];
            if ((cc & 0xC0u) != 0x80u) {
                return false;
            }
            cp = (cp << 6) | (cc & 0x3Fu);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF)) {
            return false;
        }
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) {
            return false;
        }
        i += n;
    }
    return true;
}

static bool valid_currency(const char *s, size_t len)
{
    if (len != 3) {
        return false;
    }
    for (size_t i = 0; i < 3; i++) {
        if (s[i] < 'A' || s[i] > 'Z') {
            return false;
        }
    }
    return true;
}

static int two_digits(const char *s, int *out)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9') {
        return -1;
    }
    *out = (s[0] - '0') * 10 + (s[1] - '0');
    return 0;
}

static int days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
}

/* Parses exactly "YYYY-MM-DDTHH:MM:SSZ" into milliseconds since the epoch (must be > 0). */
static int rfc3339_parse(const char *s, size_t len, int64_t *out_ms)
{
    if (len != RFC3339_LEN || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':' || s[19] != 'Z') {
        return -1;
    }
    int yh, yl, mon, day, hour, min, sec;
    if (two_digits(s, &yh) || two_digits(s + 2, &yl) || two_digits(s + 5, &mon) ||
        two_digits(s + 8, &day) || two_digits(s + 11, &hour) || two_digits(s + 14, &min) ||
        two_digits(s + 17, &sec)) {
        return -1;
    }
    int year = yh * 100 + yl;
    if (year < 1970 || mon < 1 || mon > 12 || day < 1 || day > days_in_month(year, mon) ||
        hour > 23 || min > 59 || sec > 59) {
        return -1;
    }
    struct tm tm = {0};
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    /* 0 means "no bound" in struct gift, so the epoch itself cannot be a bound. */
    if (t <= 0) {
        return -1;
    }
    *out_ms = (int64_t)t * 1000;
    return 0;
}

/* Formats ms (floored to whole seconds) as "YYYY-MM-DDTHH:MM:SSZ"; buf holds >= 21 bytes. */
static int rfc3339_format(int64_t ms, char *buf, size_t buflen)
{
    int64_t secs = ms / 1000;
    if (ms % 1000 < 0) {
        secs--;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL) {
        return -1;
    }
    if (strftime(buf, buflen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        return -1;
    }
    return 0;
}

/* ---- id index ---- */

static uint64_t hash_id(const char *s)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a */
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static int index_init(struct id_index *ix, size_t n)
{
    size_t cap = 8;
    while (cap < n * 2) {
        cap *= 2;
    }
    ix->slots = calloc(cap, sizeof(*ix->slots));
    if (ix->slots == NULL) {
        return -ENOMEM;
    }
    ix->mask = cap - 1;
    return 0;
}

/*
 * Looks id up among entries whose id sits at base + i * stride. Returns the entry index, or
 * SIZE_MAX when absent; *out_slot (if given) receives the slot where it is or would go.
 */
static size_t index_lookup(const struct id_index *ix, const void *base, size_t stride,
                           const char *id, size_t *out_slot)
{
    size_t slot = (size_t)hash_id(id) & ix->mask;
    for (;;) {
        size_t v = ix->slots[slot];
        if (v == 0) {
            break;
        }
        const char *other = (const char *)base + (v - 1) * stride;
        if (strcmp(other, id) == 0) {
            if (out_slot != NULL) {
                *out_slot = slot;
            }
            return v - 1;
        }
        slot = (slot + 1) & ix->mask;
    }
    if (out_slot != NULL) {
        *out_slot = slot;
    }
    return SIZE_MAX;
}

/* Inserts entry i; false when its id is already present. The table never fills (cap >= 2n). */
static bool index_insert(struct id_index *ix, const void *base, size_t stride, size_t i)
{
    const char *id = (const char *)base + i * stride;
    size_t slot;
    if (index_lookup(ix, base, stride, id, &slot) != SIZE_MAX) {
        return false;
    }
    ix->slots[slot] = i + 1;
    return true;
}

/* ---- parsing ---- */

struct field_ctx {
    const char *label; /* "gifts[3] (lion)" */
    char *err;
    size_t errlen;
};

static int field_fail(const struct field_ctx *fc, const char *field, const char *msg)
{
    set_err(fc->err, fc->errlen, "%s: %s: %s", fc->label, field, msg);
    return -EINVAL;
}

static int get_identifier(const struct field_ctx *fc, json_t *obj, const char *field, char *dst)
{
    json_t *v = json_object_get(obj, field);
    if (!json_is_string(v) || !valid_identifier(json_string_value(v), json_string_length(v))) {
        return field_fail(fc, field, "must be an identifier (1-64 bytes of [A-Za-z0-9_.:-])");
    }
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static int get_long(const struct field_ctx *fc, json_t *obj, const char *field, long min,
                    const char *msg, long *out)
{
    json_t *v = json_object_get(obj, field);
    if (!json_is_integer(v)) {
        return field_fail(fc, field, msg);
    }
    json_int_t n = json_integer_value(v);
    if (n < min || n > LONG_MAX) {
        return field_fail(fc, field, msg);
    }
    *out = (long)n;
    return 0;
}

static int get_time(const struct field_ctx *fc, json_t *obj, const char *field, int64_t *out)
{
    json_t *v = json_object_get(obj, field);
    *out = 0;
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (!json_is_string(v) ||
        rfc3339_parse(json_string_value(v), json_string_length(v), out) != 0) {
        return field_fail(fc, field, "must be a UTC time YYYY-MM-DDTHH:MM:SSZ after 1970");
    }
    return 0;
}

/* "gifts[3] (lion)" when the id is a usable identifier, else "gifts[3]". */
static void entry_label(char *buf, size_t buflen, const char *array, size_t i, json_t *entry)
{
    json_t *id = json_object_get(entry, "id");
    if (json_is_string(id) && valid_identifier(json_string_value(id), json_string_length(id))) {
        snprintf(buf, buflen, "%s[%zu] (%s)", array, i, json_string_value(id));
    } else {
        snprintf(buf, buflen, "%s[%zu]", array, i);
    }
}

static int parse_gift(json_t *entry, const struct field_ctx *fc, struct gift *g)
{
    int rc;
    if (!json_is_object(entry)) {
        set_err(fc->err, fc->errlen, "%s: must be an object", fc->label);
        return -EINVAL;
    }
    if ((rc = get_identifier(fc, entry, "id", g->id)) != 0) {
        return rc;
    }

    json_t *name = json_object_get(entry, "name");
    if (!json_is_string(name) ||
        !valid_display_name(json_string_value(name), json_string_length(name))) {
        return field_fail(fc, "name",
                          "must be a display name (1-64 bytes of UTF-8, no control characters)");
    }
    memcpy(g->name, json_string_value(name), json_string_length(name) + 1);

    if ((rc = get_long(fc, entry, "coins", 1, "must be an integer >= 1", &g->coins)) != 0 ||
        (rc = get_long(fc, entry, "diamonds", 0, "must be an integer >= 0", &g->diamonds)) != 0) {
        return rc;
    }

    json_t *tier = json_object_get(entry, "tier");
    const char *tier_str = json_string_value(tier);
    bool tier_ok = false;
    for (size_t t = 0; tier_str != NULL && t < sizeof(tier_names) / sizeof(tier_names[0]); t++) {
        if (strcmp(tier_str, tier_names[t]) == 0) {
            g->tier = (enum gifts_tier)t;
            tier_ok = true;
        }
    }
    if (!tier_ok) {
        return field_fail(fc, "tier", "must be one of small, medium, large, legendary");
    }

    if ((rc = get_identifier(fc, entry, "animation", g->animation)) != 0) {
        return rc;
    }

    json_t *streak = json_object_get(entry, "streakable");
    if (streak != NULL && !json_is_boolean(streak)) {
        return field_fail(fc, "streakable", "must be true or false");
    }
    g->streakable = json_is_true(streak);

    if ((rc = get_time(fc, entry, "available_from", &g->available_from_ms)) != 0 ||
        (rc = get_time(fc, entry, "available_until", &g->available_until_ms)) != 0) {
        return rc;
    }
    if (g->available_from_ms != 0 && g->available_until_ms != 0 &&
        g->available_from_ms >= g->available_until_ms) {
        return field_fail(fc, "available_until", "must be later than available_from");
    }
    return 0;
}

static int parse_package(json_t *entry, const struct field_ctx *fc, struct gifts_package *p)
{
    int rc;
    if (!json_is_object(entry)) {
        set_err(fc->err, fc->errlen, "%s: must be an object", fc->label);
        return -EINVAL;
    }
    if ((rc = get_identifier(fc, entry, "id", p->id)) != 0 ||
        (rc = get_long(fc, entry, "coins", 1, "must be an integer >= 1", &p->coins)) != 0 ||
        (rc = get_long(fc, entry, "price_cents", 0, "must be an integer >= 0", &p->price_cents)) !=
            0) {
        return rc;
    }
    json_t *cur = json_object_get(entry, "currency");
    if (!json_is_string(cur) || !valid_currency(json_string_value(cur), json_string_length(cur))) {
        return field_fail(fc, "currency", "must be three upper-case letters");
    }
    memcpy(p->currency, json_string_value(cur), 4);
    if (json_object_get(entry, "bonus_coins") != NULL &&
        (rc = get_long(fc, entry, "bonus_coins", 0, "must be an integer >= 0", &p->bonus_coins)) !=
            0) {
        return rc;
    }
    if ((rc = get_time(fc, entry, "available_from", &p->available_from_ms)) != 0 ||
        (rc = get_time(fc, entry, "available_until", &p->available_until_ms)) != 0) {
        return rc;
    }
    if (p->available_from_ms != 0 && p->available_until_ms != 0 &&
        p->available_from_ms >= p->available_until_ms) {
        return field_fail(fc, "available_until", "must be later than available_from");
    }
    return 0;
}

static int parse_gifts(json_t *root, struct gifts_catalog *cat, char *err, size_t errlen)
{
    json_t *arr = json_object_get(root, "gifts");
    if (!json_is_array(arr)) {
        set_err(err, errlen, "gifts: must be an array");
        return -EINVAL;
    }
    size_t n = json_array_size(arr);
    if (n == 0) {
        set_err(err, errlen, "gifts: must contain at least one gift");
        return -EINVAL;
    }
    cat->gifts = calloc(n, sizeof(*cat->gifts));
    if (cat->gifts == NULL || index_init(&cat->gift_index, n) != 0) {
        set_err(err, errlen, "catalog: out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *entry = json_array_get(arr, i);
        char label[96];
        entry_label(label, sizeof(label), "gifts", i, entry);
        struct field_ctx fc = {label, err, errlen};
        int rc = parse_gift(entry, &fc, &cat->gifts[i]);
        if (rc != 0) {
            return rc;
        }
        if (!index_insert(&cat->gift_index, cat->gifts, sizeof(*cat->gifts), i)) {
            return field_fail(&fc, "id", "duplicate");
        }
        cat->ngifts = i + 1;
    }
    return 0;
}

static int parse_packages(json_t *root, struct gifts_catalog *cat, char *err, size_t errlen)
{
    json_t *arr = json_object_get(root, "packages");
    if (arr == NULL) {
        return 0;
    }
    if (!json_is_array(arr)) {
        set_err(err, errlen, "packages: must be an array");
        return -EINVAL;
    }
    size_t n = json_array_size(arr);
    if (n == 0) {
        return 0;
    }
    cat->packages = calloc(n, sizeof(*cat->packages));
    if (cat->packages == NULL || index_init(&cat->package_index, n) != 0) {
        set_err(err, errlen, "catalog: out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *entry = json_array_get(arr, i);
        char label[96];
        entry_label(label, sizeof(label), "packages", i, entry);
        struct field_ctx fc = {label, err, errlen};
        int rc = parse_package(entry, &fc, &cat->packages[i]);
        if (rc != 0) {
            return rc;
        }
        if (!index_insert(&cat->package_index, cat->packages, sizeof(*cat->packages), i)) {
            return field_fail(&fc, "id", "duplicate");
        }
        cat->npackages = i + 1;
    }
    return 0;
}

int gifts_catalog_parse(const char *json, size_t len, struct gifts_catalog **out, char *err,
                        size_t errlen)
{
    if (out == NULL) {
        return -EINVAL;
    }
    *out = NULL;
    if (json == NULL) {
        set_err(err, errlen, "catalog: no input");
        return -EINVAL;
    }
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        set_err(err, errlen, "catalog: invalid JSON at line %d column %d: %s", jerr.line,
                jerr.column, jerr.text);
        return -EINVAL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        set_err(err, errlen, "catalog: must be a JSON object");
        return -EINVAL;
    }
    struct gifts_catalog *cat = calloc(1, sizeof(*cat));
    if (cat == NULL) {
        json_decref(root);
        set_err(err, errlen, "catalog: out of memory");
        return -ENOMEM;
    }
    int rc = parse_gifts(root, cat, err, errlen);
    if (rc == 0) {
        rc = parse_packages(root, cat, err, errlen);
    }
    json_decref(root);
    if (rc != 0) {
        gifts_catalog_free(cat);
        return rc;
    }
    *out = cat;
    return 0;
}

int gifts_catalog_load(const char *path, struct gifts_catalog **out, char *err, size_t errlen)
{
    if (out == NULL) {
        return -EINVAL;
    }
    *out = NULL;
    if (path == NULL) {
        set_err(err, errlen, "catalog: no path");
        return -EINVAL;
    }
    char ebuf[128];
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        set_err(err, errlen, "%s: cannot open: %s", path, strerror_r(errno, ebuf, sizeof(ebuf)));
        return -EIO;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        fclose(f);
        set_err(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    for (;;) {
        if (len == cap) {
            if (cap >= CATALOG_MAX_BYTES) {
                free(buf);
                fclose(f);
                set_err(err, errlen, "%s: larger than %u bytes", path, CATALOG_MAX_BYTES);
                return -EINVAL;
            }
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                set_err(err, errlen, "%s: out of memory", path);
                return -ENOMEM;
            }
            buf = nb;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            break;
        }
    }
    /* Reading a directory or a failing device shows up here, not in fopen. */
    if (ferror(f)) {
        int e = errno;
        free(buf);
        fclose(f);
        set_err(err, errlen, "%s: cannot read: %s", path, strerror_r(e, ebuf, sizeof(ebuf)));
        return -EIO;
    }
    fclose(f);
    int rc = gifts_catalog_parse(buf, len, out, err, errlen);
    free(buf);
    return rc;
}

void gifts_catalog_free(struct gifts_catalog *cat)
{
    if (cat == NULL) {
        return;
    }
    free(cat->gifts);
    free(cat->packages);
    free(cat->gift_index.slots);
    free(cat->package_index.slots);
    free(cat);
}

/* ---- lookups ---- */

const struct gift *gifts_find(const struct gifts_catalog *cat, const char *id)
{
    if (cat == NULL || id == NULL || cat->ngifts == 0) {
        return NULL;
    }
    size_t i = index_lookup(&cat->gift_index, cat->gifts, sizeof(*cat->gifts), id, NULL);
    return i == SIZE_MAX ? NULL : &cat->gifts[i];
}

const struct gifts_package *gifts_find_package(const struct gifts_catalog *cat, const char *id)
{
    if (cat == NULL || id == NULL || cat->npackages == 0) {
        return NULL;
    }
    size_t i = index_lookup(&cat->package_index, cat->packages, sizeof(*cat->packages), id, NULL);
    return i == SIZE_MAX ? NULL : &cat->packages[i];
}

bool gifts_package_available(const struct gifts_package *p, int64_t now_ms)
{
    return p != NULL && (p->available_from_ms == 0 || now_ms >= p->available_from_ms) &&
           (p->available_until_ms == 0 || now_ms < p->available_until_ms);
}

bool gifts_available(const struct gift *g, int64_t now_ms)
{
    if (g == NULL) {
        return false;
    }
    if (g->available_from_ms != 0 && now_ms < g->available_from_ms) {
        return false;
    }
    if (g->available_until_ms != 0 && now_ms >= g->available_until_ms) {
        return false;
    }
    return true;
}

size_t gifts_count(const struct gifts_catalog *cat)
{
    return cat == NULL ? 0 : cat->ngifts;
}

const struct gift *gifts_at(const struct gifts_catalog *cat, size_t i)
{
    return cat == NULL || i >= cat->ngifts ? NULL : &cat->gifts[i];
}

size_t gifts_package_count(const struct gifts_catalog *cat)
{
    return cat == NULL ? 0 : cat->npackages;
}

const struct gifts_package *gifts_package_at(const struct gifts_catalog *cat, size_t i)
{
    return cat == NULL || i >= cat->npackages ? NULL : &cat->packages[i];
}

/* ---- JSON views ---- */

/* Sets key to an RFC 3339 string; 0 or -1 like json_object_set_new. */
static int set_time(json_t *obj, const char *key, int64_t ms)
{
    char buf[32];
    if (rfc3339_format(ms, buf, sizeof(buf)) != 0) {
        return -1;
    }
    return json_object_set_new(obj, key, json_string(buf));
}

/* A **new** object describing g, or NULL on OOM. */
static json_t *gift_to_json(const struct gift *g)
{
    json_t *o = json_object();
    if (o == NULL) {
        return NULL;
    }
    /* json_object_set_new takes (and frees) a NULL value by failing, so OOM is caught here. */
    int rc = 0;
    rc |= json_object_set_new(o, "id", json_string(g->id));
    rc |= json_object_set_new(o, "name", json_string(g->name));
    rc |= json_object_set_new(o, "coins", json_integer((json_int_t)g->coins));
    rc |= json_object_set_new(o, "diamonds", json_integer((json_int_t)g->diamonds));
    rc |= json_object_set_new(o, "tier", json_string(gifts_tier_name(g->tier)));
    rc |= json_object_set_new(o, "animation", json_string(g->animation));
    rc |= json_object_set_new(o, "streakable", json_boolean(g->streakable));
    if (g->available_from_ms != 0) {
        rc |= set_time(o, "available_from", g->available_from_ms);
    }
    if (g->available_until_ms != 0) {
        rc |= set_time(o, "available_until", g->available_until_ms);
    }
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *package_to_json(const struct gifts_package *p)
{
    json_t *o = json_object();
    if (o == NULL) {
        return NULL;
    }
    int rc = 0;
    rc |= json_object_set_new(o, "id", json_string(p->id));
    rc |= json_object_set_new(o, "coins", json_integer((json_int_t)p->coins));
    rc |= json_object_set_new(o, "bonus_coins", json_integer((json_int_t)p->bonus_coins));
    rc |= json_object_set_new(o, "price_cents", json_integer((json_int_t)p->price_cents));
    rc |= json_object_set_new(o, "currency", json_string(p->currency));
    if (p->available_until_ms != 0) {
        rc |= set_time(o, "available_until", p->available_until_ms);
    } else {
        rc |= json_object_set_new(o, "available_until", json_null());
    }
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Wraps arr (steals) as {key: arr} and dumps it compactly; **new** string or NULL. */
static char *dump_wrapped(const char *key, json_t *arr)
{
    json_t *root = json_object();
    if (root == NULL) {
        json_decref(arr);
        return NULL;
    }
    /* On failure json_object_set_new has already released arr. */
    if (json_object_set_new(root, key, arr) != 0) {
        json_decref(root);
        return NULL;
    }
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

char *gifts_catalog_json(const struct gifts_catalog *cat, int64_t now_ms)
{
    json_t *arr = json_array();
    if (arr == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < gifts_count(cat); i++) {
        const struct gift *g = &cat->gifts[i];
        if (!gifts_available(g, now_ms)) {
            continue;
        }
        if (json_array_append_new(arr, gift_to_json(g)) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return dump_wrapped("gifts", arr);
}

char *gifts_packages_json(const struct gifts_catalog *cat, int64_t now_ms)
{
    json_t *arr = json_array();
    if (arr == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < gifts_package_count(cat); i++) {
        if (!gifts_package_available(&cat->packages[i], now_ms)) {
            continue;
        }
        if (json_array_append_new(arr, package_to_json(&cat->packages[i])) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return dump_wrapped("packages", arr);
}
