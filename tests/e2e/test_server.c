/* End-to-end: the real giftd binary against a real redis-server — connections, auth, rooms,
 * HTTP endpoints, limits and shutdown (SPEC 2, 3, 5). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
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

TestSuite(server, .init = setup, .fini = teardown, .timeout = 60);

static void expect_error(struct tk_ws *ws, const char *code)
{
    json_t *j = tk_ws_expect(ws, "error", 5000);
    cr_assert_not_null(j, "no error %s", code);
    cr_assert_str_eq(fx_str(j, "code"), code);
    cr_assert(json_is_string(json_object_get(j, "message")));
    json_decref(j);
}

static void expect_pong(struct tk_ws *ws)
{
    cr_assert_eq(tk_ws_send_json(ws, "{\"type\":\"ping\"}"), 0);
    json_t *j = tk_ws_expect(ws, "pong", 5000);
    cr_assert_not_null(j, "connection did not stay usable");
    json_decref(j);
}

Test(server, join_live_room_gets_joined_with_creator_and_viewers)
{
    fx_open_room(&f, "r1", "cara");
    struct tk_ws *a = fx_viewer(&f, 0, "ann", NULL);
    cr_assert_eq(tk_ws_send_json(a, "{\"type\":\"join\",\"room\":\"r1\"}"), 0);
    json_t *j = tk_ws_expect(a, "joined", 5000);
    cr_assert_not_null(j);
    cr_assert_str_eq(fx_str(j, "room"), "r1");
    json_t *c = json_object_get(j, "creator");
    cr_assert_str_eq(fx_str(c, "id"), "cara");
    cr_assert_str_eq(fx_str(c, "name"), "Creator cara");
    cr_assert_eq(fx_int(j, "viewers"), 1);
    cr_assert_eq(fx_int(j, "seq"), 0);
    json_decref(j);

    /* A second viewer, joining through ?room=, sees two. */
    char *tok = tk_token("ben", "Ben", "viewer", NULL, 600);
    char path[600];
    snprintf(path, sizeof(path), "/ws?token=%s&room=r1", tok);
    free(tok);
    struct tk_ws *b = tk_ws_connect(f.node[0].port, path);
    cr_assert_not_null(b);
    json_t *w = tk_ws_recv(b, 5000);
    cr_assert_str_eq(fx_str(w, "type"), "welcome");
    cr_assert_str_eq(fx_str(json_object_get(w, "user"), "id"), "ben");
    cr_assert_str_eq(fx_str(w, "role"), "viewer");
    cr_assert_eq(fx_int(w, "balance"), 0);
    cr_assert(fx_int(w, "server_time_ms") > 0);
    json_decref(w);
    j = tk_ws_recv(b, 5000);
    cr_assert_str_eq(fx_str(j, "type"), "joined");
    cr_assert_eq(fx_int(j, "viewers"), 2);
    json_decref(j);

    /* leave answers left; the room counts one viewer again. */
    cr_assert_eq(tk_ws_send_json(b, "{\"type\":\"leave\"}"), 0);
    j = tk_ws_expect(b, "left", 5000);
    cr_assert_str_eq(fx_str(j, "room"), "r1");
    json_decref(j);
    tk_ws_free(a);
    tk_ws_free(b);
}

Test(server, join_closed_or_unknown_room_is_room_not_live)
{
    fx_open_room(&f, "r2", "cara");
    fx_close_room(&f, "r2");
    struct tk_ws *a = fx_viewer(&f, 0, "ann", NULL);
    cr_assert_eq(tk_ws_send_json(a, "{\"type\":\"join\",\"room\":\"r2\"}"), 0);
    expect_error(a, "room_not_live");
    cr_assert_eq(tk_ws_send_json(a, "{\"type\":\"join\",\"room\":\"never-opened\"}"), 0);
    expect_error(a, "room_not_live");
    expect_pong(a);
    tk_ws_free(a);
}

/* A ping frame of exactly n bytes (padded with a string field). */
static void send_padded_ping(struct tk_ws *ws, size_t n)
{
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    memcpy(big, "{\"type\":\"ping\",\"pad\":\"", 22);
    big[n - 2] = '"';
    big[n - 1] = '}';
    big[n] = '\0';
    cr_assert_eq(tk_ws_send_text(ws, big, n), 0);
    free(big);
}

