/* config: giftd's configuration — defaults, JSON file, GIFTD_* environment and flags. */
#include "config/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum key_type { KEY_STR, KEY_INT, KEY_BOOL };

/* One row per key of CONFIG_KEYS: how to find, parse and describe it. */
struct key_desc {
    const char *key;
    enum key_type type;
    size_t offset;
    const char *def_str;
    long def_int;
    long min;
    long max;
    const char *help;
};

#define DESC_STR(field, key, def, min, max, help)                                                  \
    {key, KEY_STR, offsetof(struct config, field), def, 0, 0, 0, help},
#define DESC_INT(field, key, def, min, max, help)                                                  \
    {key, KEY_INT, offsetof(struct config, field), NULL, def, min, max, help},
#define DESC_BOOL(field, key, def, min, max, help)                                                 \
    {key, KEY_BOOL, offsetof(struct config, field), NULL, def, 0, 1, help},
#define DESC_X(field, key, type, def, min, max, help) DESC_##type(field, key, def, min, max, help)

static const struct key_desc keys[] = {CONFIG_KEYS(DESC_X)};

#undef DESC_X
#undef DESC_BOOL
#undef DESC_INT
#undef DESC_STR

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

/* Long enough for any dotted key we accept; longer keys are unknown by construction. */
#define KEY_MAX    128
#define ENV_PREFIX "GIFTD_"

__attribute__((format(printf, 3, 4))) static void seterr(char *err, size_t errlen, const char *fmt,
                                                         ...)
{
    va_list ap;

    if (err == NULL || errlen == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static char **str_field(struct config *cfg, const struct key_desc *d)
{
    return (char **)(void *)((char *)cfg + d->offset);
}

static long *int_field(struct config *cfg, const struct key_desc *d)
{
    return (long *)(void *)((char *)cfg + d->offset);
}

static bool *bool_field(struct config *cfg, const struct key_desc *d)
{
    return (bool *)(void *)((char *)cfg + d->offset);
}

static char *const *cstr_field(const struct config *cfg, const struct key_desc *d)
{
    return (char *const *)(const void *)((const char *)cfg + d->offset);
}

static const long *cint_field(const struct config *cfg, const struct key_desc *d)
{
    return (const long *)(const void *)((const char *)cfg + d->offset);
}

static const bool *cbool_field(const struct config *cfg, const struct key_desc *d)
{
    return (const bool *)(const void *)((const char *)cfg + d->offset);
}

static const struct key_desc *find_key(const char *key)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(keys[i].key, key) == 0) {
            return &keys[i];
        }
    }
    return NULL;
}

/* True if some key starts with "prefix." — i.e. prefix names a section such as "gifts". */
static bool is_section(const char *prefix)
{
    size_t n = strlen(prefix);

    for (size_t i = 0; i < NKEYS; i++) {
        if (strncmp(keys[i].key, prefix, n) == 0 && keys[i].key[n] == '.') {
            return true;
        }
    }
    return false;
}

/* Writes GIFTD_<KEY> (upper-case, dots as underscores) into out, truncating if need be. */
static void env_name(const char *key, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s%s", ENV_PREFIX, key);
    size_t len = n < 0 ? 0 : (size_t)n;

    if (outlen == 0) {
        return;
    }
    if (len >= outlen) {
        len = outlen - 1;
    }
    for (size_t i = strlen(ENV_PREFIX); i < len; i++) {
        out[i] = out[i] == '.' ? '_' : (char)toupper((unsigned char)out[i]);
    }
}

/* Duplicates s; an empty or NULL s becomes NULL (unset). Returns 0 or -ENOMEM. */
static int dup_or_null(const char *s, char **out)
{
    if (s == NULL || s[0] == '\0') {
        *out = NULL;
        return 0;
    }
    *out = strdup(s);
    return *out == NULL ? -ENOMEM : 0;
}

/* Replaces a string field, freeing the old value. Returns 0 or -ENOMEM (field unchanged). */
static int set_str(struct config *cfg, const struct key_desc *d, const char *value)
{
    char *copy;
    char **field = str_field(cfg, d);

    if (dup_or_null(value, &copy) < 0) {
        return -ENOMEM;
    }
    free(*field);
    *field = copy;
    return 0;
}

static void range_err(const struct key_desc *d, char *err, size_t errlen)
{
    seterr(err, errlen, "%s: must be an integer from %ld to %ld", d->key, d->min, d->max);
}

