/* End-to-end: giftload against a real giftd — its own counts (sent, acked, rejected by code,
 * deliveries against expected deliveries) checked on small scenarios. */
#include <criterion/criterion.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/fixture.h"

static struct fx f;

static void setup(void)
{
    fx_start(&f, 1, NULL);
}

static void teardown(void)
{
    fx_stop(&f);
}

TestSuite(giftload_run, .init = setup, .fini = teardown, .timeout = 120);

/* giftload is built next to the test executables: take the directory of /proc/self/exe. */
static void giftload_path(char *out, size_t len)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    cr_assert(n > 0, "readlink /proc/self/exe failed");
    exe[n] = '\0';
    snprintf(out, len, "%s/giftload", dirname(exe));
    cr_assert_eq(access(out, X_OK), 0, "%s is missing: build the giftload target first", out);
}

/*
 * Runs giftload with --setup against node 0 under a fresh prefix (out_prefix, 32 bytes) plus
 * extra arguments (NULL-terminated) and returns its --json report (**new**); asserts exit 0.
 */
static json_t *run_giftload(char *out_prefix, const char *const *extra)
{
    char bin[PATH_MAX], url[64], json_path[128];
    giftload_path(bin, sizeof(bin));
    snprintf(url, sizeof(url), "ws://127.0.0.1:%d", f.node[0].port);
    tk_unique(out_prefix, 32, "gl");
    snprintf(json_path, sizeof(json_path), "/tmp/giftload-%s.json", out_prefix);
    const char *argv[40] = {bin,      "--url",   url,       "--secret", TK_SECRET, "--setup",
                            "--json", json_path, "--quiet", "--prefix", out_prefix};
    size_t n = 11;
    for (size_t i = 0; extra && extra[i]; i++) {
        cr_assert(n < sizeof(argv) / sizeof(argv[0]) - 1);
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    char *out = NULL, *err = NULL;
    int rc = tk_run(argv, NULL, 90000, &out, &err);
    cr_assert_eq(rc, 0, "giftload exited %d\nstdout: %s\nstderr: %s", rc, out ? out : "",
                 err ? err : "");
    free(out);
    free(err);
    json_error_t je;
    json_t *report = json_load_file(json_path, 0, &je);
    cr_assert_not_null(report, "no JSON report: %s", je.text);
    unlink(json_path);
    return report;
}

static long long report_int(json_t *r, const char *key)
{
    json_t *v = json_object_get(r, key);
    cr_assert(json_is_integer(v), "report field %s missing or not an integer", key);
    return json_integer_value(v);
}

Test(giftload_run, counts_every_delivery_of_acked_gifts)
{
    char prefix[32];
    const char *extra[] = {"--viewers",  "40", "--rooms", "2", "--senders", "4", "--rate", "20",
                           "--duration", "2",  "--drain", "5", NULL};
    json_t *r = run_giftload(prefix, extra);

    cr_assert_eq(report_int(r, "connected"), 44);
    cr_assert_eq(report_int(r, "connect_failures"), 0);
    cr_assert_eq(report_int(r, "gifts_sent"), 40, "rate x duration gifts are sent");
    cr_assert_eq(report_int(r, "gifts_acked"), report_int(r, "gifts_sent"));
    cr_assert_eq(json_object_size(json_object_get(r, "gifts_rejected")), 0);
    /* 20 gifts per room, each delivered to the room's 20 viewers and 2 senders. */
    cr_assert_eq(report_int(r, "expected_deliveries"), 40 * 22);
    cr_assert_eq(report_int(r, "deliveries"), report_int(r, "expected_deliveries"));
    cr_assert_eq(json_object_size(json_object_get(r, "closed_early")), 0);
    json_t *lat = json_object_get(r, "latency_ms");
    cr_assert(report_int(lat, "samples") > 0, "sampled viewers measured latency");
    cr_assert(json_is_number(json_object_get(lat, "p99")));

    /* The server agrees: each sender spent 10 coins of rose. */
    char user[64];
    snprintf(user, sizeof(user), "%s-s0", prefix);
    cr_assert_eq(fx_balance(&f, user), 1000000 - 10);
    json_decref(r);
}

Test(giftload_run, counts_rejections_by_code)
{
    char prefix[32];
    /* 2 senders with 5 coins each send 10 roses (1 coin) each: 5 acks and 5 rejections. */
    const char *extra[] = {"--viewers",  "10", "--rooms", "1", "--senders", "2", "--rate", "10",
                           "--duration", "2",  "--coins", "5", "--drain",   "5", NULL};
    json_t *r = run_giftload(prefix, extra);

    cr_assert_eq(report_int(r, "connected"), 12);
    cr_assert_eq(report_int(r, "gifts_sent"), 20);
    cr_assert_eq(report_int(r, "gifts_acked"), 10);
    json_t *rej = json_object_get(r, "gifts_rejected");
    cr_assert_eq(json_object_size(rej), 1, "only one rejection code");
    cr_assert_eq(report_int(rej, "insufficient_funds"), 10);
    cr_assert_eq(report_int(r, "gifts_rejected_total"), 10);
    cr_assert_eq(report_int(r, "gifts_unanswered"), 0);
    /* Rejected gifts are not broadcast: 10 accepted × 12 connections. */
    cr_assert_eq(report_int(r, "expected_deliveries"), 120);
    cr_assert_eq(report_int(r, "deliveries"), 120);

    char user[64];
    snprintf(user, sizeof(user), "%s-s1", prefix);
    cr_assert_eq(fx_balance(&f, user), 0);
    json_decref(r);
}
