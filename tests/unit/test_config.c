/* Unit tests of config: defaults, text/JSON/environment parsing, errors, validation, output. */
#include "config/config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ERRLEN 256

/* Writes content to a new temp file under /tmp; path receives its name (>= 32 bytes). */
static void write_tmp(const char *content, char *path)
{
    size_t n = strlen(content);
    int fd;

    strcpy(path, "/tmp/giftd_cfg_XXXXXX");
    fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
    cr_assert_eq(write(fd, content, n), (ssize_t)n);
    close(fd);
}

/* Applies content as a config file to cfg; returns the result of config_apply_file. */
static int apply_text(struct config *cfg, const char *content, char *err)
{
    char path[64];
    int rc;

    write_tmp(content, path);
    rc = config_apply_file(cfg, path, err, ERRLEN);
    unlink(path);
    return rc;
}

static void init(struct config *cfg)
{
    cr_assert_eq(config_init(cfg), 0);
}

static void set_ok(struct config *cfg, const char *key, const char *value)
{
    char err[ERRLEN] = "";
    cr_assert_eq(config_set(cfg, key, value, err, sizeof(err)), 0, "%s", err);
}

/* Makes cfg pass validation (defaults have no secret). */
static void make_valid(struct config *cfg)
{
    set_ok(cfg, "auth.secret", "0123456789abcdef0123");
}

/* ---- config_init / config_cleanup ---- */

Test(config_init, fills_every_default)
{
    struct config cfg;

    init(&cfg);
    cr_assert_str_eq(cfg.listen, "0.0.0.0:8080");
    cr_assert_null(cfg.tls_cert);
    cr_assert_null(cfg.tls_key);
    cr_assert_null(cfg.redis_url);
    cr_assert_null(cfg.auth_secret);
    cr_assert_eq(cfg.auth_allow_guests, false);
    cr_assert_eq(cfg.auth_hello_timeout_ms, 10000);
    cr_assert_str_eq(cfg.gifts_catalog, "config/catalog.json");
    cr_assert_eq(cfg.gifts_combo_window_ms, 3000);
    cr_assert_eq(cfg.gifts_max_count, 99);
    cr_assert_eq(cfg.ledger_idempotency_ttl_s, 86400);
    cr_assert_eq(cfg.ledger_timeout_ms, 2000);
    cr_assert_eq(cfg.ledger_outbox_grace_ms, 5000);
    cr_assert_eq(cfg.ledger_max_inflight, 4096);
    cr_assert_eq(cfg.ledger_partitions, 1024);
    cr_assert_eq(cfg.rooms_presence_interval_ms, 1000);
    cr_assert_eq(cfg.rooms_leaderboard_size, 10);
    cr_assert_eq(cfg.limits_max_frame_bytes, 4096);
    cr_assert_eq(cfg.limits_frames_per_sec, 50);
    cr_assert_eq(cfg.limits_gifts_per_sec, 20);
    cr_assert_eq(cfg.fanout_max_queue, 1024);
    cr_assert_eq(cfg.flush_interval_ms, 1000);
    cr_assert_str_eq(cfg.flush_sink, "redis-stream");
    cr_assert_str_eq(cfg.flush_stream, "giftd:settlements");
    cr_assert_null(cfg.flush_postgres);
    cr_assert_eq(cfg.workers, 0);
    cr_assert_str_eq(cfg.overlay_dir, "overlay");
    config_cleanup(&cfg);
}

Test(config_init, strings_are_owned_copies)
{
    struct config a;
    struct config b;

    init(&a);
    init(&b);
    cr_assert_neq(a.listen, b.listen);
    a.listen[0] = 'X';
    cr_assert_str_eq(b.listen, "0.0.0.0:8080");
    config_cleanup(&a);
    config_cleanup(&b);
}

Test(config_cleanup, is_safe_on_zeroed_and_cleaned_structs)
{
    struct config cfg;

    memset(&cfg, 0, sizeof(cfg));
    config_cleanup(&cfg);
    init(&cfg);
    config_cleanup(&cfg);
    cr_assert_null(cfg.listen);
    config_cleanup(&cfg);
}

