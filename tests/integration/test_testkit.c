/* Tests of the test kit itself: redis-server children, ports, tokens, tk_run and giftctl. */
#include "auth/auth.h"
#include "tests/support/testkit.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static redisReply *cmd(redisContext *c, const char *fmt, const char *arg1, const char *arg2)
{
    redisReply *r = redisCommand(c, fmt, arg1, arg2);
    cr_assert_not_null(r, "redis command failed: %s", c->errstr);
    return r;
}

static int verify(const char *token, const char *secret, struct auth_claims *out)
{
    return auth_jwt_verify(token, strlen(token), secret, strlen(secret), (int64_t)time(NULL), out);
}

Test(tk_redis_start, answers_ping_and_stop_removes_dir, .timeout = 30)
{
    struct tk_redis r;
    cr_assert_eq(tk_redis_start(&r), 0);
    cr_assert_gt(r.pid, 0);
    cr_assert_gt(r.port, 0);
    struct stat st;
    cr_assert_eq(stat(r.dir, &st), 0, "dir %s should exist while running", r.dir);
    char dir[256];
    snprintf(dir, sizeof(dir), "%s", r.dir);

    redisContext *c = tk_redis_connect(&r);
    redisReply *reply = redisCommand(c, "PING");
    cr_assert_not_null(reply);
    cr_assert_eq(reply->type, REDIS_REPLY_STATUS);
    cr_assert_str_eq(reply->str, "PONG");
    freeReplyObject(reply);
    /* Persistence is off. */
    reply = redisCommand(c, "CONFIG GET appendonly");
    cr_assert_eq(reply->type, REDIS_REPLY_ARRAY);
    cr_assert_eq(reply->elements, 2);
    cr_assert_str_eq(reply->element[1]->str, "no");
    freeReplyObject(reply);
    redisFree(c);

    tk_redis_stop(&r);
    cr_assert_eq(r.pid, 0);
    cr_assert_neq(stat(dir, &st), 0, "dir %s should be removed", dir);
    /* Stopping twice is harmless. */
    tk_redis_stop(&r);
}

Test(tk_redis_start, two_servers_get_distinct_ports, .timeout = 30)
{
    struct tk_redis a;
    struct tk_redis b;
    cr_assert_eq(tk_redis_start(&a), 0);
    cr_assert_eq(tk_redis_start(&b), 0);
    cr_assert_neq(a.port, b.port);
    cr_assert_str_neq(a.dir, b.dir);
    tk_redis_stop(&a);
    tk_redis_stop(&b);
}

Test(tk_redis_kill, restart_on_same_port_with_aof_keeps_data, .timeout = 60)
{
    struct tk_redis r;
    memset(&r, 0, sizeof(r));
    int port = tk_free_port();
    cr_assert_gt(port, 0);
    cr_assert_eq(tk_redis_start_on(&r, port, true), 0);

    redisContext *c = tk_redis_connect(&r);
    freeReplyObject(cmd(c, "SET %s %s", "tk:k", "v1"));
    redisFree(c);

    tk_redis_kill(&r, SIGKILL);
    cr_assert_eq(r.pid, 0);
    struct timeval tv = {.tv_sec = 1, .tv_usec = 0};
    c = redisConnectWithTimeout("127.0.0.1", port, tv);
    cr_assert(c == NULL || c->err, "nothing should listen on the port after kill -9");
    redisFree(c);

    cr_assert_eq(tk_redis_start_on(&r, port, true), 0);
    cr_assert_eq(r.port, port);
    c = tk_redis_connect(&r);
    redisReply *reply = cmd(c, "GET %s", "tk:k", NULL);
    cr_assert_eq(reply->type, REDIS_REPLY_STRING, "the AOF should have kept the key");
    cr_assert_str_eq(reply->str, "v1");
    freeReplyObject(reply);
    redisFree(c);
    tk_redis_stop(&r);
}

Test(tk_redis_kill, restart_without_aof_loses_data, .timeout = 60)
{
    struct tk_redis r;
    cr_assert_eq(tk_redis_start(&r), 0);
    int port = r.port;
    redisContext *c = tk_redis_connect(&r);
    freeReplyObject(cmd(c, "SET %s %s", "tk:k", "v1"));
    redisFree(c);

    tk_redis_kill(&r, SIGKILL);
    cr_assert_eq(tk_redis_start_on(&r, port, false), 0);
    c = tk_redis_connect(&r);
    redisReply *reply = cmd(c, "GET %s", "tk:k", NULL);
    cr_assert_eq(reply->type, REDIS_REPLY_NIL);
    freeReplyObject(reply);
    redisFree(c);
    tk_redis_stop(&r);
}

