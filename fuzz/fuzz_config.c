/* fuzz_config: config files, key=value flags and GIFTD_* environments through config/. */
#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config/config.h"
#include "fuzz/fuzz.h"

/*
 * The input's first line picks what the rest is:
 *   "s"  lines of key=value, each given to config_set (as --key=value flags are);
 *   "e"  lines of NAME=value, the environment of config_apply_env and config_unknown_env;
 *   else the whole input is a config file for config_apply_file (JSON seeds start with '{').
 * Every mode ends with config_validate, config_listen_parse and config_print_json.
 */

#define MAX_LINES 64

/* The file config_apply_file reads: a memfd, rewritten for each input, opened by its path. */
static int file_fd = -1;
static char file_path[64];
static FILE *devnull;
static struct config defaults; /* config_init's */

static void setup(void)
{
    file_fd = memfd_create("fuzz_config", 0);
    CHECK(file_fd >= 0);
    snprintf(file_path, sizeof file_path, "/proc/self/fd/%d", file_fd);
    devnull = fopen("/dev/null", "w");
    CHECK(devnull != NULL);
    CHECK(config_init(&defaults) == 0);
}

static void put_file(const void *data, size_t size)
{
    CHECK(ftruncate(file_fd, 0) == 0);
    CHECK(size == 0 || pwrite(file_fd, data, size, 0) == (ssize_t)size);
}

