/* giftctl: the command-line client of giftd's HTTP API (SPEC sections 5 and 9); `settlements`
 * reads the settlement sink (Redis stream or PostgreSQL) directly. */
#include "auth/auth.h"
#include "ctl/ctl.h"
#include "ledger_client/ledger_client.h"
#include "protocol/protocol.h"

#include <errno.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXIT_HTTP_ERROR 1
#define EXIT_USAGE      2

#define DEFAULT_URL         "http://127.0.0.1:8080"
#define DEFAULT_TTL_S       86400L
#define AUTO_TOKEN_TTL_S    300L
#define AUTO_TOKEN_SUB      "giftctl"
#define REQUEST_TIMEOUT_MS  30000
#define MAX_ERROR_BODY_SHOW 512

enum opt_id {
    OPT_URL = 1,
    OPT_TOKEN,
    OPT_SECRET,
    OPT_HELP,
    OPT_VERSION,
    OPT_SUB,
    OPT_ROLE,
    OPT_NAME,
    OPT_ROOM,
    OPT_TTL,
    OPT_CREATOR,
    OPT_CREATOR_NAME,
    OPT_TITLE,
    OPT_TARGET,
    OPT_GIFT,
    OPT_USER,
    OPT_PAYMENT_ID,
    OPT_REASON,
    OPT_PACKAGE,
    OPT_COINS,
    OPT_DAILY_COINS,
    OPT_MONTHLY_COINS,
    OPT_REDIS,
    OPT_STREAM,
    OPT_POSTGRES,
    OPT_COUNT,
    OPT_FOLLOW,
    OPT_CACERT,
    OPT_SINCE,
    OPT_SEQ,
    OPT__COUNT
};

#define BIT(o) (1u << (o))

static const struct option long_options[] = {
    {"url", required_argument, NULL, OPT_URL},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"secret", required_argument, NULL, OPT_SECRET},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {"sub", required_argument, NULL, OPT_SUB},
    {"role", required_argument, NULL, OPT_ROLE},
    {"name", required_argument, NULL, OPT_NAME},
    {"room", required_argument, NULL, OPT_ROOM},
    {"ttl", required_argument, NULL, OPT_TTL},
    {"creator", required_argument, NULL, OPT_CREATOR},
    {"creator-name", required_argument, NULL, OPT_CREATOR_NAME},
    {"title", required_argument, NULL, OPT_TITLE},
    {"target", required_argument, NULL, OPT_TARGET},
    {"gift", required_argument, NULL, OPT_GIFT},
    {"user", required_argument, NULL, OPT_USER},
    {"payment-id", required_argument, NULL, OPT_PAYMENT_ID},
    {"reason", required_argument, NULL, OPT_REASON},
    {"package", required_argument, NULL, OPT_PACKAGE},
    {"coins", required_argument, NULL, OPT_COINS},
    {"daily-coins", required_argument, NULL, OPT_DAILY_COINS},
    {"monthly-coins", required_argument, NULL, OPT_MONTHLY_COINS},
    {"redis", required_argument, NULL, OPT_REDIS},
    {"stream", required_argument, NULL, OPT_STREAM},
    {"postgres", required_argument, NULL, OPT_POSTGRES},
    {"count", required_argument, NULL, OPT_COUNT},
    {"follow", no_argument, NULL, OPT_FOLLOW},
    {"cacert", required_argument, NULL, OPT_CACERT},
    {"since", required_argument, NULL, OPT_SINCE},
    {"seq", required_argument, NULL, OPT_SEQ},
    {NULL, 0, NULL, 0},
};

/* Everything parsed from the command line and the environment; all strings borrowed. */
struct cli {
    const char *opt[OPT__COUNT];
    unsigned seen;
    int npos;
    char **pos;
    const char *url;
    const char *token;
    const char *secret;
    const char *cacert;
};