/* ---- config_set ---- */

Test(config_set, sets_integer_string_and_boolean)
{
    struct config cfg;

    init(&cfg);
    set_ok(&cfg, "gifts.max_count", "10000");
    set_ok(&cfg, "redis.url", "redis://127.0.0.1:6379/0");
    set_ok(&cfg, "auth.allow_guests", "yes");
    cr_assert_eq(cfg.gifts_max_count, 10000);
    cr_assert_str_eq(cfg.redis_url, "redis://127.0.0.1:6379/0");
    cr_assert_eq(cfg.auth_allow_guests, true);
    config_cleanup(&cfg);
}

Test(config_set, accepts_every_boolean_spelling)
{
    static const char *const yes[] = {"true", "1", "yes", "TRUE", "Yes"};
    static const char *const no[] = {"false", "0", "no", "FALSE", "No"};
    struct config cfg;

    init(&cfg);
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        set_ok(&cfg, "auth.allow_guests", "false");
        set_ok(&cfg, "auth.allow_guests", yes[i]);
        cr_assert_eq(cfg.auth_allow_guests, true, "%s", yes[i]);
        set_ok(&cfg, "auth.allow_guests", no[i]);
        cr_assert_eq(cfg.auth_allow_guests, false, "%s", no[i]);
    }
    config_cleanup(&cfg);
}

Test(config_set, empty_string_unsets_a_string)
{
    struct config cfg;

    init(&cfg);
    set_ok(&cfg, "gifts.catalog", "");
    cr_assert_null(cfg.gifts_catalog);
    config_cleanup(&cfg);
}

Test(config_set, rejects_unknown_key_naming_it)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    cr_assert_eq(config_set(&cfg, "gifts.max_cuont", "5", err, sizeof(err)), -ENOENT);
    cr_assert_str_eq(err, "gifts.max_cuont: unknown key");
    config_cleanup(&cfg);
}

Test(config_set, rejects_integer_below_min)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    cr_assert_eq(config_set(&cfg, "gifts.max_count", "0", err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "gifts.max_count: must be an integer from 1 to 10000");
    cr_assert_eq(cfg.gifts_max_count, 99);
    config_cleanup(&cfg);
}

Test(config_set, rejects_integer_above_max)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    cr_assert_eq(config_set(&cfg, "gifts.max_count", "10001", err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "gifts.max_count: must be an integer from 1 to 10000");
    cr_assert_eq(config_set(&cfg, "gifts.max_count", "99999999999999999999999", err, sizeof(err)),
                 -EINVAL);
    cr_assert_eq(cfg.gifts_max_count, 99);
    config_cleanup(&cfg);
}

Test(config_set, rejects_integer_with_trailing_garbage)
{
    static const char *const bad[] = {"12abc", "", " 12", "12 ", "1.5", "0x10", "abc"};
    struct config cfg;
    char err[ERRLEN];

    init(&cfg);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        cr_assert_eq(config_set(&cfg, "gifts.combo_window_ms", bad[i], err, sizeof(err)), -EINVAL,
                     "'%s' accepted", bad[i]);
        cr_assert(strncmp(err, "gifts.combo_window_ms: ", 23) == 0, "%s", err);
    }
    cr_assert_eq(cfg.gifts_combo_window_ms, 3000);
    config_cleanup(&cfg);
}

Test(config_set, rejects_bad_boolean_text)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    cr_assert_eq(config_set(&cfg, "auth.allow_guests", "maybe", err, sizeof(err)), -EINVAL);
    cr_assert(strncmp(err, "auth.allow_guests: must be a boolean", 36) == 0, "%s", err);
    cr_assert_eq(cfg.auth_allow_guests, false);
    config_cleanup(&cfg);
}

