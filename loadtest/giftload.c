/* giftload: the bundled load generator — N viewers over M rooms, S senders at R gifts/s. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth.h"
#include "loadtest/loadtest.h"
#include "protocol/protocol.h"

#define CONTROL_MS   10
#define SEND_MS      1
#define TICK_MS      1000
#define READBUF      (256u * 1024u)
#define MAX_SRC      4096
#define HTTP_TIMEOUT 10000
#define NS           1000000000.0

static const char usage_text[] =
    "Usage: giftload [options]\n"
    "Drives a giftd (or any SPEC v1 server): viewers join rooms over WebSocket, senders send\n"
    "gifts at a paced total rate; reports deliveries, send->deliver latency and failures.\n"
    "\n"
    "  --url URL            ws://HOST:PORT[/PATH] (default ws://127.0.0.1:8080; path /ws);\n"
    "                       the HTTP API (--setup) is on the same host:port\n"
    "  --viewers N          viewer connections (default 100), round-robin over the rooms\n"
    "  --rooms M            rooms \"<prefix>-r<i>\" (default 1)\n"
    "  --senders S          sender connections (default 1), round-robin over the rooms. Senders\n"
    "                       are extra connections, not among the N viewers; they are joined to\n"
    "                       their room and receive its events like viewers (counted in\n"
    "                       deliveries and expected deliveries; sampled only when there are\n"
    "                       no viewers). giftd limits a user to limits.gifts_per_sec (20):\n"
    "                       keep R/S below that\n"
    "  --rate R             gifts/s over all senders, paced evenly (default 10)\n"
    "  --gift-mix MIX       gift ids with weights, e.g. rose:10,heart_me:3 (default rose)\n"
    "  --count K            the gift frame's count field (default 1)\n"
    "  --duration D         seconds of sending (default 10): round(R*D) gifts in all\n"
    "  --ramp-up T          seconds from the first connect before sending may start; sending\n"
    "                       also waits until every connection joined or failed (default 0)\n"
    "  --connect-rate C     new connections per second, opened in 10 ms waves (default 2000)\n"
    "  --connect-timeout T  seconds for one connection to get joined (default 10)\n"
    "  --drain T            after sending, wait up to T s for answers and deliveries (default 2)\n"
    "  --source-addrs LIST  local addresses to bind, e.g. 127.0.0.1-127.0.0.40 or a,b,c-d\n"
    "                       (spread round-robin; gets past the ephemeral port range)\n"
    "  --secret SECRET      HS256 secret to mint tokens (default dev-secret-not-for-production)\n"
    "  --setup              open the rooms (creators \"<prefix>-c<i>\") and credit each sender\n"
    "                       --coins through the HTTP API with a service token\n"
    "  --coins C            coins per sender with --setup (default 1000000)\n"
    "  --prefix P           prefix of room and user ids (default gl<pid>)\n"
    "  --sample F           fraction of viewers measuring latency (default 0.1, at least 1)\n"
    "  --full-scan          scan every frame field by field; by default the frames of viewers\n"
    "                       not in the latency sample are counted by the pattern\n"
    "                       \"type\":\"gift\" (exact for SPEC v1 events, whose nested objects\n"
    "                       carry no type) — five times cheaper\n"
    "  --seed N             seed of the gift mix and masks (default: time and pid)\n"
    "  --json FILE          write the report as JSON\n"
    "  --windows FILE       during the send phase, append one JSON line per window to FILE:\n"
    "                       t_s, sent, acked, rejected, deliveries_per_sec, p50/p99/max_ms\n"
    "                       (send->deliver, this window), answer_p99_ms, joined,\n"
    "                       closed_early (so far) — for soak runs\n"
    "  --window S           length of a --windows window in seconds (default 10)\n"
    "  --quiet              no progress line and no table (errors still go to stderr)\n"
    "  --help               this text\n"
    "\n"
    "SIGINT or SIGTERM ends the send phase early (the report says interrupted); a second one\n"
    "skips the drain.\n"
    "Exit status: 0 when the run completed (rejections and failures are in the report),\n"
    "1 when set-up failed or no connection could join, 2 on bad usage.\n";

enum opt_id {
    OPT_URL = 1000,
    OPT_VIEWERS,
    OPT_ROOMS,
    OPT_SENDERS,
    OPT_RATE,
    OPT_MIX,
    OPT_COUNT,
    OPT_DURATION,
    OPT_RAMP,
    OPT_CONNECT_RATE,
    OPT_CONNECT_TIMEOUT,
    OPT_DRAIN,
    OPT_SRC,
    OPT_SECRET,
    OPT_SETUP,
    OPT_COINS,
    OPT_PREFIX,
    OPT_SAMPLE,
    OPT_SEED,
    OPT_FULL_SCAN,
    OPT_JSON,
    OPT_WINDOWS,
    OPT_WINDOW,
    OPT_QUIET,
    OPT_HELP,
};

static const struct option long_opts[] = {
    {"url", required_argument, NULL, OPT_URL},
    {"viewers", required_argument, NULL, OPT_VIEWERS},
    {"rooms", required_argument, NULL, OPT_ROOMS},
    {"senders", required_argument, NULL, OPT_SENDERS},
    {"rate", required_argument, NULL, OPT_RATE},
    {"gift-mix", required_argument, NULL, OPT_MIX},
    {"count", required_argument, NULL, OPT_COUNT},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"ramp-up", required_argument, NULL, OPT_RAMP},
    {"connect-rate", required_argument, NULL, OPT_CONNECT_RATE},
    {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
    {"drain", required_argument, NULL, OPT_DRAIN},
    {"source-addrs", required_argument, NULL, OPT_SRC},
    {"secret", required_argument, NULL, OPT_SECRET},
    {"setup", no_argument, NULL, OPT_SETUP},
    {"coins", required_argument, NULL, OPT_COINS},
    {"prefix", required_argument, NULL, OPT_PREFIX},
    {"sample", required_argument, NULL, OPT_SAMPLE},
    {"seed", required_argument, NULL, OPT_SEED},
    {"full-scan", no_argument, NULL, OPT_FULL_SCAN},
    {"json", required_argument, NULL, OPT_JSON},
    {"windows", required_argument, NULL, OPT_WINDOWS},
    {"window", required_argument, NULL, OPT_WINDOW},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* ---- options ----------------------------------------------------------------------------- */