static void usage(FILE *f)
{
    fputs("usage: giftctl [--url URL] [--cacert FILE] [--token TOKEN] [--secret SECRET] COMMAND\n"
          "               [ARGS]\n"
          "\n"
          "Commands:\n"
          "  token --sub ID --role viewer|overlay|service [--name NAME] [--room ROOM]\n"
          "        [--ttl SECONDS]               print a signed JWT (default ttl 86400)\n"
          "  room open ROOM --creator ID --creator-name NAME [--title TITLE]\n"
          "  room close ROOM\n"
          "  room show ROOM\n"
          "  room events ROOM [--since SEQ] [--count N]\n"
          "                                      the room's kept events after SEQ (default 0),\n"
          "                                      at most N (default 1000), and its epoch\n"
          "  overlay skip|pause|resume ROOM      a control for the room's overlays\n"
          "  overlay replay ROOM --seq SEQ       show that event's alert again\n"
          "  recharge --user USER --payment-id ID (--package ID | --coins N)\n"
          "  goal set ROOM --title TEXT --target N [--gift ID]\n"
          "                                      a goal of N coins, or of N of one gift\n"
          "  goal clear ROOM\n"
          "  reverse --user USER --payment-id ID [--reason TEXT]\n"
          "                                      take a recharge back (refund, chargeback)\n"
          "  transactions USER [--count N]      the user's recharges, reversals and gifts\n"
          "  balance USER\n"
          "  budget USER [--daily-coins N|none] [--monthly-coins N|none]\n"
          "                                      show, or set (none: clear) the caps on coins\n"
          "                                      spent per UTC day and calendar month\n"
          "  settlements [--redis URL] [--stream NAME] [--postgres CONNINFO]\n"
          "        [--count N] [--follow]        print settlement rows as JSON lines, oldest\n"
          "                                      first: the last N (default all); --follow keeps\n"
          "                                      printing new ones. Reads the Redis stream\n"
          "                                      (--redis, env GIFTD_REDIS_URL, default\n"
          "                                      redis://127.0.0.1:6379/0; --stream, env\n"
          "                                      GIFTD_FLUSH_STREAM, default giftd:settlements)\n"
          "                                      or, with --postgres (env GIFTD_FLUSH_POSTGRES),\n"
          "                                      table gift_settlements\n"
          "\n"
          "Options:\n"
          "  --url URL        giftd base URL, http://HOST:PORT or https://HOST:PORT (env\n"
          "                   GIFTD_URL, default " DEFAULT_URL ")\n"
          "  --cacert FILE    PEM certificates to verify an https:// giftd against, instead of\n"
          "                   the system's CA store (env GIFTD_CACERT); for a self-signed\n"
          "                   certificate, the certificate itself. Name and chain are always\n"
          "                   verified\n"
          "  --token TOKEN    bearer token for the API (env GIFTD_TOKEN)\n"
          "  --secret SECRET  HS256 secret (env GIFTD_SECRET); signs `token`, and mints a\n"
          "                   short-lived service token when no --token is given\n"
          "  --help           this text\n"
          "  --version        print the version\n"
          "\n"
          "Prints the response body as JSON. Exit status: 0 success, 1 HTTP or connection\n"
          "error (the error code and message go to stderr), 2 usage error.\n",
          f);
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("giftctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n(see giftctl --help)\n", stderr);
    va_end(ap);
    return EXIT_USAGE;
}

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* Strict base-10 integer in [min, max]; false otherwise. */
static bool parse_ll(const char *s, long long min, long long max, long long *out)
{
    if (!s || !*s) {
        return false;
    }
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) {
        return false;
    }
    *out = v;
    return true;
}

static bool valid_id(const char *s)
{
    return s && proto_valid_id(s, strlen(s));
}

static bool valid_name(const char *s)
{
    return s && proto_valid_name(s, strlen(s));
}

/* Checks that only the options in allowed (plus the global ones) were given. */
static int check_options(const struct cli *c, unsigned allowed, const char *command)
{
    allowed |= BIT(OPT_URL) | BIT(OPT_TOKEN) | BIT(OPT_SECRET) | BIT(OPT_CACERT);
    for (int o = 1; o < OPT__COUNT; o++) {
        if ((c->seen & BIT(o)) && !(allowed & BIT(o))) {
            for (const struct option *lo = long_options; lo->name; lo++) {
                if (lo->val == o) {
                    fprintf(stderr, "giftctl: option --%s does not apply to `%s`\n", lo->name,
                            command);
                    return EXIT_USAGE;
                }
            }
        }
    }
    return 0;
}

static int check_npos(const struct cli *c, int want, const char *command)
{
    if (c->npos != want) {
        fprintf(stderr, "giftctl: `%s` takes %d argument%s, got %d\n(see giftctl --help)\n",
                command, want - 1, want - 1 == 1 ? "" : "s", c->npos - 1);
        return EXIT_USAGE;
    }
    return 0;
}

static int mint(const char *secret, const char *sub, const char *name, enum auth_role role,
                const char *room, long long ttl_s, char **out_token)
{
    struct auth_claims claims;
    memset(&claims, 0, sizeof(claims));
    snprintf(claims.sub, sizeof(claims.sub), "%s", sub);
    snprintf(claims.name, sizeof(claims.name), "%s", name ? name : "");
    snprintf(claims.room, sizeof(claims.room), "%s", room ? room : "");
    claims.role = role;
    claims.exp = (int64_t)time(NULL) + (int64_t)ttl_s;
    return auth_jwt_sign(&claims, secret, strlen(secret), out_token);
}

static int cmd_token(const struct cli *c)
{
    int rc = check_options(
        c, BIT(OPT_SUB) | BIT(OPT_ROLE) | BIT(OPT_NAME) | BIT(OPT_ROOM) | BIT(OPT_TTL), "token");
    if (rc || (rc = check_npos(c, 1, "token"))) {
        return rc;
    }
    const char *sub = c->opt[OPT_SUB];
    const char *role_s = c->opt[OPT_ROLE];
    const char *name = c->opt[OPT_NAME];
    const char *room = c->opt[OPT_ROOM];
    if (!sub || !role_s) {
        return usage_error("token needs --sub and --role");
    }
    if (!valid_id(sub)) {
        return usage_error("--sub is not a valid identifier: %s", sub);
    }
    enum auth_role role = auth_role_parse(role_s);
    if (role == AUTH_ROLE_NONE) {
        return usage_error("--role must be viewer, overlay or service, not %s", role_s);
    }
    if (name && !valid_name(name)) {
        return usage_error("--name must be 1-64 bytes of UTF-8");
    }
    if (room && !valid_id(room)) {
        return usage_error("--room is not a valid identifier: %s", room);
    }
    if (role == AUTH_ROLE_VIEWER && !name) {
        return usage_error("a viewer token needs --name");
    }
    if (role == AUTH_ROLE_OVERLAY && !room) {
        return usage_error("an overlay token needs --room");
    }
    if (role != AUTH_ROLE_OVERLAY && room) {
        return usage_error("--room applies to overlay tokens only");
    }
    long long ttl = DEFAULT_TTL_S;
    if (c->opt[OPT_TTL] &&
        !parse_ll(c->opt[OPT_TTL], -100LL * 365 * 86400, 100LL * 365 * 86400, &ttl)) {
        return usage_error("--ttl must be a number of seconds, not %s", c->opt[OPT_TTL]);
    }
    if (!c->secret) {
        return usage_error("token needs --secret or GIFTD_SECRET");
    }
    char *jwt = NULL;
    rc = mint(c->secret, sub, name, role, room, ttl, &jwt);
    if (rc < 0) {
        fprintf(stderr, "giftctl: cannot sign the token: %s\n", strerror(-rc));
        return rc == -EINVAL ? EXIT_USAGE : EXIT_HTTP_ERROR;
    }
    printf("%s\n", jwt);
    free(jwt);
    return 0;
}