Test(config_set, tolerates_null_err)
{
    struct config cfg;

    init(&cfg);
    cr_assert_eq(config_set(&cfg, "gifts.max_count", "0", NULL, 0), -EINVAL);
    cr_assert_eq(config_set(&cfg, "nope", "0", NULL, 0), -ENOENT);
    config_cleanup(&cfg);
}

/* ---- config_apply_file ---- */

Test(config_apply_file, accepts_nested_and_dotted_keys)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    cr_assert_eq(apply_text(&cfg,
                            "{\"gifts\": {\"combo_window_ms\": 500},\n"
                            " \"gifts.max_count\": 7,\n"
                            " \"redis\": {\"url\": \"unix:///tmp/r.sock\"},\n"
                            " \"auth.allow_guests\": true,\n"
                            " \"listen\": \"127.0.0.1:9000\"}\n",
                            err),
                 0, "%s", err);
    cr_assert_eq(cfg.gifts_combo_window_ms, 500);
    cr_assert_eq(cfg.gifts_max_count, 7);
    cr_assert_str_eq(cfg.redis_url, "unix:///tmp/r.sock");
    cr_assert_eq(cfg.auth_allow_guests, true);
    cr_assert_str_eq(cfg.listen, "127.0.0.1:9000");
    config_cleanup(&cfg);
}

Test(config_apply_file, null_resets_a_string)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    cr_assert_eq(apply_text(&cfg, "{\"gifts\": {\"catalog\": null}}", err), 0, "%s", err);
    cr_assert_null(cfg.gifts_catalog);
    config_cleanup(&cfg);
}

Test(config_apply_file, rejects_unknown_key)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    cr_assert_eq(apply_text(&cfg, "{\"lisen\": \"0.0.0.0:1\"}", err), -EINVAL);
    cr_assert_str_eq(err, "lisen: unknown key");
    config_cleanup(&cfg);
}

Test(config_apply_file, rejects_nested_unknown_key)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    cr_assert_eq(apply_text(&cfg, "{\"gifts\": {\"combo_window\": 5}}", err), -EINVAL);
    cr_assert_str_eq(err, "gifts.combo_window: unknown key");
    cr_assert_eq(apply_text(&cfg, "{\"nosuch\": {\"x\": 5}}", err), -EINVAL);
    cr_assert_str_eq(err, "nosuch: unknown key");
    config_cleanup(&cfg);
}

Test(config_apply_file, rejects_wrong_type_for_string)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    cr_assert_eq(apply_text(&cfg, "{\"redis\": {\"url\": 6379}}", err), -EINVAL);
    cr_assert_str_eq(err, "redis.url: must be a string");
    cr_assert_eq(apply_text(&cfg, "{\"listen\": {\"port\": 1}}", err), -EINVAL);
    cr_assert_str_eq(err, "listen: must be a string");
    config_cleanup(&cfg);
}

Test(config_apply_file, rejects_wrong_type_for_integer)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    cr_assert_eq(apply_text(&cfg, "{\"gifts.max_count\": \"5\"}", err), -EINVAL);
    cr_assert_str_eq(err, "gifts.max_count: must be an integer");
    cr_assert_eq(apply_text(&cfg, "{\"gifts.max_count\": 5.0}", err), -EINVAL);
    cr_assert_str_eq(err, "gifts.max_count: must be an integer");
    cr_assert_eq(apply_text(&cfg, "{\"gifts.max_count\": null}", err), -EINVAL);
    cr_assert_str_eq(err, "gifts.max_count: must be an integer");
    config_cleanup(&cfg);
}

Test(config_apply_file, rejects_wrong_type_for_boolean)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    cr_assert_eq(apply_text(&cfg, "{\"auth\": {\"allow_guests\": \"true\"}}", err), -EINVAL);
    cr_assert_str_eq(err, "auth.allow_guests: must be a boolean");
    cr_assert_eq(apply_text(&cfg, "{\"auth\": {\"allow_guests\": 1}}", err), -EINVAL);
    cr_assert_str_eq(err, "auth.allow_guests: must be a boolean");
    config_cleanup(&cfg);
}

