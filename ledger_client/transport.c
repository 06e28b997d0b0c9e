/* transport: hiredis async on a libuv loop with deadlines, a bounded pipeline and reconnects. */
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
    int argc;
    char **argv;
    size_t *argvlen;
    struct ledger_req *prev, *next; /* in the in-flight or the wait list */
};

struct req_list {
    struct ledger_req *head, *tail;
    long n;
};

struct ledger {
    uv_loop_t *loop;
    struct ledger_opts opts;
    char *url;
    char host[256];
    char password[256];
    int port, db;
    bool is_unix;

    redisAsyncContext *cmd; /* NULL while down */
    bool cmd_up;            /* connected, scripts loaded, and not going away */
    bool announced_up;      /* LEDGER_UP was reported for the current connection */
    int64_t connect_ms;     /* when the current command connection attempt began */
    long scripts_pending;   /* SCRIPT LOAD replies awaited after connect */
    redisAsyncContext *sub;
    bool sub_up;
    long backoff_ms;
    long sub_backoff_ms;
    bool closing;

    char sha[LEDGER_SCRIPT__COUNT][41];
    struct req_list inflight; /* oldest first */
    struct req_list waiting;  /* not sent yet: over max_inflight */

    uv_timer_t tick;          /* deadlines */
    uv_timer_t reconnect;     /* command connection */
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

/* ---- hiredis on libuv ----
 * Our own glue rather than hiredis/adapters/libuv.h, for two reasons.
 * - That adapter ignores a poll error (a peer reset shows up as one), so a dead Redis went
 *   unnoticed until the deadline. Here an error is handed to hiredis as readable, and its read
 *   finds the error and disconnects.
 * - It arms POLLOUT for every command and disarms it once written, and libuv 1.44's
 *   uv_poll_start and uv_poll_stop each cost an epoll_ctl (a DEL, then an ADD at the next
 *   poll): about 4 syscalls per loop turn that sends anything, a quarter of the node's CPU at
 *   overload. Here the commands of a loop turn are written at once by a prepare handle, just
 *   before the loop polls again, and POLLOUT is armed only while a write is left over (the
 *   socket buffer was full) or a connect is in progress. */

struct uv_glue {
    redisAsyncContext *ac;
    uv_poll_t poll;
    uv_prepare_t flush;
    int events;      /* armed on the poll handle */
    bool want_write; /* hiredis has output to write */
    int open;        /* handles not yet closed */
};

static void glue_poll(uv_poll_t *h, int status, int events)
{
    struct uv_glue *g = h->data;
    if (!g->ac) {
        return;
    }
    if (status < 0 || (events & UV_READABLE)) {
        redisAsyncHandleRead(g->ac);
        return; /* the context may be gone now */
    }
    if (events & UV_WRITABLE) {
        redisAsyncHandleWrite(g->ac);
    }
}

static void glue_arm(struct uv_glue *g, int events)
{
    if (events == g->events) {
        return;
    }
    g->events = events;
    if (events) {
        uv_poll_start(&g->poll, events, glue_poll);
    } else {
        uv_poll_stop(&g->poll);
    }
}

/* Before the loop polls: write what this turn's callbacks queued. What the socket did not
 * take waits for POLLOUT. */
static void glue_flush(uv_prepare_t *h)
{
    struct uv_glue *g = h->data;
    if (!g->ac || !g->want_write || (g->events & UV_WRITABLE)) {
        return;
    }
    redisAsyncHandleWrite(g->ac); /* calls glue_del_write once all is written */
    if (g->ac && g->want_write) {
        glue_arm(g, g->events | UV_WRITABLE);
    }
}

static void glue_add_read(void *d)
{
    struct uv_glue *g = d;
    glue_arm(g, g->events | UV_READABLE);
}

static void glue_del_read(void *d)
{
    struct uv_glue *g = d;
    glue_arm(g, g->events & ~UV_READABLE);
}

static void glue_add_write(void *d)
{
    struct uv_glue *g = d;
    g->want_write = true;
    if (!(g->ac->c.flags & REDIS_CONNECTED)) {
        glue_arm(g, g->events | UV_WRITABLE); /* a connect completes on POLLOUT */
    }
}

static void glue_del_write(void *d)
{
    struct uv_glue *g = d;
    g->want_write = false;
    glue_arm(g, g->events & ~UV_WRITABLE);
}

static void glue_closed(uv_handle_t *h)
{
    struct uv_glue *g = h->data;
    if (--g->open == 0) {
        free(g);
    }
}

static void glue_cleanup(void *d)
{
    struct uv_glue *g = d;
    g->ac = NULL;
    uv_close((uv_handle_t *)&g->poll, glue_closed);
    uv_close((uv_handle_t *)&g->flush, glue_closed);
}

static int glue_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    struct uv_glue *g = calloc(1, sizeof(*g));
    if (!g) {
        return -ENOMEM;
    }
    if (uv_poll_init(loop, &g->poll, ac->c.fd) != 0) {
        free(g);
        return -EIO;
    }
    uv_prepare_init(loop, &g->flush);
    uv_prepare_start(&g->flush, glue_flush);
    uv_unref((uv_handle_t *)&g->flush); /* it alone does not keep the loop running */
    g->open = 2;
    g->ac = ac;
    g->poll.data = g;
    g->flush.data = g;
    ac->ev.data = g;
    ac->ev.addRead = glue_add_read;
    ac->ev.delRead = glue_del_read;
    ac->ev.addWrite = glue_add_write;
    ac->ev.delWrite = glue_del_write;
    ac->ev.cleanup = glue_cleanup;
    return 0;
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
static void schedule_reconnect(struct ledger *l);
static void pump(struct ledger *l);

static int send_req(struct ledger *l, struct ledger_req *r)
{
    if (redisAsyncCommandArgv(l->cmd, cmd_reply, r, r->argc, (const char **)r->argv, r->argvlen) !=
        REDIS_OK) {
        return -ECONNRESET;
    }
    r->sent = true;
    r->sent_ms = ledger_now_ms();
    list_push(&l->inflight, r);
    return 0;
}

/* Moves waiting requests into the pipeline while there is room. */
static void pump(struct ledger *l)
{
    while (l->cmd_up && l->waiting.head && l->inflight.n < l->opts.max_inflight) {
        struct ledger_req *r = l->waiting.head;
        list_remove(&l->waiting, r);
        if (send_req(l, r) < 0) {
            req_answer(r, -ECONNRESET, NULL);
            req_free(r);
        }
    }
}

static void cmd_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct ledger_req *r = privdata;
    struct ledger *l = r->l;
    redisReply *rep = reply;
    list_remove(&l->inflight, r);
    if (!rep) {
        /* The connection is going away (hiredis answers what was pending, then calls
         * cmd_disconnected): nothing may be sent on it from here on, callbacks included. */
        l->cmd_up = false;
    }
    if (rep && rep->type == REDIS_REPLY_ERROR && r->script >= 0 && !r->resent &&
        strncmp(rep->str, "NOSCRIPT", 8) == 0 && l->cmd) {
        /* The script cache was flushed (restart, SCRIPT FLUSH): EVAL sends the body and
         * caches it again. The script did not run, so resending is safe. */
        r->resent = true;
        r->argv[0] = "EVAL";
        r->argvlen[0] = 4;
        r->argv[1] = (char *)script_src[r->script];
        r->argvlen[1] = strlen(script_src[r->script]);
        if (send_req(l, r) == 0) {
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

static void set_state(struct ledger *l, enum ledger_state s)
{
    if (l->opts.on_state && !l->closing) {
        l->opts.on_state(l->opts.ud, s);
    }
}

static void script_loaded(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct ledger *l = privdata;
    redisReply *rep = reply;
    if (!rep || l->cmd != ac) {
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        /* LOADING, or a script error: drop the connection and try again later. */
        redisAsyncDisconnect(ac);
        return;
    }
    if (--l->scripts_pending == 0) {
        l->cmd_up = true;
        l->announced_up = true;
        l->backoff_ms = BACKOFF_MIN_MS;
        set_state(l, LEDGER_UP);
        pump(l);
    }
}

static void send_prelude(struct ledger *l, redisAsyncContext *ac, bool scripts)
{
    if (l->password[0]) {
        redisAsyncCommand(ac, NULL, NULL, "AUTH %s", l->password);
    }
    if (l->db && scripts) {
        redisAsyncCommand(ac, NULL, NULL, "SELECT %d", l->db);
    }
    if (!scripts) {
        return;
    }
    l->scripts_pending = LEDGER_SCRIPT__COUNT;
    for (int i = 0; i < LEDGER_SCRIPT__COUNT; i++) {
        redisAsyncCommand(ac, script_loaded, l, "SCRIPT LOAD %s", script_src[i]);
    }
}

static void cmd_connected(const redisAsyncContext *ac, int status)
{
    struct ledger *l = ac->data;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        l->cmd = NULL;
        schedule_reconnect(l);
        return;
    }
    send_prelude(l, l->cmd, true);
}

static void fail_waiting(struct ledger *l, int status)
{
    while (l->waiting.head) {
        struct ledger_req *r = l->waiting.head;
        list_remove(&l->waiting, r);
        req_answer(r, status, NULL);
        req_free(r);
    }
}

static void cmd_disconnected(const redisAsyncContext *ac, int status)
{
    (void)status;
    struct ledger *l = ac->data;
    bool was_up = l->announced_up;
    l->announced_up = false;
    l->cmd = NULL;
    l->cmd_up = false;
    /* hiredis already answered every in-flight request with a NULL reply. */
    fail_waiting(l, -ECONNRESET);
    if (was_up) {
        set_state(l, LEDGER_DOWN);
    }
    if (!l->closing) {
        schedule_reconnect(l);
    }
}

static redisAsyncContext *connect_ctx(struct ledger *l)
{
    redisAsyncContext *ac =
        l->is_unix ? redisAsyncConnectUnix(l->host) : redisAsyncConnect(l->host, l->port);
    if (!ac) {
        return NULL;
    }
    if (ac->err) {
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = l;
    if (glue_attach(ac, l->loop) < 0) {
        redisAsyncFree(ac);
        return NULL;
    }
    return ac;
}

static void do_connect(struct ledger *l)
{
    if (l->closing || l->cmd) {
        return;
    }
    l->cmd = connect_ctx(l);
    if (!l->cmd) {
        schedule_reconnect(l);
        return;
    }
    l->stats.reconnects++;
    l->connect_ms = ledger_now_ms();
    redisAsyncSetConnectCallback(l->cmd, cmd_connected);
    redisAsyncSetDisconnectCallback(l->cmd, cmd_disconnected);
}

static void reconnect_fired(uv_timer_t *t)
{
    do_connect(t->data);
}

static void schedule_reconnect(struct ledger *l)
{
    if (l->closing) {
        return;
    }
    uv_timer_start(&l->reconnect, reconnect_fired, (uint64_t)l->backoff_ms, 0);
    l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->backoff_ms * 2;
}

/* ---- pub/sub connection ---- */

static void schedule_sub_reconnect(struct ledger *l);

static void sub_message(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct ledger *l = privdata;
    redisReply *r = reply;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 || l->closing) {
        return;
    }
    redisReply *kind = r->element[0];
    if (kind->type != REDIS_REPLY_STRING || kind->len != 7 ||
        memcmp(kind->str, "message", 7) != 0) {
        return;
    }
    /* A room's channel: its room's name is what the layer above knows. */
    char room[65];
    bool is_room = l->opts.on_room_message &&
                   lkey_channel_room(r->element[1]->str, r->element[1]->len, room) == 0;
    /* gift.lua publishes a room's events of one batch as one message, one event per line
     * (JSON text holds no raw newline): each is delivered on its own. A first line "@epoch"
     * gives the epoch of the room's seq the events carry (lib/room.lua). */
    const char *m = r->element[2]->str, *end = m + r->element[2]->len;
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
            l->opts.on_message(l->opts.ud, r->element[1]->str, r->element[1]->len, m,
                               (size_t)(stop - m));
        }
        if (is_room) {
            l->opts.on_room_message(l->opts.ud, room, epoch, m, (size_t)(stop - m));
        }
        m = stop + 1;
    }
}