/* Deep-copies src into dst (dst is overwritten, not freed). Returns 0 or -ENOMEM. */
static int config_copy(struct config *dst, const struct config *src)
{
    *dst = *src;
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].type == KEY_STR) {
            *str_field(dst, &keys[i]) = NULL;
        }
    }
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].type == KEY_STR && set_str(dst, &keys[i], *cstr_field(src, &keys[i])) < 0) {
            config_cleanup(dst);
            return -ENOMEM;
        }
    }
    return 0;
}

/* Replaces cfg's contents by tmp's (which cfg now owns). */
static void config_swap_in(struct config *cfg, struct config *tmp)
{
    config_cleanup(cfg);
    *cfg = *tmp;
}

int config_init(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NKEYS; i++) {
        const struct key_desc *d = &keys[i];

        switch (d->type) {
        case KEY_STR:
            if (set_str(cfg, d, d->def_str) < 0) {
                config_cleanup(cfg);
                return -ENOMEM;
            }
            break;
        case KEY_INT:
            *int_field(cfg, d) = d->def_int;
            break;
        case KEY_BOOL:
            *bool_field(cfg, d) = d->def_int != 0;
            break;
        }
    }
    return 0;
}

void config_cleanup(struct config *cfg)
{
    if (cfg == NULL) {
        return;
    }
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].type == KEY_STR) {
            char **field = str_field(cfg, &keys[i]);
            free(*field);
            *field = NULL;
        }
    }
}

/* Parses a decimal integer: optional sign, digits only, nothing after. Returns 0 or -EINVAL. */
static int parse_long(const char *s, long *out)
{
    char *end;
    long v;

    if (s == NULL || s[0] == '\0' || isspace((unsigned char)s[0])) {
        return -EINVAL;
    }
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "1", "yes"};
    static const char *const no[] = {"false", "0", "no"};

    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

/* config_set on a known key. */
static int set_text(struct config *cfg, const struct key_desc *d, const char *value, char *err,
                    size_t errlen)
{
    long v;
    bool b;

    if (value == NULL) {
        value = "";
    }
    switch (d->type) {
    case KEY_STR:
        if (set_str(cfg, d, value) < 0) {
            seterr(err, errlen, "%s: out of memory", d->key);
            return -ENOMEM;
        }
        return 0;
    case KEY_INT:
        if (parse_long(value, &v) < 0 || v < d->min || v > d->max) {
            range_err(d, err, errlen);
            return -EINVAL;
        }
        *int_field(cfg, d) = v;
        return 0;
    case KEY_BOOL:
        if (parse_bool(value, &b) < 0) {
            seterr(err, errlen, "%s: must be a boolean (true, false, 1, 0, yes or no)", d->key);
            return -EINVAL;
        }
        *bool_field(cfg, d) = b;
        return 0;
    }
    return -EINVAL;
}

int config_set(struct config *cfg, const char *key, const char *value, char *err, size_t errlen)
{
    const struct key_desc *d = key != NULL ? find_key(key) : NULL;

    if (d == NULL) {
        seterr(err, errlen, "%s: unknown key", key != NULL ? key : "(null)");
        return -ENOENT;
    }
    return set_text(cfg, d, value, err, errlen);
}

/* Applies one JSON value to a known key. */
static int set_json(struct config *cfg, const struct key_desc *d, const json_t *v, char *err,
                    size_t errlen)
{
    json_int_t iv;

    switch (d->type) {
    case KEY_STR:
        if (json_is_null(v)) {
            return set_str(cfg, d, NULL);
        }
        if (!json_is_string(v)) {
            seterr(err, errlen, "%s: must be a string", d->key);
            return -EINVAL;
        }
        if (strlen(json_string_value(v)) != json_string_length(v)) {
            seterr(err, errlen, "%s: must not contain NUL characters", d->key);
            return -EINVAL;
        }
        if (set_str(cfg, d, json_string_value(v)) < 0) {
            seterr(err, errlen, "%s: out of memory", d->key);
            return -ENOMEM;
        }
        return 0;
    case KEY_INT:
        if (!json_is_integer(v)) {
            seterr(err, errlen, "%s: must be an integer", d->key);
            return -EINVAL;
        }
        iv = json_integer_value(v);
        if (iv < (json_int_t)d->min || iv > (json_int_t)d->max) {
            range_err(d, err, errlen);
            return -EINVAL;
        }
        *int_field(cfg, d) = (long)iv;
        return 0;
    case KEY_BOOL:
        if (!json_is_boolean(v)) {
            seterr(err, errlen, "%s: must be a boolean", d->key);
            return -EINVAL;
        }
        *bool_field(cfg, d) = json_is_true(v);
        return 0;
    }
    return -EINVAL;
}