static bool same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The first key whose values differ in a and b, or NULL when they hold the same configuration. */
static const char *first_difference(const struct config *a, const struct config *b)
{
#define SAME_STR(f)  same_str(a->f, b->f)
#define SAME_INT(f)  a->f == b->f
#define SAME_BOOL(f) a->f == b->f
#define SAME_X(field, key, type, def, min, max, help)                                              \
    if (!(SAME_##type(field))) {                                                                   \
        return key;                                                                                \
    }
    CONFIG_KEYS(SAME_X)
#undef SAME_X
#undef SAME_BOOL
#undef SAME_INT
#undef SAME_STR
    return NULL;
}

/* Aborts, naming the key, unless a and b hold the same configuration. */
static void check_same(const struct config *a, const struct config *b)
{
    const char *key = first_difference(a, b);
    if (key != NULL) {
        fprintf(stderr, "configurations differ at %s\n", key);
    }
    CHECK(key == NULL);
}

/* A deep copy of src into dst (for comparing after a call that must not change it on failure). */
static void copy(struct config *dst, const struct config *src)
{
    *dst = *src;
#define COPY_STR(f)                                                                                \
    if (src->f != NULL) {                                                                          \
        CHECK((dst->f = strdup(src->f)) != NULL);                                                  \
    }
#define COPY_INT(f)
#define COPY_BOOL(f)
#define COPY_X(field, key, type, def, min, max, help) COPY_##type(field)
    CONFIG_KEYS(COPY_X)
#undef COPY_X
#undef COPY_BOOL
#undef COPY_INT
#undef COPY_STR
}

/* cfg as a config file with dotted keys (secret included); NULL when a string is not UTF-8,
 * which only the environment and flags can set. Returns a **new** string. */
static char *dump(const struct config *cfg)
{
    json_t *o = json_object();
    CHECK(o != NULL);
    bool ok = true;
#define DUMP_STR(f)  cfg->f != NULL ? json_string(cfg->f) : json_null()
#define DUMP_INT(f)  json_integer((json_int_t)cfg->f)
#define DUMP_BOOL(f) json_boolean(cfg->f)
#define DUMP_X(field, key, type, def, min, max, help)                                              \
    ok = ok && json_object_set_new(o, key, DUMP_##type(field)) == 0;
    CONFIG_KEYS(DUMP_X)
#undef DUMP_X
#undef DUMP_BOOL
#undef DUMP_INT
#undef DUMP_STR
    char *text = ok ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text;
}

/* A configuration written out as a file reads back the same. (The defaults, what most inputs
 * leave, are read back once rather than every time.) */
static void check_round_trip(const struct config *cfg)
{
    static bool defaults_done;
    bool at_defaults = first_difference(cfg, &defaults) == NULL;
    if (at_defaults && defaults_done) {
        return;
    }
    defaults_done = defaults_done || at_defaults;
    char *text = dump(cfg);
    if (text == NULL) {
        return;
    }
    put_file(text, strlen(text));
    struct config back;
    char err[256] = "";
    CHECK(config_init(&back) == 0);
    int rc = config_apply_file(&back, file_path, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "round trip refused: %s\n%s\n", err, text);
    }
    CHECK(rc == 0);
    check_same(cfg, &back);
    config_cleanup(&back);
    free(text);
}

/* Cross-key checks, then what validate promises about the result. */
static void check_validate(const struct config *cfg)
{
    char err[256] = "";
    char host[256];
    int port = 0;
    int rc = config_validate(cfg, err, sizeof err);
    if (rc != 0) {
        CHECK(rc == -EINVAL && err[0] != '\0');
    } else {
        CHECK(config_listen_parse(cfg->listen, host, sizeof host, &port) == 0);
        CHECK(port >= 1 && port <= 65535);
        CHECK(cfg->auth_secret != NULL && strlen(cfg->auth_secret) >= 16);
        CHECK((cfg->tls_cert == NULL) == (cfg->tls_key == NULL));
    }
    if (cfg->listen != NULL) {
        /* Too small a host buffer is refused, never overrun. */
        char small[4];
        if (config_listen_parse(cfg->listen, small, sizeof small, &port) == 0) {
            CHECK(strlen(small) < sizeof small && port >= 1 && port <= 65535);
        }
    }
    config_print_json(cfg, devnull);
}

/* Splits text (len bytes) at newlines into NUL-terminated copies; returns how many. */
static size_t split_lines(const char *text, size_t len, char **lines, size_t max)
{
    size_t n = 0;
    while (len > 0 && n < max) {
        const char *nl = memchr(text, '\n', len);
        size_t l = nl != NULL ? (size_t)(nl - text) : len;
        lines[n] = strndup(text, l);
        CHECK(lines[n] != NULL);
        n++;
        text += l;
        len -= l;
        if (nl != NULL) {
            text++;
            len--;
        }
    }
    lines[n] = NULL;
    return n;
}

static void run_set(struct config *cfg, const char *text, size_t len)
{
    char *lines[MAX_LINES + 1];
    size_t n = split_lines(text, len, lines, MAX_LINES);
    for (size_t i = 0; i < n; i++) {
        char *eq = strchr(lines[i], '=');
        const char *value = NULL;
        if (eq != NULL) {
            *eq = '\0';
            value = eq + 1;
        }
        struct config before;
        char err[256] = "";
        copy(&before, cfg);
        int rc = config_set(cfg, lines[i], value, err, sizeof err);
        if (rc != 0) {
            CHECK(rc == -ENOENT || rc == -EINVAL);
            CHECK(err[0] != '\0');
            check_same(cfg, &before);
        }
        config_cleanup(&before);
        free(lines[i]);
    }
}

static void run_env(struct config *cfg, const char *text, size_t len)
{
    char *lines[MAX_LINES + 1];
    size_t n = split_lines(text, len, lines, MAX_LINES);
    struct config before;
    char err[256] = "";
    copy(&before, cfg);
    int rc = config_apply_env(cfg, lines, err, sizeof err);
    if (rc != 0) {
        CHECK(rc == -EINVAL && err[0] != '\0');
        check_same(cfg, &before);
    }
    config_cleanup(&before);
    const char *unknown = config_unknown_env(lines);
    bool from_envp = unknown == NULL;
    for (size_t i = 0; i < n; i++) {
        from_envp = from_envp || unknown == lines[i];
    }
    CHECK(from_envp);
    for (size_t i = 0; i < n; i++) {
        free(lines[i]);
    }
}

static void run_file(struct config *cfg, const uint8_t *data, size_t size)
{
    struct config before;
    char err[256] = "";
    put_file(data, size);
    copy(&before, cfg);
    int rc = config_apply_file(cfg, file_path, err, sizeof err);
    if (rc != 0) {
        CHECK(rc == -EINVAL && err[0] != '\0');
        check_same(cfg, &before);
    }
    config_cleanup(&before);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (file_fd < 0) {
        setup();
    }
    struct config cfg;
    CHECK(config_init(&cfg) == 0);
    const char *rest = (const char *)data + 2;
    if (size >= 2 && data[0] == 's' && data[1] == '\n') {
        run_set(&cfg, rest, size - 2);
    } else if (size >= 2 && data[0] == 'e' && data[1] == '\n') {
        run_env(&cfg, rest, size - 2);
    } else {
        run_file(&cfg, data, size);
    }
    check_validate(&cfg);
    check_round_trip(&cfg);
    config_cleanup(&cfg);
    return 0;
}