/* Prints the error object of an HTTP error answer (or the start of the raw body) to stderr. */
static void print_http_error(const struct ctl_http_resp *resp)
{
    json_t *root = json_loadb(resp->body, resp->body_len, JSON_DECODE_ANY, NULL);
    json_t *err = json_is_object(root) ? json_object_get(root, "error") : NULL;
    const char *code = json_string_value(json_object_get(err, "code"));
    const char *message = json_string_value(json_object_get(err, "message"));
    if (code) {
        fprintf(stderr, "giftctl: HTTP %d: %s: %s\n", resp->status, code, message ? message : "");
    } else if (resp->body_len > 0) {
        int n = resp->body_len > MAX_ERROR_BODY_SHOW ? MAX_ERROR_BODY_SHOW : (int)resp->body_len;
        fprintf(stderr, "giftctl: HTTP %d: %.*s\n", resp->status, n, resp->body);
    } else {
        fprintf(stderr, "giftctl: HTTP %d\n", resp->status);
    }
    json_decref(root);
}

static void print_body(const struct ctl_http_resp *resp)
{
    if (resp->body_len == 0) {
        return;
    }
    json_t *root = json_loadb(resp->body, resp->body_len, JSON_DECODE_ANY, NULL);
    char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_ENCODE_ANY) : NULL;
    if (text) {
        printf("%s\n", text);
    } else {
        fwrite(resp->body, 1, resp->body_len, stdout);
        if (resp->body[resp->body_len - 1] != '\n') {
            putchar('\n');
        }
    }
    free(text);
    json_decref(root);
}

/*
 * Sends one request to the configured giftd. body (borrowed, may be NULL) is sent as JSON.
 * Uses --token, else mints a short-lived service token from --secret, else sends none.
 */
static int call(const struct cli *c, const char *method, const char *path, const json_t *body)
{
    char host[256];
    int port = 0;
    if (ctl_url_parse(c->url, host, sizeof(host), &port, NULL) < 0) {
        return usage_error("--url must look like http://host:port or https://host:port, not %s",
                           c->url);
    }
    if (c->cacert && access(c->cacert, R_OK) != 0) {
        return usage_error("--cacert %s: %s", c->cacert, strerror(errno));
    }
    char *minted = NULL;
    const char *token = c->token;
    if (!token && c->secret) {
        int rc = mint(c->secret, AUTO_TOKEN_SUB, NULL, AUTH_ROLE_SERVICE, NULL, AUTO_TOKEN_TTL_S,
                      &minted);
        if (rc < 0) {
            fprintf(stderr, "giftctl: cannot sign a service token: %s\n", strerror(-rc));
            return EXIT_HTTP_ERROR;
        }
        token = minted;
    }
    char *text = NULL;
    if (body) {
        text = json_dumps(body, JSON_COMPACT);
        if (!text) {
            free(minted);
            fprintf(stderr, "giftctl: out of memory\n");
            return EXIT_HTTP_ERROR;
        }
    }
    struct ctl_http_resp resp;
    int rc = ctl_http_request_url(c->url, method, path, token, text, c->cacert, REQUEST_TIMEOUT_MS,
                                  &resp);
    free(text);
    free(minted);
    if (rc < 0) {
        fprintf(stderr, "giftctl: %s %s%s: %s%s%s\n", method, c->url, path, strerror(-rc),
                resp.error[0] ? ": " : "", resp.error);
        return EXIT_HTTP_ERROR;
    }
    int status = resp.status >= 200 && resp.status < 300 ? 0 : EXIT_HTTP_ERROR;
    if (status == 0) {
        print_body(&resp);
    } else {
        print_http_error(&resp);
    }
    ctl_http_resp_cleanup(&resp);
    return status;
}

