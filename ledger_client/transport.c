/* transport: hiredis async on a libuv loop with deadlines, a bounded pipeline and reconnects,
 * to one Redis or to the masters of a Redis Cluster (one connection per node, requests routed
 * by the slot of their first key). */
#include "ledger_client/ledger_client.h"
#include "ledger_client/ledger_client_internal.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>

#include <hiredis/async.h>

#define LEDGER_X_DECL(name, stem) extern const unsigned char ledger_script_##stem[];
LEDGER_SCRIPTS(LEDGER_X_DECL)
#undef LEDGER_X_DECL

static const char *const script_src[LEDGER_SCRIPT__COUNT] = {
#define LEDGER_X_SRC(name, stem) (const char *)ledger_script_##stem,
    LEDGER_SCRIPTS(LEDGER_X_SRC)
#undef LEDGER_X_SRC
};

const double ledger_latency_bounds_s[12] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                            0.01,   0.025,   0.05,   0.1,   0.25,   1.0};

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000
/* A request follows at most this many MOVED / ASK answers (TRYAGAIN / CLUSTERDOWN: until its
 * deadline). */
#define REDIRECTS_MAX 8
#define CLUSTER_SLOTS 16384

struct ledger_req {
    struct ledger *l;
    ledger_reply_cb *cb; /* NULL once answered or cancelled */
    void *ud;
    int64_t start_ms; /* submitted: its deadline is start_ms + timeout_ms */
    int64_t sent_ms;  /* written to the connection */
    uint64_t start_ns;
    int script; /* -1: plain command */
    bool resent;
    bool sent;
    int slot;         /* cluster: the slot of its first key, -1 any node */
    int conn;         /* the connection it is in flight on, -1 none */
    int ask;          /* cluster: send ASKING, then it, on this connection (an ASK), -1 none */
    int asked;        /* cluster: the connection it was last sent to with ASKING, -1 none */
    int redirects;    /* cluster: MOVED and ASK answers followed so far */
    int retries;      /* cluster: TRYAGAIN and CLUSTERDOWN answers so far */
    int64_t retry_ms; /* TRYAGAIN / CLUSTERDOWN: not before this time */
    int argc;
    char **argv;
    size_t *argvlen;
    struct ledger_req *prev, *next; /* in an in-flight, the wait or the retry list */
};

struct req_list {
    struct ledger_req *head, *tail;
    long n;
};

/* One Redis connection for commands and scripts: the only one on one Redis, one per node of a
 * cluster. Never freed before the ledger, so a reply callback never finds it gone. */
struct lconn {
    struct ledger *l;
    int index;
    char host[256]; /* or the Unix socket's path */
    int port;
    bool is_unix;
    redisAsyncContext *ac; /* NULL while down */
    bool up;               /* connected, scripts loaded, and not going away */
    bool wanted;           /* (re)connect it: the Redis, a seed, or a node that owns slots */
    int64_t connect_ms;    /* when the current attempt began */
    long scripts_pending;  /* SCRIPT LOAD replies awaited after connect */
    long backoff_ms;
    uv_timer_t reconnect;
    struct req_list inflight; /* oldest first */
    struct lshard_sub *shard; /* sharded pub/sub: this node's subscriber connection */
    long shard_backoff_ms;
    uv_timer_t shard_timer; /* its reconnect */
    int open_handles;       /* timers not yet closed (ledger_free) */
};

/* The connection's timers are closed: the last one frees it. */
static void conn_closed(uv_handle_t *h)
{
    struct lconn *c = h->data;
    if (--c->open_handles == 0) {
        free(c);
    }
}

struct ledger {
    uv_loop_t *loop;
    struct ledger_opts opts;
    char *url;
    char password[256];
    int db;

    struct lconn **conns; /* conns[0] is the Redis, or the first seed of a cluster */
    int nconns;
    bool cluster;
    int16_t *owner;       /* cluster: the connection serving each slot, -1 unknown */
    bool map_known;       /* cluster: a CLUSTER SLOTS answer was applied */
    bool map_asked;       /* cluster: a CLUSTER SLOTS is in flight */
    int64_t map_asked_ms; /* since when */
    int64_t map_due_ms;   /* cluster: refresh the map at this time, 0 none due */
    bool ready;           /* LEDGER_UP was reported last (not LEDGER_DOWN) */
    bool ever_ready;      /* it was, once: until then requests wait rather than fail fast */
    bool sharded;         /* cluster: room channels are sharded (SSUBSCRIBE per node) */
    struct lchan **chans; /* sharded: the channels asked for, CHAN_BUCKETS chains */
    bool resub_pending;   /* sharded: a channel lost its subscription; LEDGER_SUB_UP once back */
    long nchans;          /* sharded: channels asked for */
    long chans_ok;        /* sharded: those subscribed and confirmed at their slot's owner */

    redisAsyncContext *sub;
    bool sub_up;
    long sub_backoff_ms;
    bool closing;

    char sha[LEDGER_SCRIPT__COUNT][41];
    long ninflight;          /* sent and not answered, over every connection */
    struct req_list waiting; /* not sent yet: over max_inflight, or no connection up for it */
    struct req_list retry;   /* cluster: TRYAGAIN / CLUSTERDOWN, until their retry_ms */

    uv_timer_t tick;          /* deadlines, retries, map refreshes */
    uv_timer_t sub_reconnect; /* pub/sub connection */
    struct ledger_stats stats;
    struct lgift_queue *gifts; /* send.c */
};

const struct ledger_opts *lgift_opts(const struct ledger *l)
{
    return &l->opts;
}

struct lgift_queue *lgift_queue_of(struct ledger *l)
{
    return l->gifts;
}

int64_t ledger_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

unsigned ledger_partition(const char *sub, long partitions)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)sub; *p; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    return (unsigned)(h % (uint32_t)(partitions > 0 ? partitions : 1));
}