Test(config_apply_file, rejects_out_of_range_integers)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    cr_assert_eq(apply_text(&cfg, "{\"gifts\": {\"max_count\": 0}}", err), -EINVAL);
    cr_assert_str_eq(err, "gifts.max_count: must be an integer from 1 to 10000");
    cr_assert_eq(apply_text(&cfg, "{\"gifts\": {\"max_count\": 10001}}", err), -EINVAL);
    cr_assert_str_eq(err, "gifts.max_count: must be an integer from 1 to 10000");
    cr_assert_eq(apply_text(&cfg, "{\"workers\": -1}", err), -EINVAL);
    cr_assert_str_eq(err, "workers: must be an integer from 0 to 256");
    cr_assert_eq(cfg.gifts_max_count, 99);
    config_cleanup(&cfg);
}

Test(config_apply_file, syntax_error_names_file_and_line)
{
    struct config cfg;
    char err[ERRLEN] = "";
    char path[64];
    char want[128];

    init(&cfg);
    write_tmp("{\n  \"listen\": \"0.0.0.0:1\",\n  \"workers\": 2,,\n}\n", path);
    cr_assert_eq(config_apply_file(&cfg, path, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want), "%s:3:", path);
    cr_assert(strncmp(err, want, strlen(want)) == 0, "got '%s', want prefix '%s'", err, want);
    unlink(path);
    cr_assert_str_eq(cfg.listen, "0.0.0.0:8080");
    config_cleanup(&cfg);
}

Test(config_apply_file, rejects_non_object)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    cr_assert_eq(apply_text(&cfg, "[1, 2]", err), -EINVAL);
    cr_assert(strstr(err, "must be a JSON object") != NULL, "%s", err);
    config_cleanup(&cfg);
}

Test(config_apply_file, unreadable_file_fails_with_eio)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    cr_assert_eq(config_apply_file(&cfg, "/nonexistent/giftd.json", err, sizeof(err)), -EIO);
    cr_assert(strstr(err, "/nonexistent/giftd.json") != NULL, "%s", err);
    cr_assert_eq(config_apply_file(&cfg, "/tmp", err, sizeof(err)), -EIO);
    cr_assert(strstr(err, "/tmp") != NULL, "%s", err);
    config_cleanup(&cfg);
}

Test(config_apply_file, leaves_cfg_unchanged_on_failure)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    /* Good keys come first, so a partial apply would show. */
    cr_assert_eq(apply_text(&cfg,
                            "{\"listen\": \"1.2.3.4:5\", \"gifts.max_count\": 5,"
                            " \"tls\": {\"cert\": \"c.pem\"}, \"redis\": {\"url\": false}}",
                            err),
                 -EINVAL);
    cr_assert_str_eq(err, "redis.url: must be a string");
    cr_assert_str_eq(cfg.listen, "0.0.0.0:8080");
    cr_assert_eq(cfg.gifts_max_count, 99);
    cr_assert_null(cfg.tls_cert);
    config_cleanup(&cfg);
}

Test(config_apply_file, rejects_duplicate_keys)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    cr_assert_eq(apply_text(&cfg, "{\"workers\": 1, \"workers\": 2}", err), -EINVAL);
    cr_assert_eq(cfg.workers, 0);
    config_cleanup(&cfg);
}