static int cmd_room(const struct cli *c)
{
    if (c->npos < 2) {
        return usage_error("room needs open, close, show or events");
    }
    const char *action = c->pos[1];
    int rc;
    if (strcmp(action, "open") == 0) {
        rc = check_options(c, BIT(OPT_CREATOR) | BIT(OPT_CREATOR_NAME) | BIT(OPT_TITLE),
                           "room open");
    } else if (strcmp(action, "close") == 0 || strcmp(action, "show") == 0) {
        rc = check_options(c, 0, strcmp(action, "close") == 0 ? "room close" : "room show");
    } else if (strcmp(action, "events") == 0) {
        rc = check_options(c, BIT(OPT_SINCE) | BIT(OPT_COUNT), "room events");
    } else {
        return usage_error("unknown room action %s (open, close, show, events)", action);
    }
    if (rc) {
        return rc;
    }
    if (c->npos != 3) {
        return usage_error("room %s takes one ROOM argument", action);
    }
    const char *room = c->pos[2];
    if (!valid_id(room)) {
        return usage_error("ROOM is not a valid identifier: %s", room);
    }
    char path[192];
    snprintf(path, sizeof(path), "/v1/rooms/%s", room);
    if (strcmp(action, "show") == 0) {
        return call(c, "GET", path, NULL);
    }
    if (strcmp(action, "events") == 0) {
        long long since = 0, n = 1000;
        if (c->opt[OPT_SINCE] && !parse_ll(c->opt[OPT_SINCE], 0, (1LL << 53) - 1, &since)) {
            return usage_error("--since must be a seq (a non-negative integer), not %s",
                               c->opt[OPT_SINCE]);
        }
        if (c->opt[OPT_COUNT] && !parse_ll(c->opt[OPT_COUNT], 1, 1000, &n)) {
            return usage_error("--count must be an integer from 1 to 1000, not %s",
                               c->opt[OPT_COUNT]);
        }
        snprintf(path, sizeof(path), "/v1/rooms/%s/events?since_seq=%lld&limit=%lld", room, since,
                 n);
        return call(c, "GET", path, NULL);
    }
    if (strcmp(action, "close") == 0) {
        return call(c, "DELETE", path, NULL);
    }
    const char *creator = c->opt[OPT_CREATOR];
    const char *creator_name = c->opt[OPT_CREATOR_NAME];
    const char *title = c->opt[OPT_TITLE];
    if (!creator || !creator_name) {
        return usage_error("room open needs --creator and --creator-name");
    }
    if (!valid_id(creator)) {
        return usage_error("--creator is not a valid identifier: %s", creator);
    }
    if (!valid_name(creator_name)) {
        return usage_error("--creator-name must be 1-64 bytes of UTF-8");
    }
    json_t *body = json_pack("{s:{s:s,s:s}}", "creator", "id", creator, "name", creator_name);
    if (body && title && json_object_set_new(body, "title", json_string(title)) < 0) {
        json_decref(body);
        body = NULL;
    }
    if (!body) {
        fprintf(stderr, "giftctl: cannot build the request (is --title valid UTF-8?)\n");
        return EXIT_USAGE;
    }
    rc = call(c, "PUT", path, body);
    json_decref(body);
    return rc;
}

static int cmd_recharge(const struct cli *c)
{
    int rc = check_options(
        c, BIT(OPT_USER) | BIT(OPT_PAYMENT_ID) | BIT(OPT_PACKAGE) | BIT(OPT_COINS), "recharge");
    if (rc || (rc = check_npos(c, 1, "recharge"))) {
        return rc;
    }
    const char *user = c->opt[OPT_USER];
    const char *payment = c->opt[OPT_PAYMENT_ID];
    const char *package = c->opt[OPT_PACKAGE];
    const char *coins_s = c->opt[OPT_COINS];
    if (!user || !payment) {
        return usage_error("recharge needs --user and --payment-id");
    }
    if (!package == !coins_s) {
        return usage_error("recharge needs exactly one of --package and --coins");
    }
    if (!valid_id(user)) {
        return usage_error("--user is not a valid identifier: %s", user);
    }
    if (!valid_id(payment)) {
        return usage_error("--payment-id is not a valid identifier: %s", payment);
    }
    if (package && !valid_id(package)) {
        return usage_error("--package is not a valid identifier: %s", package);
    }
    long long coins = 0;
    if (coins_s && !parse_ll(coins_s, 1, (1LL << 53) - 1, &coins)) {
        return usage_error("--coins must be a positive integer, not %s", coins_s);
    }
    json_t *body = json_pack("{s:s,s:s}", "payment_id", payment, "user", user);
    if (body) {
        json_t *v = package ? json_string(package) : json_integer(coins);
        if (json_object_set_new(body, package ? "package" : "coins", v) < 0) {
            json_decref(body);
            body = NULL;
        }
    }
    if (!body) {
        fprintf(stderr, "giftctl: out of memory\n");
        return EXIT_HTTP_ERROR;
    }
    rc = call(c, "POST", "/v1/recharge", body);
    json_decref(body);
    return rc;
}

static int cmd_balance(const struct cli *c)
{
    int rc = check_options(c, 0, "balance");
    if (rc || (rc = check_npos(c, 2, "balance"))) {
        return rc;
    }
    const char *user = c->pos[1];
    if (!valid_id(user)) {
        return usage_error("USER is not a valid identifier: %s", user);
    }
    char path[128];
    snprintf(path, sizeof(path), "/v1/users/%s/balance", user);
    return call(c, "GET", path, NULL);
}