int ledger_url_parse(const char *url, char *out_host, size_t hostlen, int *out_port, int *out_db,
                     char *out_password, size_t passlen, bool *out_unix)
{
    *out_port = 6379;
    *out_db = 0;
    if (passlen) {
        out_password[0] = '\0';
    }
    if (strncmp(url, "unix://", 7) == 0) {
        const char *path = url + 7;
        const char *q = strchr(path, '?');
        size_t n = q ? (size_t)(q - path) : strlen(path);
        if (n == 0 || n >= hostlen || path[0] != '/') {
            return -EINVAL;
        }
        memcpy(out_host, path, n);
        out_host[n] = '\0';
        if (q) {
            if (strncmp(q, "?db=", 4) != 0) {
                return -EINVAL;
            }
            char *end;
            long db = strtol(q + 4, &end, 10);
            if (*end || db < 0 || db > 15) {
                return -EINVAL;
            }
            *out_db = (int)db;
        }
        *out_unix = true;
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0) {
        return -EINVAL;
    }
    const char *p = url + 8;
    const char *at = strchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        size_t n = (size_t)(at - pw);
        if (n >= passlen) {
            return -EINVAL;
        }
        memcpy(out_password, pw, n);
        out_password[n] = '\0';
        p = at + 1;
    }
    const char *end = p + strcspn(p, ":/");
    size_t hn = (size_t)(end - p);
    if (hn == 0 || hn >= hostlen) {
        return -EINVAL;
    }
    memcpy(out_host, p, hn);
    out_host[hn] = '\0';
    p = end;
    if (*p == ':') {
        char *e;
        long port = strtol(p + 1, &e, 10);
        if (e == p + 1 || port < 1 || port > 65535) {
            return -EINVAL;
        }
        *out_port = (int)port;
        p = e;
    }
    if (*p == '/') {
        p++;
        if (*p) {
            char *e;
            long db = strtol(p, &e, 10);
            if (*e || db < 0 || db > 15) {
                return -EINVAL;
            }
            *out_db = (int)db;
        }
    } else if (*p) {
        return -EINVAL;
    }
    *out_unix = false;
    return 0;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void list_push(struct req_list *L, struct ledger_req *r)
{
    r->next = NULL;
    r->prev = L->tail;
    if (L->tail) {
        L->tail->next = r;
    } else {
        L->head = r;
    }
    L->tail = r;
    L->n++;
}

static void list_push_front(struct req_list *L, struct ledger_req *r)
{
    r->prev = NULL;
    r->next = L->head;
    if (L->head) {
        L->head->prev = r;
    } else {
        L->tail = r;
    }
    L->head = r;
    L->n++;
}

static void list_remove(struct req_list *L, struct ledger_req *r)
{
    if (r->prev) {
        r->prev->next = r->next;
    } else {
        L->head = r->next;
    }
    if (r->next) {
        r->next->prev = r->prev;
    } else {
        L->tail = r->prev;
    }
    r->prev = r->next = NULL;
    L->n--;
}

static void req_free(struct ledger_req *r)
{
    free(r);
}

/* Calls the user callback once, whatever comes later. */
static void req_answer(struct ledger_req *r, int status, const redisReply *reply)
{
    ledger_reply_cb *cb = r->cb;
    if (!cb) {
        return;
    }
    r->cb = NULL;
    if (status < 0) {
        r->l->stats.errors++;
        if (status == -ETIMEDOUT) {
            r->l->stats.timeouts++;
        }
    }
    cb(r->ud, status, reply);
}

static void fail_list(struct req_list *L, int status)
{
    while (L->head) {
        struct ledger_req *r = L->head;
        list_remove(L, r);
        req_answer(r, status, NULL);
        req_free(r);
    }
}

static void observe_latency(struct ledger *l, uint64_t start_ns)
{
    double s = (double)(mono_ns() - start_ns) / 1e9;
    for (size_t i = 0; i < 12; i++) {
        if (s <= ledger_latency_bounds_s[i]) {
            l->stats.latency_le[i]++;
        }
    }
    l->stats.latency_count++;
    l->stats.latency_sum_s += s;
}

static void cmd_reply(redisAsyncContext *ac, void *reply, void *privdata);
static void conn_connect(struct lconn *c);
static void map_refresh(struct ledger *l);
static void map_soon(struct ledger *l);
static void chans_reconcile(struct ledger *l);

/* ---- state ---- */

static void set_state(struct ledger *l, enum ledger_state s)
{
    if (l->opts.on_state && !l->closing) {
        l->opts.on_state(l->opts.ud, s);
    }
}

/* Ready: the Redis is up; for a cluster, the slot map is known and a node that serves slots
 * is up (requests for a node that is down wait for it, or for a new map, until their
 * deadline). LEDGER_UP and LEDGER_DOWN report the changes. */
static void state_changed(struct ledger *l)
{
    bool ready = false;
    if (!l->cluster) {
        ready = l->conns[0]->up;
    } else if (l->map_known) {
        for (int i = 0; i < l->nconns && !ready; i++) {
            ready = l->conns[i]->up && l->conns[i]->wanted;
        }
    }
    if (ready != l->ready) {
        l->ready = ready;
        l->ever_ready = l->ever_ready || ready;
        set_state(l, ready ? LEDGER_UP : LEDGER_DOWN);
    }
}

/* ---- sending ---- */

/* The connection a waiting request goes to now; NULL when none is up for it. */
static struct lconn *route(struct ledger *l, const struct ledger_req *r)
{
    struct lconn *c = NULL;
    if (r->ask >= 0) {
        c = l->conns[r->ask];
    } else if (!l->cluster) {
        c = l->conns[0];
    } else if (r->slot >= 0) {
        int o = l->owner[r->slot];
        c = o >= 0 ? l->conns[o] : NULL;
        if (o < 0 && l->map_known) {
            map_soon(l); /* a slot nobody served at the last map: ask again */
        }
    } else {
        for (int i = 0; i < l->nconns && !c; i++) {
            c = l->conns[i]->up && l->conns[i]->wanted ? l->conns[i] : NULL;
        }
    }
    return c && c->up ? c : NULL;
}

static int send_on(struct lconn *c, struct ledger_req *r)
{
    if (r->ask >= 0 && redisAsyncCommand(c->ac, NULL, NULL, "ASKING") != REDIS_OK) {
        return -ECONNRESET;
    }
    if (redisAsyncCommandArgv(c->ac, cmd_reply, r, r->argc, (const char **)r->argv, r->argvlen) !=
        REDIS_OK) {
        return -ECONNRESET;
    }
    r->asked = r->ask; /* a TRYAGAIN from the target is tried there again */
    r->ask = -1;
    r->sent = true;
    r->sent_ms = ledger_now_ms();
    r->conn = c->index;
    list_push(&c->inflight, r);
    c->l->ninflight++;
    return 0;
}

/* Sends waiting requests whose connection is up, while the pipeline has room. */
static void pump(struct ledger *l)
{
    struct ledger_req *r = l->waiting.head;
    while (r && l->ninflight < l->opts.max_inflight && !l->closing) {
        struct ledger_req *next = r->next;
        struct lconn *c = route(l, r);
        if (c) {
            list_remove(&l->waiting, r);
            if (send_on(c, r) < 0) {
                req_answer(r, -ECONNRESET, NULL);
                req_free(r);
            }
        }
        r = next;
    }
}

/* ---- cluster: slot map and redirections ---- */

/* The connection to host:port, made (and connecting) when it is new. NULL on OOM. */
static struct lconn *conn_for(struct ledger *l, const char *host, int port);

/* A full refresh of the slot map soon: MOVED answers and lost nodes within 100 ms share one. */
static void map_soon(struct ledger *l)
{
    if (!l->map_due_ms) {
        l->map_due_ms = ledger_now_ms() + 100;
    }
}