Test(server, oversized_frame_closes_1009)
{
    struct tk_ws *a = fx_viewer(&f, 0, "ann", NULL);
    send_padded_ping(a, 5000); /* limits.max_frame_bytes defaults to 4096 */
    cr_assert(tk_ws_wait_closed(a, 5000), "not closed");
    cr_assert_eq(tk_ws_close_code(a), 1009);
    tk_ws_free(a);
}

Test(server, frame_at_the_limit_is_accepted)
{
    struct tk_ws *a = fx_viewer(&f, 0, "ann", NULL);
    send_padded_ping(a, 4096);
    json_t *j = tk_ws_expect(a, "pong", 5000);
    cr_assert_not_null(j);
    json_decref(j);
    tk_ws_free(a);
}

Test(server, bad_json_and_bad_fields_keep_the_connection)
{
    struct tk_ws *a = fx_viewer(&f, 0, "ann", NULL);
    const char *bad_json[] = {"not json", "[1,2]", "\"str\"", "{\"type\":"};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(tk_ws_send_text(a, bad_json[i], strlen(bad_json[i])), 0);
        expect_error(a, "bad_json");
    }
    const char *bad_req[] = {"{}", "{\"type\":\"dance\"}", "{\"type\":\"join\"}",
                             "{\"type\":\"join\",\"room\":\"a b\"}",
                             "{\"type\":\"gift\",\"gift\":\"rose\"}"};
    for (size_t i = 0; i < 5; i++) {
        cr_assert_eq(tk_ws_send_text(a, bad_req[i], strlen(bad_req[i])), 0);
        expect_error(a, "bad_request");
    }
    expect_pong(a);
    tk_ws_free(a);
}

Test(server, overlay_token_cannot_join_another_room)
{
    fx_open_room(&f, "mine", "cara");
    fx_open_room(&f, "other", "dave");
    struct tk_ws *o = fx_connect_as(&f, 0, "cara", "overlay", "mine");
    cr_assert_eq(tk_ws_send_json(o, "{\"type\":\"join\",\"room\":\"other\"}"), 0);
    expect_error(o, "forbidden");
    /* Its own room is fine, and an overlay may not send gifts. */
    cr_assert_eq(tk_ws_send_json(o, "{\"type\":\"join\",\"room\":\"mine\"}"), 0);
    json_t *j = tk_ws_expect(o, "joined", 5000);
    cr_assert_not_null(j);
    json_decref(j);
    cr_assert_eq(tk_ws_send_json(o, "{\"type\":\"gift\",\"id\":\"g1\",\"gift\":\"rose\"}"), 0);
    expect_error(o, "forbidden");
    tk_ws_free(o);
}

Test(server, closing_the_room_sends_room_closed_and_keeps_the_connection)
{
    fx_open_room(&f, "r3", "cara");
    fx_open_room(&f, "r4", "dave");
    struct tk_ws *a = fx_viewer(&f, 0, "ann", "r3");
    fx_close_room(&f, "r3");
    json_t *j = tk_ws_expect(a, "room_closed", 5000);
    cr_assert_not_null(j, "no room_closed");
    cr_assert_str_eq(fx_str(j, "room"), "r3");
    json_decref(j);
    /* The connection stays open, still watching the closed room: a gift is room_not_live.
     * It may join another room. */
    cr_assert_eq(tk_ws_send_json(a, "{\"type\":\"gift\",\"id\":\"g1\",\"gift\":\"rose\"}"), 0);
    expect_error(a, "room_not_live");
    cr_assert_eq(tk_ws_send_json(a, "{\"type\":\"join\",\"room\":\"r4\"}"), 0);
    j = tk_ws_expect(a, "joined", 5000);
    cr_assert_not_null(j);
    json_decref(j);
    tk_ws_free(a);
}