static int cmd_goal(const struct cli *c)
{
    const char *sub = c->npos > 1 ? c->pos[1] : "";
    bool set = strcmp(sub, "set") == 0;
    if (!set && strcmp(sub, "clear") != 0) {
        return usage_error("goal needs set or clear");
    }
    int rc = check_options(c, set ? BIT(OPT_TITLE) | BIT(OPT_TARGET) | BIT(OPT_GIFT) : 0,
                           set ? "goal set" : "goal clear");
    if (rc || (rc = check_npos(c, 3, set ? "goal set" : "goal clear"))) {
        return rc;
    }
    const char *room = c->pos[2];
    if (!valid_id(room)) {
        return usage_error("ROOM is not a valid identifier: %s", room);
    }
    char path[128];
    snprintf(path, sizeof(path), "/v1/rooms/%s/goal", room);
    if (!set) {
        return call(c, "DELETE", path, NULL);
    }
    const char *title = c->opt[OPT_TITLE], *target_s = c->opt[OPT_TARGET], *gift = c->opt[OPT_GIFT];
    long long target = 0;
    if (!title || !target_s) {
        return usage_error("goal set needs --title and --target");
    }
    if (!parse_ll(target_s, 1, 1000000000000LL, &target)) {
        return usage_error("--target must be an integer from 1 to 1000000000000, not %s", target_s);
    }
    if (gift && !valid_id(gift)) {
        return usage_error("--gift is not a valid identifier: %s", gift);
    }
    json_t *body = json_pack("{s:s,s:I}", "title", title, "target", (json_int_t)target);
    if (body && gift && json_object_set_new(body, "gift", json_string(gift)) < 0) {
        json_decref(body);
        body = NULL;
    }
    if (!body) {
        fprintf(stderr, "giftctl: out of memory (or --title is not UTF-8)\n");
        return EXIT_HTTP_ERROR;
    }
    rc = call(c, "PUT", path, body);
    json_decref(body);
    return rc;
}

static int cmd_overlay(const struct cli *c)
{
    static const char *const actions[] = {"skip", "pause", "resume", "replay"};
    const char *action = c->npos > 1 ? c->pos[1] : "";
    bool known = false;
    for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++) {
        known = known || strcmp(action, actions[i]) == 0;
    }
    if (!known) {
        return usage_error("overlay needs skip, pause, resume or replay");
    }
    bool replay = strcmp(action, "replay") == 0;
    int rc = check_options(c, replay ? BIT(OPT_SEQ) : 0, "overlay");
    if (rc || (rc = check_npos(c, 3, "overlay"))) {
        return rc;
    }
    const char *room = c->pos[2];
    if (!valid_id(room)) {
        return usage_error("ROOM is not a valid identifier: %s", room);
    }
    long long seq = 0;
    if (replay && (!c->opt[OPT_SEQ] || !parse_ll(c->opt[OPT_SEQ], 1, (1LL << 53) - 1, &seq))) {
        return usage_error("overlay replay needs --seq, the seq of a room event (>= 1)");
    }
    json_t *body = replay ? json_pack("{s:s,s:I}", "action", action, "seq", (json_int_t)seq)
                          : json_pack("{s:s}", "action", action);
    if (!body) {
        fprintf(stderr, "giftctl: out of memory\n");
        return EXIT_HTTP_ERROR;
    }
    char path[128];
    snprintf(path, sizeof(path), "/v1/rooms/%s/overlay", room);
    rc = call(c, "POST", path, body);
    json_decref(body);
    return rc;
}

static int cmd_reverse(const struct cli *c)
{
    int rc = check_options(c, BIT(OPT_USER) | BIT(OPT_PAYMENT_ID) | BIT(OPT_REASON), "reverse");
    if (rc || (rc = check_npos(c, 1, "reverse"))) {
        return rc;
    }
    const char *user = c->opt[OPT_USER];
    const char *payment = c->opt[OPT_PAYMENT_ID];
    const char *reason = c->opt[OPT_REASON];
    if (!user || !payment) {
        return usage_error("reverse needs --user and --payment-id");
    }
    if (!valid_id(user)) {
        return usage_error("--user is not a valid identifier: %s", user);
    }
    if (!valid_id(payment)) {
        return usage_error("--payment-id is not a valid identifier: %s", payment);
    }
    json_t *body = json_pack("{s:s,s:s}", "payment_id", payment, "user", user);
    if (body && reason && json_object_set_new(body, "reason", json_string(reason)) < 0) {
        json_decref(body);
        body = NULL;
    }
    if (!body) {
        fprintf(stderr, "giftctl: out of memory (or --reason is not UTF-8)\n");
        return EXIT_HTTP_ERROR;
    }
    rc = call(c, "POST", "/v1/recharge/reverse", body);
    json_decref(body);
    return rc;
}

static int cmd_transactions(const struct cli *c)
{
    int rc = check_options(c, BIT(OPT_COUNT), "transactions");
    if (rc || (rc = check_npos(c, 2, "transactions"))) {
        return rc;
    }
    const char *user = c->pos[1];
    if (!valid_id(user)) {
        return usage_error("USER is not a valid identifier: %s", user);
    }
    long long n = 50;
    if (c->opt[OPT_COUNT] && !parse_ll(c->opt[OPT_COUNT], 1, 1000, &n)) {
        return usage_error("--count must be an integer from 1 to 1000, not %s", c->opt[OPT_COUNT]);
    }
    char path[160];
    snprintf(path, sizeof(path), "/v1/users/%s/transactions?limit=%lld", user, n);
    return call(c, "GET", path, NULL);
}

