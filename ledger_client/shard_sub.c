/* shard_sub: a sharded pub/sub (SSUBSCRIBE) connection on libuv, read with hiredis's reader. */
#include "ledger_client/ledger_client_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * hiredis 0.14's async API aborts on SSUBSCRIBE (it only knows SUBSCRIBE/PSUBSCRIBE), so this
 * connection is giftd's own: a uv_tcp_t, RESP written by redisFormatCommandArgv, replies parsed
 * by a redisReader. What Redis 7.0 does here, verified against redis-server 7.0.15 (cluster
 * mode, a RESP2 connection: no HELLO):
 * - SSUBSCRIBE ch answers ["ssubscribe", ch, n] (n: this connection's shard channels); again
 *   for a channel already subscribed, n unchanged. If the node does not serve ch's slot it
 *   answers -MOVED <slot> <host>:<port> and subscribes nothing. Channels of two slots in one
 *   command answer -CROSSSLOT: so one channel per command here.
 * - SPUBLISH ch msg at the slot's master delivers ["smessage", ch, msg].
 * - When the node stops serving the slot (CLUSTER SETSLOT <slot> NODE <other> at it, the end of
 *   a reshard; or a failover that makes it a replica) it sends each subscriber of the slot's
 *   channels an unrequested ["sunsubscribe", ch, n]. While the slot is only MIGRATING the
 *   subscription stays and messages still arrive.
 * - SUNSUBSCRIBE ch answers ["sunsubscribe", ch, n], or -MOVED when the node does not serve
 *   the slot (any more): after a move, the unrequested sunsubscribe comes first, then -MOVED.
 *   So each SUNSUBSCRIBE is followed by a PING, whose answer closes it: ["pong", ""] while
 *   the connection holds a subscription, +PONG once it holds none.
 * - A replica accepts SSUBSCRIBE (no READONLY needed) and delivers its master's SPUBLISH
 *   messages; after a failover its subscribers keep theirs.
 */

#define READ_BUF 65536

/* A command awaiting its answer, oldest first. */
struct pending {
    struct pending *next;
    enum { P_AUTH, P_SSUB, P_SUNSUB } kind; /* P_SUNSUB: answered by the PING after it */
    size_t clen;
    char channel[]; /* clen bytes + NUL */
};

/* A write handed to libuv with its bytes. */
struct wreq {
    uv_write_t req;
    size_t len;
    char data[];
};

struct lshard_sub {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_getaddrinfo_t gai;
    bool gai_active; /* a name lookup runs: its callback still comes */
    bool tcp_open;   /* until the close callback */
    bool closing;    /* lshard_sub_free was called: no more callbacks */
    enum { S_CONNECTING, S_AUTH, S_UP, S_DOWN } state;
    int error;
    int port;
    redisReader *reader;
    struct pending *head, *tail;
    char *out; /* written before the connection is up, sent when it is */
    size_t outlen;
    lshard_msg_cb *on_msg;
    lshard_event_cb *on_event;
    void *ud;
    char rbuf[READ_BUF];
};

static void maybe_free(struct lshard_sub *s)
{
    if (s->tcp_open || s->gai_active) {
        return;
    }
    while (s->head) {
        struct pending *p = s->head;
        s->head = p->next;
        free(p);
    }
    redisReaderFree(s->reader);
    free(s->out);
    free(s);
}

static void on_close(uv_handle_t *h)
{
    struct lshard_sub *s = h->data;
    s->tcp_open = false;
    maybe_free(s);
}

/* Reports ev unless the owner freed s; false when s is being freed (stop touching it). */
static bool emit(struct lshard_sub *s, enum lshard_event ev, const char *ch, size_t clen)
{
    if (!s->closing) {
        s->on_event(s->ud, ev, ch, clen);
    }
    return !s->closing;
}

/* The connection failed or dropped (err: a negative errno): LSHARD_DOWN, once. */
static void down(struct lshard_sub *s, int err)
{
    if (s->state == S_DOWN) {
        return;
    }
    s->state = S_DOWN;
    s->error = err;
    if (s->tcp_open) {
        uv_read_stop((uv_stream_t *)&s->tcp);
    }
    emit(s, LSHARD_DOWN, NULL, 0);
}

static void on_write(uv_write_t *req, int status)
{
    struct lshard_sub *s = req->data;
    free((struct wreq *)req);
    if (status < 0 && status != UV_ECANCELED && !s->closing) {
        down(s, status);
    }
}

static int write_now(struct lshard_sub *s, const char *data, size_t len)
{
    struct wreq *w = malloc(sizeof(*w) + len);
    if (!w) {
        return -ENOMEM;
    }
    memcpy(w->data, data, len);
    w->len = len;
    w->req.data = s;
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&s->tcp, &buf, 1, on_write);
    if (rc < 0) {
        free(w);
    }
    return rc;
}