static void slots_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct lconn *c = privdata;
    struct ledger *l = c->l;
    redisReply *rep = reply;
    l->map_asked = false;
    if (l->closing) {
        return;
    }
    struct lslot_map m;
    if (!rep || rep->type != REDIS_REPLY_ARRAY ||
        lslot_map_from_reply(rep, c->host, c->port, &m) < 0) {
        map_soon(l);
        return;
    }
    int *index = calloc(m.nnodes ? m.nnodes : 1, sizeof(*index));
    for (size_t i = 0; index && i < m.nnodes; i++) {
        struct lconn *n = conn_for(l, m.nodes[i].host, m.nodes[i].port);
        index[i] = n ? n->index : -1;
    }
    if (index) {
        for (int i = 0; i < l->nconns; i++) {
            l->conns[i]->wanted = i == 0; /* the first seed stays a way in */
        }
        for (int s = 0; s < CLUSTER_SLOTS; s++) {
            int o = m.owner[s] >= 0 ? index[m.owner[s]] : -1;
            l->owner[s] = (int16_t)o;
            if (o >= 0 && !l->conns[o]->wanted) {
                l->conns[o]->wanted = true;
                conn_connect(l->conns[o]);
            }
        }
        l->map_known = true;
    } else {
        map_soon(l);
    }
    free(index);
    lslot_map_free(&m);
    state_changed(l);
    chans_reconcile(l);
    pump(l);
}

/* Asks an up node for CLUSTER SLOTS (one request at a time). */
static void map_refresh(struct ledger *l)
{
    if (l->map_asked || l->closing) {
        return;
    }
    for (int i = 0; i < l->nconns; i++) {
        struct lconn *c = l->conns[i];
        if (c->up && redisAsyncCommand(c->ac, slots_reply, c, "CLUSTER SLOTS") == REDIS_OK) {
            l->map_asked = true;
            l->map_asked_ms = ledger_now_ms();
            l->map_due_ms = 0;
            return;
        }
    }
}

/* A cluster's answer that the command did not run here: MOVED (the slot's owner changed: patch
 * the map, send it there, refresh the whole map soon), ASK (the slot is migrating: ASKING and
 * the command at the target, map untouched), TRYAGAIN (a multi-key command during a
 * migration) and CLUSTERDOWN (back off and try again). Only these are resent: they come
 * before the command runs. Returns true when r was queued again. */
static bool follow(struct ledger *l, struct lconn *c, struct ledger_req *r, const redisReply *rep)
{
    int64_t now = ledger_now_ms();
    if (!r->cb || now >= r->start_ms + l->opts.timeout_ms) {
        return false;
    }
    bool ask = false;
    unsigned slot = 0;
    char host[256];
    int port = 0;
    if (r->redirects < REDIRECTS_MAX &&
        lslot_parse_redirect(rep->str, rep->len, &ask, &slot, host, sizeof(host), &port) == 0 &&
        slot < CLUSTER_SLOTS) {
        if (strcmp(host, "?") == 0) {
            /* No usable endpoint announced: learn the map again and retry then. */
            map_soon(l);
            r->retries++;
            r->retry_ms = now + 50;
            list_push(&l->retry, r);
            return true;
        }
        struct lconn *t = conn_for(l, host[0] ? host : c->host, port);
        if (!t) {
            return false;
        }
        if (!t->wanted) {
            t->wanted = true;
            conn_connect(t);
        }
        r->redirects++;
        if (ask) {
            r->ask = t->index;
        } else {
            l->owner[slot] = (int16_t)t->index;
            map_soon(l);
        }
        l->stats.redirects++;
        list_push_front(&l->waiting, r);
        pump(l);
        return true;
    }
    bool again = strncmp(rep->str, "TRYAGAIN", 8) == 0;
    bool down = strncmp(rep->str, "CLUSTERDOWN", 11) == 0;
    if (again || down) {
        /* Until the deadline: a migration or a failover takes as long as it takes. A TRYAGAIN
         * from an ASK's target (keys of the slot on both sides) goes back to the target. */
        if (again && r->asked >= 0) {
            r->ask = r->asked;
        }
        r->retries++;
        r->retry_ms = now + (r->retries < 10 ? 10L * r->retries : 100);
        if (down) {
            map_soon(l);
        }
        l->stats.redirects++;
        list_push(&l->retry, r);
        return true;
    }
    return false;
}

static void cmd_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct ledger_req *r = privdata;
    struct ledger *l = r->l;
    struct lconn *c = l->conns[r->conn];
    redisReply *rep = reply;
    list_remove(&c->inflight, r);
    l->ninflight--;
    r->conn = -1;
    if (!rep) {
        /* The connection is going away (hiredis answers what was pending, then calls
         * conn_disconnected): nothing may be sent on it from here on, callbacks included. */
        c->up = false;
    }
    if (rep && rep->type == REDIS_REPLY_ERROR && !l->closing) {
        if (r->cb && r->script >= 0 && !r->resent && strncmp(rep->str, "NOSCRIPT", 8) == 0 &&
            c->up) {
            /* The script cache was flushed (restart, SCRIPT FLUSH, a failover: Redis 7.0 does
             * not replicate SCRIPT LOAD): EVAL sends the body and caches it again. The script
             * did not run, so resending is safe. */
            r->resent = true;
            r->argv[0] = "EVAL";
            r->argvlen[0] = 4;
            r->argv[1] = (char *)script_src[r->script];
            r->argvlen[1] = strlen(script_src[r->script]);
            if (send_on(c, r) == 0) {
                return;
            }
        } else if (l->cluster && follow(l, c, r, rep)) {
            return;
        }
    }
    if (rep) {
        observe_latency(l, r->start_ns);
        req_answer(r, 0, rep);
    } else {
        req_answer(r, -ECONNRESET, NULL);
    }
    req_free(r);
    if (!l->closing && rep) {
        pump(l);
    }
}

/* ---- connections ---- */

static void reconnect_fired(uv_timer_t *t)
{
    conn_connect(t->data);
}

static void conn_schedule(struct lconn *c)
{
    if (c->l->closing || !c->wanted) {
        return;
    }
    uv_timer_start(&c->reconnect, reconnect_fired, (uint64_t)c->backoff_ms, 0);
    c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
}

static void script_loaded(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct lconn *c = privdata;
    redisReply *rep = reply;
    if (!rep || c->ac != ac) {
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        /* LOADING, or a script error: drop the connection and try again later. */
        redisAsyncDisconnect(ac);
        return;
    }
    if (--c->scripts_pending == 0) {
        struct ledger *l = c->l;
        c->up = true;
        c->backoff_ms = BACKOFF_MIN_MS;
        if (l->cluster && (!l->map_known || l->map_due_ms)) {
            map_refresh(l);
        }
        state_changed(l);
        pump(l);
    }
}

/* AUTH, SELECT, then every script loaded on this node (Redis 7.0 does not replicate SCRIPT
 * LOAD, so each node of a cluster gets its own). */