/* Adds one cap of budget's body: "none" is null (clear), else a non-negative integer. */
static int budget_cap(json_t *body, const char *key, const char *opt, const char *text)
{
    json_t *value;
    if (strcmp(text, "none") == 0) {
        value = json_null();
    } else {
        long long n = 0;
        if (!parse_ll(text, 0, (1LL << 53) - 1, &n)) {
            return usage_error("--%s must be a non-negative integer or none, not %s", opt, text);
        }
        value = json_integer(n);
    }
    if (json_object_set_new(body, key, value) < 0) {
        fprintf(stderr, "giftctl: out of memory\n");
        return EXIT_HTTP_ERROR;
    }
    return 0;
}

static int cmd_budget(const struct cli *c)
{
    int rc = check_options(c, BIT(OPT_DAILY_COINS) | BIT(OPT_MONTHLY_COINS), "budget");
    if (rc || (rc = check_npos(c, 2, "budget"))) {
        return rc;
    }
    const char *user = c->pos[1];
    const char *daily = c->opt[OPT_DAILY_COINS];
    const char *monthly = c->opt[OPT_MONTHLY_COINS];
    if (!valid_id(user)) {
        return usage_error("USER is not a valid identifier: %s", user);
    }
    char path[128];
    snprintf(path, sizeof(path), "/v1/users/%s/budget", user);
    if (!daily && !monthly) {
        return call(c, "GET", path, NULL); /* only show */
    }
    json_t *body = json_object();
    if (!body) {
        fprintf(stderr, "giftctl: out of memory\n");
        return EXIT_HTTP_ERROR;
    }
    if ((daily && (rc = budget_cap(body, "daily_coins", "daily-coins", daily))) ||
        (monthly && (rc = budget_cap(body, "monthly_coins", "monthly-coins", monthly)))) {
        json_decref(body);
        return rc;
    }
    rc = call(c, "PUT", path, body);
    json_decref(body);
    return rc;
}

/* ---- settlements: tail the sink ---- */

#define SETTLE_PAGE          1000
#define SETTLE_BLOCK_MS      "5000"
#define SETTLE_POLL_MS       1000
#define SETTLE_LOOKBACK_MS   3600000LL
#define DEFAULT_REDIS_URL    "redis://127.0.0.1:6379/0"
#define DEFAULT_FLUSH_STREAM "giftd:settlements"

static const char *const settle_fields[] = {
    "batch", "creator", "room", "gift", "count", "coins", "diamonds", "first_ts_ms", "last_ts_ms"};
enum { SETTLE_NFIELDS = 9, SETTLE_NSTRINGS = 4 };

/* Prints one row as a JSON line; values[i] are the texts of settle_fields[i]; id may be NULL. */
static void print_settlement(const char *id, const char *const values[SETTLE_NFIELDS])
{
    json_t *o = json_object();
    if (!o) {
        return;
    }
    if (id) {
        json_object_set_new(o, "id", json_string(id));
    }
    for (int i = 0; i < SETTLE_NFIELDS; i++) {
        long long v = 0;
        if (i < SETTLE_NSTRINGS || !parse_ll(values[i], LLONG_MIN, LLONG_MAX, &v)) {
            json_object_set_new(o, settle_fields[i], json_string(values[i] ? values[i] : ""));
        } else {
            json_object_set_new(o, settle_fields[i], json_integer(v));
        }
    }
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text) {
        printf("%s\n", text);
        fflush(stdout);
    }
    free(text);
    json_decref(o);
}

/* Prints the entries of an XRANGE-style reply; remembers the last id in last (len bytes). */
static void print_entries(const redisReply *r, bool reverse, char *last, size_t len)
{
    for (size_t k = 0; k < r->elements; k++) {
        const redisReply *e = r->element[reverse ? r->elements - 1 - k : k];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING) {
            continue;
        }
        const char *values[SETTLE_NFIELDS] = {0};
        const redisReply *f = e->element[1];
        for (size_t i = 0; f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2) {
            for (int j = 0; j < SETTLE_NFIELDS; j++) {
                if (strcmp(f->element[i]->str, settle_fields[j]) == 0) {
                    values[j] = f->element[i + 1]->str;
                }
            }
        }
        print_settlement(e->element[0]->str, values);
        snprintf(last, len, "%s", e->element[0]->str);
    }
}