static void sub_connected(const redisAsyncContext *ac, int status)
{
    struct ledger *l = ac->data;
    if (status != REDIS_OK) {
        l->sub = NULL;
        schedule_sub_reconnect(l);
        return;
    }
    send_prelude(l, l->sub, false);
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
    l->sub = connect_ctx(l);
    if (!l->sub) {
        schedule_sub_reconnect(l);
        return;
    }
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
    if (!l->sub_up) {
        return -EAGAIN;
    }
    const char *argv[2] = {"SUBSCRIBE", channel};
    return redisAsyncCommandArgv(l->sub, sub_message, l, 2, argv, NULL) == REDIS_OK ? 0
                                                                                    : -ECONNRESET;
}

int ledger_unsubscribe(struct ledger *l, const char *channel)
{
    if (!l->sub_up) {
        return -EAGAIN;
    }
    const char *argv[2] = {"UNSUBSCRIBE", channel};
    return redisAsyncCommandArgv(l->sub, sub_message, l, 2, argv, NULL) == REDIS_OK ? 0
                                                                                    : -ECONNRESET;
}

/* ---- deadlines ---- */

static void tick_fired(uv_timer_t *t)
{
    struct ledger *l = t->data;
    int64_t now = ledger_now_ms();
    int64_t limit = now - l->opts.timeout_ms;
    /* Queued requests were never sent: they time out without any doubt about their outcome. */
    while (l->waiting.head && l->waiting.head->start_ms <= limit) {
        struct ledger_req *r = l->waiting.head;
        list_remove(&l->waiting, r);
        req_answer(r, -ETIMEDOUT, NULL);
        req_free(r);
    }
    /* Sent requests past their deadline are answered now; a late reply then finds no callback
     * (a debit that did commit is broadcast by the outbox and reported to a retry). Replies
     * come in order on one connection: only when the oldest request was *sent* a whole
     * timeout ago is the connection stuck (Redis hung, or the network gone without a reset)
     * and dropped. A request that spent its time queued behind a full pipeline says nothing
     * about the connection: dropping it then failed every request in flight at once. */
    for (struct ledger_req *r = l->inflight.head; r && r->start_ms <= limit; r = r->next) {
        req_answer(r, -ETIMEDOUT, NULL);
    }
    bool stuck = l->inflight.head && l->inflight.head->sent_ms <= limit;
    /* A connection that has not loaded its scripts within the deadline (Redis hung or still
     * loading its data) is dropped and tried again. */
    if (l->cmd && !l->cmd_up && l->connect_ms <= limit) {
        stuck = true;
    }
    if (stuck && l->cmd) {
        redisAsyncContext *ac = l->cmd;
        l->cmd_up = false;
        /* Answers every pending callback; calls cmd_disconnected only for a context that had
         * connected, so a connection still being set up is cleaned up here. */
        redisAsyncFree(ac);
        if (l->cmd == ac) {
            l->cmd = NULL;
            fail_waiting(l, -ECONNRESET);
            schedule_reconnect(l);
        }
    }
}

