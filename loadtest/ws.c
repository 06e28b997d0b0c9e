/* ws: giftload's RFC 6455 client connections on one libuv loop — connect, upgrade, framing. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "auth/auth.h"
#include "loadtest/loadtest.h"

#define WS_GUID         "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_HANDSHAKE   16384
#define MAX_MESSAGE     (64u * 1024u * 1024u)
#define TRY_WRITE_STACK 2048
#define KEEP_MSG        16384
#define OP_CONTINUATION 0x0
#define OP_TEXT         0x1
#define OP_BINARY       0x2
#define OP_CLOSE        0x8
#define OP_PING         0x9
#define OP_PONG         0xA
#define TOKEN_EXTRA_TTL 3600

/* A write that did not complete at once: the request and the bytes it still owns. */
struct wreq {
    uv_write_t req;
    size_t len;
    char data[];
};

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: masks and handshake keys need no cryptographic strength here. */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static void on_closed(uv_handle_t *h)
{
    struct load_conn *c = h->data;
    free(c->rbuf);
    free(c->msg);
    c->rbuf = c->msg = NULL;
    c->rlen = c->rcap = c->mlen = c->mcap = 0;
    c->state = LOAD_CONN_CLOSED;
}

/* Leaves the room's count if c was joined; then closes the handle. */
static void conn_shutdown(struct load_conn *c)
{
    if (c->state == LOAD_CONN_CLOSING || c->state == LOAD_CONN_CLOSED ||
        c->state == LOAD_CONN_IDLE) {
        return;
    }
    if (c->state == LOAD_CONN_JOINED) {
        c->L->joined--;
        c->L->rooms[c->room].joined--;
    }
    c->state = LOAD_CONN_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* A connection that never got joined: one connect failure with reason. */
static void conn_fail(struct load_conn *c, const char *reason)
{
    if (c->state == LOAD_CONN_CLOSING || c->state == LOAD_CONN_CLOSED) {
        return;
    }
    if (c->state != LOAD_CONN_JOINED && !c->failed) {
        c->failed = true;
        c->L->connect_failures++;
        load_codes_add(&c->L->connect_errors, reason, strlen(reason));
        load_on_settled(c);
    }
    conn_shutdown(c);
}

/* The server ended c (close frame, EOF, error): closed early when it was joined. */
static void conn_lost(struct load_conn *c, const char *why)
{
    if (c->state == LOAD_CONN_JOINED) {
        char code[16];
        snprintf(code, sizeof(code), "%u", c->got_close_frame ? c->close_code : 1006u);
        load_codes_add(&c->L->closed_early, code, strlen(code));
        conn_shutdown(c);
        return;
    }
    char reason[48];
    if (c->got_close_frame) {
        snprintf(reason, sizeof(reason), "close_%u", c->close_code);
    } else {
        snprintf(reason, sizeof(reason), "%s", why);
    }
    conn_fail(c, reason);
}

void load_conn_close(struct load_conn *c, const char *reason)
{
    if (reason) {
        conn_fail(c, reason);
    } else {
        conn_shutdown(c);
    }
}

static void on_written(uv_write_t *req, int status)
{
    (void)status; /* a failed write shows up on the read side as an error or EOF */
    free(req);
}

/* Writes len bytes in order: at once when the socket takes them, else queued. */
static int send_raw(struct load_conn *c, const char *data, size_t len)
{
    if (c->state == LOAD_CONN_CLOSING || c->state == LOAD_CONN_CLOSED) {
        return -EPIPE;
    }
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)len) {
        return 0;
    }
    if (n < 0 && n != UV_EAGAIN) {
        return n;
    }
    size_t done = n > 0 ? (size_t)n : 0;
    struct wreq *w = malloc(sizeof(*w) + len - done);
    if (!w) {
        return -ENOMEM;
    }
    w->len = len - done;
    memcpy(w->data, data + done, w->len);
    uv_buf_t rest = uv_buf_init(w->data, (unsigned)w->len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &rest, 1, on_written);
    if (rc < 0) {
        free(w);
        return rc;
    }
    return 0;
}