/* Sends data now, or keeps it until the connection is up. */
static int send_bytes(struct lshard_sub *s, const char *data, size_t len)
{
    if (s->state == S_DOWN) {
        return -ENOTCONN;
    }
    if (s->state != S_CONNECTING) {
        return write_now(s, data, len);
    }
    char *out = realloc(s->out, s->outlen + len);
    if (!out) {
        return -ENOMEM;
    }
    memcpy(out + s->outlen, data, len);
    s->out = out;
    s->outlen += len;
    return 0;
}

/* Queues the answer awaited for a command about channel (NULL for AUTH). */
static struct pending *pending_new(int kind, const char *channel)
{
    size_t clen = channel ? strlen(channel) : 0;
    struct pending *p = malloc(sizeof(*p) + clen + 1);
    if (p) {
        p->next = NULL;
        p->kind = kind;
        p->clen = clen;
        memcpy(p->channel, channel ? channel : "", clen + 1);
    }
    return p;
}

static void pending_push(struct lshard_sub *s, struct pending *p)
{
    if (s->tail) {
        s->tail->next = p;
    } else {
        s->head = p;
    }
    s->tail = p;
}

static void pending_pop(struct lshard_sub *s)
{
    struct pending *p = s->head;
    s->head = p->next;
    if (!s->head) {
        s->tail = NULL;
    }
    free(p);
}

/* Formats argv (argc strings, borrowed) and, when tail (borrowed) is not NULL, appends it:
 * one send for a command and the PING after it. */
static int send_command(struct lshard_sub *s, int argc, const char **argv, const char *tail,
                        size_t tail_len)
{
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, NULL);
    if (len < 0) {
        return -ENOMEM;
    }
    char *all = cmd;
    if (tail) {
        all = realloc(cmd, (size_t)len + tail_len);
        if (!all) {
            redisFreeCommand(cmd);
            return -ENOMEM;
        }
        memcpy(all + len, tail, tail_len);
    }
    int rc = send_bytes(s, all, (size_t)len + (tail ? tail_len : 0));
    free(all);
    return rc;
}

static bool is_str(const redisReply *r, const char *s)
{
    size_t n = strlen(s);
    return (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) && r->len == n &&
           memcmp(r->str, s, n) == 0;
}

