/* fixture: a real redis-server and real giftd nodes for end-to-end tests. */
#include "tests/support/fixture.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

void fx_start_node(struct fx *f, int i, const char *const *extra)
{
    /* One process per node unless a test asks for workers: tests count per process. */
    char cluster[600];
    const char *args[32] = {"--workers=1"};
    int n = 1;
    if (f->cluster) {
        snprintf(cluster, sizeof(cluster), "--redis.cluster=%s", f->seeds);
        args[n++] = cluster;
    }
    for (int k = 0; extra && extra[k] && n < 31; k++) {
        args[n++] = extra[k];
    }
    args[n] = NULL;
    int rc = tk_giftd_start(&f->node[i], f->cluster ? NULL : f->redis_url, args);
    cr_assert_eq(rc, 0, "giftd node %d did not start (%d)", i, rc);
    cr_assert_eq(tk_giftd_wait_ready(&f->node[i], 10000), 0, "giftd node %d not ready", i);
}

static void start(struct fx *f, int nodes, const char *const *extra, bool aof)
{
    memset(f, 0, sizeof(*f));
    if (aof) {
        int port = tk_free_port();
        cr_assert(port > 0);
        cr_assert_eq(tk_redis_start_on(&f->redis, port, true), 0, "redis-server did not start");
    } else {
        cr_assert_eq(tk_redis_start(&f->redis), 0, "redis-server did not start");
    }
    tk_redis_url(&f->redis, f->redis_url, sizeof(f->redis_url));
    f->nodes = nodes;
    for (int i = 0; i < nodes; i++) {
        fx_start_node(f, i, extra);
    }
    f->service = tk_token("platform", NULL, "service", NULL, 3600);
}

void fx_start_cluster(struct fx *f, int nodes, int masters, int replicas, const char *const *extra)
{
    memset(f, 0, sizeof(*f));
    f->cluster = calloc(1, sizeof(*f->cluster));
    cr_assert_not_null(f->cluster);
    cr_assert_eq(tk_cluster_start(f->cluster, masters, replicas), 0, "the cluster did not start");
    tk_cluster_seeds(f->cluster, f->seeds, sizeof(f->seeds));
    f->nodes = nodes;
    for (int i = 0; i < nodes; i++) {
        fx_start_node(f, i, extra);
    }
    f->service = tk_token("platform", NULL, "service", NULL, 3600);
}

void fx_start(struct fx *f, int nodes, const char *const *extra)
{
    start(f, nodes, extra, false);
}

void fx_start_aof(struct fx *f, int nodes, const char *const *extra)
{
    start(f, nodes, extra, true);
}

void fx_stop(struct fx *f)
{
    /* Every node still running must shut down cleanly: exit 0 also means no sanitizer report
     * (leaks included) in the ASan build. */
    for (int i = 0; i < f->nodes; i++) {
        if (f->node[i].pid <= 0) {
            continue;
        }
        int status = -1;
        tk_giftd_signal(&f->node[i], SIGTERM);
        int rc = tk_giftd_wait_exit(&f->node[i], 15000, &status);
        if (rc != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            tk_giftd_dump_log(&f->node[i], 4000);
        }
        cr_expect_eq(rc, 0, "node %d did not exit after SIGTERM", i);
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "node %d exit status %d", i,
                  status);
        tk_giftd_stop(&f->node[i]);
    }
    if (f->cluster) {
        tk_cluster_stop(f->cluster);
        free(f->cluster);
        f->cluster = NULL;
    } else {
        tk_redis_stop(&f->redis);
    }
    free(f->service);
    f->service = NULL;
}

static json_t *http_ok(struct fx *f, const char *method, const char *path, const char *body)
{
    struct tk_http_resp r = {0};
    const struct tk_giftd *n = &f->node[0];
    int rc = n->tls_ca[0] ? tk_https(n->port, n->tls_ca, method, path, f->service, body, &r)
                          : tk_http(n->port, method, path, f->service, body, &r);
    cr_assert_eq(rc, 0, "%s %s failed (%d)", method, path, rc);
    cr_assert_eq(r.status, 200, "%s %s: %d %s", method, path, r.status, r.body);
    json_t *j = json_incref(r.json);
    tk_http_resp_cleanup(&r);
    cr_assert_not_null(j);
    return j;
}

void fx_open_room(struct fx *f, const char *room, const char *creator)
{
    char path[128], body[256];
    snprintf(path, sizeof(path), "/v1/rooms/%s", room);
    snprintf(body, sizeof(body), "{\"creator\":{\"id\":\"%s\",\"name\":\"Creator %s\"}}", creator,
             creator);
    json_decref(http_ok(f, "PUT", path, body));
}

void fx_close_room(struct fx *f, const char *room)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/rooms/%s", room);
    json_decref(http_ok(f, "DELETE", path, NULL));
}