/* Sends one masked frame (FIN set) with opcode op. */
static int send_frame(struct load_conn *c, unsigned op, const char *payload, size_t len)
{
    char stack[TRY_WRITE_STACK];
    size_t hdr = 2 + 4 + (len < 126 ? 0 : len <= 0xFFFF ? 2 : 8);
    char *f = hdr + len <= sizeof(stack) ? stack : malloc(hdr + len);
    if (!f) {
        return -ENOMEM;
    }
    unsigned char *u = (unsigned char *)f;
    u[0] = (unsigned char)(0x80u | op);
    size_t i = 2;
    if (len < 126) {
        u[1] = (unsigned char)(0x80u | len);
    } else if (len <= 0xFFFF) {
        u[1] = 0x80u | 126u;
        u[2] = (unsigned char)(len >> 8);
        u[3] = (unsigned char)len;
        i = 4;
    } else {
        u[1] = 0x80u | 127u;
        for (int k = 0; k < 8; k++) {
            u[2 + k] = (unsigned char)((uint64_t)len >> (56 - 8 * k));
        }
        i = 10;
    }
    uint32_t mask32 = (uint32_t)rng_next(&c->L->rng);
    unsigned char mask[4];
    memcpy(mask, &mask32, 4);
    memcpy(u + i, mask, 4);
    i += 4;
    for (size_t k = 0; k < len; k++) {
        u[i + k] = (unsigned char)((unsigned char)payload[k] ^ mask[k & 3]);
    }
    int rc = send_raw(c, f, hdr + len);
    if (f != stack) {
        free(f);
    }
    return rc;
}

int load_conn_send_text(struct load_conn *c, const char *text, size_t len)
{
    if (c->state != LOAD_CONN_OPEN && c->state != LOAD_CONN_JOINED) {
        return -ENOTCONN;
    }
    return send_frame(c, OP_TEXT, text, len);
}

static int buf_append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
    if (*len + n > *cap) {
        size_t nc = *cap ? *cap : 4096;
        while (nc < *len + n) {
            nc *= 2;
        }
        char *p = realloc(*buf, nc);
        if (!p) {
            return -ENOMEM;
        }
        *buf = p;
        *cap = nc;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    return 0;
}

/* ---- events ------------------------------------------------------------------------------ */

static void on_ev(void *ud, const struct load_ev *ev)
{
    struct load_conn *c = ud;
    struct load *L = c->L;
    if (c->state == LOAD_CONN_OPEN) {
        if (ev->type == LOAD_EV_JOINED) {
            c->state = LOAD_CONN_JOINED;
            L->joined++;
            L->ever_joined++;
            L->rooms[c->room].joined++;
            L->t_last_join_ns = uv_hrtime();
            load_on_settled(c);
            return;
        }
        if (ev->type == LOAD_EV_ERROR && !ev->id) {
            /* room_not_live, unauthorized …: the join did not happen. */
            char reason[48];
            snprintf(reason, sizeof(reason), "%.*s", (int)(ev->code ? ev->code_len : 5),
                     ev->code ? ev->code : "error");
            conn_fail(c, reason);
            return;
        }
    }
    if (c->state != LOAD_CONN_JOINED) {
        return;
    }
    load_on_event(c, ev);
}

static void on_message(struct load_conn *c, const char *text, size_t len)
{
    struct load *L = c->L;
    L->frames++;
    if (c->state == LOAD_CONN_JOINED && !c->sampled && !c->sender && !L->o.full_scan) {
        long n = load_count_gifts(text, len);
        if (n >= 0) {
            if (text[9] == 'b') {
                L->batch_frames++;
            }
            if (n > 0) {
                L->deliveries += (uint64_t)n;
                L->t_last_delivery_ns = load_now_ns(L);
            }
            return;
        }
    }
    static const char batch[] = "{\"type\":\"batch\"";
    if (len >= sizeof(batch) - 1 && memcmp(text, batch, sizeof(batch) - 1) == 0) {
        L->batch_frames++;
    }
    if (load_scan_frame(text, len, on_ev, c) < 0) {
        load_codes_add(&L->errors_other, "bad_frame", 9);
    }
}