static int parse_u32(const char *s, uint32_t max, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v > max || s[0] == '-') {
        return -EINVAL;
    }
    *out = (uint32_t)v;
    return 0;
}

static int parse_double(const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min) || !(v <= max)) {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static int copy_str(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n >= cap) {
        return -EINVAL;
    }
    memcpy(dst, s, n + 1);
    return 0;
}

/* "ws://host[:port][/path]" into o->host, o->port, o->path. */
static int parse_url(struct load_opts *o)
{
    const char *u = o->url;
    if (strncmp(u, "ws://", 5) != 0) {
        return -EINVAL;
    }
    u += 5;
    size_t hl = strcspn(u, ":/");
    if (hl == 0 || hl >= sizeof(o->host)) {
        return -EINVAL;
    }
    memcpy(o->host, u, hl);
    o->host[hl] = '\0';
    u += hl;
    o->port = 80;
    if (*u == ':') {
        char *end;
        long p = strtol(u + 1, &end, 10);
        if (end == u + 1 || p < 1 || p > 65535) {
            return -EINVAL;
        }
        o->port = (int)p;
        u = end;
    }
    if (*u == '\0' || strcmp(u, "/") == 0) {
        return copy_str(o->path, sizeof(o->path), "/ws");
    }
    if (*u != '/') {
        return -EINVAL;
    }
    return copy_str(o->path, sizeof(o->path), u);
}

/* "rose:10,heart_me:3" (weight optional, default 1). */
static int parse_mix(struct load *L)
{
    char buf[sizeof(L->o.mix)];
    memcpy(buf, L->o.mix, sizeof(buf));
    L->ngifts = 0;
    L->gift_weight_total = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (L->ngifts == sizeof(L->gifts) / sizeof(L->gifts[0])) {
            return -E2BIG;
        }
        uint32_t w = 1;
        char *colon = strchr(t, ':');
        if (colon) {
            *colon = '\0';
            if (parse_u32(colon + 1, 1000000, &w) < 0 || w == 0) {
                return -EINVAL;
            }
        }
        if (!proto_valid_id(t, strlen(t))) {
            return -EINVAL;
        }
        struct load_gift *g = &L->gifts[L->ngifts++];
        memcpy(g->id, t, strlen(t) + 1);
        g->weight = w;
        L->gift_weight_total += w;
    }
    return L->ngifts > 0 ? 0 : -EINVAL;
}

/* "127.0.0.1-127.0.0.40,127.0.1.1" into L->src. */
static int parse_sources(struct load *L)
{
    char buf[sizeof(L->o.source_addrs)];
    memcpy(buf, L->o.source_addrs, sizeof(buf));
    L->src = calloc(MAX_SRC, sizeof(*L->src));
    if (!L->src) {
        return -ENOMEM;
    }
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *dash = strchr(t, '-');
        if (dash) {
            *dash = '\0';
        }
        struct in_addr a, b;
        if (inet_pton(AF_INET, t, &a) != 1 || (dash && inet_pton(AF_INET, dash + 1, &b) != 1)) {
            return -EINVAL;
        }
        uint32_t lo = ntohl(a.s_addr), hi = dash ? ntohl(b.s_addr) : lo;
        if (hi < lo) {
            return -EINVAL;
        }
        for (uint64_t x = lo; x <= hi; x++) {
            if (L->nsrc == MAX_SRC) {
                return -E2BIG;
            }
            L->src[L->nsrc++].s_addr = htonl((uint32_t)x);
        }
    }
    return L->nsrc > 0 ? 0 : -EINVAL;
}

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "giftload: bad %s '%s' (see --help)\n", what, arg ? arg : "");
    return 2;
}