Test(config_apply_file, shipped_giftd_json_loads_and_validates)
{
    struct config cfg;
    struct config def;
    char err[ERRLEN] = "";

    init(&cfg);
    init(&def);
    cr_assert_eq(config_apply_file(&cfg, GIFTD_SOURCE_DIR "/config/giftd.json", err, sizeof(err)),
                 0, "%s", err);
    /* auth.secret has no default: the shipped file must not start giftd with a known secret. */
    cr_assert_null(cfg.auth_secret);
    cr_assert_lt(config_validate(&cfg, err, sizeof(err)), 0);
    cr_assert(strstr(err, "auth.secret") != NULL, "%s", err);
    /* With a secret it validates; every other key is at its default. */
    cfg.auth_secret = strdup("a-secret-of-at-least-16-bytes");
    cr_assert_eq(config_validate(&cfg, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(cfg.listen, def.listen);
    cr_assert_null(cfg.redis_url);
    cr_assert_eq(cfg.gifts_combo_window_ms, def.gifts_combo_window_ms);
    cr_assert_eq(cfg.ledger_partitions, def.ledger_partitions);
    cr_assert_str_eq(cfg.flush_stream, def.flush_stream);
    cr_assert_str_eq(cfg.overlay_dir, def.overlay_dir);
    config_cleanup(&cfg);
    config_cleanup(&def);
}

Test(config_apply_file, shipped_giftd_json_lists_every_key)
{
    char *help = NULL;
    size_t helplen = 0;
    FILE *out = open_memstream(&help, &helplen);
    json_error_t jerr;
    json_t *root = json_load_file(GIFTD_SOURCE_DIR "/config/giftd.json", 0, &jerr);
    int keys = 0;

    cr_assert_not_null(root, "%s", jerr.text);
    config_print_help(out);
    fclose(out);
    /* Each help line names a key; each key must be in the shipped file. */
    for (char *line = strtok(help, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char key[128];
        char *dot;
        json_t *v = root;

        cr_assert_eq(sscanf(line, "  --%127[^=]=", key), 1, "%s", line);
        for (char *k = key; v != NULL; k = dot + 1) {
            dot = strchr(k, '.');
            if (dot != NULL) {
                *dot = '\0';
            }
            v = json_object_get(v, k);
            if (dot == NULL) {
                break;
            }
        }
        cr_assert_not_null(v, "key %s missing from giftd.json", line);
        keys++;
    }
    cr_assert_gt(keys, 20);
    free(help);
    json_decref(root);
}

/* ---- config_apply_env ---- */

Test(config_apply_env, overrides_keys_by_derived_names)
{
    struct config cfg;
    char err[ERRLEN] = "";
    char *envp[] = {"PATH=/bin",
                    "GIFTD_GIFTS_COMBO_WINDOW_MS=750",
                    "GIFTD_REDIS_URL=redis://r:6379/1",
                    "GIFTD_AUTH_ALLOW_GUESTS=1",
                    "GIFTD_TLS_CERT=",
                    "GIFTD_NOT_A_KEY=1",
                    NULL};

    init(&cfg);
    set_ok(&cfg, "tls.cert", "x.pem");
    cr_assert_eq(config_apply_env(&cfg, envp, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(cfg.gifts_combo_window_ms, 750);
    cr_assert_str_eq(cfg.redis_url, "redis://r:6379/1");
    cr_assert_eq(cfg.auth_allow_guests, true);
    cr_assert_null(cfg.tls_cert);
    config_cleanup(&cfg);
}

Test(config_apply_env, bad_value_names_key_and_variable)
{
    struct config cfg;
    char err[ERRLEN] = "";
    char *envp[] = {"GIFTD_LISTEN=1.1.1.1:1", "GIFTD_GIFTS_MAX_COUNT=12abc", NULL};

    init(&cfg);
    cr_assert_eq(config_apply_env(&cfg, envp, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "gifts.max_count") != NULL, "%s", err);
    cr_assert(strstr(err, "GIFTD_GIFTS_MAX_COUNT") != NULL, "%s", err);
    cr_assert(strstr(err, "must be an integer from 1 to 10000") != NULL, "%s", err);
    /* Unchanged, including the good variable before the bad one. */
    cr_assert_str_eq(cfg.listen, "0.0.0.0:8080");
    cr_assert_eq(cfg.gifts_max_count, 99);
    config_cleanup(&cfg);
}

Test(config_apply_env, bad_boolean_names_key_and_variable)
{
    struct config cfg;
    char err[ERRLEN] = "";
    char *envp[] = {"GIFTD_AUTH_ALLOW_GUESTS=sometimes", NULL};

    init(&cfg);
    cr_assert_eq(config_apply_env(&cfg, envp, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "auth.allow_guests") != NULL, "%s", err);
    cr_assert(strstr(err, "GIFTD_AUTH_ALLOW_GUESTS") != NULL, "%s", err);
    config_cleanup(&cfg);
}

Test(config_apply_env, prefix_of_a_name_does_not_match)
{
    struct config cfg;
    char err[ERRLEN] = "";
    char *envp[] = {"GIFTD_WORKERSX=3", "GIFTD_WORKER=3", NULL};

    init(&cfg);
    cr_assert_eq(config_apply_env(&cfg, envp, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(cfg.workers, 0);
    config_cleanup(&cfg);
}

/* ---- precedence: file, then environment, then flags ---- */

Test(config_precedence, flags_beat_env_beat_file)
{
    struct config cfg;
    char err[ERRLEN] = "";
    char *envp[] = {"GIFTD_GIFTS_MAX_COUNT=20", "GIFTD_LEDGER_TIMEOUT_MS=300", NULL};

    init(&cfg);
    cr_assert_eq(apply_text(&cfg,
                            "{\"gifts\": {\"max_count\": 10, \"combo_window_ms\": 400},"
                            " \"ledger.timeout_ms\": 100, \"workers\": 3}",
                            err),
                 0, "%s", err);
    cr_assert_eq(config_apply_env(&cfg, envp, err, sizeof(err)), 0, "%s", err);
    set_ok(&cfg, "gifts.max_count", "30");
    cr_assert_eq(cfg.gifts_max_count, 30);        /* flag */
    cr_assert_eq(cfg.ledger_timeout_ms, 300);     /* env over file */
    cr_assert_eq(cfg.gifts_combo_window_ms, 400); /* file */
    cr_assert_eq(cfg.workers, 3);                 /* file */
    cr_assert_eq(cfg.flush_interval_ms, 1000);    /* default */
    config_cleanup(&cfg);
}

/* ---- config_unknown_env ---- */

Test(config_unknown_env, returns_first_unknown_giftd_variable)
{
    char *envp[] = {"HOME=/root",     "GIFTD_LISTEN=:1",    "GIFTD_URL=http://x", "GIFTD_TOKEN=t",
                    "GIFTD_SECRET=s", "GIFTD_REDIS_URLL=x", "GIFTD_OTHER=1",      NULL};

    cr_assert_str_eq(config_unknown_env(envp), "GIFTD_REDIS_URLL=x");
}

Test(config_unknown_env, returns_null_when_all_are_known)
{
    char *envp[] = {"GIFTD_LISTEN=:1", "GIFTD_FLUSH_SINK=postgres",
                    "GIFTD_SECRET=s",  "GIFTD_CACERT=/etc/ca.pem",
                    "XGIFTD_FOO=1",    NULL};
    char *empty[] = {NULL};

    cr_assert_null(config_unknown_env(envp));
    cr_assert_null(config_unknown_env(empty));
}

/* ---- config_validate ---- */

Test(config_validate, accepts_defaults_with_a_secret)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    make_valid(&cfg);
    cr_assert_eq(config_validate(&cfg, err, sizeof(err)), 0, "%s", err);
    config_cleanup(&cfg);
}

Test(config_validate, requires_secret_with_hint)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    cr_assert_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL);
    cr_assert(strncmp(err, "auth.secret: ", 13) == 0, "%s", err);
    cr_assert(strstr(err, "set auth.secret (GIFTD_AUTH_SECRET) or run with --dev") != NULL, "%s",
              err);
    config_cleanup(&cfg);
}

Test(config_validate, rejects_short_secret)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    set_ok(&cfg, "auth.secret", "0123456789abcde"); /* 15 bytes */
    cr_assert_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL);
    cr_assert(strncmp(err, "auth.secret: ", 13) == 0, "%s", err);
    cr_assert(strstr(err, "16") != NULL, "%s", err);
    set_ok(&cfg, "auth.secret", "0123456789abcdef"); /* 16 bytes */
    cr_assert_eq(config_validate(&cfg, err, sizeof(err)), 0, "%s", err);
    config_cleanup(&cfg);
}

Test(config_validate, rejects_bad_listen)
{
    static const char *const bad[] = {
        "8080", "0.0.0.0:0", "0.0.0.0:65536", "host:", "::1:80", "[::1]8080", "h st:80"};
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    make_valid(&cfg);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        set_ok(&cfg, "listen", bad[i]);
        cr_assert_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL, "%s accepted", bad[i]);
        cr_assert(strncmp(err, "listen: ", 8) == 0, "%s", err);
    }
    set_ok(&cfg, "listen", "");
    cr_assert_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL);
    cr_assert(strncmp(err, "listen: ", 8) == 0, "%s", err);
    config_cleanup(&cfg);
}