Test(tk_redis_start_on, fails_when_port_is_taken, .timeout = 30)
{
    struct tk_redis a;
    cr_assert_eq(tk_redis_start(&a), 0);
    struct tk_redis b;
    memset(&b, 0, sizeof(b));
    int rc = tk_redis_start_on(&b, a.port, false);
    cr_assert_lt(rc, 0, "a second server on port %d must not be reported as started", a.port);
    cr_assert_eq(b.pid, 0);
    cr_assert_str_eq(b.dir, "", "the failed start should remove the directory it made");
    tk_redis_stop(&a);
}

Test(tk_redis_url, names_port_and_db_0)
{
    struct tk_redis r = {.pid = 0, .port = 6390};
    char url[64];
    tk_redis_url(&r, url, sizeof(url));
    cr_assert_str_eq(url, "redis://127.0.0.1:6390/0");
}

Test(tk_free_port, returns_a_bindable_port)
{
    int port = tk_free_port();
    cr_assert_gt(port, 0);
    cr_assert_leq(port, 65535);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind %d: %s", port,
                 strerror(errno));
    close(fd);
}

Test(tk_unique, successive_values_differ_and_carry_stem)
{
    char a[64];
    char b[64];
    tk_unique(a, sizeof(a), "room");
    tk_unique(b, sizeof(b), "room");
    cr_assert_str_neq(a, b);
    cr_assert_eq(strncmp(a, "room-", 5), 0);
    char pid[32];
    snprintf(pid, sizeof(pid), "-%ld-", (long)getpid());
    cr_assert_not_null(strstr(a, pid));
}

Test(tk_token, viewer_round_trips_through_auth_jwt_verify)
{
    char *token = tk_token("u1", "Alice", "viewer", NULL, 60);
    struct auth_claims claims;
    cr_assert_eq(verify(token, TK_SECRET, &claims), 0);
    cr_assert_str_eq(claims.sub, "u1");
    cr_assert_str_eq(claims.name, "Alice");
    cr_assert_eq(claims.role, AUTH_ROLE_VIEWER);
    cr_assert_str_eq(claims.room, "");
    int64_t now = (int64_t)time(NULL);
    cr_assert(claims.exp >= now + 55 && claims.exp <= now + 65, "exp %lld", (long long)claims.exp);
    free(token);
}

Test(tk_token, overlay_carries_its_room)
{
    char *token = tk_token("ov1", NULL, "overlay", "r1", 60);
    struct auth_claims claims;
    cr_assert_eq(verify(token, TK_SECRET, &claims), 0);
    cr_assert_eq(claims.role, AUTH_ROLE_OVERLAY);
    cr_assert_str_eq(claims.room, "r1");
    free(token);
}

Test(tk_token, negative_ttl_gives_an_expired_token)
{
    char *token = tk_token("svc", NULL, "service", NULL, -10);
    struct auth_claims claims;
    cr_assert_eq(verify(token, TK_SECRET, &claims), -EACCES);
    free(token);
}

Test(tk_token, is_rejected_under_another_secret)
{
    char *token = tk_token("svc", NULL, "service", NULL, 60);
    struct auth_claims claims;
    cr_assert_eq(verify(token, "another-secret-0123456789abcdef", &claims), -EACCES);
    free(token);
}

