/* End-to-end: giftd with several worker processes on one port — every viewer gets every
 * event whichever worker holds it, a dead worker is replaced, SIGTERM stops them all. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/fixture.h"

static struct fx f;

static void setup(void)
{
    static const char *const extra[] = {"--workers=2", "--limits.gifts_per_sec=100000", NULL};
    fx_start(&f, 1, extra);
}

static void teardown(void)
{
    fx_stop(&f);
}

TestSuite(workers, .init = setup, .fini = teardown, .timeout = 60);

/* The pid of the worker that answers one /metrics request, 0 while that worker is not
 * connected to Redis yet (readiness of the port says only that one worker is). */
static int worker_pid(char *out_node, size_t len)
{
    struct tk_http_resp r = {0};
    cr_assert_eq(tk_http(f.node[0].port, "GET", "/metrics", NULL, NULL, &r), 0);
    if (!strstr(r.body, "giftd_ledger_up 1\n")) {
        tk_http_resp_cleanup(&r);
        usleep(20000);
        return 0;
    }
    const char *p = strstr(r.body, "giftd_worker_info{");
    cr_assert_not_null(p);
    const char *node = strstr(p, "node=\"");
    const char *pid = strstr(p, "pid=\"");
    cr_assert(node && pid);
    snprintf(out_node, len, "%.*s", (int)strcspn(node + 6, "\""), node + 6);
    int v = atoi(pid + 5);
    tk_http_resp_cleanup(&r);
    return v;
}

Test(workers, two_workers_share_the_port_and_every_viewer_gets_every_event)
{
    /* Both workers answer on the one port. */
    int pids[2] = {0, 0};
    char node[64];
    for (int i = 0; i < 200 && (pids[0] == 0 || pids[1] == 0); i++) {
        int p = worker_pid(node, sizeof(node));
        if (p == 0) {
            continue;
        }
        if (pids[0] == 0) {
            pids[0] = p;
        } else if (p != pids[0]) {
            pids[1] = p;
        }
    }
    cr_assert(pids[1] != 0, "only one worker ever answered");
    cr_assert_neq(pids[0], f.node[0].pid, "the supervisor itself serves");

    fx_open_room(&f, "w1", "cara");
    fx_recharge(&f, "ann", 100000);
    enum { V = 16 };
    struct tk_ws *v[V];
    for (int i = 0; i < V; i++) {
        char sub[16];
        snprintf(sub, sizeof(sub), "v%d", i);
        v[i] = fx_viewer(&f, 0, sub, "w1");
    }
    struct tk_ws *a = fx_viewer(&f, 0, "ann", "w1");
    for (int i = 0; i < 10; i++) {
        char id[16];
        snprintf(id, sizeof(id), "w%d", i);
        fx_send_gift(a, id, "galaxy", 1);
    }
    for (int k = 0; k < V; k++) {
        for (int i = 0; i < 10; i++) {
            json_t *e = tk_ws_expect(v[k], "gift", 5000);
            cr_assert_not_null(e, "viewer %d missed event %d", k, i);
            char id[16];
            snprintf(id, sizeof(id), "w%d", i);
            cr_assert_str_eq(fx_str(e, "id"), id);
            json_decref(e);
        }
    }

    /* A worker killed is replaced; the other one's viewers never notice. */
    cr_assert_eq(kill(pids[0], SIGKILL), 0);
    int alive_new = 0;
    for (int i = 0; i < 50 && !alive_new; i++) {
        usleep(100000);
        int p = worker_pid(node, sizeof(node));
        alive_new = p != 0 && p != pids[0] && p != pids[1];
    }
    cr_assert(alive_new, "no replacement worker answered");
    int survivors = 0;
    for (int k = 0; k < V; k++) {
        if (tk_ws_send_json(v[k], "{\"type\":\"ping\"}") == 0) {
            json_t *pong = tk_ws_expect(v[k], "pong", 2000);
            survivors += pong != NULL;
            json_decref(pong);
        }
    }
    cr_assert(survivors > 0 && survivors < V, "survivors: %d of %d", survivors, V);

    /* SIGTERM to the supervisor: every remaining viewer gets 1001, exit 0. */
    struct tk_ws *b = fx_viewer(&f, 0, "late", "w1");
    cr_assert_eq(tk_giftd_signal(&f.node[0], SIGTERM), 0);
    cr_assert(tk_ws_wait_closed(b, 5000));
    cr_assert_eq(tk_ws_close_code(b), 1001);
    int status = -1;
    cr_assert_eq(tk_giftd_wait_exit(&f.node[0], 15000, &status), 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    for (int k = 0; k < V; k++) {
        tk_ws_free(v[k]);
    }
    tk_ws_free(a);
    tk_ws_free(b);
}