static int redis_failed(redisContext *rc, redisReply *r, const char *what)
{
    if (!r) {
        fprintf(stderr, "giftctl: redis %s: %s\n", what, rc->errstr);
    } else {
        fprintf(stderr, "giftctl: redis %s: %s\n", what,
                r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        freeReplyObject(r);
    }
    return EXIT_HTTP_ERROR;
}

static int settlements_redis(const char *url, const char *stream, long long count, bool follow)
{
    char host[256], password[256];
    int port = 0, db = 0;
    bool is_unix = false;
    if (ledger_url_parse(url, host, sizeof(host), &port, &db, password, sizeof(password),
                         &is_unix) < 0) {
        return usage_error("--redis must look like redis://host:port/db or unix:///path, not %s",
                           url);
    }
    struct timeval tv = {.tv_sec = 10, .tv_usec = 0};
    redisContext *rc =
        is_unix ? redisConnectUnixWithTimeout(host, tv) : redisConnectWithTimeout(host, port, tv);
    if (!rc || rc->err) {
        fprintf(stderr, "giftctl: cannot connect to %s: %s\n", url, rc ? rc->errstr : "no memory");
        redisFree(rc);
        return EXIT_HTTP_ERROR;
    }
    redisReply *r;
    int status = 0;
    if (password[0]) {
        r = redisCommand(rc, "AUTH %s", password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            status = redis_failed(rc, r, "AUTH");
            goto out;
        }
        freeReplyObject(r);
    }
    if (db) {
        r = redisCommand(rc, "SELECT %d", db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            status = redis_failed(rc, r, "SELECT");
            goto out;
        }
        freeReplyObject(r);
    }
    char last[64] = "0-0";
    if (count >= 0) {
        /* The last count entries, printed oldest first; count 0 only sets where to follow. */
        r = redisCommand(rc, "XREVRANGE %s + - COUNT %lld", stream, count > 0 ? count : 1);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            status = redis_failed(rc, r, "XREVRANGE");
            goto out;
        }
        if (count > 0) {
            print_entries(r, true, last, sizeof(last));
        } else if (r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY) {
            snprintf(last, sizeof(last), "%s", r->element[0]->element[0]->str);
        }
        freeReplyObject(r);
    } else {
        /* Everything, a page at a time; "(" makes the start exclusive. */
        for (;;) {
            char start[80];
            snprintf(start, sizeof(start), strcmp(last, "0-0") == 0 ? "-" : "(%s", last);
            r = redisCommand(rc, "XRANGE %s %s + COUNT %d", stream, start, SETTLE_PAGE);
            if (!r || r->type != REDIS_REPLY_ARRAY) {
                status = redis_failed(rc, r, "XRANGE");
                goto out;
            }
            size_t n = r->elements;
            print_entries(r, false, last, sizeof(last));
            freeReplyObject(r);
            if (n < SETTLE_PAGE) {
                break;
            }
        }
    }
    while (follow) {
        r = redisCommand(rc, "XREAD COUNT %d BLOCK %s STREAMS %s %s", SETTLE_PAGE, SETTLE_BLOCK_MS,
                         stream, last);
        if (!r || (r->type != REDIS_REPLY_ARRAY && r->type != REDIS_REPLY_NIL)) {
            status = redis_failed(rc, r, "XREAD");
            goto out;
        }
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
            r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2) {
            print_entries(r->element[0]->element[1], false, last, sizeof(last));
        }
        freeReplyObject(r);
    }
out:
    redisFree(rc);
    return status;
}

static int pg_failed(PGconn *conn, PGresult *res, const char *what)
{
    fprintf(stderr, "giftctl: postgres %s: %s", what, PQerrorMessage(conn));
    PQclear(res);
    PQfinish(conn);
    return EXIT_HTTP_ERROR;
}

/* Rows of gift_settlements: the last count (or all), then with follow every new one. A row
 * is new when its key was not printed yet; --follow looks at rows whose last gift is at most
 * an hour older than the newest it printed (a row held back by a longer outage is missed). */