Test(server, hello_authenticates_a_connection_opened_without_token)
{
    fx_open_room(&f, "r5", "cara");
    struct tk_ws *a = tk_ws_connect(f.node[0].port, "/ws?room=r5");
    cr_assert_not_null(a);
    /* Not authenticated: only hello and ping. */
    expect_pong(a);
    cr_assert_eq(tk_ws_send_json(a, "{\"type\":\"join\",\"room\":\"r5\"}"), 0);
    expect_error(a, "unauthorized");
    cr_assert_eq(tk_ws_send_json(a, "{\"type\":\"hello\",\"token\":\"abc.def.ghi\"}"), 0);
    expect_error(a, "unauthorized");
    char *tok = tk_token("ann", "Ann", "viewer", NULL, 600);
    cr_assert_eq(tk_ws_send_json(a, "{\"type\":\"hello\",\"token\":\"%s\"}", tok), 0);
    free(tok);
    json_t *w = tk_ws_expect(a, "welcome", 5000);
    cr_assert_not_null(w);
    cr_assert_str_eq(fx_str(json_object_get(w, "user"), "name"), "Ann");
    json_decref(w);
    /* The query's room is joined once authenticated. */
    json_t *j = tk_ws_expect(a, "joined", 5000);
    cr_assert_not_null(j);
    cr_assert_str_eq(fx_str(j, "room"), "r5");
    json_decref(j);
    tk_ws_free(a);
}

Test(server, bad_tokens_are_unauthorized)
{
    const char *now_claims =
        "{\"sub\":\"ann\",\"name\":\"Ann\",\"role\":\"viewer\",\"exp\":4000000000}";
    char *wrong_secret =
        tk_jwt_raw("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", now_claims, "not-the-secret");
    char *alg_none = tk_jwt_raw("{\"alg\":\"none\"}", now_claims, TK_SECRET);
    char *expired = tk_token("ann", "Ann", "viewer", NULL, -10);
    const char *toks[] = {wrong_secret, alg_none, expired, "garbage"};
    for (int i = 0; i < 4; i++) {
        char path[1024];
        snprintf(path, sizeof(path), "/ws?token=%s", toks[i]);
        struct tk_ws *a = tk_ws_connect(f.node[0].port, path);
        cr_assert_not_null(a);
        expect_error(a, "unauthorized");
        cr_assert_eq(tk_ws_send_json(a, "{\"type\":\"join\",\"room\":\"x\"}"), 0);
        expect_error(a, "unauthorized");
        tk_ws_free(a);
    }
    free(wrong_secret);
    free(alg_none);
    free(expired);
}

Test(server, unauthenticated_connection_is_closed_1008_after_hello_timeout)
{
    const char *extra[] = {"--auth.hello_timeout_ms=300", NULL};
    fx_start_node(&f, 1, extra);
    f.nodes = 2;
    struct tk_ws *a = tk_ws_connect(f.node[1].port, "/ws");
    cr_assert_not_null(a);
    cr_assert(tk_ws_wait_closed(a, 3000), "not closed");
    cr_assert_eq(tk_ws_close_code(a), 1008);
    tk_ws_free(a);
}

Test(server, guests_only_when_allowed)
{
    fx_open_room(&f, "r6", "cara");
    const char *extra[] = {"--auth.allow_guests=true", NULL};
    fx_start_node(&f, 1, extra);
    f.nodes = 2;
    struct tk_ws *g = tk_ws_connect(f.node[1].port, "/ws?room=r6");
    cr_assert_not_null(g);
    json_t *w = tk_ws_expect(g, "welcome", 5000);
    cr_assert_not_null(w);
    cr_assert(json_is_null(json_object_get(w, "user")));
    cr_assert(json_is_null(json_object_get(w, "balance")));
    json_decref(w);
    json_t *j = tk_ws_expect(g, "joined", 5000);
    cr_assert_not_null(j);
    json_decref(j);
    cr_assert_eq(tk_ws_send_json(g, "{\"type\":\"gift\",\"id\":\"g1\",\"gift\":\"rose\"}"), 0);
    expect_error(g, "forbidden");
    tk_ws_free(g);
}

/* limits.max_connections: the connection past it is accepted, hears 1013 (WebSocket) or 503
 * (HTTP) and is closed; once one closes, a new one gets in. */