/* Applies every member of obj; prefix is the dotted section obj sits in ("" at the top). */
static int apply_object(struct config *cfg, const char *prefix, json_t *obj, char *err,
                        size_t errlen)
{
    const char *k;
    json_t *v;

    json_object_foreach(obj, k, v)
    {
        char full[KEY_MAX];
        const struct key_desc *d;
        int n = snprintf(full, sizeof(full), "%s%s%s", prefix, prefix[0] != '\0' ? "." : "", k);
        int rc;

        if (n < 0 || (size_t)n >= sizeof(full)) {
            seterr(err, errlen, "%s%s%.64s...: unknown key", prefix, prefix[0] != '\0' ? "." : "",
                   k);
            return -EINVAL;
        }
        d = find_key(full);
        if (d != NULL) {
            rc = set_json(cfg, d, v, err, errlen);
        } else if (json_is_object(v) && is_section(full)) {
            rc = apply_object(cfg, full, v, err, errlen);
        } else {
            seterr(err, errlen, "%s: unknown key", full);
            rc = -EINVAL;
        }
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

int config_apply_file(struct config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *fp;
    json_t *root;
    json_error_t jerr;
    struct config tmp;
    int rc;

    fp = fopen(path, "r");
    if (fp == NULL) {
        int e = errno;
        seterr(err, errlen, "%s: cannot open: %s", path, strerror(e));
        return -EIO;
    }
    root = json_loadf(fp, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        if (ferror(fp)) {
            int e = errno;
            seterr(err, errlen, "%s: cannot read: %s", path, strerror(e));
            fclose(fp);
            return -EIO;
        }
        fclose(fp);
        seterr(err, errlen, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        return -EINVAL;
    }
    fclose(fp);
    if (!json_is_object(root)) {
        seterr(err, errlen, "%s: must be a JSON object", path);
        json_decref(root);
        return -EINVAL;
    }
    if (config_copy(&tmp, cfg) < 0) {
        seterr(err, errlen, "%s: out of memory", path);
        json_decref(root);
        return -ENOMEM;
    }
    rc = apply_object(&tmp, "", root, err, errlen);
    json_decref(root);
    if (rc < 0) {
        config_cleanup(&tmp);
        return rc;
    }
    config_swap_in(cfg, &tmp);
    return 0;
}

/* Finds "name=" in envp; returns the value (borrowed) or NULL. */
static const char *env_lookup(char *const *envp, const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; envp != NULL && envp[i] != NULL; i++) {
        if (strncmp(envp[i], name, n) == 0 && envp[i][n] == '=') {
            return envp[i] + n + 1;
        }
    }
    return NULL;
}

int config_apply_env(struct config *cfg, char *const *envp, char *err, size_t errlen)
{
    struct config tmp;

    if (config_copy(&tmp, cfg) < 0) {
        seterr(err, errlen, "environment: out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < NKEYS; i++) {
        char name[KEY_MAX + sizeof(ENV_PREFIX)];
        char why[256];
        const char *value;
        int rc;

        env_name(keys[i].key, name, sizeof(name));
        value = env_lookup(envp, name);
        if (value == NULL) {
            continue;
        }
        rc = set_text(&tmp, &keys[i], value, why, sizeof(why));
        if (rc < 0) {
            /* why is "<key>: <reason>"; add the variable after the key. */
            size_t klen = strlen(keys[i].key);
            const char *reason =
                strncmp(why, keys[i].key, klen) == 0 && why[klen] == ':' ? why + klen + 1 : why;
            seterr(err, errlen, "%s (%s):%s", keys[i].key, name, reason);
            config_cleanup(&tmp);
            return rc;
        }
    }
    config_swap_in(cfg, &tmp);
    return 0;
}

const char *config_unknown_env(char *const *envp)
{
    static const char *const tools[] = {"GIFTD_URL", "GIFTD_TOKEN", "GIFTD_SECRET", "GIFTD_CACERT"};
    size_t plen = strlen(ENV_PREFIX);

    for (size_t i = 0; envp != NULL && envp[i] != NULL; i++) {
        const char *var = envp[i];
        const char *eq = strchr(var, '=');
        size_t n = eq != NULL ? (size_t)(eq - var) : strlen(var);
        bool known = false;

        if (strncmp(var, ENV_PREFIX, plen) != 0) {
            continue;
        }
        for (size_t t = 0; t < sizeof(tools) / sizeof(tools[0]) && !known; t++) {
            known = strlen(tools[t]) == n && strncmp(var, tools[t], n) == 0;
        }
        for (size_t k = 0; k < NKEYS && !known; k++) {
            char name[KEY_MAX + sizeof(ENV_PREFIX)];

            env_name(keys[k].key, name, sizeof(name));
            known = strlen(name) == n && strncmp(var, name, n) == 0;
        }
        if (!known) {
            return var;
        }
    }
    return NULL;
}

static bool valid_hostname(const char *s, size_t n)
{
    if (n > 253) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '-' && c != '.' && c != '_') {
            return false;
        }
    }
    return true;
}

int config_listen_parse(const char *listen, char *out_host, size_t hostlen, int *out_port)
{
    const char *host;
    const char *colon;
    size_t hlen;
    long port;

    if (listen == NULL) {
        return -EINVAL;
    }
    if (listen[0] == '[') {
        char addr[INET6_ADDRSTRLEN];
        struct in6_addr a6;
        const char *close = strchr(listen, ']');

        if (close == NULL || close[1] != ':') {
            return -EINVAL;
        }
        host = listen + 1;
        hlen = (size_t)(close - host);
        if (hlen == 0 || hlen >= sizeof(addr)) {
            return -EINVAL;
        }
        memcpy(addr, host, hlen);
        addr[hlen] = '\0';
        if (inet_pton(AF_INET6, addr, &a6) != 1) {
            return -EINVAL;
        }
        colon = close + 1;
    } else {
        colon = strrchr(listen, ':');
        if (colon == NULL) {
            return -EINVAL;
        }
        host = listen;
        hlen = (size_t)(colon - host);
        if (!valid_hostname(host, hlen)) {
            return -EINVAL;
        }
    }
    if (colon[1] == '\0' || !isdigit((unsigned char)colon[1]) || parse_long(colon + 1, &port) < 0 ||
        port < 1 || port > 65535) {
        return -EINVAL;
    }
    if (out_host != NULL) {
        if (hlen >= hostlen) {
            return -EINVAL;
        }
        memcpy(out_host, host, hlen);
        out_host[hlen] = '\0';
    }
    if (out_port != NULL) {
        *out_port = (int)port;
    }
    return 0;
}

/* redis.cluster: one or more "host:port" or "redis://[:password@]host:port", comma separated. */
static bool config_cluster_seeds_ok(const char *list)
{
    int n = 0;
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ",");
        const char *seed = p;
        if (len > 8 && strncmp(seed, "redis://", 8) == 0) {
            seed += 8;
            len -= 8;
            const char *at = memchr(seed, '@', len);
            if (at) {
                len -= (size_t)(at + 1 - seed);
                seed = at + 1;
            }
        }
        const char *colon = NULL;
        for (size_t i = 0; i < len; i++) {
            colon = seed[i] == ':' ? seed + i : colon;
        }
        if (!colon || colon == seed) {
            return false;
        }
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (end != seed + len || port < 1 || port > 65535) {
            return false;
        }
        n++;
        p += strcspn(p, ",");
        if (*p == ',') {
            p++;
        }
    }
    return n > 0;
}