static void send_prelude(struct ledger *l, redisAsyncContext *ac, bool scripts, void *privdata)
{
    if (l->password[0]) {
        redisAsyncCommand(ac, NULL, NULL, "AUTH %s", l->password);
    }
    if (l->db && !l->cluster) {
        redisAsyncCommand(ac, NULL, NULL, "SELECT %d", l->db);
    }
    if (!scripts) {
        return;
    }
    struct lconn *c = privdata;
    c->scripts_pending = LEDGER_SCRIPT__COUNT;
    for (int i = 0; i < LEDGER_SCRIPT__COUNT; i++) {
        redisAsyncCommand(ac, script_loaded, c, "SCRIPT LOAD %s", script_src[i]);
    }
}

static void conn_connected(const redisAsyncContext *ac, int status)
{
    struct lconn *c = ac->data;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        c->ac = NULL;
        conn_schedule(c);
        return;
    }
    send_prelude(c->l, c->ac, true, c);
}

/* A connection is lost: hiredis already answered each of its requests in flight (a NULL
 * reply: outcome unknown, nothing is resent). On one Redis that was up once, the waiting
 * requests fail at once (before that, they wait for their deadline); on a cluster they wait
 * for the node, or for a new map after a failover, until their deadline. */
static void conn_lost(struct lconn *c)
{
    struct ledger *l = c->l;
    c->ac = NULL;
    c->up = false;
    if (l->cluster) {
        map_soon(l);
    } else if (l->ever_ready) {
        fail_list(&l->waiting, -ECONNRESET);
    }
    state_changed(l);
    conn_schedule(c);
}

static void conn_disconnected(const redisAsyncContext *ac, int status)
{
    (void)status;
    conn_lost(ac->data);
}

static void conn_connect(struct lconn *c)
{
    struct ledger *l = c->l;
    if (l->closing || c->ac || !c->wanted) {
        return;
    }
    redisAsyncContext *ac =
        c->is_unix ? redisAsyncConnectUnix(c->host) : redisAsyncConnect(c->host, c->port);
    if (ac && (ac->err || lglue_attach(ac, l->loop) < 0)) {
        redisAsyncFree(ac);
        ac = NULL;
    }
    if (!ac) {
        conn_schedule(c);
        return;
    }
    ac->data = c;
    c->ac = ac;
    l->stats.reconnects++;
    c->connect_ms = ledger_now_ms();
    redisAsyncSetConnectCallback(ac, conn_connected);
    redisAsyncSetDisconnectCallback(ac, conn_disconnected);
}

static struct lconn *conn_new(struct ledger *l, const char *host, int port, bool is_unix)
{
    if (strlen(host) >= sizeof(((struct lconn *)0)->host) || l->nconns >= 1024) {
        return NULL;
    }
    struct lconn **grown = realloc(l->conns, (size_t)(l->nconns + 1) * sizeof(*grown));
    if (!grown) {
        return NULL;
    }
    l->conns = grown;
    struct lconn *c = calloc(1, sizeof(*c));
    if (!c) {
        return NULL;
    }
    c->l = l;
    c->index = l->nconns;
    snprintf(c->host, sizeof(c->host), "%s", host);
    c->port = port;
    c->is_unix = is_unix;
    c->backoff_ms = c->shard_backoff_ms = BACKOFF_MIN_MS;
    uv_timer_init(l->loop, &c->reconnect);
    uv_timer_init(l->loop, &c->shard_timer);
    c->reconnect.data = c->shard_timer.data = c;
    l->conns[l->nconns++] = c;
    return c;
}

static struct lconn *conn_for(struct ledger *l, const char *host, int port)
{
    for (int i = 0; i < l->nconns; i++) {
        if (l->conns[i]->port == port && strcmp(l->conns[i]->host, host) == 0) {
            return l->conns[i];
        }
    }
    return conn_new(l, host, port, false);
}

/* ---- pub/sub connection ---- */

static void schedule_sub_reconnect(struct ledger *l);

/* A pub/sub message (channel and msg borrowed) to the layer above. gift.lua publishes a room's
 * events of one batch as one message, one event per line (JSON text holds no raw newline):
 * each is delivered on its own. A first line "@epoch" gives the epoch of the room's seq the
 * events carry (lib/room.lua). */
static void deliver(struct ledger *l, const char *channel, size_t clen, const char *msg,
                    size_t mlen)
{
    /* A room's channel: its room's name is what the layer above knows. */
    char room[65];
    bool is_room = l->opts.on_room_message && lkey_channel_room(channel, clen, room) == 0;
    const char *m = msg, *end = msg + mlen;
    long long epoch = 0;
    if (m < end && *m == '@') {
        const char *nl = memchr(m, '\n', (size_t)(end - m));
        epoch = strtoll(m + 1, NULL, 10);
        m = nl ? nl + 1 : end;
    }
    while (m < end && !l->closing) {
        const char *nl = memchr(m, '\n', (size_t)(end - m));
        const char *stop = nl ? nl : end;
        if (l->opts.on_message) {
            l->opts.on_message(l->opts.ud, channel, clen, m, (size_t)(stop - m));
        }
        if (is_room) {
            l->opts.on_room_message(l->opts.ud, room, epoch, m, (size_t)(stop - m));
        }
        m = stop + 1;
    }
}

static void room_subscribed(struct ledger *l, const char *channel, size_t clen)
{
    char room[65];
    if (l->opts.on_room_subscribed && lkey_channel_room(channel, clen, room) == 0) {
        l->opts.on_room_subscribed(l->opts.ud, room);
    }
}

static void sub_message(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct ledger *l = privdata;
    redisReply *r = reply;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 || l->closing ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING) {
        return;
    }
    const redisReply *kind = r->element[0], *ch = r->element[1];
    if (kind->len == 7 && memcmp(kind->str, "message", 7) == 0) {
        deliver(l, ch->str, ch->len, r->element[2]->str, r->element[2]->len);
    } else if (kind->len == 9 && memcmp(kind->str, "subscribe", 9) == 0) {
        /* hiredis 0.14.1 keeps a channel's callback when a SUBSCRIBE of it was sent before the
         * answer to an UNSUBSCRIBE came (its pending_subs): that SUBSCRIBE's answer comes here. */
        room_subscribed(l, ch->str, ch->len);
    }
}

/* ---- sharded pub/sub (a cluster) ----
 * A room's channel shares the room's hash tag, so its SPUBLISH stays on the room's shard: each
 * node of the cluster gets a subscriber connection of its own (shard_sub.c: hiredis 0.14's
 * async API cannot SSUBSCRIBE), and a channel is subscribed at the master that serves its
 * slot. A registry keeps every channel the layer above asked for and where it is subscribed;
 * when a slot moves (the server drops the channel, or the map says so), a node fails over or a
 * subscriber connection drops, the channel is subscribed again at the slot's owner and the
 * layer above hears LEDGER_SUB_UP, on which each room fills its gap from its history. */