Test(server, max_connections_closes_1013_and_answers_503)
{
    const char *extra[] = {"--limits.max_connections=3", NULL};
    fx_start_node(&f, 1, extra);
    f.nodes = 2;
    int port = f.node[1].port;
    struct tk_ws *c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = tk_ws_connect(port, "/ws");
        cr_assert_not_null(c[i]);
        expect_pong(c[i]);
    }
    struct tk_ws *x = tk_ws_connect(port, "/ws");
    cr_assert_not_null(x, "the connection over the limit is still upgraded, to hear why");
    cr_assert(tk_ws_wait_closed(x, 5000));
    cr_assert_eq(tk_ws_close_code(x), 1013);
    tk_ws_free(x);
    struct tk_http_resp r = {0};
    cr_assert_eq(tk_http(port, "GET", "/healthz", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 503);
    cr_assert_str_eq(fx_str(json_object_get(r.json, "error"), "code"), "rate_limited");
    cr_assert_not_null(
        strstr(fx_str(json_object_get(r.json, "error"), "message"), "limits.max_connections"));
    tk_http_resp_cleanup(&r);
    for (int i = 0; i < 3; i++) {
        expect_pong(c[i]); /* the connections within the limit are untouched */
    }
    tk_ws_free(c[0]);
    struct tk_ws *y = NULL;
    for (int i = 0; i < 50 && !y; i++) { /* the server sees the close a moment later */
        struct tk_ws *t = tk_ws_connect(port, "/ws");
        cr_assert_not_null(t);
        json_t *pong = NULL;
        if (tk_ws_send_json(t, "{\"type\":\"ping\"}") == 0 &&
            (pong = tk_ws_expect(t, "pong", 500)) != NULL) {
            y = t;
        } else {
            tk_ws_free(t);
        }
        json_decref(pong);
    }
    cr_assert_not_null(y, "a freed place is not given to a new connection");
    tk_ws_free(y);
    tk_ws_free(c[1]);
    tk_ws_free(c[2]);
    /* As above, the server sees those closes a moment later: until then it answers 503. */
    for (int i = 0; i < 50; i++) {
        cr_assert_eq(tk_http(port, "GET", "/metrics", NULL, NULL, &r), 0);
        if (r.status != 503) {
            break;
        }
        tk_http_resp_cleanup(&r);
        usleep(20000);
    }
    cr_assert_eq(r.status, 200, "%d %s", r.status, r.body);
    cr_assert_null(strstr(r.body, "\ngiftd_connections_refused_total 0\n"), "%s", r.body);
    tk_http_resp_cleanup(&r);
}

/* limits.connections_per_ip_per_sec: within one second, the connections past it from one
 * address hear 1013 / 503; the next second they get in again. */
