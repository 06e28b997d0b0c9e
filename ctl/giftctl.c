/* giftctl: the command-line client of giftd's HTTP API (SPEC sections 5 and 9). */
#include "auth/auth.h"
#include "ctl/ctl.h"
#include "protocol/protocol.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    OPT_USER,
    OPT_PAYMENT_ID,
    OPT_PACKAGE,
    OPT_COINS,
    OPT_DAILY_COINS,
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
    {"user", required_argument, NULL, OPT_USER},
    {"payment-id", required_argument, NULL, OPT_PAYMENT_ID},
    {"package", required_argument, NULL, OPT_PACKAGE},
    {"coins", required_argument, NULL, OPT_COINS},
    {"daily-coins", required_argument, NULL, OPT_DAILY_COINS},
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
};

static void usage(FILE *f)
{
    fputs("usage: giftctl [--url URL] [--token TOKEN] [--secret SECRET] COMMAND [ARGS]\n"
          "\n"
          "Commands:\n"
          "  token --sub ID --role viewer|overlay|service [--name NAME] [--room ROOM]\n"
          "        [--ttl SECONDS]               print a signed JWT (default ttl 86400)\n"
          "  room open ROOM --creator ID --creator-name NAME [--title TITLE]\n"
          "  room close ROOM\n"
          "  room show ROOM\n"
          "  recharge --user USER --payment-id ID (--package ID | --coins N)\n"
          "  balance USER\n"
          "  budget USER --daily-coins N|none\n"
          "  settlements                         (not yet implemented)\n"
          "\n"
          "Options:\n"
          "  --url URL        giftd base URL (env GIFTD_URL, default " DEFAULT_URL ")\n"
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
    allowed |= BIT(OPT_URL) | BIT(OPT_TOKEN) | BIT(OPT_SECRET);
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
    if (ctl_url_parse(c->url, host, sizeof(host), &port) < 0) {
        return usage_error("--url must look like http://host:port, not %s", c->url);
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
    int rc = ctl_http_request(host, port, method, path, token, text, REQUEST_TIMEOUT_MS, &resp);
    free(text);
    free(minted);
    if (rc < 0) {
        fprintf(stderr, "giftctl: %s %s%s: %s\n", method, c->url, path, strerror(-rc));
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
        return usage_error("room needs open, close or show");
    }
    const char *action = c->pos[1];
    int rc;
    if (strcmp(action, "open") == 0) {
        rc = check_options(c, BIT(OPT_CREATOR) | BIT(OPT_CREATOR_NAME) | BIT(OPT_TITLE),
                           "room open");
    } else if (strcmp(action, "close") == 0 || strcmp(action, "show") == 0) {
        rc = check_options(c, 0, strcmp(action, "close") == 0 ? "room close" : "room show");
    } else {
        return usage_error("unknown room action %s (open, close, show)", action);
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
    char path[128];
    snprintf(path, sizeof(path), "/v1/rooms/%s", room);
    if (strcmp(action, "show") == 0) {
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

static int cmd_budget(const struct cli *c)
{
    int rc = check_options(c, BIT(OPT_DAILY_COINS), "budget");
    if (rc || (rc = check_npos(c, 2, "budget"))) {
        return rc;
    }
    const char *user = c->pos[1];
    const char *daily = c->opt[OPT_DAILY_COINS];
    if (!valid_id(user)) {
        return usage_error("USER is not a valid identifier: %s", user);
    }
    if (!daily) {
        return usage_error("budget needs --daily-coins N or --daily-coins none");
    }
    json_t *value;
    if (strcmp(daily, "none") == 0) {
        value = json_null();
    } else {
        long long n = 0;
        if (!parse_ll(daily, 0, (1LL << 53) - 1, &n)) {
            return usage_error("--daily-coins must be a non-negative integer or none, not %s",
                               daily);
        }
        value = json_integer(n);
    }
    json_t *body = json_object();
    if (!body || json_object_set_new(body, "daily_coins", value) < 0) {
        json_decref(body);
        fprintf(stderr, "giftctl: out of memory\n");
        return EXIT_HTTP_ERROR;
    }
    char path[128];
    snprintf(path, sizeof(path), "/v1/users/%s/budget", user);
    rc = call(c, "PUT", path, body);
    json_decref(body);
    return rc;
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
    if (strcmp(command, "recharge") == 0) {
        return cmd_recharge(&c);
    }
    if (strcmp(command, "balance") == 0) {
        return cmd_balance(&c);
    }
    if (strcmp(command, "budget") == 0) {
        return cmd_budget(&c);
    }
    if (strcmp(command, "settlements") == 0) {
        fprintf(stderr, "giftctl: settlements: not yet implemented\n");
        return EXIT_USAGE;
    }
    if (strcmp(command, "help") == 0) {
        usage(stdout);
        return 0;
    }
    return usage_error("unknown command %s", command);
}