static int parse_args(struct load *L, int argc, char **argv)
{
    struct load_opts *o = &L->o;
    snprintf(o->url, sizeof(o->url), "ws://127.0.0.1:8080");
    o->viewers = 100;
    o->rooms = 1;
    o->senders = 1;
    o->rate = 10;
    snprintf(o->mix, sizeof(o->mix), "rose");
    o->count = 1;
    o->duration = 10;
    o->ramp_up = 0;
    o->connect_rate = 2000;
    o->connect_timeout = 10;
    o->drain = 2;
    o->window = 10;
    snprintf(o->secret, sizeof(o->secret), "dev-secret-not-for-production");
    o->coins = 1000000;
    snprintf(o->prefix, sizeof(o->prefix), "gl%ld", (long)getpid());
    o->sample = 0.1;
    o->seed = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();

    int ch;
    uint32_t u;
    double d;
    while ((ch = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        switch (ch) {
        case OPT_URL:
            if (copy_str(o->url, sizeof(o->url), optarg) < 0) {
                return usage_error("--url", optarg);
            }
            break;
        case OPT_VIEWERS:
            if (parse_u32(optarg, 10000000, &o->viewers) < 0) {
                return usage_error("--viewers", optarg);
            }
            break;
        case OPT_ROOMS:
            if (parse_u32(optarg, 10000000, &o->rooms) < 0 || o->rooms == 0) {
                return usage_error("--rooms", optarg);
            }
            break;
        case OPT_SENDERS:
            if (parse_u32(optarg, 10000000, &o->senders) < 0) {
                return usage_error("--senders", optarg);
            }
            break;
        case OPT_RATE:
            if (parse_double(optarg, 0, 1e7, &o->rate) < 0) {
                return usage_error("--rate", optarg);
            }
            break;
        case OPT_MIX:
            if (copy_str(o->mix, sizeof(o->mix), optarg) < 0) {
                return usage_error("--gift-mix", optarg);
            }
            break;
        case OPT_COUNT:
            if (parse_u32(optarg, 1000000, &u) < 0 || u == 0) {
                return usage_error("--count", optarg);
            }
            o->count = (long)u;
            break;
        case OPT_DURATION:
            if (parse_double(optarg, 0, 1e6, &o->duration) < 0) {
                return usage_error("--duration", optarg);
            }
            break;
        case OPT_RAMP:
            if (parse_double(optarg, 0, 1e6, &o->ramp_up) < 0) {
                return usage_error("--ramp-up", optarg);
            }
            break;
        case OPT_CONNECT_RATE:
            if (parse_double(optarg, 1, 1e7, &o->connect_rate) < 0) {
                return usage_error("--connect-rate", optarg);
            }
            break;
        case OPT_CONNECT_TIMEOUT:
            if (parse_double(optarg, 0.1, 1e6, &o->connect_timeout) < 0) {
                return usage_error("--connect-timeout", optarg);
            }
            break;
        case OPT_DRAIN:
            if (parse_double(optarg, 0, 1e6, &o->drain) < 0) {
                return usage_error("--drain", optarg);
            }
            break;
        case OPT_SRC:
            if (copy_str(o->source_addrs, sizeof(o->source_addrs), optarg) < 0) {
                return usage_error("--source-addrs", optarg);
            }
            break;
        case OPT_SECRET:
            if (copy_str(o->secret, sizeof(o->secret), optarg) < 0 || !optarg[0]) {
                return usage_error("--secret", "…");
            }
            break;
        case OPT_SETUP:
            o->setup = true;
            break;
        case OPT_COINS:
            if (parse_double(optarg, 0, 1e15, &d) < 0 || d != floor(d)) {
                return usage_error("--coins", optarg);
            }
            o->coins = (long)d;
            break;
        case OPT_PREFIX:
            if (copy_str(o->prefix, sizeof(o->prefix), optarg) < 0 ||
                !proto_valid_id(optarg, strlen(optarg)) || strlen(optarg) > 24) {
                return usage_error("--prefix (1-24 of [A-Za-z0-9_.:-])", optarg);
            }
            break;
        case OPT_SAMPLE:
            if (parse_double(optarg, 0, 1, &o->sample) < 0) {
                return usage_error("--sample", optarg);
            }
            break;
        case OPT_SEED:
            if (parse_double(optarg, 0, 1.8e19, &d) < 0) {
                return usage_error("--seed", optarg);
            }
            o->seed = (uint64_t)d;
            break;
        case OPT_FULL_SCAN:
            o->full_scan = true;
            break;
        case OPT_JSON:
            if (copy_str(o->json_path, sizeof(o->json_path), optarg) < 0) {
                return usage_error("--json", optarg);
            }
            break;
        case OPT_WINDOWS:
            if (copy_str(o->windows_path, sizeof(o->windows_path), optarg) < 0) {
                return usage_error("--windows", optarg);
            }
            break;
        case OPT_WINDOW:
            if (parse_double(optarg, 0.1, 86400, &o->window) < 0) {
                return usage_error("--window", optarg);
            }
            break;
        case OPT_QUIET:
            o->quiet = true;
            break;
        case OPT_HELP:
            fputs(usage_text, stdout);
            return -1;
        default:
            fputs(usage_text, stderr);
            return 2;
        }
    }
    if (optind < argc) {
        return usage_error("argument", argv[optind]);
    }
    if (parse_url(o) < 0) {
        return usage_error("--url (ws://HOST:PORT[/PATH])", o->url);
    }
    if (parse_mix(L) < 0) {
        return usage_error("--gift-mix", o->mix);
    }
    if (o->source_addrs[0] && parse_sources(L) < 0) {
        return usage_error("--source-addrs", o->source_addrs);
    }
    if (o->viewers + (uint64_t)o->senders == 0) {
        return usage_error("--viewers/--senders", "0");
    }
    if (o->rate > 0 && o->senders == 0) {
        return usage_error("--senders (a rate needs senders)", "0");
    }
    return 0;
}

static int resolve(struct load *L)
{
    struct sockaddr_in *sa = &L->server;
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)L->o.port);
    if (inet_pton(AF_INET, L->o.host, &sa->sin_addr) == 1) {
        return 0;
    }
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(L->o.host, NULL, &hints, &res);
    if (rc != 0 || !res) {
        fprintf(stderr, "giftload: cannot resolve %s: %s\n", L->o.host, gai_strerror(rc));
        return -EHOSTUNREACH;
    }
    sa->sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
    freeaddrinfo(res);
    return 0;
}

/* ---- set-up through the HTTP API --------------------------------------------------------- */

static int http_expect_200(struct load *L, const char *method, const char *path, const char *body)
{
    char host[160];
    snprintf(host, sizeof(host), "%s:%d", L->o.host, L->o.port);
    int status = 0;
    char *answer = NULL;
    int rc = load_http(&L->server, host, method, path, L->service_token, body, HTTP_TIMEOUT,
                       &status, &answer);
    if (rc < 0) {
        fprintf(stderr, "giftload: setup: %s %s: %s\n", method, path, strerror(-rc));
        return rc;
    }
    if (status != 200) {
        fprintf(stderr, "giftload: setup: %s %s: HTTP %d %.300s\n", method, path, status, answer);
        free(answer);
        return -EPROTO;
    }
    free(answer);
    return 0;
}