/* One complete frame. */
static void on_frame(struct load_conn *c, unsigned b0, char *payload, size_t len)
{
    unsigned op = b0 & 0x0Fu;
    bool fin = (b0 & 0x80u) != 0;
    switch (op) {
    case OP_TEXT:
    case OP_BINARY:
        if (c->msg_op) {
            conn_lost(c, "protocol_error");
            return;
        }
        if (fin) {
            on_message(c, payload, len);
            return;
        }
        c->msg_op = (uint8_t)op;
        c->mlen = 0;
        if (buf_append(&c->msg, &c->mlen, &c->mcap, payload, len) < 0) {
            conn_lost(c, "oom");
        }
        return;
    case OP_CONTINUATION:
        if (!c->msg_op || c->mlen + len > MAX_MESSAGE) {
            conn_lost(c, "protocol_error");
            return;
        }
        if (buf_append(&c->msg, &c->mlen, &c->mcap, payload, len) < 0) {
            conn_lost(c, "oom");
            return;
        }
        if (fin) {
            c->msg_op = 0;
            on_message(c, c->msg, c->mlen);
            c->mlen = 0;
            if (c->mcap > KEEP_MSG) {
                free(c->msg);
                c->msg = NULL;
                c->mcap = 0;
            }
        }
        return;
    case OP_CLOSE: {
        c->got_close_frame = true;
        unsigned code = 1005; /* no status code in the frame */
        if (len >= 2) {
            code = ((unsigned)(unsigned char)payload[0] << 8) | (unsigned char)payload[1];
        }
        c->close_code = (uint16_t)code;
        unsigned char echo[2] = {(unsigned char)(c->close_code >> 8), (unsigned char)c->close_code};
        if (c->close_code != 1005) {
            send_frame(c, OP_CLOSE, (const char *)echo, 2);
        } else {
            send_frame(c, OP_CLOSE, NULL, 0);
        }
        conn_lost(c, "closed");
        return;
    }
    case OP_PING:
        send_frame(c, OP_PONG, payload, len);
        return;
    case OP_PONG:
        return;
    default:
        conn_lost(c, "protocol_error");
        return;
    }
}

/* Parses complete frames from data; returns the bytes consumed (stops when c closes). */
static size_t parse_frames(struct load_conn *c, char *data, size_t len)
{
    size_t off = 0;
    while (c->state == LOAD_CONN_OPEN || c->state == LOAD_CONN_JOINED) {
        size_t avail = len - off;
        if (avail < 2) {
            break;
        }
        unsigned char *p = (unsigned char *)data + off;
        size_t hdr = 2;
        uint64_t plen = p[1] & 0x7Fu;
        if (plen == 126) {
            if (avail < 4) {
                break;
            }
            plen = ((uint64_t)p[2] << 8) | p[3];
            hdr = 4;
        } else if (plen == 127) {
            if (avail < 10) {
                break;
            }
            plen = 0;
            for (int k = 0; k < 8; k++) {
                plen = (plen << 8) | p[2 + k];
            }
            hdr = 10;
        }
        bool masked = (p[1] & 0x80u) != 0;
        if (masked) {
            hdr += 4;
        }
        if (plen > MAX_MESSAGE) {
            conn_lost(c, "frame_too_large");
            break;
        }
        if (avail < hdr + plen) {
            break;
        }
        char *payload = (char *)p + hdr;
        if (masked) {
            const unsigned char *m = p + hdr - 4;
            for (uint64_t k = 0; k < plen; k++) {
                payload[k] = (char)((unsigned char)payload[k] ^ m[k & 3]);
            }
        }
        off += hdr + (size_t)plen;
        on_frame(c, p[0], payload, (size_t)plen);
    }
    return off;
}