#define CHAN_BUCKETS 4096

struct lchan {
    struct lchan *next; /* hash chain */
    int conn;           /* the node it is subscribed at (SSUBSCRIBE sent), -1 none */
    bool confirmed;     /* that node confirmed the SSUBSCRIBE: its messages arrive */
    bool wanted;        /* the layer above asked for it (not unsubscribed since) */
    int unsubs;         /* SUNSUBSCRIBEs sent to unsub_conn whose answers are still due */
    int unsub_conn;
    size_t len;
    char name[]; /* NUL-terminated */
};

static size_t chan_hash(const char *s, size_t len)
{
    size_t h = 5381;
    for (size_t i = 0; i < len; i++) {
        h = h * 33 + (unsigned char)s[i];
    }
    return h & (CHAN_BUCKETS - 1);
}

static struct lchan **chan_slot(struct ledger *l, const char *name, size_t len)
{
    struct lchan **pp = &l->chans[chan_hash(name, len)];
    while (*pp && ((*pp)->len != len || memcmp((*pp)->name, name, len) != 0)) {
        pp = &(*pp)->next;
    }
    return pp;
}

/* Removes ch (not wanted, no answer due) from the registry. */
static void chan_delete(struct ledger *l, struct lchan *ch)
{
    struct lchan **pp = chan_slot(l, ch->name, ch->len);
    if (*pp == ch) {
        *pp = ch->next;
        free(ch);
    }
}

/* A SUNSUBSCRIBE of ch sent to node conn: its answer is not a loss. */
static void chan_unsub_sent(struct lchan *ch, int conn)
{
    if (ch->unsub_conn != conn) {
        ch->unsubs = 0;
    }
    ch->unsub_conn = conn;
    ch->unsubs++;
}

/* Sets where ch is subscribed and whether confirmed, keeping the count of settled channels. */
static void chan_set(struct ledger *l, struct lchan *ch, int conn, bool confirmed)
{
    l->chans_ok -= ch->conn >= 0 && ch->confirmed;
    ch->conn = conn;
    ch->confirmed = conn >= 0 && confirmed;
    l->chans_ok += ch->conn >= 0 && ch->confirmed;
}

static void shard_schedule(struct lconn *c);
static void chans_settled(struct ledger *l);

static void shard_msg(void *ud, const char *channel, size_t clen, const char *msg, size_t mlen)
{
    struct lconn *c = ud;
    deliver(c->l, channel, clen, msg, mlen);
}

/* Its channels lost their subscription: they are placed again after the next map. */
static void shard_lost(struct ledger *l, int conn)
{
    for (size_t b = 0; b < CHAN_BUCKETS; b++) {
        struct lchan *ch = l->chans[b];
        while (ch) {
            struct lchan *next = ch->next;
            if (ch->unsub_conn == conn) {
                ch->unsubs = 0; /* their answers went with the connection */
            }
            if (!ch->wanted && ch->unsubs == 0) {
                chan_delete(l, ch);
            } else if (ch->conn == conn) {
                chan_set(l, ch, -1, false);
                l->resub_pending = true;
            }
            ch = next;
        }
    }
    map_soon(l);
}

static void shard_event(void *ud, enum lshard_event ev, const char *channel, size_t clen)
{
    struct lconn *c = ud;
    struct ledger *l = c->l;
    if (l->closing) {
        return;
    }
    if (ev == LSHARD_UP) {
        c->shard_backoff_ms = BACKOFF_MIN_MS;
    } else if (ev == LSHARD_SUBSCRIBED && channel) {
        struct lchan *ch = *chan_slot(l, channel, clen);
        /* Not the answer to an SSUBSCRIBE sent before a SUNSUBSCRIBE still due there (the
         * channel was let go and asked for again): the new one's answer follows. */
        if (ch && ch->conn == c->index && !(ch->unsubs > 0 && ch->unsub_conn == c->index)) {
            chan_set(l, ch, ch->conn, true);
            chans_settled(l);
            room_subscribed(l, channel, clen);
        }
    } else if (ev == LSHARD_UNSUBSCRIBED && channel) {
        struct lchan *ch = *chan_slot(l, channel, clen);
        if (ch && ch->unsubs > 0 && ch->unsub_conn == c->index) {
            /* The answer to our own SUNSUBSCRIBE (answers come in order on a connection). */
            if (--ch->unsubs == 0 && !ch->wanted) {
                chan_delete(l, ch);
            }
        } else if (ch && ch->wanted && ch->conn == c->index) {
            /* Not asked: the channel was dropped (its slot moved away, the node became a
             * replica) or refused: subscribed again at the owner after the next map. */
            chan_set(l, ch, -1, false);
            l->resub_pending = true;
            map_soon(l);
        }
    } else if (ev == LSHARD_DOWN) {
        lshard_sub_free(c->shard);
        c->shard = NULL;
        shard_lost(l, c->index);
        shard_schedule(c);
    }
}

/* The subscriber connection of node c, made when missing (NULL when it cannot be now). */
static struct lshard_sub *shard_of(struct lconn *c)
{
    struct ledger *l = c->l;
    if (!c->shard && !l->closing && c->wanted && !uv_is_active((uv_handle_t *)&c->shard_timer) &&
        lshard_sub_new(l->loop, c->host, c->port, l->password, shard_msg, shard_event, c,
                       &c->shard) < 0) {
        c->shard = NULL;
        shard_schedule(c);
    }
    return c->shard;
}

/* Subscribes ch at the owner of its slot (unsubscribing where it was, if elsewhere). */
static void chan_place(struct ledger *l, struct lchan *ch)
{
    int want = l->owner[lslot_of(ch->name, ch->len)];
    if (want < 0) {
        map_soon(l); /* a slot nobody served at the last map: ask again */
    }
    if (ch->conn == want && want >= 0) {
        return;
    }
    if (ch->conn >= 0) {
        struct lconn *old = l->conns[ch->conn];
        if (old->shard && lshard_sub_sunsubscribe(old->shard, ch->name) == 0) {
            chan_unsub_sent(ch, old->index);
        }
        chan_set(l, ch, -1, false);
        l->resub_pending = true;
    }
    struct lshard_sub *sub = want >= 0 ? shard_of(l->conns[want]) : NULL;
    if (sub && lshard_sub_ssubscribe(sub, ch->name) == 0) {
        chan_set(l, ch, want, false);
    }
}

/* Once every channel is subscribed again and confirmed after a loss, the layer above hears
 * LEDGER_SUB_UP and fills its rooms' gaps. */
static void chans_settled(struct ledger *l)
{
    if (l->resub_pending && l->chans_ok == l->nchans) {
        l->resub_pending = false;
        set_state(l, LEDGER_SUB_UP);
    }
}

/* Every channel at its slot's owner; once all are, and confirmed (what is published from then
 * on arrives), the layer above fills its rooms' gaps from their histories. */