static int setup(struct load *L)
{
    struct auth_claims cl = {0};
    snprintf(cl.sub, sizeof(cl.sub), "%s-service", L->o.prefix);
    cl.role = AUTH_ROLE_SERVICE;
    cl.exp = (int64_t)time(NULL) + 3600;
    if (auth_jwt_sign(&cl, L->o.secret, strlen(L->o.secret), &L->service_token) < 0) {
        fprintf(stderr, "giftload: setup: cannot mint a service token\n");
        return -EINVAL;
    }
    char path[160], body[512];
    for (uint32_t i = 0; i < L->o.rooms; i++) {
        snprintf(path, sizeof(path), "/v1/rooms/%s", L->room_names[i]);
        snprintf(body, sizeof(body), "{\"creator\":{\"id\":\"%s-c%u\",\"name\":\"creator %u\"}}",
                 L->o.prefix, i, i);
        int rc = http_expect_200(L, "PUT", path, body);
        if (rc < 0) {
            return rc;
        }
    }
    /* Payment ids carry the run's start time too, so a reused --prefix still credits. */
    long long run = (long long)time(NULL);
    for (uint32_t j = 0; j < L->o.senders; j++) {
        snprintf(body, sizeof(body),
                 "{\"payment_id\":\"%s-%lld-pay-s%u\",\"user\":\"%s-s%u\",\"coins\":%ld}",
                 L->o.prefix, run, j, L->o.prefix, j, L->o.coins);
        int rc = http_expect_200(L, "POST", "/v1/recharge", body);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

/* ---- the run ----------------------------------------------------------------------------- */

static double secs_since(uint64_t t_ns, uint64_t now)
{
    return now > t_ns ? (double)(now - t_ns) / NS : 0.0;
}

void load_on_settled(struct load_conn *c)
{
    c->L->settled++;
}

/* The answer to one of our sends: its latency from the send time in its id. */
static void record_answer(struct load *L, const struct load_ev *ev)
{
    uint64_t now = load_now_ns(L), sent_us;
    L->t_last_answer_ns = now;
    if (load_id_time(ev->id, ev->id_len, &sent_us) == 0) {
        uint64_t now_us = (now - L->t0_ns) / 1000;
        load_hist_record(&L->answer_hist, now_us > sent_us ? now_us - sent_us : 0);
        load_hist_record(&L->win_answer_hist, now_us > sent_us ? now_us - sent_us : 0);
    }
}

void load_on_event(struct load_conn *c, const struct load_ev *ev)
{
    struct load *L = c->L;
    switch (ev->type) {
    case LOAD_EV_GIFT: {
        L->deliveries++;
        uint64_t now = load_now_ns(L);
        L->t_last_delivery_ns = now;
        if (c->sampled) {
            uint64_t sent_us;
            if (ev->id && load_id_time(ev->id, ev->id_len, &sent_us) == 0) {
                uint64_t now_us = (now - L->t0_ns) / 1000;
                load_hist_record(&L->hist, now_us > sent_us ? now_us - sent_us : 0);
                load_hist_record(&L->win_hist, now_us > sent_us ? now_us - sent_us : 0);
            } else {
                L->latency_samples_dropped++;
            }
        }
        return;
    }
    case LOAD_EV_ACK:
        if (!c->sender || !ev->id) {
            return;
        }
        record_answer(L, ev);
        L->gifts_acked++;
        if (ev->duplicate) {
            L->gifts_duplicate++;
        } else {
            L->expected += L->rooms[c->room].joined;
        }
        return;
    case LOAD_EV_ERROR:
        if (ev->id) {
            record_answer(L, ev);
            L->gifts_rejected_n++;
            load_codes_add(&L->gifts_rejected, ev->code ? ev->code : "none",
                           ev->code ? ev->code_len : 4);
        } else {
            load_codes_add(&L->errors_other, ev->code ? ev->code : "none",
                           ev->code ? ev->code_len : 4);
        }
        return;
    case LOAD_EV_ROOM_CLOSED:
        L->room_closed_events++;
        return;
    default:
        return;
    }
}

static const char *pick_gift(struct load *L)
{
    if (L->ngifts == 1) {
        return L->gifts[0].id;
    }
    /* xorshift64*, as for masks. */
    uint64_t x = L->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    L->rng = x;
    uint32_t r = (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 32) % L->gift_weight_total;
    for (uint32_t i = 0; i < L->ngifts; i++) {
        if (r < L->gifts[i].weight) {
            return L->gifts[i].id;
        }
        r -= L->gifts[i].weight;
    }
    return L->gifts[0].id;
}

/* One gift slot: the next joined sender in round-robin order sends, or the slot goes unsent. */
static void send_one(struct load *L)
{
    L->gift_slots++;
    uint32_t S = L->o.senders;
    for (uint32_t k = 0; k < S; k++) {
        uint32_t j = L->next_sender++ % S;
        struct load_conn *c = &L->conns[L->o.viewers + j];
        if (c->state != LOAD_CONN_JOINED) {
            continue;
        }
        char frame[256];
        uint64_t t_us = (uv_hrtime() - L->t0_ns) / 1000;
        int n = snprintf(
            frame, sizeof(frame),
            "{\"type\":\"gift\",\"id\":\"s%u-%llu-%llu\",\"gift\":\"%s\",\"count\":%ld}", j,
            (unsigned long long)c->gifts_sent, (unsigned long long)t_us, pick_gift(L), L->o.count);
        if (load_conn_send_text(c, frame, (size_t)n) == 0) {
            c->gifts_sent++;
            L->gifts_sent++;
            return;
        }
    }
    L->gifts_unsent++;
}

static void on_send(uv_timer_t *t)
{
    struct load *L = t->data;
    if (L->phase != LOAD_PHASE_SEND) {
        return;
    }
    double el = secs_since(L->t_send_ns, uv_hrtime());
    uint64_t due = (uint64_t)floor(L->o.rate * el) + 1;
    if (due > L->gifts_total) {
        due = L->gifts_total;
    }
    while (L->gift_slots < due) {
        send_one(L);
    }
}

static void start_drain(struct load *L)
{
    uv_timer_stop(&L->t_send);
    uv_timer_stop(&L->t_window);
    L->t_send_end_ns = uv_hrtime();
    L->t_drain_start_ns = L->t_send_end_ns;
    L->phase = LOAD_PHASE_DRAIN;
}

static uint64_t codes_total(const struct load_codes *c)
{
    uint64_t n = 0;
    for (int i = 0; i < c->used; i++) {
        n += c->n[i];
    }
    return n;
}

/* One --windows line: what happened since the last one. */
static void on_window(uv_timer_t *t)
{
    struct load *L = t->data;
    uint64_t now = uv_hrtime();
    double secs = (double)(now - L->win_t_ns) / NS;
    fprintf(L->windows,
            "{\"t_s\":%.1f,\"sent\":%llu,\"acked\":%llu,\"rejected\":%llu,"
            "\"deliveries_per_sec\":%.0f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f,"
            "\"answer_p99_ms\":%.2f,\"joined\":%u,\"closed_early\":%llu}\n",
            (double)(now - L->t_send_ns) / NS, (unsigned long long)(L->gifts_sent - L->win_sent),
            (unsigned long long)(L->gifts_acked - L->win_acked),
            (unsigned long long)(L->gifts_rejected_n - L->win_rejected),
            secs > 0 ? (double)(L->deliveries - L->win_deliveries) / secs : 0.0,
            (double)load_hist_quantile(&L->win_hist, 0.50) / 1000.0,
            (double)load_hist_quantile(&L->win_hist, 0.99) / 1000.0,
            (double)(L->win_hist.total ? L->win_hist.max : 0) / 1000.0,
            (double)load_hist_quantile(&L->win_answer_hist, 0.99) / 1000.0, L->joined,
            (unsigned long long)codes_total(&L->closed_early));
    fflush(L->windows);
    L->win_t_ns = now;
    L->win_sent = L->gifts_sent;
    L->win_acked = L->gifts_acked;
    L->win_rejected = L->gifts_rejected_n;
    L->win_deliveries = L->deliveries;
    load_hist_init(&L->win_hist);
    load_hist_init(&L->win_answer_hist);
}

static void start_send(struct load *L)
{
    L->phase = LOAD_PHASE_SEND;
    L->t_send_ns = uv_hrtime();
    if (L->windows) {
        L->win_t_ns = L->t_send_ns;
        uint64_t ms = (uint64_t)llround(L->o.window * 1000.0);
        uv_timer_start(&L->t_window, on_window, ms, ms);
    }
    L->gifts_total = (uint64_t)llround(L->o.rate * L->o.duration);
    if (L->gifts_total == 0) {
        /* No gifts: the send phase is just the duration (an idle-connections run). */
        return;
    }
    uv_timer_start(&L->t_send, on_send, 0, SEND_MS);
}

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void finish(struct load *L)
{
    L->phase = LOAD_PHASE_DONE;
    L->t_drain_end_ns = uv_hrtime();
    if (!L->t_send_ns) {
        L->t_send_ns = L->t_drain_end_ns; /* never got to send */
    }
    if (!L->t_drain_start_ns) {
        L->t_drain_start_ns = L->t_drain_end_ns;
    }
    if (!L->t_send_end_ns) {
        L->t_send_end_ns = L->t_drain_end_ns;
    }
    for (uint32_t i = 0; i < L->nconns; i++) {
        load_conn_close(&L->conns[i], NULL);
    }
    uv_close((uv_handle_t *)&L->t_send, on_handle_closed);
    uv_close((uv_handle_t *)&L->t_tick, on_handle_closed);
    uv_close((uv_handle_t *)&L->t_window, on_handle_closed);
    uv_close((uv_handle_t *)&L->t_control, on_handle_closed);
    uv_close((uv_handle_t *)&L->sigint, on_handle_closed);
    uv_close((uv_handle_t *)&L->sigterm, on_handle_closed);
}

static void on_control(uv_timer_t *t)
{
    struct load *L = t->data;
    uint64_t now = uv_hrtime();
    switch (L->phase) {
    case LOAD_PHASE_CONNECT: {
        double el = secs_since(L->t0_ns, now);
        uint64_t target = (uint64_t)floor(L->o.connect_rate * el) + 1;
        if (target > L->nconns) {
            target = L->nconns;
        }
        while (L->opened < target) {
            load_conn_open(L, &L->conns[L->opened]);
        }
        if (L->settled == L->nconns && el >= L->o.ramp_up) {
            if (L->ever_joined == 0) {
                fprintf(stderr, "\ngiftload: no connection could join; giving up\n");
                finish(L);
                return;
            }
            start_send(L);
        }
        return;
    }
    case LOAD_PHASE_SEND:
        /* The phase lasts the duration, and a late timer still sends every slot. */
        if (L->gift_slots >= L->gifts_total && secs_since(L->t_send_ns, now) >= L->o.duration) {
            start_drain(L);
        }
        return;
    case LOAD_PHASE_DRAIN: {
        bool answered = L->gifts_acked + L->gifts_rejected_n >= L->gifts_sent;
        if ((answered && L->deliveries >= L->expected) ||
            secs_since(L->t_drain_start_ns, now) >= L->o.drain) {
            finish(L);
        }
        return;
    }
    case LOAD_PHASE_DONE:
        return;
    }
}

static void fmt_ms(char *out, size_t len, const struct load_hist *h, double q)
{
    if (h->total == 0) {
        snprintf(out, len, "-");
        return;
    }
    snprintf(out, len, "%.2f ms", (double)load_hist_quantile(h, q) / 1000.0);
}

static void on_tick(uv_timer_t *t)
{
    struct load *L = t->data;
    uint64_t now = uv_hrtime();
    /* Connections that take too long to join are given up. */
    uint64_t limit = (uint64_t)(L->o.connect_timeout * NS);
    for (uint32_t i = 0; i < L->opened; i++) {
        struct load_conn *c = &L->conns[i];
        if ((c->state == LOAD_CONN_CONNECTING || c->state == LOAD_CONN_HANDSHAKE ||
             c->state == LOAD_CONN_OPEN) &&
            now - c->t_open_ns > limit) {
            load_conn_close(c, "timeout");
        }
    }
    uint64_t per_s = L->deliveries - L->deliveries_at_tick;
    L->deliveries_at_tick = L->deliveries;
    if (L->o.quiet) {
        return;
    }
    char p99[32];
    fmt_ms(p99, sizeof(p99), &L->hist, 0.99);
    static const char *names[] = {"connect", "send", "drain", "done"};
    fprintf(stderr,
            "%s%6.1fs %-7s conn %u/%u  sent %llu  acked %llu  rejected %llu  deliv/s %llu  "
            "p99 %s%s",
            L->stderr_tty ? "\r" : "", secs_since(L->t0_ns, now), names[L->phase], L->joined,
            L->nconns, (unsigned long long)L->gifts_sent, (unsigned long long)L->gifts_acked,
            (unsigned long long)L->gifts_rejected_n, (unsigned long long)per_s, p99,
            L->stderr_tty ? "\x1b[K" : "\n");
    fflush(stderr);
}

static void on_stop_signal(uv_signal_t *s, int sig)
{
    (void)sig;
    struct load *L = s->data;
    L->interrupted = true;
    if (L->phase == LOAD_PHASE_CONNECT || L->phase == LOAD_PHASE_SEND) {
        if (L->phase == LOAD_PHASE_CONNECT) {
            L->t_send_ns = uv_hrtime();
        }
        start_drain(L);
    } else if (L->phase == LOAD_PHASE_DRAIN) {
        finish(L);
    }
}

/* ---- report ------------------------------------------------------------------------------ */

static json_t *codes_json(const struct load_codes *c)
{
    json_t *o = json_object();
    for (int i = 0; i < c->used; i++) {
        json_object_set_new(o, c->name[i], json_integer((json_int_t)c->n[i]));
    }
    return o;
}

static json_t *ms_or_null(const struct load_hist *h, double q)
{
    if (h->total == 0) {
        return json_null();
    }
    return json_real((double)load_hist_quantile(h, q) / 1000.0);
}

struct figures {
    double connect_rate, send_s, deliveries_per_sec, sent_per_sec, acked_per_sec;
    double acked_per_sec_answered; /* acks over first send .. last answer */
};

static struct figures compute(const struct load *L)
{
    struct figures f = {0};
    double join_s = secs_since(L->t0_ns, L->t_last_join_ns);
    f.connect_rate = join_s > 0 ? (double)L->ever_joined / join_s : 0;
    f.send_s = secs_since(L->t_send_ns, L->t_send_end_ns);
    /* Deliveries over the time they took: from the first send to the last delivery. */
    double deliv_s = secs_since(L->t_send_ns, L->t_last_delivery_ns);
    if (deliv_s < f.send_s) {
        deliv_s = f.send_s;
    }
    f.deliveries_per_sec = deliv_s > 0 ? (double)L->deliveries / deliv_s : 0;
    f.sent_per_sec = f.send_s > 0 ? (double)L->gifts_sent / f.send_s : 0;
    f.acked_per_sec = f.send_s > 0 ? (double)L->gifts_acked / f.send_s : 0;
    double ans_s = secs_since(L->t_send_ns, L->t_last_answer_ns);
    f.acked_per_sec_answered = ans_s > f.send_s ? (double)L->gifts_acked / ans_s : f.acked_per_sec;
    return f;
}

static int write_json(const struct load *L, const struct figures *f)
{
    const struct load_opts *o = &L->o;
    json_t *sc = json_pack(
        "{s:s, s:I, s:I, s:I, s:f, s:s, s:I, s:f, s:f, s:f, s:f, s:s, s:b, "
        "s:I, s:s, s:b}",
        "url", o->url, "viewers", (json_int_t)o->viewers, "rooms", (json_int_t)o->rooms, "senders",
        (json_int_t)o->senders, "rate", o->rate, "gift_mix", o->mix, "count", (json_int_t)o->count,
        "duration", o->duration, "ramp_up", o->ramp_up, "connect_rate", o->connect_rate, "sample",
        o->sample, "prefix", o->prefix, "setup", o->setup, "coins", (json_int_t)o->coins,
        "source_addrs", o->source_addrs, "full_scan", o->full_scan);
    json_t *lat = json_object();
    json_object_set_new(lat, "p50", ms_or_null(&L->hist, 0.50));
    json_object_set_new(lat, "p90", ms_or_null(&L->hist, 0.90));
    json_object_set_new(lat, "p99", ms_or_null(&L->hist, 0.99));
    json_object_set_new(lat, "p999", ms_or_null(&L->hist, 0.999));
    json_object_set_new(lat, "max", ms_or_null(&L->hist, 1.0));
    json_object_set_new(lat, "samples", json_integer((json_int_t)L->hist.total));
    json_t *alat = json_object();
    json_object_set_new(alat, "p50", ms_or_null(&L->answer_hist, 0.50));
    json_object_set_new(alat, "p90", ms_or_null(&L->answer_hist, 0.90));
    json_object_set_new(alat, "p99", ms_or_null(&L->answer_hist, 0.99));
    json_object_set_new(alat, "p999", ms_or_null(&L->answer_hist, 0.999));
    json_object_set_new(alat, "max", ms_or_null(&L->answer_hist, 1.0));

    json_t *r = json_object();
    json_object_set_new(r, "scenario", sc);
    json_object_set_new(r, "connections", json_integer((json_int_t)L->nconns));
    json_object_set_new(r, "connect_rate", json_real(f->connect_rate));
    json_object_set_new(r, "connected", json_integer((json_int_t)L->ever_joined));
    json_object_set_new(r, "connect_failures", json_integer((json_int_t)L->connect_failures));
    json_object_set_new(r, "connect_errors", codes_json(&L->connect_errors));
    json_object_set_new(r, "gifts_sent", json_integer((json_int_t)L->gifts_sent));
    json_object_set_new(r, "gifts_unsent", json_integer((json_int_t)L->gifts_unsent));
    json_object_set_new(r, "gifts_acked", json_integer((json_int_t)L->gifts_acked));
    json_object_set_new(r, "gifts_duplicate", json_integer((json_int_t)L->gifts_duplicate));
    json_object_set_new(r, "gifts_rejected", codes_json(&L->gifts_rejected));
    json_object_set_new(r, "gifts_rejected_total", json_integer((json_int_t)L->gifts_rejected_n));
    uint64_t answered = L->gifts_acked + L->gifts_rejected_n;
    json_object_set_new(
        r, "gifts_unanswered",
        json_integer((json_int_t)(L->gifts_sent > answered ? L->gifts_sent - answered : 0)));
    json_object_set_new(r, "sent_per_sec", json_real(f->sent_per_sec));
    json_object_set_new(r, "acked_per_sec", json_real(f->acked_per_sec));
    json_object_set_new(r, "deliveries", json_integer((json_int_t)L->deliveries));
    json_object_set_new(r, "deliveries_per_sec", json_real(f->deliveries_per_sec));
    json_object_set_new(r, "expected_deliveries", json_integer((json_int_t)L->expected));
    json_object_set_new(r, "latency_ms", lat);
    json_object_set_new(r, "answer_latency_ms", alat);
    json_object_set_new(r, "acked_per_sec_to_last_answer", json_real(f->acked_per_sec_answered));
    json_object_set_new(r, "closed_early", codes_json(&L->closed_early));
    json_object_set_new(r, "errors_other", codes_json(&L->errors_other));
    json_object_set_new(r, "room_closed_events", json_integer((json_int_t)L->room_closed_events));
    json_object_set_new(r, "frames_received", json_integer((json_int_t)L->frames));
    json_object_set_new(r, "batch_frames", json_integer((json_int_t)L->batch_frames));
    json_object_set_new(r, "bytes_received", json_integer((json_int_t)L->bytes_in));
    json_object_set_new(r, "duration_s", json_real(f->send_s));
    json_object_set_new(r, "drain_s",
                        json_real(secs_since(L->t_drain_start_ns, L->t_drain_end_ns)));
    json_object_set_new(r, "interrupted", json_boolean(L->interrupted));
    int rc = json_dump_file(r, o->json_path, JSON_INDENT(2));
    json_decref(r);
    if (rc < 0) {
        fprintf(stderr, "giftload: cannot write %s\n", o->json_path);
        return -EIO;
    }
    return 0;
}

static void print_codes(const char *label, const struct load_codes *c)
{
    printf("  %-22s", label);
    if (c->used == 0) {
        printf("-");
    }
    for (int i = 0; i < c->used; i++) {
        printf("%s%s=%llu", i ? ", " : "", c->name[i], (unsigned long long)c->n[i]);
    }
    printf("\n");
}

static void print_table(const struct load *L, const struct figures *f)
{
    const struct load_opts *o = &L->o;
    char p50[32], p90[32], p99[32], p999[32], pmax[32];
    fmt_ms(p50, sizeof(p50), &L->hist, 0.50);
    fmt_ms(p90, sizeof(p90), &L->hist, 0.90);
    fmt_ms(p99, sizeof(p99), &L->hist, 0.99);
    fmt_ms(p999, sizeof(p999), &L->hist, 0.999);
    fmt_ms(pmax, sizeof(pmax), &L->hist, 1.0);
    printf("giftload %s  viewers %u  rooms %u  senders %u  rate %g/s  duration %gs  mix %s%s\n",
           o->url, o->viewers, o->rooms, o->senders, o->rate, o->duration, o->mix,
           L->interrupted ? "  (interrupted)" : "");
    printf("  %-22s%u of %u (%.0f/s)\n", "connected", L->ever_joined, L->nconns, f->connect_rate);
    printf("  %-22s%llu\n", "connect failures", (unsigned long long)L->connect_failures);
    if (L->connect_failures) {
        print_codes("  by reason", &L->connect_errors);
    }
    printf("  %-22s%llu in %.2f s (%.1f/s)%s\n", "gifts sent", (unsigned long long)L->gifts_sent,
           f->send_s, f->sent_per_sec, L->gifts_unsent ? " — some slots had no sender" : "");
    printf("  %-22s%llu (%.1f/s), duplicate %llu\n", "gifts acked",
           (unsigned long long)L->gifts_acked, f->acked_per_sec,
           (unsigned long long)L->gifts_duplicate);
    uint64_t answered = L->gifts_acked + L->gifts_rejected_n;
    printf("  %-22s%llu, unanswered %llu\n", "gifts rejected",
           (unsigned long long)L->gifts_rejected_n,
           (unsigned long long)(L->gifts_sent > answered ? L->gifts_sent - answered : 0));
    if (L->gifts_rejected_n) {
        print_codes("  by code", &L->gifts_rejected);
    }
    printf("  %-22s%llu of %llu expected (%.1f%%)\n", "deliveries",
           (unsigned long long)L->deliveries, (unsigned long long)L->expected,
           L->expected ? 100.0 * (double)L->deliveries / (double)L->expected : 100.0);
    printf("  %-22s%.0f\n", "deliveries/s", f->deliveries_per_sec);
    printf("  %-22s%llu frames, %llu batch frames, %.1f MB\n", "received",
           (unsigned long long)L->frames, (unsigned long long)L->batch_frames,
           (double)L->bytes_in / 1e6);
    printf("  %-22sp50 %s  p90 %s  p99 %s  p999 %s  max %s  (%llu samples)\n", "latency", p50, p90,
           p99, p999, pmax, (unsigned long long)L->hist.total);
    if (L->answer_hist.total) {
        char a50[32], a99[32], amax[32];
        fmt_ms(a50, sizeof(a50), &L->answer_hist, 0.50);
        fmt_ms(a99, sizeof(a99), &L->answer_hist, 0.99);
        fmt_ms(amax, sizeof(amax), &L->answer_hist, 1.0);
        printf("  %-22sp50 %s  p99 %s  max %s; acked %.1f/s up to the last answer\n",
               "answer latency", a50, a99, amax, f->acked_per_sec_answered);
    }
    print_codes("closed early", &L->closed_early);
    if (L->errors_other.used) {
        print_codes("other errors", &L->errors_other);
    }
}

/* ---- main -------------------------------------------------------------------------------- */

static int prepare(struct load *L)
{
    L->nconns = L->o.viewers + L->o.senders;
    L->conns = calloc(L->nconns, sizeof(*L->conns));
    L->rooms = calloc(L->o.rooms, sizeof(*L->rooms));
    L->room_names = calloc(L->o.rooms, sizeof(*L->room_names));
    L->readbuf_len = READBUF;
    L->readbuf = malloc(READBUF);
    if (!L->conns || !L->rooms || !L->room_names || !L->readbuf) {
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < L->o.rooms; i++) {
        snprintf(L->room_names[i], sizeof(L->room_names[i]), "%s-r%u", L->o.prefix, i);
    }
    /* Sample k of the viewers (or of the senders when there are none), evenly spaced. */
    uint32_t pool = L->o.viewers ? L->o.viewers : L->o.senders;
    uint64_t k = (uint64_t)llround(L->o.sample * pool);
    if (k < 1) {
        k = 1;
    }
    for (uint32_t i = 0; i < L->nconns; i++) {
        struct load_conn *c = &L->conns[i];
        c->L = L;
        c->idx = i;
        c->sender = i >= L->o.viewers;
        c->room = (c->sender ? i - L->o.viewers : i) % L->o.rooms;
        if (i < pool) {
            uint64_t x = i;
            c->sampled = (x + 1) * k / pool != x * k / pool;
        }
    }
    /* Every connection needs a descriptor: take the hard limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur != RLIM_INFINITY && (uint64_t)L->nconns + 32 > rl.rlim_cur) {
            fprintf(stderr, "giftload: warning: %u connections but only %llu open files allowed\n",
                    L->nconns, (unsigned long long)rl.rlim_cur);
        }
    }
    return 0;
}

static void cleanup(struct load *L)
{
    free(L->conns);
    free(L->rooms);
    free(L->room_names);
    free(L->readbuf);
    free(L->src);
    free(L->service_token);
    if (L->windows) {
        fclose(L->windows);
    }
}

int main(int argc, char **argv)
{
    struct load *L = calloc(1, sizeof(*L));
    if (!L) {
        return 1;
    }
    int rc = parse_args(L, argc, argv);
    if (rc != 0) {
        cleanup(L);
        free(L);
        return rc < 0 ? 0 : rc; /* -1: --help */
    }
    /* libuv writes with write(2): a peer that closed must not kill the run. */
    signal(SIGPIPE, SIG_IGN);
    load_hist_init(&L->hist);
    load_hist_init(&L->answer_hist);
    load_hist_init(&L->win_hist);
    load_hist_init(&L->win_answer_hist);
    L->rng = L->o.seed * 0x9E3779B97F4A7C15ull + 1;
    L->stderr_tty = isatty(STDERR_FILENO) == 1;
    int status = 1;
    if (L->o.windows_path[0]) {
        L->windows = fopen(L->o.windows_path, "a");
        if (!L->windows) {
            fprintf(stderr, "giftload: cannot open %s\n", L->o.windows_path);
            goto out;
        }
    }
    if (resolve(L) < 0 || prepare(L) < 0) {
        goto out;
    }
    if (L->o.setup && setup(L) < 0) {
        goto out;
    }

    uv_loop_t loop;
    if (uv_loop_init(&loop) < 0) {
        goto out;
    }
    L->loop = &loop;
    uv_timer_init(&loop, &L->t_send);
    uv_timer_init(&loop, &L->t_tick);
    uv_timer_init(&loop, &L->t_control);
    uv_timer_init(&loop, &L->t_window);
    L->t_window.data = L;
    uv_signal_init(&loop, &L->sigint);
    L->t_send.data = L->t_tick.data = L->t_control.data = L;
    L->sigint.data = L;
    uv_signal_init(&loop, &L->sigterm);
    L->sigterm.data = L;
    uv_signal_start(&L->sigint, on_stop_signal, SIGINT);
    uv_signal_start(&L->sigterm, on_stop_signal, SIGTERM);
    L->t0_ns = uv_hrtime();
    L->phase = LOAD_PHASE_CONNECT;
    uv_timer_start(&L->t_control, on_control, 0, CONTROL_MS);
    uv_timer_start(&L->t_tick, on_tick, TICK_MS, TICK_MS);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (!L->o.quiet && L->stderr_tty) {
        fputc('\n', stderr);
    }

    struct figures f = compute(L);
    if (!L->o.quiet) {
        print_table(L, &f);
    }
    if (L->o.json_path[0]) {
        write_json(L, &f);
    }
    status = L->ever_joined > 0 ? 0 : 1;
out:
    cleanup(L);
    free(L);
    return status;
}