/* Looks for the end of the upgrade answer in c->rbuf; switches to frames once it checks. */
static void on_handshake_bytes(struct load_conn *c)
{
    char *end = NULL;
    for (size_t i = 3; i < c->rlen; i++) {
        if (c->rbuf[i] == '\n' && c->rbuf[i - 1] == '\r' && c->rbuf[i - 2] == '\n' &&
            c->rbuf[i - 3] == '\r') {
            end = c->rbuf + i + 1;
            break;
        }
    }
    if (!end) {
        if (c->rlen > MAX_HANDSHAKE) {
            conn_fail(c, "bad_handshake");
        }
        return;
    }
    int status = 0;
    char reason[48];
    if (sscanf(c->rbuf, "HTTP/1.%*d %d", &status) != 1) {
        conn_fail(c, "bad_handshake");
        return;
    }
    if (status != 101) {
        snprintf(reason, sizeof(reason), "http_%d", status);
        conn_fail(c, reason);
        return;
    }
    bool accepted = false;
    static const char hname[] = "sec-websocket-accept:";
    for (char *h = c->rbuf; h && h < end;) {
        char *nl = memchr(h, '\n', (size_t)(end - h));
        if (!nl) {
            break;
        }
        if ((size_t)(nl - h) > sizeof(hname) && strncasecmp(h, hname, sizeof(hname) - 1) == 0) {
            char *v = h + sizeof(hname) - 1;
            while (*v == ' ' || *v == '\t') {
                v++;
            }
            size_t vlen = strlen(c->accept);
            accepted = (size_t)(nl - v) >= vlen && memcmp(v, c->accept, vlen) == 0;
        }
        h = nl + 1;
    }
    if (!accepted) {
        conn_fail(c, "bad_accept");
        return;
    }
    size_t rest = c->rlen - (size_t)(end - c->rbuf);
    memmove(c->rbuf, end, rest);
    c->rlen = rest;
    c->state = LOAD_CONN_OPEN;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct load_conn *c = h->data;
    *buf = uv_buf_init(c->L->readbuf, (unsigned)c->L->readbuf_len);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct load_conn *c = s->data;
    if (nread < 0) {
        conn_lost(c, nread == UV_EOF ? "eof" : uv_err_name((int)nread));
        return;
    }
    if (nread == 0 || c->state == LOAD_CONN_CLOSING || c->state == LOAD_CONN_CLOSED) {
        return;
    }
    c->L->bytes_in += (uint64_t)nread;
    c->L->now_ns = 0;
    size_t n = (size_t)nread;
    if (c->state == LOAD_CONN_HANDSHAKE) {
        if (buf_append(&c->rbuf, &c->rlen, &c->rcap, buf->base, n) < 0) {
            conn_fail(c, "oom");
            return;
        }
        on_handshake_bytes(c);
        if (c->state != LOAD_CONN_OPEN) {
            return;
        }
        if (c->rlen == 0) {
            free(c->rbuf);
            c->rbuf = NULL;
            c->rcap = 0;
            return;
        }
        n = 0; /* the bytes after the answer are in rbuf now */
    }
    if (c->rlen > 0) {
        if (n > 0 && buf_append(&c->rbuf, &c->rlen, &c->rcap, buf->base, n) < 0) {
            conn_lost(c, "oom");
            return;
        }
        size_t used = parse_frames(c, c->rbuf, c->rlen);
        if (c->state == LOAD_CONN_OPEN || c->state == LOAD_CONN_JOINED) {
            memmove(c->rbuf, c->rbuf + used, c->rlen - used);
            c->rlen -= used;
            if (c->rlen == 0) {
                /* Partial frames are the exception: tens of thousands of idle buffers are not. */
                free(c->rbuf);
                c->rbuf = NULL;
                c->rcap = 0;
            }
        }
        return;
    }
    size_t used = parse_frames(c, buf->base, n);
    if (used < n && (c->state == LOAD_CONN_OPEN || c->state == LOAD_CONN_JOINED)) {
        if (buf_append(&c->rbuf, &c->rlen, &c->rcap, buf->base + used, n - used) < 0) {
            conn_lost(c, "oom");
        }
    }
}