static void chans_reconcile(struct ledger *l)
{
    if (!l->sharded || !l->map_known || l->closing) {
        return;
    }
    for (size_t b = 0; b < CHAN_BUCKETS; b++) {
        for (struct lchan *ch = l->chans[b]; ch; ch = ch->next) {
            if (ch->wanted) {
                chan_place(l, ch);
            }
        }
    }
    chans_settled(l);
}

static void shard_timer_fired(uv_timer_t *t)
{
    struct lconn *c = t->data;
    shard_of(c);
    chans_reconcile(c->l);
}

static void shard_schedule(struct lconn *c)
{
    if (c->l->closing || !c->wanted) {
        return;
    }
    uv_timer_start(&c->shard_timer, shard_timer_fired, (uint64_t)c->shard_backoff_ms, 0);
    c->shard_backoff_ms =
        c->shard_backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->shard_backoff_ms * 2;
}

static int chan_subscribe(struct ledger *l, const char *channel)
{
    size_t len = strlen(channel);
    struct lchan **pp = chan_slot(l, channel, len);
    if (!*pp) {
        struct lchan *ch = calloc(1, sizeof(*ch) + len + 1);
        if (!ch) {
            return -ENOMEM;
        }
        memcpy(ch->name, channel, len + 1);
        ch->len = len;
        ch->conn = -1;
        ch->unsub_conn = -1;
        *pp = ch;
    }
    if (!(*pp)->wanted) {
        (*pp)->wanted = true;
        l->nchans++;
    }
    if (l->map_known) {
        chan_place(l, *pp);
    }
    return 0;
}

/* The channel is no longer wanted: SUNSUBSCRIBE where it is; its entry stays until that is
 * answered, so that the answer is not taken for the server dropping a new subscription. */
static int chan_unsubscribe(struct ledger *l, const char *channel)
{
    struct lchan *ch = *chan_slot(l, channel, strlen(channel));
    if (!ch || !ch->wanted) {
        return 0;
    }
    ch->wanted = false;
    l->nchans--;
    if (ch->conn >= 0 && l->conns[ch->conn]->shard &&
        lshard_sub_sunsubscribe(l->conns[ch->conn]->shard, ch->name) == 0) {
        chan_unsub_sent(ch, ch->conn);
    }
    chan_set(l, ch, -1, false);
    if (ch->unsubs == 0) {
        chan_delete(l, ch);
    }
    chans_settled(l);
    return 0;
}

static void sub_connected(const redisAsyncContext *ac, int status)
{
    struct ledger *l = ac->data;
    if (status != REDIS_OK) {
        l->sub = NULL;
        schedule_sub_reconnect(l);
        return;
    }
    send_prelude(l, l->sub, false, NULL);
    l->sub_up = true;
    l->sub_backoff_ms = BACKOFF_MIN_MS;
    set_state(l, LEDGER_SUB_UP);
}

static void sub_disconnected(const redisAsyncContext *ac, int status)
{
    (void)status;
    struct ledger *l = ac->data;
    l->sub = NULL;
    l->sub_up = false;
    if (!l->closing) {
        schedule_sub_reconnect(l);
    }
}

static void do_sub_connect(struct ledger *l)
{
    if (l->closing || l->sub) {
        return;
    }
    /* One Redis: that one. A cluster: a node that is up (a classic PUBLISH reaches the
     * subscribers of every node), else the first seed. */
    struct lconn *at = l->conns[0];
    for (int i = 0; l->cluster && i < l->nconns; i++) {
        if (l->conns[i]->up && l->conns[i]->wanted) {
            at = l->conns[i];
            break;
        }
    }
    redisAsyncContext *ac =
        at->is_unix ? redisAsyncConnectUnix(at->host) : redisAsyncConnect(at->host, at->port);
    if (ac && (ac->err || lglue_attach(ac, l->loop) < 0)) {
        redisAsyncFree(ac);
        ac = NULL;
    }
    if (!ac) {
        schedule_sub_reconnect(l);
        return;
    }
    ac->data = l;
    l->sub = ac;
    redisAsyncSetConnectCallback(l->sub, sub_connected);
    redisAsyncSetDisconnectCallback(l->sub, sub_disconnected);
}

static void sub_reconnect_fired(uv_timer_t *t)
{
    do_sub_connect(t->data);
}

static void schedule_sub_reconnect(struct ledger *l)
{
    if (l->closing) {
        return;
    }
    uv_timer_start(&l->sub_reconnect, sub_reconnect_fired, (uint64_t)l->sub_backoff_ms, 0);
    l->sub_backoff_ms =
        l->sub_backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->sub_backoff_ms * 2;
}

int ledger_subscribe(struct ledger *l, const char *channel)
{
    if (l->sharded) {
        return chan_subscribe(l, channel);
    }
    if (!l->sub_up) {
        return -EAGAIN;
    }
    const char *argv[2] = {"SUBSCRIBE", channel};
    return redisAsyncCommandArgv(l->sub, sub_message, l, 2, argv, NULL) == REDIS_OK ? 0
                                                                                    : -ECONNRESET;
}

int ledger_unsubscribe(struct ledger *l, const char *channel)
{
    if (l->sharded) {
        return chan_unsubscribe(l, channel);
    }
    if (!l->sub_up) {
        return -EAGAIN;
    }
    const char *argv[2] = {"UNSUBSCRIBE", channel};
    return redisAsyncCommandArgv(l->sub, sub_message, l, 2, argv, NULL) == REDIS_OK ? 0
                                                                                    : -ECONNRESET;
}

/* ---- deadlines ---- */

/* Answers (and frees) the requests of L whose deadline passed: they were never sent, or were
 * answered by a cluster before running, so their outcome is not in doubt. */
static void expire_list(struct req_list *L, int64_t limit)
{
    struct ledger_req *r = L->head;
    while (r) {
        struct ledger_req *next = r->next;
        if (r->start_ms <= limit) {
            list_remove(L, r);
            req_answer(r, -ETIMEDOUT, NULL);
            req_free(r);
        }
        r = next;
    }
}

/* A connection that is stuck is dropped (and made again). Sent requests past their deadline
 * are answered now; a late reply then finds no callback (a debit that did commit is reported
 * to a retry). Replies come in order on one connection: only when the oldest request was
 * *sent* a whole timeout ago is the connection stuck (Redis hung, or the network gone without
 * a reset). A request that spent its time queued behind a full pipeline says nothing about the
 * connection: dropping it then failed every request in flight at once. A connection that has
 * not loaded its scripts within the deadline (Redis hung or still loading) is stuck too. */