#define DEV_HINT "set auth.secret (GIFTD_AUTH_SECRET) or run with --dev"

int config_validate(const struct config *cfg, char *err, size_t errlen)
{
    if (cfg->listen == NULL || config_listen_parse(cfg->listen, NULL, 0, NULL) < 0) {
        seterr(err, errlen,
               "listen: must be host:port with a port from 1 to 65535 (IPv6 as [addr]:port)");
        return -EINVAL;
    }
    if (cfg->tls_cert != NULL && cfg->tls_key == NULL) {
        seterr(err, errlen, "tls.key: required when tls.cert is set");
        return -EINVAL;
    }
    if (cfg->tls_key != NULL && cfg->tls_cert == NULL) {
        seterr(err, errlen, "tls.cert: required when tls.key is set");
        return -EINVAL;
    }
    if (cfg->redis_url != NULL && cfg->redis_cluster != NULL) {
        seterr(err, errlen, "redis.cluster: set it or redis.url, not both");
        return -EINVAL;
    }
    if (cfg->redis_cluster != NULL && !config_cluster_seeds_ok(cfg->redis_cluster)) {
        seterr(err, errlen,
               "redis.cluster: must be comma-separated seed nodes host:port or "
               "redis://[:password@]host:port");
        return -EINVAL;
    }
    if (cfg->redis_url != NULL) {
        const char *u = cfg->redis_url;
        bool ok = (strncmp(u, "redis://", 8) == 0 && u[8] != '\0') ||
                  (strncmp(u, "unix://", 7) == 0 && u[7] == '/' && u[8] != '\0');
        if (!ok) {
            seterr(err, errlen,
                   "redis.url: must start with redis:// or unix:// "
                   "(redis://host:port/db or unix:///path)");
            return -EINVAL;
        }
    }
    if (cfg->flush_sink == NULL || (strcmp(cfg->flush_sink, "redis-stream") != 0 &&
                                    strcmp(cfg->flush_sink, "postgres") != 0)) {
        seterr(err, errlen, "flush.sink: must be redis-stream or postgres");
        return -EINVAL;
    }
    if (strcmp(cfg->flush_sink, "postgres") == 0 && cfg->flush_postgres == NULL) {
        seterr(err, errlen, "flush.postgres: required when flush.sink is postgres");
        return -EINVAL;
    }
    if (strcmp(cfg->flush_sink, "redis-stream") == 0 && cfg->flush_stream == NULL) {
        seterr(err, errlen, "flush.stream: required when flush.sink is redis-stream");
        return -EINVAL;
    }
    if (cfg->auth_secret == NULL) {
        seterr(err, errlen, "auth.secret: required; " DEV_HINT);
        return -EINVAL;
    }
    if (strlen(cfg->auth_secret) < 16) {
        seterr(err, errlen, "auth.secret: must be at least 16 bytes; " DEV_HINT);
        return -EINVAL;
    }
    return 0;
}