Test(config_validate, requires_tls_cert_and_key_together)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    make_valid(&cfg);
    set_ok(&cfg, "tls.cert", "cert.pem");
    cr_assert_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL);
    cr_assert(strncmp(err, "tls.key: ", 9) == 0, "%s", err);
    set_ok(&cfg, "tls.cert", "");
    set_ok(&cfg, "tls.key", "key.pem");
    cr_assert_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL);
    cr_assert(strncmp(err, "tls.cert: ", 10) == 0, "%s", err);
    set_ok(&cfg, "tls.cert", "cert.pem");
    cr_assert_eq(config_validate(&cfg, err, sizeof(err)), 0, "%s", err);
    config_cleanup(&cfg);
}

Test(config_validate, checks_redis_url_scheme)
{
    static const char *const bad[] = {"http://r:6379", "r:6379", "redis://", "unix://",
                                      "unix://relative.sock"};
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    make_valid(&cfg);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        set_ok(&cfg, "redis.url", bad[i]);
        cr_assert_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL, "%s accepted", bad[i]);
        cr_assert(strncmp(err, "redis.url: ", 11) == 0, "%s", err);
    }
    set_ok(&cfg, "redis.url", "redis://127.0.0.1:6379/0");
    cr_assert_eq(config_validate(&cfg, err, sizeof(err)), 0, "%s", err);
    set_ok(&cfg, "redis.url", "unix:///run/redis.sock");
    cr_assert_eq(config_validate(&cfg, err, sizeof(err)), 0, "%s", err);
    config_cleanup(&cfg);
}