Test(server, connections_per_ip_per_sec_closes_1013_and_answers_503)
{
    const char *extra[] = {"--limits.connections_per_ip_per_sec=4", NULL};
    fx_start_node(&f, 1, extra);
    f.nodes = 2;
    int port = f.node[1].port;
    /* Start just after a second begins, so that the burst falls within one second. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    usleep((useconds_t)((1000000000L - ts.tv_nsec) / 1000 + 20000));
    int refused = 0, served = 0, http503 = 0;
    struct tk_ws *c[6];
    for (int i = 0; i < 6; i++) {
        c[i] = tk_ws_connect(port, "/ws");
        cr_assert_not_null(c[i]);
    }
    struct tk_http_resp r = {0};
    cr_assert_eq(tk_http(port, "GET", "/healthz", NULL, NULL, &r), 0);
    http503 += r.status == 503;
    tk_http_resp_cleanup(&r);
    for (int i = 0; i < 6; i++) {
        if (tk_ws_wait_closed(c[i], 300)) {
            cr_assert_eq(tk_ws_close_code(c[i]), 1013);
            refused++;
        } else {
            served++;
        }
        tk_ws_free(c[i]);
    }
    cr_assert_eq(served, 4, "served %d refused %d", served, refused);
    cr_assert_eq(refused, 2);
    cr_assert_eq(http503, 1, "the 7th connection of the second, HTTP, is refused too");
    sleep(1);
    struct tk_ws *a = tk_ws_connect(port, "/ws");
    cr_assert_not_null(a);
    expect_pong(a);
    tk_ws_free(a);
}

Test(server, http_health_ready_metrics_and_catalog)
{
    struct tk_http_resp r = {0};
    cr_assert_eq(tk_http(f.node[0].port, "GET", "/healthz", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(fx_str(r.json, "status"), "ok");
    tk_http_resp_cleanup(&r);
    cr_assert_eq(tk_http(f.node[0].port, "GET", "/readyz", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    tk_http_resp_cleanup(&r);
    struct tk_ws *a = fx_viewer(&f, 0, "ann", NULL);
    cr_assert_eq(tk_http(f.node[0].port, "GET", "/metrics", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_not_null(strstr(r.body, "\ngiftd_connections 1\n"), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "giftd_errors_total{code=\"bad_json\"}"));
    cr_assert_not_null(strstr(r.body, "giftd_ledger_latency_seconds_bucket"));
    tk_http_resp_cleanup(&r);
    tk_ws_free(a);
    cr_assert_eq(tk_http(f.node[0].port, "GET", "/v1/gifts", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    json_t *gifts = json_object_get(r.json, "gifts");
    cr_assert(json_array_size(gifts) >= 10);
    tk_http_resp_cleanup(&r);
    cr_assert_eq(tk_http(f.node[0].port, "GET", "/v1/packages", NULL, NULL, &r), 0);
    cr_assert_eq(json_array_size(json_object_get(r.json, "packages")), 5);
    tk_http_resp_cleanup(&r);
    cr_assert_eq(tk_http(f.node[0].port, "GET", "/nope", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 404);
    cr_assert_str_eq(fx_str(json_object_get(r.json, "error"), "code"), "not_found");
    tk_http_resp_cleanup(&r);
}

Test(server, room_endpoints_need_a_service_token)
{
    struct tk_http_resp r = {0};
    const char *body = "{\"creator\":{\"id\":\"cara\",\"name\":\"Cara\"}}";
    cr_assert_eq(tk_http(f.node[0].port, "PUT", "/v1/rooms/r7", NULL, body, &r), 0);
    cr_assert_eq(r.status, 401);
    cr_assert_str_eq(fx_str(json_object_get(r.json, "error"), "code"), "unauthorized");
    tk_http_resp_cleanup(&r);
    char *viewer = tk_token("ann", "Ann", "viewer", NULL, 600);
    cr_assert_eq(tk_http(f.node[0].port, "PUT", "/v1/rooms/r7", viewer, body, &r), 0);
    cr_assert_eq(r.status, 403);
    cr_assert_str_eq(fx_str(json_object_get(r.json, "error"), "code"), "forbidden");
    tk_http_resp_cleanup(&r);
    cr_assert_eq(tk_http(f.node[0].port, "DELETE", "/v1/rooms/r7", viewer, NULL, &r), 0);
    cr_assert_eq(r.status, 403);
    tk_http_resp_cleanup(&r);
    free(viewer);
    /* Nothing was opened. */
    cr_assert_eq(tk_http(f.node[0].port, "GET", "/v1/rooms/r7", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 404);
    tk_http_resp_cleanup(&r);
    /* Bad bodies are bad_request / bad_json and change nothing. */
    cr_assert_eq(tk_http(f.node[0].port, "PUT", "/v1/rooms/r7", f.service, "{nope", &r), 0);
    cr_assert_eq(r.status, 400);
    cr_assert_str_eq(fx_str(json_object_get(r.json, "error"), "code"), "bad_json");
    tk_http_resp_cleanup(&r);
    cr_assert_eq(tk_http(f.node[0].port, "PUT", "/v1/rooms/r7", f.service,
                         "{\"creator\":{\"id\":\"a b\",\"name\":\"x\"}}", &r),
                 0);
    cr_assert_eq(r.status, 400);
    cr_assert_str_eq(fx_str(json_object_get(r.json, "error"), "code"), "bad_request");
    tk_http_resp_cleanup(&r);
    /* A body over 64 KiB is 413 too_large, read no further. */
    size_t big_len = 70 * 1024;
    char *big = malloc(big_len + 1);
    cr_assert_not_null(big);
    memset(big, ' ', big_len);
    big[0] = '{';
    big[big_len - 1] = '}';
    big[big_len] = '\0';
    cr_assert_eq(tk_http(f.node[0].port, "PUT", "/v1/rooms/r7", f.service, big, &r), 0);
    free(big);
    cr_assert_eq(r.status, 413);
    cr_assert_str_eq(fx_str(json_object_get(r.json, "error"), "code"), "too_large");
    tk_http_resp_cleanup(&r);
    cr_assert_eq(tk_http(f.node[0].port, "GET", "/v1/rooms/r7", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 404);
    tk_http_resp_cleanup(&r);
    /* Opening is idempotent; another creator while live is a conflict. */
    fx_open_room(&f, "r7", "cara");
    fx_open_room(&f, "r7", "cara");
    cr_assert_eq(tk_http(f.node[0].port, "PUT", "/v1/rooms/r7", f.service,
                         "{\"creator\":{\"id\":\"zed\",\"name\":\"Zed\"}}", &r),
                 0);
    cr_assert_eq(r.status, 409);
    tk_http_resp_cleanup(&r);
    cr_assert_eq(tk_http(f.node[0].port, "GET", "/v1/rooms/r7", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert(json_is_true(json_object_get(r.json, "live")));
    cr_assert_str_eq(fx_str(json_object_get(r.json, "creator"), "id"), "cara");
    cr_assert_eq(fx_int(json_object_get(r.json, "totals"), "coins"), 0);
    tk_http_resp_cleanup(&r);
}

Test(server, readyz_is_503_while_redis_is_down)
{
    tk_redis_kill(&f.redis, SIGKILL);
    struct tk_http_resp r = {0};
    int status = 0;
    for (int i = 0; i < 50 && status != 503; i++) {
        tk_http_resp_cleanup(&r);
        cr_assert_eq(tk_http(f.node[0].port, "GET", "/readyz", NULL, NULL, &r), 0);
        status = r.status;
        if (status != 503) {
            usleep(100000);
        }
    }
    cr_assert_eq(status, 503);
    tk_http_resp_cleanup(&r);
    cr_assert_eq(tk_http(f.node[0].port, "GET", "/healthz", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    tk_http_resp_cleanup(&r);
    cr_assert_eq(tk_redis_start_on(&f.redis, f.redis.port, false), 0);
    cr_assert_eq(tk_giftd_wait_ready(&f.node[0], 10000), 0, "not ready after Redis came back");
}

struct early_put {
    int port;
    char *token;
    struct tk_http_resp resp;
    int rc;
};

static void *put_room(void *arg)
{
    struct early_put *e = arg;
    e->rc = tk_http(e->port, "PUT", "/v1/rooms/early", e->token,
                    "{\"creator\":{\"id\":\"cara\",\"name\":\"Cara\"}}", &e->resp);
    return NULL;
}

/* A node that just started and has not reached Redis yet (here: Redis comes up 300 ms after
 * the request) holds a request until it does, within ledger.timeout_ms, rather than answering
 * 503: with several workers, /readyz may be answered by one that is ready while the next
 * request goes to one that is not. Once Redis was up, a lost Redis fails requests fast. (The
 * request goes from a thread: a child started from a thread would die with it.) */
Test(server, a_request_before_redis_first_answers_waits_for_it)
{
    struct tk_redis later = {0};
    int port = tk_free_port();
    cr_assert_gt(port, 0);
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", port);
    static const char *const extra[] = {"--ledger.timeout_ms=5000", "--workers=1", NULL};
    struct tk_giftd g;
    cr_assert_eq(tk_giftd_start(&g, url, extra), 0);
    struct early_put e = {.port = g.port,
                          .token = tk_token("platform", NULL, "service", NULL, 600)};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, put_room, &e), 0);
    usleep(300 * 1000);
    cr_assert_eq(tk_redis_start_on(&later, port, false), 0);
    pthread_join(t, NULL);
    cr_assert_eq(e.rc, 0);
    cr_assert_eq(e.resp.status, 200, "%d %s", e.resp.status, e.resp.body);
    tk_http_resp_cleanup(&e.resp);
    free(e.token);
    tk_giftd_stop(&g);
    tk_redis_stop(&later);
}

Test(server, sigterm_closes_clients_1001_and_exits_0)
{
    fx_open_room(&f, "r8", "cara");
    struct tk_ws *a = fx_viewer(&f, 0, "ann", "r8");
    struct tk_ws *b = fx_viewer(&f, 0, "ben", NULL);
    cr_assert_eq(tk_giftd_signal(&f.node[0], SIGTERM), 0);
    cr_assert(tk_ws_wait_closed(a, 5000));
    cr_assert(tk_ws_wait_closed(b, 5000));
    cr_assert_eq(tk_ws_close_code(a), 1001);
    cr_assert_eq(tk_ws_close_code(b), 1001);
    int status = -1;
    cr_assert_eq(tk_giftd_wait_exit(&f.node[0], 10000, &status), 0, "giftd did not exit");
    cr_assert(WIFEXITED(status), "giftd died of a signal");
    cr_assert_eq(WEXITSTATUS(status), 0);
    tk_ws_free(a);
    tk_ws_free(b);
}

Test(server, embedded_redis_is_started_and_stopped)
{
    struct tk_giftd g;
    /* No redis.url: giftd starts its own redis-server on a Unix socket. */
    cr_assert_eq(tk_giftd_start(&g, NULL, NULL), 0);
    cr_assert_eq(tk_giftd_wait_ready(&g, 10000), 0);
    struct tk_http_resp r = {0};
    char *svc = tk_token("platform", NULL, "service", NULL, 600);
    cr_assert_eq(tk_http(g.port, "PUT", "/v1/rooms/emb", svc,
                         "{\"creator\":{\"id\":\"cara\",\"name\":\"Cara\"}}", &r),
                 0);
    cr_assert_eq(r.status, 200);
    tk_http_resp_cleanup(&r);
    free(svc);
    cr_assert_eq(tk_giftd_signal(&g, SIGTERM), 0);
    int status = -1;
    cr_assert_eq(tk_giftd_wait_exit(&g, 10000, &status), 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The private redis-server went with it: no redis-server is a child of the dead giftd's
     * tree, checked through its log line "private redis-server <pid>". */
    FILE *log = fopen(g.log_path, "r");
    cr_assert_not_null(log);
    char line[512];
    int rpid = 0;
    while (fgets(line, sizeof(line), log)) {
        char *p = strstr(line, "private redis-server ");
        if (p) {
            rpid = atoi(p + strlen("private redis-server "));
        }
    }
    fclose(log);
    cr_assert(rpid > 0, "no private redis-server in the log");
    cr_assert(kill(rpid, 0) != 0, "private redis-server %d still running", rpid);
}

Test(server, check_config_and_bad_config)
{
    const char *ok[] = {GIFTD_BIN, "--check-config", "--auth.secret=0123456789abcdef0",
                        "--gifts.catalog=" GIFTD_SOURCE_DIR "/config/catalog.json", NULL};
    char *out = NULL, *err = NULL;
    cr_assert_eq(tk_run(ok, NULL, 10000, &out, &err), 0, "%s", err);
    free(out);
    free(err);
    const char *bad[] = {GIFTD_BIN, "--check-config", "--auth.secret=0123456789abcdef0",
                         "--gifts.max_count=0", NULL};
    cr_assert_neq(tk_run(bad, NULL, 10000, &out, &err), 0);
    cr_assert_not_null(strstr(err, "gifts.max_count"), "%s", err);
    free(out);
    free(err);
    const char *env[] = {"GIFTD_LIMITS_MAX_FRAME_BYTES=abc", NULL};
    cr_assert_neq(tk_run(ok, env, 10000, &out, &err), 0);
    cr_assert_not_null(strstr(err, "limits.max_frame_bytes"), "%s", err);
    free(out);
    free(err);
    const char *unknown[] = {GIFTD_BIN, "--check-config", "--auth.secret=0123456789abcdef0",
                             "--no.such_key=1", NULL};
    cr_assert_neq(tk_run(unknown, NULL, 10000, &out, &err), 0);
    cr_assert_not_null(strstr(err, "no.such_key"), "%s", err);
    free(out);
    free(err);
    /* A GIFTD_* variable that names no key is a typo: it stops the start too. */
    const char *typo[] = {"GIFTD_FANOUT_MAX_QUEU=64", NULL};
    cr_assert_neq(tk_run(ok, typo, 10000, &out, &err), 0);
    cr_assert_not_null(strstr(err, "GIFTD_FANOUT_MAX_QUEU"), "%s", err);
    free(out);
    free(err);
    const char *help[] = {GIFTD_BIN, "--help", NULL};
    cr_assert_eq(tk_run(help, NULL, 10000, &out, &err), 0);
    cr_assert_not_null(strstr(out, "GIFTD_FANOUT_MAX_QUEUE"), "%s", out);
    cr_assert_not_null(strstr(out, "ledger.outbox_grace_ms"));
    free(out);
    free(err);
}