long fx_recharge(struct fx *f, const char *user, long coins)
{
    char pay[96], body[256];
    tk_unique(pay, sizeof(pay), "pay");
    snprintf(body, sizeof(body), "{\"payment_id\":\"%s\",\"user\":\"%s\",\"coins\":%ld}", pay, user,
             coins);
    json_t *j = http_ok(f, "POST", "/v1/recharge", body);
    long bal = (long)fx_int(j, "balance");
    json_decref(j);
    return bal;
}

long fx_balance(struct fx *f, const char *user)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/users/%s/balance", user);
    json_t *j = http_ok(f, "GET", path, NULL);
    long c = (long)fx_int(j, "coins");
    json_decref(j);
    return c;
}

struct tk_ws *fx_connect_as(struct fx *f, int node, const char *sub, const char *role,
                            const char *room)
{
    char *tok = tk_token(sub, strcmp(role, "viewer") == 0 ? sub : NULL, role,
                         strcmp(role, "overlay") == 0 ? room : NULL, 3600);
    char path[1024];
    snprintf(path, sizeof(path), "/ws?token=%s%s%s", tok, room ? "&room=" : "", room ? room : "");
    free(tok);
    const struct tk_giftd *n = &f->node[node];
    struct tk_ws *ws =
        n->tls_ca[0] ? tk_ws_connect_tls(n->port, path, n->tls_ca) : tk_ws_connect(n->port, path);
    cr_assert_not_null(ws, "WebSocket connect to node %d failed", node);
    json_t *w = tk_ws_expect(ws, "welcome", 5000);
    cr_assert_not_null(w, "no welcome");
    json_decref(w);
    if (room) {
        json_t *j = tk_ws_recv(ws, 5000);
        cr_assert_not_null(j, "no answer to the join");
        cr_assert_str_eq(fx_str(j, "type"), "joined", "join of %s answered %s", room,
                         json_dumps(j, JSON_COMPACT));
        json_decref(j);
    }
    return ws;
}

struct tk_ws *fx_viewer(struct fx *f, int node, const char *sub, const char *room)
{
    return fx_connect_as(f, node, sub, "viewer", room);
}

int64_t fx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *fx_str(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    cr_assert(json_is_string(v), "field %s is not a string", key);
    return json_string_value(v);
}

long long fx_int(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    cr_assert(json_is_integer(v), "field %s is not an integer", key);
    return (long long)json_integer_value(v);
}

void fx_send_gift(struct tk_ws *ws, const char *id, const char *gift, long count)
{
    cr_assert_eq(tk_ws_send_json(ws,
                                 "{\"type\":\"gift\",\"id\":\"%s\",\"gift\":\"%s\",\"count\":%ld}",
                                 id, gift, count),
                 0);
}

json_t *fx_answer(struct tk_ws *ws, const char *id, int timeout_ms)
{
    /* Kept answers: id -> array of its answers in the order they arrived. */
    json_t *kept = tk_ws_kept(ws);
    json_t *mine = json_object_get(kept, id);
    json_t *j = json_incref(json_array_get(mine, 0));
    if (j) {
        json_array_remove(mine, 0);
        if (json_array_size(mine) == 0) {
            json_object_del(kept, id);
        }
        return j;
    }
    for (;;) {
        j = tk_ws_recv(ws, timeout_ms);
        if (!j) {
            return NULL;
        }
        const char *t = json_string_value(json_object_get(j, "type"));
        const char *jid = json_string_value(json_object_get(j, "id"));
        if (t && (strcmp(t, "ack") == 0 || strcmp(t, "error") == 0) && jid) {
            if (strcmp(jid, id) == 0) {
                return j;
            }
            json_t *theirs = json_object_get(kept, jid);
            if (!theirs) {
                theirs = json_array();
                json_object_set_new(kept, jid, theirs);
            }
            json_array_append_new(theirs, j);
            continue;
        }
        json_decref(j);
    }
}

void fx_expect_refusal(struct tk_ws *ws, const char *id, const char *gift, long count,
                       const char *code)
{
    fx_send_gift(ws, id, gift, count);
    json_t *e = fx_answer(ws, id, 5000);
    cr_assert_not_null(e, "no answer to %s", id);
    cr_assert_str_eq(fx_str(e, "type"), "error", "%s: %s", id, json_dumps(e, 0));
    cr_assert_str_eq(fx_str(e, "code"), code, "%s: %s", id, json_dumps(e, 0));
    json_decref(e);
}

long long fx_metric(struct fx *f, int node, const char *name)
{
    struct tk_http_resp r;
    cr_assert_eq(tk_http(f->node[node].port, "GET", "/metrics", NULL, NULL, &r), 0);
    long long v = 0;
    size_t n = strlen(name);
    for (const char *p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, name, n) == 0 && p[n] == ' ') {
            v = strtoll(p + n + 1, NULL, 10);
            break;
        }
    }
    tk_http_resp_cleanup(&r);
    return v;
}