Test(tk_jwt_raw, hs256_payload_verifies_and_alg_none_does_not)
{
    char payload[160];
    snprintf(payload, sizeof(payload),
             "{\"sub\":\"u2\",\"name\":\"Bob\",\"role\":\"viewer\",\"exp\":%lld}",
             (long long)time(NULL) + 60);
    char *good = tk_jwt_raw("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload, TK_SECRET);
    struct auth_claims claims;
    cr_assert_eq(verify(good, TK_SECRET, &claims), 0);
    cr_assert_str_eq(claims.sub, "u2");
    cr_assert_str_eq(claims.name, "Bob");
    free(good);

    char *none = tk_jwt_raw("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload, TK_SECRET);
    cr_assert_eq(verify(none, TK_SECRET, &claims), -EACCES);
    free(none);
}

Test(tk_http, reports_connection_refused, .timeout = 30)
{
    int port = tk_free_port();
    struct tk_http_resp resp;
    cr_assert_eq(tk_http(port, "GET", "/healthz", NULL, NULL, &resp), -ECONNREFUSED);
    cr_assert_eq(resp.status, 0);
    cr_assert_null(resp.json);
    tk_http_resp_cleanup(&resp);
    tk_http_resp_cleanup(&resp);
}

Test(tk_ws_connect_status, reports_connection_refused, .timeout = 30)
{
    int port = tk_free_port();
    cr_assert_eq(tk_ws_connect_status(port, "/ws"), -ECONNREFUSED);
    cr_assert_null(tk_ws_connect(port, "/ws"));
}

Test(tk_run, captures_output_and_exit_status, .timeout = 30)
{
    const char *argv[] = {"/bin/sh", "-c", "echo out-$TK_X; echo err >&2; exit 3", NULL};
    const char *env[] = {"TK_X=42", NULL};
    char *out = NULL;
    char *err = NULL;
    cr_assert_eq(tk_run(argv, env, 10000, &out, &err), 3);
    cr_assert_str_eq(out, "out-42\n");
    cr_assert_str_eq(err, "err\n");
    free(out);
    free(err);
}

Test(tk_run, kills_a_child_that_overstays, .timeout = 30)
{
    const char *argv[] = {"/bin/sh", "-c", "echo started; exec sleep 20", NULL};
    char *out = NULL;
    cr_assert_eq(tk_run(argv, NULL, 300, &out, NULL), -ETIMEDOUT);
    cr_assert_str_eq(out, "started\n");
    free(out);
}

Test(giftctl_token, prints_a_token_that_verifies, .timeout = 30)
{
    const char *argv[] = {GIFTCTL_BIN, "--secret", TK_SECRET, "token", "--sub", "u9", "--role",
                          "viewer",    "--name",   "Zoe",     "--ttl", "120",   NULL};
    char *out = NULL;
    char *err = NULL;
    cr_assert_eq(tk_run(argv, NULL, 10000, &out, &err), 0, "stderr: %s", err);
    size_t len = strlen(out);
    cr_assert(len > 1 && out[len - 1] == '\n');
    out[len - 1] = '\0';
    struct auth_claims claims;
    cr_assert_eq(verify(out, TK_SECRET, &claims), 0);
    cr_assert_str_eq(claims.sub, "u9");
    cr_assert_str_eq(claims.name, "Zoe");
    cr_assert_eq(claims.role, AUTH_ROLE_VIEWER);
    int64_t now = (int64_t)time(NULL);
    cr_assert(claims.exp >= now + 115 && claims.exp <= now + 125);
    free(out);
    free(err);
}

Test(giftctl_token, takes_the_secret_from_the_environment, .timeout = 30)
{
    const char *argv[] = {GIFTCTL_BIN, "token",  "--sub", "ov", "--role",
                          "overlay",   "--room", "r7",    NULL};
    const char *env[] = {"GIFTD_SECRET=" TK_SECRET, NULL};
    char *out = NULL;
    cr_assert_eq(tk_run(argv, env, 10000, &out, NULL), 0);
    out[strcspn(out, "\n")] = '\0';
    struct auth_claims claims;
    cr_assert_eq(verify(out, TK_SECRET, &claims), 0);
    cr_assert_eq(claims.role, AUTH_ROLE_OVERLAY);
    cr_assert_str_eq(claims.room, "r7");
    free(out);
}

Test(giftctl_token, viewer_without_name_is_a_usage_error, .timeout = 30)
{
    const char *argv[] = {GIFTCTL_BIN, "--secret", TK_SECRET, "token", "--sub",
                          "u1",        "--role",   "viewer",  NULL};
    char *out = NULL;
    char *err = NULL;
    cr_assert_eq(tk_run(argv, NULL, 10000, &out, &err), 2);
    cr_assert_str_eq(out, "");
    cr_assert_null(strstr(err, TK_SECRET), "the secret must never be printed");
    free(out);
    free(err);
}

Test(giftctl, help_prints_usage_and_exits_0, .timeout = 30)
{
    const char *argv[] = {GIFTCTL_BIN, "--help", NULL};
    char *out = NULL;
    cr_assert_eq(tk_run(argv, NULL, 10000, &out, NULL), 0);
    cr_assert_not_null(strstr(out, "usage: giftctl"));
    free(out);
}

Test(giftctl, usage_errors_exit_2, .timeout = 30)
{
    const char *cases[][6] = {
        {GIFTCTL_BIN, NULL},
        {GIFTCTL_BIN, "frobnicate", NULL},
        {GIFTCTL_BIN, "balance", NULL},
        {GIFTCTL_BIN, "balance", "bad/user", NULL},
        {GIFTCTL_BIN, "budget", "u1", "--daily-coins", "lots", NULL},
        {GIFTCTL_BIN, "room", "open", "r1", NULL},
        {GIFTCTL_BIN, "balance", "u1", "--coins", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = NULL;
        cr_assert_eq(tk_run(cases[i], NULL, 10000, &out, NULL), 2, "case %zu (%s)", i,
                     cases[i][1] ? cases[i][1] : "no command");
        cr_assert_str_eq(out, "", "case %zu printed to stdout", i);
        free(out);
    }
}

Test(giftctl_balance, unreachable_server_exits_1_without_printing_secrets, .timeout = 30)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", tk_free_port());
    const char *argv[] = {GIFTCTL_BIN, "--url", url, "balance", "u1", NULL};
    const char *env[] = {"GIFTD_SECRET=" TK_SECRET, NULL};
    char *out = NULL;
    char *err = NULL;
    cr_assert_eq(tk_run(argv, env, 10000, &out, &err), 1);
    cr_assert_str_eq(out, "");
    cr_assert_neq(strlen(err), 0);
    cr_assert_null(strstr(err, TK_SECRET));
    free(out);
    free(err);
}