static int settlements_postgres(const char *conninfo, long long count, bool follow)
{
    PGconn *conn = PQconnectdb(conninfo);
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "giftctl: cannot connect to PostgreSQL: %s",
                conn ? PQerrorMessage(conn) : "out of memory\n");
        PQfinish(conn);
        return EXIT_HTTP_ERROR;
    }
    static const char cols[] = "batch, creator, room, gift, count::text, coins::text, "
                               "diamonds::text, first_ts_ms::text, last_ts_ms::text";
    static const char order[] = "last_ts_ms, batch, creator, room, gift";
    json_t *seen = json_object();
    if (!seen) {
        PQfinish(conn);
        return EXIT_HTTP_ERROR;
    }
    long long newest = 0;
    for (bool first = true;; first = false) {
        char sql[600];
        if (first && count >= 0) {
            snprintf(sql, sizeof(sql),
                     "SELECT * FROM (SELECT %s FROM gift_settlements ORDER BY last_ts_ms DESC, "
                     "batch DESC, creator DESC, room DESC, gift DESC LIMIT %lld) t ORDER BY %s",
                     cols, count, order);
        } else if (first) {
            snprintf(sql, sizeof(sql), "SELECT %s FROM gift_settlements ORDER BY %s", cols, order);
        } else {
            snprintf(sql, sizeof(sql),
                     "SELECT %s FROM gift_settlements WHERE last_ts_ms >= %lld ORDER BY %s", cols,
                     newest - SETTLE_LOOKBACK_MS, order);
        }
        PGresult *res = PQexec(conn, sql);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            json_decref(seen);
            return pg_failed(conn, res, "SELECT");
        }
        for (int i = 0; i < PQntuples(res); i++) {
            const char *values[SETTLE_NFIELDS];
            for (int j = 0; j < SETTLE_NFIELDS; j++) {
                values[j] = PQgetvalue(res, i, j);
            }
            char key[300];
            snprintf(key, sizeof(key), "%s\x1f%s\x1f%s\x1f%s", values[0], values[1], values[2],
                     values[3]);
            if (json_object_get(seen, key)) {
                continue;
            }
            long long last_ts = strtoll(values[8], NULL, 10);
            if (last_ts > newest) {
                newest = last_ts;
            }
            if (follow) {
                json_object_set_new(seen, key, json_integer(last_ts));
            }
            if (!first || count != 0) {
                print_settlement(NULL, values);
            }
        }
        PQclear(res);
        if (!follow) {
            break;
        }
        /* Forget keys that fell out of the window. */
        const char *k;
        json_t *v;
        void *tmp;
        json_object_foreach_safe(seen, tmp, k, v)
        {
            if (json_integer_value(v) < newest - SETTLE_LOOKBACK_MS) {
                json_object_del(seen, k);
            }
        }
        struct timespec ts = {.tv_sec = SETTLE_POLL_MS / 1000,
                              .tv_nsec = (SETTLE_POLL_MS % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    json_decref(seen);
    PQfinish(conn);
    return 0;
}

static int cmd_settlements(const struct cli *c)
{
    int rc = check_options(
        c, BIT(OPT_REDIS) | BIT(OPT_STREAM) | BIT(OPT_POSTGRES) | BIT(OPT_COUNT) | BIT(OPT_FOLLOW),
        "settlements");
    if (rc || (rc = check_npos(c, 1, "settlements"))) {
        return rc;
    }
    long long count = -1;
    if (c->opt[OPT_COUNT] && !parse_ll(c->opt[OPT_COUNT], 0, 1000000000, &count)) {
        return usage_error("--count must be a non-negative integer, not %s", c->opt[OPT_COUNT]);
    }
    bool follow = (c->seen & BIT(OPT_FOLLOW)) != 0;
    const char *pg = c->opt[OPT_POSTGRES];
    if (!pg && !c->opt[OPT_REDIS] && !c->opt[OPT_STREAM]) {
        pg = env_nonempty("GIFTD_FLUSH_POSTGRES");
    }
    if (pg) {
        if (c->opt[OPT_REDIS] || c->opt[OPT_STREAM]) {
            return usage_error("--postgres does not go with --redis or --stream");
        }
        return settlements_postgres(pg, count, follow);
    }
    const char *url = c->opt[OPT_REDIS] ? c->opt[OPT_REDIS] : env_nonempty("GIFTD_REDIS_URL");
    const char *stream =
        c->opt[OPT_STREAM] ? c->opt[OPT_STREAM] : env_nonempty("GIFTD_FLUSH_STREAM");
    return settlements_redis(url ? url : DEFAULT_REDIS_URL, stream ? stream : DEFAULT_FLUSH_STREAM,
                             count, follow);
}

int main(int argc, char **argv)
{
    struct cli c;
    memset(&c, 0, sizeof(c));
    opterr = 0;
    for (;;) {
        int longindex = -1;
        int o = getopt_long(argc, argv, "h", long_options, &longindex);
        if (o == -1) {
            break;
        }
        if (o == 'h') {
            o = OPT_HELP;
        }
        if (o == '?' || o == ':') {
            if (optopt) {
                /* optopt is a long option's val when it lacked its argument. */
                for (const struct option *lo = long_options; lo->name; lo++) {
                    if (lo->val == optopt) {
                        return usage_error("option --%s needs a value", lo->name);
                    }
                }
                char s[2] = {(char)optopt, '\0'};
                return usage_error("unknown option -%s", s);
            }
            return usage_error("unknown option %s", argv[optind - 1]);
        }
        if (o <= 0 || o >= OPT__COUNT) {
            return usage_error("bad option");
        }
        if ((c.seen & BIT(o)) && o != OPT_HELP && o != OPT_VERSION) {
            return usage_error("option --%s given twice", long_options[o - 1].name);
        }
        c.seen |= BIT(o);
        c.opt[o] = optarg;
    }
    if (c.seen & BIT(OPT_HELP)) {
        usage(stdout);
        return 0;
    }
    if (c.seen & BIT(OPT_VERSION)) {
        printf("giftctl %s\n", GIFTD_VERSION);
        return 0;
    }
    c.pos = argv + optind;
    c.npos = argc - optind;
    c.url = c.opt[OPT_URL] ? c.opt[OPT_URL] : env_nonempty("GIFTD_URL");
    if (!c.url) {
        c.url = DEFAULT_URL;
    }
    c.token = c.opt[OPT_TOKEN] ? c.opt[OPT_TOKEN] : env_nonempty("GIFTD_TOKEN");
    c.secret = c.opt[OPT_SECRET] ? c.opt[OPT_SECRET] : env_nonempty("GIFTD_SECRET");
    if (c.token && !*c.token) {
        c.token = NULL;
    }
    if (c.secret && !*c.secret) {
        c.secret = NULL;
    }
    c.cacert = c.opt[OPT_CACERT] ? c.opt[OPT_CACERT] : env_nonempty("GIFTD_CACERT");
    if (c.npos < 1) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *command = c.pos[0];
    if (strcmp(command, "token") == 0) {
        return cmd_token(&c);
    }
    if (strcmp(command, "room") == 0) {
        return cmd_room(&c);
    }
    if (strcmp(command, "goal") == 0) {
        return cmd_goal(&c);
    }
    if (strcmp(command, "overlay") == 0) {
        return cmd_overlay(&c);
    }
    if (strcmp(command, "recharge") == 0) {
        return cmd_recharge(&c);
    }
    if (strcmp(command, "reverse") == 0) {
        return cmd_reverse(&c);
    }
    if (strcmp(command, "transactions") == 0) {
        return cmd_transactions(&c);
    }
    if (strcmp(command, "balance") == 0) {
        return cmd_balance(&c);
    }
    if (strcmp(command, "budget") == 0) {
        return cmd_budget(&c);
    }
    if (strcmp(command, "settlements") == 0) {
        return cmd_settlements(&c);
    }
    if (strcmp(command, "help") == 0) {
        usage(stdout);
        return 0;
    }
    return usage_error("unknown command %s", command);
}
