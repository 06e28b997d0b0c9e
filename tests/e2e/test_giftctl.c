/* End-to-end: giftctl against a real giftd — rooms, recharge, balance, budget, tokens. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/fixture.h"

static struct fx f;
static char url[64];

static void setup(void)
{
    fx_start(&f, 1, NULL);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", f.node[0].port);
}

static void teardown(void)
{
    fx_stop(&f);
}

TestSuite(giftctl, .init = setup, .fini = teardown, .timeout = 60);

/* Runs giftctl with the fixture's URL and secret; returns its exit status, *out its stdout
 * parsed as JSON (NULL when not JSON). */
static int ctl(json_t **out, const char *const *args)
{
    const char *argv[24] = {GIFTCTL_BIN, "--url", url};
    int n = 3;
    for (int i = 0; args[i] && n < 23; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    const char *env[] = {"GIFTD_SECRET=" TK_SECRET, NULL};
    char *so = NULL, *se = NULL;
    int rc = tk_run(argv, env, 15000, &so, &se);
    if (out) {
        *out = json_loads(so ? so : "", 0, NULL);
    }
    free(so);
    free(se);
    return rc;
}

Test(giftctl, room_open_show_close)
{
    json_t *j = NULL;
    const char *open[] = {"room", "open",           "c1",   "--creator",
                          "cara", "--creator-name", "Cara", NULL};
    cr_assert_eq(ctl(&j, open), 0);
    cr_assert(json_is_true(json_object_get(j, "live")));
    json_decref(j);
    const char *show[] = {"room", "show", "c1", NULL};
    cr_assert_eq(ctl(&j, show), 0);
    cr_assert_str_eq(fx_str(json_object_get(j, "creator"), "name"), "Cara");
    cr_assert(json_is_true(json_object_get(j, "live")));
    json_decref(j);
    const char *close[] = {"room", "close", "c1", NULL};
    cr_assert_eq(ctl(&j, close), 0);
    json_decref(j);
    cr_assert_eq(ctl(&j, show), 0);
    cr_assert(json_is_false(json_object_get(j, "live")));
    json_decref(j);
    const char *missing[] = {"room", "show", "never", NULL};
    cr_assert_eq(ctl(NULL, missing), 1, "a 404 is exit status 1");
    /* goal set on a closed room: 409; on a live one it is the room's goal. */
    const char *goal[] = {"goal",     "set", "studio-1", "--title", "Roses",
                          "--target", "5",   "--gift",   "rose",    NULL};
    cr_assert_eq(ctl(NULL, goal), 1, "the room is closed");
    fx_open_room(&f, "studio-2", "cara");
    const char *goal2[] = {"goal",     "set", "studio-2", "--title", "Roses",
                           "--target", "5",   "--gift",   "rose",    NULL};
    cr_assert_eq(ctl(&j, goal2), 0);
    cr_assert_eq(fx_int(json_object_get(j, "goal"), "target"), 5);
    json_decref(j);
    const char *clear[] = {"goal", "clear", "studio-2", NULL};
    cr_assert_eq(ctl(&j, clear), 0);
    cr_assert(json_is_null(json_object_get(j, "goal")));
    json_decref(j);
    const char *bad[] = {"goal", "set", "studio-2", "--title", "x", "--target", "0", NULL};
    cr_assert_eq(ctl(NULL, bad), 2, "usage error");
}

Test(giftctl, recharge_balance_budget)
{
    json_t *j = NULL;
    const char *rc1[] = {"recharge", "--user",    "ann",  "--payment-id",
                         "p-1",      "--package", "p350", NULL};
    cr_assert_eq(ctl(&j, rc1), 0);
    cr_assert_eq(fx_int(j, "credited"), 350);
    json_decref(j);
    cr_assert_eq(ctl(&j, rc1), 0);
    cr_assert(json_is_true(json_object_get(j, "duplicate")));
    json_decref(j);
    const char *rc2[] = {"recharge", "--user", "ann", "--payment-id", "p-2", "--coins", "5", NULL};
    cr_assert_eq(ctl(&j, rc2), 0);
    json_decref(j);
    const char *bal[] = {"balance", "ann", NULL};
    cr_assert_eq(ctl(&j, bal), 0);
    cr_assert_eq(fx_int(j, "coins"), 355);
    json_decref(j);
    const char *bud[] = {"budget", "ann", "--daily-coins", "100", NULL};
    cr_assert_eq(ctl(&j, bud), 0);
    cr_assert_eq(fx_int(j, "daily_coins"), 100);
    json_decref(j);
    const char *month[] = {"budget", "ann", "--monthly-coins", "2000", NULL};
    cr_assert_eq(ctl(&j, month), 0);
    cr_assert_eq(fx_int(j, "monthly_coins"), 2000);
    cr_assert_eq(fx_int(j, "daily_coins"), 100, "the daily cap is kept");
    json_decref(j);
    const char *none[] = {"budget", "ann", "--daily-coins", "none", "--monthly-coins",
                          "none",   NULL};
    cr_assert_eq(ctl(&j, none), 0);
    cr_assert(json_is_null(json_object_get(j, "daily_coins")));
    cr_assert(json_is_null(json_object_get(j, "monthly_coins")));
    json_decref(j);
    const char *show[] = {"budget", "ann", NULL};
    cr_assert_eq(ctl(&j, show), 0);
    cr_assert(json_is_integer(json_object_get(j, "spent_this_month")));
    json_decref(j);
    /* A reversal, then the history shows it on top. */
    const char *rev[] = {"reverse", "--user",   "ann",    "--payment-id",
                         "p-2",     "--reason", "refund", NULL};
    cr_assert_eq(ctl(&j, rev), 0);
    cr_assert(json_is_false(json_object_get(j, "duplicate")));
    long long reversed = fx_int(j, "reversed");
    cr_assert(reversed > 0);
    json_decref(j);
    const char *txs[] = {"transactions", "ann", "--count", "1", NULL};
    cr_assert_eq(ctl(&j, txs), 0);
    json_t *top = json_array_get(json_object_get(j, "transactions"), 0);
    cr_assert_str_eq(fx_str(top, "type"), "reversal");
    cr_assert_eq(fx_int(top, "coins"), -reversed);
    cr_assert_str_eq(fx_str(top, "reason"), "refund");
    json_decref(j);
    const char *norev[] = {"reverse", "--user", "ann", "--payment-id", "never", NULL};
    cr_assert_eq(ctl(NULL, norev), 1, "404: giftctl fails");
    cr_assert_eq(fx_balance(&f, "ann"), 355 - reversed);
    const char *badpkg[] = {"recharge", "--user",    "ann",  "--payment-id",
                            "p-3",      "--package", "nope", NULL};
    cr_assert_eq(ctl(NULL, badpkg), 1);
    cr_assert_eq(fx_balance(&f, "ann"), 355 - reversed);
}

Test(giftctl, minted_token_is_accepted_by_giftd)
{
    const char *argv[] = {GIFTCTL_BIN, "token", "--sub",    "ann",     "--role", "viewer",
                          "--name",    "Ann",   "--secret", TK_SECRET, NULL};
    char *tok = NULL;
    cr_assert_eq(tk_run(argv, NULL, 10000, &tok, NULL), 0);
    tok[strcspn(tok, "\r\n")] = '\0';
    char path[1024];
    snprintf(path, sizeof(path), "/ws?token=%s", tok);
    free(tok);
    struct tk_ws *ws = tk_ws_connect(f.node[0].port, path);
    cr_assert_not_null(ws);
    json_t *w = tk_ws_expect(ws, "welcome", 5000);
    cr_assert_not_null(w);
    cr_assert_str_eq(fx_str(json_object_get(w, "user"), "name"), "Ann");
    json_decref(w);
    tk_ws_free(ws);
}

Test(giftctl, room_events_and_overlay_controls)
{
    fx_open_room(&f, "studio-ev", "cara");
    fx_recharge(&f, "ann", 100);
    struct tk_ws *overlay = fx_connect_as(&f, 0, "cara", "overlay", "studio-ev");
    struct tk_ws *ann = fx_viewer(&f, 0, "ann", "studio-ev");
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof(id), "ev-%d", i);
        fx_send_gift(ann, id, "finger_heart", 1);
        json_t *a = fx_answer(ann, id, 5000);
        cr_assert_not_null(a);
        cr_assert_str_eq(fx_str(a, "type"), "ack");
        json_decref(a);
    }
    json_t *j = NULL;
    const char *events[] = {"room", "events", "studio-ev", "--since", "1", "--count", "1", NULL};
    cr_assert_eq(ctl(&j, events), 0);
    json_t *ev = json_object_get(j, "events");
    cr_assert_eq(json_array_size(ev), 1);
    cr_assert_eq(fx_int(json_array_get(ev, 0), "seq"), 2);
    cr_assert(json_is_integer(json_object_get(j, "epoch")));
    json_decref(j);
    const char *skip[] = {"overlay", "skip", "studio-ev", NULL};
    cr_assert_eq(ctl(&j, skip), 0);
    json_decref(j);
    json_t *o = tk_ws_expect(overlay, "overlay", 5000);
    cr_assert_not_null(o);
    cr_assert_str_eq(fx_str(o, "action"), "skip");
    json_decref(o);
    const char *replay[] = {"overlay", "replay", "studio-ev", "--seq", "1", NULL};
    cr_assert_eq(ctl(&j, replay), 0);
    json_decref(j);
    o = tk_ws_expect(overlay, "overlay", 5000);
    cr_assert_not_null(o);
    cr_assert_eq(fx_int(json_object_get(o, "event"), "seq"), 1);
    json_decref(o);
    const char *gone[] = {"overlay", "replay", "studio-ev", "--seq", "99", NULL};
    cr_assert_eq(ctl(NULL, gone), 1, "an event not kept is a 404");
    const char *noseq[] = {"overlay", "replay", "studio-ev", NULL};
    cr_assert_eq(ctl(NULL, noseq), 2, "usage error");
    const char *dance[] = {"overlay", "dance", "studio-ev", NULL};
    cr_assert_eq(ctl(NULL, dance), 2, "usage error");
    tk_ws_free(ann);
    tk_ws_free(overlay);
}