Test(config_validate, checks_flush_sink)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    make_valid(&cfg);
    set_ok(&cfg, "flush.sink", "kafka");
    cr_assert_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL);
    cr_assert(strncmp(err, "flush.sink: ", 12) == 0, "%s", err);
    set_ok(&cfg, "flush.sink", "");
    cr_assert_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL);
    cr_assert(strncmp(err, "flush.sink: ", 12) == 0, "%s", err);
    config_cleanup(&cfg);
}

Test(config_validate, postgres_sink_needs_connection_string)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    make_valid(&cfg);
    set_ok(&cfg, "flush.sink", "postgres");
    cr_assert_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL);
    cr_assert(strncmp(err, "flush.postgres: ", 16) == 0, "%s", err);
    set_ok(&cfg, "flush.postgres", "dbname=giftd");
    cr_assert_eq(config_validate(&cfg, err, sizeof(err)), 0, "%s", err);
    config_cleanup(&cfg);
}

Test(config_validate, redis_stream_sink_needs_stream)
{
    struct config cfg;
    char err[ERRLEN] = "";

    init(&cfg);
    make_valid(&cfg);
    set_ok(&cfg, "flush.stream", "");
    cr_assert_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL);
    cr_assert(strncmp(err, "flush.stream: ", 14) == 0, "%s", err);
    config_cleanup(&cfg);
}

/* ---- config_listen_parse ---- */