static void conn_tick(struct lconn *c, int64_t limit)
{
    /* Not ordered by start: a gift batch's deadline runs from its oldest send. */
    for (struct ledger_req *r = c->inflight.head; r; r = r->next) {
        if (r->start_ms <= limit) {
            req_answer(r, -ETIMEDOUT, NULL);
        }
    }
    bool stuck = c->inflight.head && c->inflight.head->sent_ms <= limit;
    if (c->ac && !c->up && c->connect_ms <= limit) {
        stuck = true;
    }
    if (stuck && c->ac) {
        redisAsyncContext *ac = c->ac;
        c->up = false;
        /* Answers every pending callback; calls conn_disconnected only for a context that had
         * connected, so a connection still being set up is cleaned up here. */
        redisAsyncFree(ac);
        if (c->ac == ac) {
            conn_lost(c);
        }
    }
}

static void tick_fired(uv_timer_t *t)
{
    struct ledger *l = t->data;
    int64_t now = ledger_now_ms();
    int64_t limit = now - l->opts.timeout_ms;
    expire_list(&l->waiting, limit);
    expire_list(&l->retry, limit);
    /* TRYAGAIN / CLUSTERDOWN: due ones are queued again. */
    struct ledger_req *r = l->retry.head;
    while (r) {
        struct ledger_req *next = r->next;
        if (r->retry_ms <= now) {
            list_remove(&l->retry, r);
            list_push(&l->waiting, r);
        }
        r = next;
    }
    for (int i = 0; i < l->nconns; i++) {
        conn_tick(l->conns[i], limit);
    }
    if (l->map_asked && l->map_asked_ms <= limit) {
        /* The node asked never answered (hung without a reset): ask another. */
        l->map_asked = false;
        map_soon(l);
    }
    if (l->cluster && (!l->map_known || (l->map_due_ms && l->map_due_ms <= now))) {
        map_refresh(l);
    }
    pump(l);
}

/* ---- public ---- */

/* The seed nodes of redis.cluster: "host:port" or "redis://[:password@]host:port", comma
 * separated. */
static int add_seeds(struct ledger *l, const char *list)
{
    char *copy = strdup(list);
    if (!copy) {
        return -ENOMEM;
    }
    int rc = 0, n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ", ", &save); tok && rc == 0;
         tok = strtok_r(NULL, ", ", &save)) {
        char url[600], host[256], pw[256];
        int port = 0, db = 0;
        bool is_unix = false;
        snprintf(url, sizeof(url), "%s%s", strncmp(tok, "redis://", 8) == 0 ? "" : "redis://", tok);
        if (ledger_url_parse(url, host, sizeof(host), &port, &db, pw, sizeof(pw), &is_unix) < 0 ||
            db != 0) {
            rc = -EINVAL;
            break;
        }
        if (pw[0]) {
            snprintf(l->password, sizeof(l->password), "%s", pw);
        }
        struct lconn *c = conn_for(l, host, port);
        if (!c) {
            rc = -ENOMEM;
            break;
        }
        c->wanted = true;
        n++;
    }
    free(copy);
    return rc < 0 ? rc : n > 0 ? 0 : -EINVAL;
}

int ledger_new(uv_loop_t *loop, const struct ledger_opts *opts, struct ledger **out)
{
    struct ledger *l = calloc(1, sizeof(*l));
    if (!l) {
        return -ENOMEM;
    }
    l->loop = loop;
    l->opts = *opts;
    l->cluster = opts->cluster && opts->cluster[0];
    l->sharded = l->cluster;
    l->url = strdup(l->cluster ? opts->cluster : opts->url ? opts->url : "");
    if (!l->url) {
        free(l);
        return -ENOMEM;
    }
    l->opts.url = l->cluster ? NULL : l->url;
    l->opts.cluster = l->cluster ? l->url : NULL;
    if (l->opts.max_inflight < 1) {
        l->opts.max_inflight = 1;
    }
    /* Unset: SPEC's defaults. */
    if (l->opts.history_size < 1) {
        l->opts.history_size = 1000;
    }
    if (l->opts.history_ttl_s < 1) {
        l->opts.history_ttl_s = 86400;
    }
    int rc = 0;
    if (l->cluster) {
        l->owner = malloc(CLUSTER_SLOTS * sizeof(*l->owner));
        l->chans = calloc(CHAN_BUCKETS, sizeof(*l->chans));
        rc = l->owner && l->chans ? add_seeds(l, l->url) : -ENOMEM;
        for (int s = 0; l->owner && s < CLUSTER_SLOTS; s++) {
            l->owner[s] = -1;
        }
    } else {
        char host[256];
        int port = 0;
        bool is_unix = false;
        struct lconn *c = NULL;
        rc = ledger_url_parse(l->url, host, sizeof(host), &port, &l->db, l->password,
                              sizeof(l->password), &is_unix);
        if (rc == 0 && !(c = conn_new(l, host, port, is_unix))) {
            rc = -ENOMEM;
        }
        if (c) {
            c->wanted = true;
        }
    }
    if (rc == 0) {
        l->gifts = lgift_queue_new(l, loop);
        rc = l->gifts ? 0 : -ENOMEM;
    }
    if (rc < 0) {
        /* Nothing is running yet: the connections' timers were only initialised. */
        for (int i = 0; i < l->nconns; i++) {
            l->conns[i]->open_handles = 2;
            uv_close((uv_handle_t *)&l->conns[i]->reconnect, conn_closed);
            uv_close((uv_handle_t *)&l->conns[i]->shard_timer, conn_closed);
        }
        free(l->conns);
        free(l->owner);
        free(l->chans);
        free(l->url);
        free(l);
        return rc == -ENOMEM ? rc : -EINVAL;
    }
    for (int i = 0; i < LEDGER_SCRIPT__COUNT; i++) {
        unsigned char md[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)script_src[i], strlen(script_src[i]), md);
        for (int j = 0; j < SHA_DIGEST_LENGTH; j++) {
            static const char hex[] = "0123456789abcdef";
            l->sha[i][2 * j] = hex[md[j] >> 4];
            l->sha[i][2 * j + 1] = hex[md[j] & 15];
        }
        l->sha[i][40] = '\0';
    }
    l->sub_backoff_ms = BACKOFF_MIN_MS;
    uv_timer_init(loop, &l->tick);
    uv_timer_init(loop, &l->sub_reconnect);
    l->tick.data = l->sub_reconnect.data = l;
    uint64_t period = (uint64_t)(l->opts.timeout_ms / 10 > 0 ? l->opts.timeout_ms / 10 : 1);
    if (period > 50) {
        period = 50;
    }
    uv_timer_start(&l->tick, tick_fired, period, period);
    for (int i = 0; i < l->nconns; i++) {
        conn_connect(l->conns[i]);
    }
    if (!l->sharded) {
        do_sub_connect(l);
    }
    *out = l;
    return 0;
}

static void free_after_close(uv_handle_t *h)
{
    struct ledger *l = h->data;
    for (size_t b = 0; l->chans && b < CHAN_BUCKETS; b++) {
        while (l->chans[b]) {
            struct lchan *ch = l->chans[b];
            l->chans[b] = ch->next;
            free(ch);
        }
    }
    free(l->chans);
    free(l->conns);
    free(l->owner);
    free(l->url);
    free(l);
}