/* ---- public ---- */

int ledger_new(uv_loop_t *loop, const struct ledger_opts *opts, struct ledger **out)
{
    struct ledger *l = calloc(1, sizeof(*l));
    if (!l) {
        return -ENOMEM;
    }
    l->loop = loop;
    l->opts = *opts;
    l->url = strdup(opts->url);
    if (!l->url) {
        free(l);
        return -ENOMEM;
    }
    l->opts.url = l->url;
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
    if (ledger_url_parse(l->url, l->host, sizeof(l->host), &l->port, &l->db, l->password,
                         sizeof(l->password), &l->is_unix) < 0) {
        free(l->url);
        free(l);
        return -EINVAL;
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
    l->gifts = lgift_queue_new(l, loop);
    if (!l->gifts) {
        free(l->url);
        free(l);
        return -ENOMEM;
    }
    l->backoff_ms = l->sub_backoff_ms = BACKOFF_MIN_MS;
    uv_timer_init(loop, &l->tick);
    uv_timer_init(loop, &l->reconnect);
    uv_timer_init(loop, &l->sub_reconnect);
    l->tick.data = l->reconnect.data = l->sub_reconnect.data = l;
    uint64_t period = (uint64_t)(l->opts.timeout_ms / 10 > 0 ? l->opts.timeout_ms / 10 : 1);
    if (period > 50) {
        period = 50;
    }
    uv_timer_start(&l->tick, tick_fired, period, period);
    do_connect(l);
    do_sub_connect(l);
    *out = l;
    return 0;
}

static void free_after_close(uv_handle_t *h)
{
    struct ledger *l = h->data;
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
    fail_waiting(l, -ECANCELED);
    for (struct ledger_req *r = l->inflight.head; r; r = r->next) {
        req_answer(r, -ECANCELED, NULL);
    }
    if (l->cmd) {
        redisAsyncFree(l->cmd);
        l->cmd = NULL;
    }
    if (l->sub) {
        redisAsyncFree(l->sub);
        l->sub = NULL;
    }
    uv_close((uv_handle_t *)&l->reconnect, NULL);
    uv_close((uv_handle_t *)&l->sub_reconnect, NULL);
    uv_close((uv_handle_t *)&l->tick, free_after_close);
}

bool ledger_ready(const struct ledger *l)
{
    return l->cmd_up;
}

static int submit(struct ledger *l, int script, int argc, const char *const *argv,
                  const size_t *argvlen, ledger_reply_cb *cb, void *ud, const void *ctx,
                  size_t ctx_len, struct ledger_req **out_req, int64_t start_ms)
{
    if (!l->cmd_up || l->closing) {
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
    l->stats.requests++;
    if (l->inflight.n < l->opts.max_inflight && !l->waiting.head) {
        if (send_req(l, r) < 0) {
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

void ledger_req_cancel(struct ledger_req *req)
{
    if (req) {
        req->cb = NULL;
    }
}

void ledger_get_stats(const struct ledger *l, struct ledger_stats *out)
{
    *out = l->stats;
    out->inflight = l->inflight.n;
    out->queued = l->waiting.n;
}