/* ---- connect ----------------------------------------------------------------------------- */

static void b64(const unsigned char *in, size_t len, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct load_conn *c = req->handle->data;
    if (status == UV_ECANCELED || c->state != LOAD_CONN_CONNECTING) {
        return;
    }
    struct load *L = c->L;
    if (status < 0) {
        conn_fail(c, uv_err_name(status));
        return;
    }
    /* Key and the Sec-WebSocket-Accept it calls for. */
    unsigned char key_raw[16];
    uint64_t r1 = rng_next(&L->rng), r2 = rng_next(&L->rng);
    memcpy(key_raw, &r1, 8);
    memcpy(key_raw + 8, &r2, 8);
    char key[32];
    b64(key_raw, sizeof(key_raw), key);
    char cat[80];
    int catlen = snprintf(cat, sizeof(cat), "%s%s", key, WS_GUID);
    unsigned char sha[EVP_MAX_MD_SIZE];
    unsigned shalen = 0;
    if (!EVP_Digest(cat, (size_t)catlen, sha, &shalen, EVP_sha1(), NULL)) {
        conn_fail(c, "sha1");
        return;
    }
    b64(sha, shalen, c->accept);

    struct auth_claims cl = {0};
    if (c->sender) {
        snprintf(cl.sub, sizeof(cl.sub), "%s-s%u", L->o.prefix, c->idx - L->o.viewers);
        snprintf(cl.name, sizeof(cl.name), "sender %u", c->idx - L->o.viewers);
    } else {
        snprintf(cl.sub, sizeof(cl.sub), "%s-v%u", L->o.prefix, c->idx);
        snprintf(cl.name, sizeof(cl.name), "viewer %u", c->idx);
    }
    cl.role = AUTH_ROLE_VIEWER;
    cl.exp = (int64_t)time(NULL) + (int64_t)(L->o.duration + L->o.ramp_up + L->o.drain) +
             TOKEN_EXTRA_TTL;
    char *token = NULL;
    if (auth_jwt_sign(&cl, L->o.secret, strlen(L->o.secret), &token) < 0) {
        conn_fail(c, "token");
        return;
    }
    char req_text[4096];
    int n = snprintf(req_text, sizeof(req_text),
                     "GET %s?token=%s&room=%s HTTP/1.1\r\n"
                     "Host: %s:%d\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     L->o.path, token, L->room_names[c->room], L->o.host, L->o.port, key);
    free(token);
    if (n < 0 || (size_t)n >= sizeof(req_text)) {
        conn_fail(c, "request_too_long");
        return;
    }
    c->state = LOAD_CONN_HANDSHAKE;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc == 0) {
        rc = send_raw(c, req_text, (size_t)n);
    }
    if (rc < 0) {
        conn_fail(c, uv_err_name(rc));
    }
}

void load_conn_open(struct load *L, struct load_conn *c)
{
    c->L = L;
    c->t_open_ns = uv_hrtime();
    L->opened++;
    int rc = uv_tcp_init_ex(L->loop, &c->tcp, AF_INET);
    if (rc < 0) {
        /* No handle to close: count the failure by hand. */
        c->failed = true;
        c->state = LOAD_CONN_CLOSED;
        L->connect_failures++;
        load_codes_add(&L->connect_errors, uv_err_name(rc), strlen(uv_err_name(rc)));
        load_on_settled(c);
        return;
    }
    c->tcp.data = c;
    c->state = LOAD_CONN_CONNECTING;
    uv_tcp_nodelay(&c->tcp, 1);
    if (L->nsrc > 0) {
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
            /* Pick the port at connect time, per 4-tuple, so each source address has the
             * whole ephemeral range to itself. */
            int one = 1;
            setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        }
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
        sa.sin_addr = L->src[c->idx % L->nsrc];
        rc = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&sa, 0);
        if (rc < 0) {
            conn_fail(c, uv_err_name(rc));
            return;
        }
    }
    rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&L->server, on_connect);
    if (rc < 0) {
        conn_fail(c, uv_err_name(rc));
    }
}