void ledger_free(struct ledger *l)
{
    if (!l) {
        return;
    }
    l->closing = true;
    lgift_queue_free(l->gifts);
    fail_list(&l->waiting, -ECANCELED);
    fail_list(&l->retry, -ECANCELED);
    for (int i = 0; i < l->nconns; i++) {
        struct lconn *c = l->conns[i];
        for (struct ledger_req *r = c->inflight.head; r; r = r->next) {
            req_answer(r, -ECANCELED, NULL);
        }
        if (c->ac) {
            redisAsyncFree(c->ac);
            c->ac = NULL;
        }
        lshard_sub_free(c->shard);
        c->shard = NULL;
        c->open_handles = 2;
        uv_close((uv_handle_t *)&c->reconnect, conn_closed);
        uv_close((uv_handle_t *)&c->shard_timer, conn_closed);
    }
    if (l->sub) {
        redisAsyncFree(l->sub);
        l->sub = NULL;
    }
    uv_close((uv_handle_t *)&l->sub_reconnect, NULL);
    uv_close((uv_handle_t *)&l->tick, free_after_close);
}

bool ledger_ready(const struct ledger *l)
{
    return l->ready && !l->closing;
}

/* Requests are taken while the ledger is ready, and before it was ever ready (a node just
 * started: they wait for the first connection, until their deadline, rather than fail). Once
 * it was up, a lost Redis fails them fast. */
bool ledger_accepting(const struct ledger *l)
{
    return ledger_ready(l) || (!l->ever_ready && !l->closing);
}

/* The cluster slot of a request: that of its first key (a script's first KEYS entry, a
 * command's first argument); -1 for a script without keys or a command without arguments. */
static int slot_of(const struct ledger *l, int script, int argc, const char *const *argv,
                   const size_t *argvlen)
{
    if (!l->cluster) {
        return -1;
    }
    int k = 1; /* {numkeys, key…} for a script; {command, key…} for a command */
    if (script >= 0 && (argc < 2 || strtol(argv[0], NULL, 10) < 1)) {
        return -1;
    }
    if (argc <= k) {
        return -1;
    }
    return (int)lslot_of(argv[k], argvlen ? argvlen[k] : strlen(argv[k]));
}

static int submit(struct ledger *l, int script, int argc, const char *const *argv,
                  const size_t *argvlen, ledger_reply_cb *cb, void *ud, const void *ctx,
                  size_t ctx_len, struct ledger_req **out_req, int64_t start_ms)
{
    if (!ledger_accepting(l)) {
        return -EAGAIN;
    }
    int extra = script >= 0 ? 2 : 0;
    int n = argc + extra;
    size_t bytes = 0;
    for (int i = 0; i < argc; i++) {
        bytes += (argvlen ? argvlen[i] : strlen(argv[i])) + 1;
    }
    /* One block: the request, a typed operation's context (ctx_len bytes, aligned), the argv
     * and length arrays, then the argument bytes. */
    size_t align = _Alignof(max_align_t);
    size_t base = (sizeof(struct ledger_req) + align - 1) / align * align;
    size_t ctx_room = (ctx_len + align - 1) / align * align;
    size_t head = base + ctx_room + (size_t)n * (sizeof(char *) + sizeof(size_t));
    struct ledger_req *r = calloc(1, head + bytes);
    if (!r) {
        return -ENOMEM;
    }
    if (ctx_len) {
        /* The context lives and dies with the request: a cancelled request frees it too. */
        memcpy((char *)r + base, ctx, ctx_len);
        ud = (char *)r + base;
    }
    r->argv = (char **)((char *)r + base + ctx_room);
    r->argvlen = (size_t *)(r->argv + n);
    char *p = (char *)(r->argvlen + n);
    if (script >= 0) {
        r->argv[0] = "EVALSHA";
        r->argvlen[0] = 7;
        r->argv[1] = l->sha[script];
        r->argvlen[1] = 40;
    }
    for (int i = 0; i < argc; i++) {
        size_t len = argvlen ? argvlen[i] : strlen(argv[i]);
        memcpy(p, argv[i], len);
        p[len] = '\0';
        r->argv[extra + i] = p;
        r->argvlen[extra + i] = len;
        p += len + 1;
    }
    r->argc = n;
    r->l = l;
    r->cb = cb;
    r->ud = ud;
    r->script = script;
    r->start_ms = start_ms;
    r->start_ns = mono_ns();
    r->slot = slot_of(l, script, argc, argv, argvlen);
    r->conn = -1;
    r->ask = -1;
    r->asked = -1;
    l->stats.requests++;
    struct lconn *c = NULL;
    if (l->ninflight < l->opts.max_inflight && !l->waiting.head) {
        c = route(l, r);
    }
    if (c) {
        if (send_on(c, r) < 0) {
            free(r);
            return -EAGAIN;
        }
    } else {
        list_push(&l->waiting, r);
    }
    if (out_req) {
        *out_req = r;
    }
    return 0;
}

int ledger_command(struct ledger *l, int argc, const char *const *argv, const size_t *argvlen,
                   ledger_reply_cb *cb, void *ud, struct ledger_req **out_req)
{
    return submit(l, -1, argc, argv, argvlen, cb, ud, NULL, 0, out_req, ledger_now_ms());
}

int ledger_script(struct ledger *l, enum ledger_script script, int argc, const char *const *argv,
                  const size_t *argvlen, ledger_reply_cb *cb, void *ud, struct ledger_req **out_req)
{
    return submit(l, (int)script, argc, argv, argvlen, cb, ud, NULL, 0, out_req, ledger_now_ms());
}

int lscript_since(struct ledger *l, enum ledger_script script, int argc, const char *const *argv,
                  const size_t *argvlen, ledger_reply_cb *cb, void *ud, int64_t start_ms)
{
    return submit(l, (int)script, argc, argv, argvlen, cb, ud, NULL, 0, NULL, start_ms);
}

int lreq_submit(struct ledger *l, int script, int argc, const char *const *argv,
                const size_t *argvlen, ledger_reply_cb *cb, const void *ctx, size_t ctx_len,
                struct ledger_req **out_req)
{
    return submit(l, script, argc, argv, argvlen, cb, NULL, ctx, ctx_len, out_req, ledger_now_ms());
}

long lreq_partitions(const struct ledger *l)
{
    return l->opts.partitions > 0 ? l->opts.partitions : 1;
}

bool lreq_cluster(const struct ledger *l)
{
    return l->cluster;
}

bool lreq_sharded(const struct ledger *l)
{
    return l->cluster && l->sharded;
}

void ledger_req_cancel(struct ledger_req *req)
{
    if (req) {
        req->cb = NULL;
    }
}

void ledger_get_stats(const struct ledger *l, struct ledger_stats *out)
{
    *out = l->stats;
    out->inflight = l->ninflight;
    out->queued = l->waiting.n + l->retry.n;
}