/* One reply. Returns false when s went down or is being freed. */
static bool handle_reply(struct lshard_sub *s, const redisReply *r)
{
    struct pending *head = s->head;
    if (head && head->kind == P_AUTH) {
        if (!is_str(r, "OK")) {
            down(s, r->type == REDIS_REPLY_ERROR ? -EACCES : -EPROTO);
            return false;
        }
        pending_pop(s);
        s->state = S_UP;
        return emit(s, LSHARD_UP, NULL, 0);
    }
    if (r->type == REDIS_REPLY_ERROR) {
        /* Errors answer commands, never arrive unasked. A refused SSUBSCRIBE (MOVED,
         * CLUSTERDOWN…) means the channel is not subscribed here; the error of a SUNSUBSCRIBE
         * (MOVED after a slot move) changes nothing. */
        if (head && head->kind == P_SSUB) {
            /* head stays allocated while the callback runs, even if it frees s. */
            bool go_on = emit(s, LSHARD_UNSUBSCRIBED, head->channel, head->clen);
            pending_pop(s);
            return go_on;
        }
        return true;
    }
    if (is_str(r, "PONG")) { /* the PING after the last channel's SUNSUBSCRIBE */
        if (!head || head->kind != P_SUNSUB) {
            down(s, -EPROTO);
            return false;
        }
        pending_pop(s);
        return true;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_STRING) {
        return true; /* nothing we asked for */
    }
    const redisReply *kind = r->element[0];
    const redisReply *ch = r->element[1];
    if (is_str(kind, "smessage") && r->elements == 3 && ch->type == REDIS_REPLY_STRING &&
        r->element[2]->type == REDIS_REPLY_STRING) {
        if (!s->closing) {
            s->on_msg(s->ud, ch->str, ch->len, r->element[2]->str, r->element[2]->len);
        }
        return !s->closing;
    }
    if (is_str(kind, "ssubscribe") && ch->type == REDIS_REPLY_STRING) {
        if (!head || head->kind != P_SSUB) {
            down(s, -EPROTO);
            return false;
        }
        pending_pop(s);
        return emit(s, LSHARD_SUBSCRIBED, ch->str, ch->len);
    }
    if (is_str(kind, "sunsubscribe") && ch->type == REDIS_REPLY_STRING) {
        /* Asked for, or the server's own after a slot move: the same to the owner. */
        return emit(s, LSHARD_UNSUBSCRIBED, ch->str, ch->len);
    }
    if (is_str(kind, "pong")) {
        if (!head || head->kind != P_SUNSUB) {
            down(s, -EPROTO);
            return false;
        }
        pending_pop(s);
    }
    return true;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct lshard_sub *s = h->data;
    *buf = uv_buf_init(s->rbuf, sizeof(s->rbuf));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct lshard_sub *s = stream->data;
    if (s->closing || s->state == S_DOWN) {
        return;
    }
    if (nread < 0) {
        down(s, nread == UV_EOF ? -ECONNRESET : (int)nread);
        return;
    }
    if (redisReaderFeed(s->reader, buf->base, (size_t)nread) != REDIS_OK) {
        down(s, -ENOMEM);
        return;
    }
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(s->reader, &reply) != REDIS_OK) {
            down(s, -EPROTO);
            return;
        }
        if (!reply) {
            return;
        }
        bool go_on = handle_reply(s, reply);
        freeReplyObject(reply);
        if (!go_on || s->closing || s->state == S_DOWN) {
            return;
        }
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    struct lshard_sub *s = req->data;
    if (s->closing) {
        return; /* UV_ECANCELED: lshard_sub_free closed the handle */
    }
    if (status < 0) {
        down(s, status);
        return;
    }
    uv_tcp_nodelay(&s->tcp, 1);
    uv_tcp_keepalive(&s->tcp, 1, 30);
    int rc = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
    s->state = s->head && s->head->kind == P_AUTH ? S_AUTH : S_UP;
    if (rc == 0 && s->outlen) {
        rc = write_now(s, s->out, s->outlen);
    }
    free(s->out);
    s->out = NULL;
    s->outlen = 0;
    if (rc < 0) {
        down(s, rc);
    } else if (s->state == S_UP) {
        emit(s, LSHARD_UP, NULL, 0);
    }
}