Test(config_listen_parse, splits_ipv4_name_and_empty_host)
{
    char host[64];
    int port = 0;

    cr_assert_eq(config_listen_parse("0.0.0.0:8080", host, sizeof(host), &port), 0);
    cr_assert_str_eq(host, "0.0.0.0");
    cr_assert_eq(port, 8080);
    cr_assert_eq(config_listen_parse("localhost:1", host, sizeof(host), &port), 0);
    cr_assert_str_eq(host, "localhost");
    cr_assert_eq(port, 1);
    cr_assert_eq(config_listen_parse(":65535", host, sizeof(host), &port), 0);
    cr_assert_str_eq(host, "");
    cr_assert_eq(port, 65535);
}

Test(config_listen_parse, splits_bracketed_ipv6)
{
    char host[64];
    int port = 0;

    cr_assert_eq(config_listen_parse("[::1]:8080", host, sizeof(host), &port), 0);
    cr_assert_str_eq(host, "::1");
    cr_assert_eq(port, 8080);
    cr_assert_eq(config_listen_parse("[::]:443", host, sizeof(host), &port), 0);
    cr_assert_str_eq(host, "::");
    cr_assert_eq(port, 443);
}

Test(config_listen_parse, rejects_malformed)
{
    static const char *const bad[] = {"",          "8080",  "h:",      "h:0",      "h:65536",
                                      "h:-1",      "h:+80", "h:80x",   "::1:8080", "[::1]",
                                      "[::1]8080", "[]:80", "[zz]:80", "a b:80",   "h:99999999999"};
    char host[64];
    int port = 0;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(config_listen_parse(bad[i], host, sizeof(host), &port), -EINVAL,
                     "'%s' accepted", bad[i]);
    }
    cr_assert_eq(config_listen_parse(NULL, host, sizeof(host), &port), -EINVAL);
}

Test(config_listen_parse, rejects_host_longer_than_buffer)
{
    char host[4];
    int port = 0;

    cr_assert_eq(config_listen_parse("abcd:80", host, sizeof(host), &port), -EINVAL);
    cr_assert_eq(config_listen_parse("abc:80", host, sizeof(host), &port), 0);
    cr_assert_str_eq(host, "abc");
}

/* ---- config_print_help / config_print_json ---- */

Test(config_print_help, lists_every_key_with_env_name_and_default)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);

    config_print_help(out);
    fclose(out);
    cr_assert(strstr(buf, "  --listen=VALUE  (GIFTD_LISTEN, default 0.0.0.0:8080)  host:port") !=
              NULL);
    cr_assert(strstr(buf, "  --gifts.combo_window_ms=VALUE  (GIFTD_GIFTS_COMBO_WINDOW_MS, "
                          "default 3000)") != NULL);
    cr_assert(
        strstr(buf, "  --auth.allow_guests=VALUE  (GIFTD_AUTH_ALLOW_GUESTS, default false)") !=
        NULL);
    cr_assert(strstr(buf, "  --redis.url=VALUE  (GIFTD_REDIS_URL, default none)") != NULL);
    cr_assert(strstr(buf, "--overlay.dir=") != NULL);
    free(buf);
}

Test(config_print_json, masks_secret_and_round_trips)
{
    struct config cfg;
    struct config back;
    char err[ERRLEN] = "";
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);

    init(&cfg);
    init(&back);
    set_ok(&cfg, "auth.secret", "very-secret-value-1234");
    set_ok(&cfg, "gifts.max_count", "42");
    set_ok(&cfg, "redis.url", "redis://h:1/2");
    set_ok(&cfg, "auth.allow_guests", "true");
    config_print_json(&cfg, out);
    fclose(out);
    cr_assert(strstr(buf, "very-secret") == NULL, "%s", buf);
    cr_assert(strstr(buf, "\"***\"") != NULL, "%s", buf);
    cr_assert_eq(apply_text(&back, buf, err), 0, "%s", err);
    cr_assert_eq(back.gifts_max_count, 42);
    cr_assert_str_eq(back.redis_url, "redis://h:1/2");
    cr_assert_eq(back.auth_allow_guests, true);
    cr_assert_str_eq(back.auth_secret, "***");
    cr_assert_null(back.tls_cert);
    free(buf);
    config_cleanup(&cfg);
    config_cleanup(&back);
}