void config_print_help(FILE *out)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const struct key_desc *d = &keys[i];
        char name[KEY_MAX + sizeof(ENV_PREFIX)];

        env_name(d->key, name, sizeof(name));
        switch (d->type) {
        case KEY_STR:
            fprintf(out, "  --%s=VALUE  (%s, default %s)  %s\n", d->key, name,
                    d->def_str != NULL ? d->def_str : "none", d->help);
            break;
        case KEY_INT:
            fprintf(out, "  --%s=VALUE  (%s, default %ld)  %s [%ld..%ld]\n", d->key, name,
                    d->def_int, d->help, d->min, d->max);
            break;
        case KEY_BOOL:
            fprintf(out, "  --%s=VALUE  (%s, default %s)  %s [true/false]\n", d->key, name,
                    d->def_int != 0 ? "true" : "false", d->help);
            break;
        }
    }
}

/* Puts value at the dotted key path inside root, creating sections. Steals value. */
static int json_put(json_t *root, const char *key, json_t *value)
{
    char part[KEY_MAX];
    const char *dot;
    json_t *obj = root;

    if (value == NULL) {
        return -ENOMEM;
    }
    while ((dot = strchr(key, '.')) != NULL) {
        size_t n = (size_t)(dot - key);
        json_t *sub;

        if (n >= sizeof(part)) {
            json_decref(value);
            return -EINVAL;
        }
        memcpy(part, key, n);
        part[n] = '\0';
        sub = json_object_get(obj, part);
        if (sub == NULL) {
            sub = json_object();
            if (sub == NULL || json_object_set_new(obj, part, sub) < 0) {
                json_decref(value);
                return -ENOMEM;
            }
        }
        obj = sub;
        key = dot + 1;
    }
    return json_object_set_new(obj, key, value) < 0 ? -ENOMEM : 0;
}

void config_print_json(const struct config *cfg, FILE *out)
{
    json_t *root = json_object();

    if (root == NULL) {
        return;
    }
    for (size_t i = 0; i < NKEYS; i++) {
        const struct key_desc *d = &keys[i];
        json_t *v = NULL;

        switch (d->type) {
        case KEY_STR: {
            const char *s = *cstr_field(cfg, d);
            if (s == NULL) {
                v = json_null();
            } else if (strcmp(d->key, "auth.secret") == 0) {
                v = json_string("***");
            } else {
                /* A value from the environment need not be UTF-8; show it as it is. */
                v = json_string(s);
                if (v == NULL) {
                    v = json_string_nocheck(s);
                }
            }
            break;
        }
        case KEY_INT:
            v = json_integer((json_int_t)*cint_field(cfg, d));
            break;
        case KEY_BOOL:
            v = json_boolean(*cbool_field(cfg, d));
            break;
        }
        if (json_put(root, d->key, v) < 0) {
            json_decref(root);
            return;
        }
    }
    json_dumpf(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', out);
    json_decref(root);
}