static void start_connect(struct lshard_sub *s, const struct sockaddr *addr)
{
    s->connect.data = s;
    int rc = uv_tcp_connect(&s->connect, &s->tcp, addr, on_connect);
    if (rc < 0) {
        down(s, rc);
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct lshard_sub *s = req->data;
    s->gai_active = false;
    if (s->closing) {
        uv_freeaddrinfo(res);
        maybe_free(s);
        return;
    }
    if (status < 0 || !res) {
        down(s, status < 0 ? status : -ENOENT);
    } else {
        start_connect(s, res->ai_addr);
    }
    uv_freeaddrinfo(res);
}

int lshard_sub_new(uv_loop_t *loop, const char *host, int port, const char *password,
                   lshard_msg_cb *on_msg, lshard_event_cb *on_event, void *ud,
                   struct lshard_sub **out)
{
    *out = NULL;
    if (!host || !host[0] || strlen(host) > 255 || port < 1 || port > 65535 || !on_msg ||
        !on_event) {
        return -EINVAL;
    }
    struct lshard_sub *s = calloc(1, sizeof(*s));
    if (!s) {
        return -ENOMEM;
    }
    s->loop = loop;
    s->port = port;
    s->on_msg = on_msg;
    s->on_event = on_event;
    s->ud = ud;
    s->state = S_CONNECTING;
    s->reader = redisReaderCreate();
    int rc = s->reader ? uv_tcp_init(loop, &s->tcp) : -ENOMEM;
    if (rc < 0) {
        redisReaderFree(s->reader);
        free(s);
        return rc;
    }
    s->tcp.data = s;
    s->tcp_open = true;
    if (password && password[0]) {
        /* AUTH goes first; LSHARD_UP waits for its +OK. */
        struct pending *p = pending_new(P_AUTH, NULL);
        const char *argv[] = {"AUTH", password};
        rc = p ? send_command(s, 2, argv, NULL, 0) : -ENOMEM;
        if (rc < 0) {
            free(p);
            goto fail;
        }
        pending_push(s, p);
    }
    /* An IP connects at once; a name is looked up off the loop first. */
    struct sockaddr_storage ss;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) == 0) {
        s->connect.data = s;
        rc = uv_tcp_connect(&s->connect, &s->tcp, (const struct sockaddr *)&ss, on_connect);
    } else {
        char port_s[8];
        snprintf(port_s, sizeof(port_s), "%d", port);
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        s->gai.data = s;
        rc = uv_getaddrinfo(loop, &s->gai, on_resolved, host, port_s, &hints);
        s->gai_active = rc == 0;
    }
    if (rc < 0) {
        goto fail;
    }
    *out = s;
    return 0;
fail:
    s->closing = true;
    uv_close((uv_handle_t *)&s->tcp, on_close);
    return rc;
}

/* Sends one channel's SSUBSCRIBE or SUNSUBSCRIBE (then PING) and queues its answer. */
static int sub_command(struct lshard_sub *s, const char *channel, bool unsub)
{
    if (!channel) {
        return -EINVAL;
    }
    if (s->state == S_DOWN) {
        return -ENOTCONN;
    }
    struct pending *p = pending_new(unsub ? P_SUNSUB : P_SSUB, channel);
    if (!p) {
        return -ENOMEM;
    }
    static const char ping[] = "*1\r\n$4\r\nPING\r\n";
    const char *argv[] = {unsub ? "SUNSUBSCRIBE" : "SSUBSCRIBE", channel};
    int rc = send_command(s, 2, argv, unsub ? ping : NULL, sizeof(ping) - 1);
    if (rc < 0) {
        free(p);
        return rc;
    }
    pending_push(s, p);
    return 0;
}

int lshard_sub_ssubscribe(struct lshard_sub *s, const char *channel)
{
    return sub_command(s, channel, false);
}

int lshard_sub_sunsubscribe(struct lshard_sub *s, const char *channel)
{
    return sub_command(s, channel, true);
}

int lshard_sub_error(const struct lshard_sub *s)
{
    return s->error;
}

void lshard_sub_free(struct lshard_sub *s)
{
    if (!s || s->closing) {
        return;
    }
    s->closing = true;
    if (s->gai_active) {
        uv_cancel((uv_req_t *)&s->gai); /* else its callback comes when the lookup ends */
    }
    uv_close((uv_handle_t *)&s->tcp, on_close);
}
