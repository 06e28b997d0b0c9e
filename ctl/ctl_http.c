/* ctl_http: a small blocking HTTP/1.1 client (one request per connection, poll() timeouts). */
#include "ctl/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* A response larger than this is refused rather than buffered without bound. */
#define MAX_RESPONSE (64u * 1024u * 1024u)
#define MAX_HEADERS  (64u * 1024u)

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

static int buf_reserve(struct buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1) {
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) {
        return -ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

static int buf_append(struct buf *b, const void *data, size_t len)
{
    int rc = buf_reserve(b, len);
    if (rc < 0) {
        return rc;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until deadline, clamped to [0, INT_MAX]. */
static int remaining_ms(int64_t deadline)
{
    int64_t left = deadline - now_ms();
    if (left < 0) {
        return 0;
    }
    return left > INT_MAX ? INT_MAX : (int)left;
}

/* Waits for events on fd until deadline; 0 when ready, -ETIMEDOUT, or -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = events};
        int left = remaining_ms(deadline);
        int n = poll(&pfd, 1, left);
        if (n > 0) {
            return 0;
        }
        if (n == 0) {
            return -ETIMEDOUT;
        }
        if (errno != EINTR) {
            return -errno;
        }
    }
}

static int connect_one(const struct addrinfo *ai, int64_t deadline, int *out_fd)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
        return -errno;
    }
    int rc = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS && errno != EINTR) {
            rc = -errno;
            close(fd);
            return rc;
        }
        rc = wait_fd(fd, POLLOUT, deadline);
        if (rc == 0) {
            int err = 0;
            socklen_t elen = sizeof(err);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0) {
                rc = -errno;
            } else if (err != 0) {
                rc = -err;
            }
        }
        if (rc < 0) {
            close(fd);
            return rc;
        }
    }
    *out_fd = fd;
    return 0;
}

static int connect_host(const char *host, int port, int64_t deadline, int *out_fd)
{
    char service[16];
    snprintf(service, sizeof(service), "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, service, &hints, &res);
    if (gai != 0) {
        switch (gai) {
        case EAI_AGAIN:
            return -EAGAIN;
        case EAI_MEMORY:
            return -ENOMEM;
        case EAI_SYSTEM:
            return errno ? -errno : -EHOSTUNREACH;
        default:
            return -EHOSTUNREACH;
        }
    }
    int rc = -EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        rc = connect_one(ai, deadline, out_fd);
        if (rc == 0 || rc == -ETIMEDOUT) {
            break;
        }
    }
    freeaddrinfo(res);
    return rc;
}

static int send_all(int fd, const char *data, size_t len, int64_t deadline)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(fd, POLLOUT, deadline);
            if (rc < 0) {
                return rc;
            }
            continue;
        }
        return n < 0 ? -errno : -EPIPE;
    }
    return 0;
}

/* Reads once into b; returns bytes read (0 at EOF) or a negative errno. */
static int recv_some(int fd, struct buf *b, int64_t deadline)
{
    for (;;) {
        if (b->len >= MAX_RESPONSE) {
            return -EMSGSIZE;
        }
        int rc = buf_reserve(b, 16384);
        if (rc < 0) {
            return rc;
        }
        ssize_t n = recv(fd, b->data + b->len, b->cap - b->len - 1, 0);
        if (n >= 0) {
            b->len += (size_t)n;
            b->data[b->len] = '\0';
            return (int)n;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            rc = wait_fd(fd, POLLIN, deadline);
            if (rc < 0) {
                return rc;
            }
            continue;
        }
        return -errno;
    }
}

enum body_mode { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_UNTIL_CLOSE };

struct resp_head {
    int status;
    enum body_mode mode;
    size_t content_length;
    size_t head_len; /* bytes up to and including the blank line */
    char content_type[128];
};

static const char *find_crlfcrlf(const char *s, size_t len)
{
    for (size_t i = 0; i + 3 < len; i++) {
        if (s[i] == '\r' && s[i + 1] == '\n' && s[i + 2] == '\r' && s[i + 3] == '\n') {
            return s + i;
        }
    }
    return NULL;
}

static bool header_value_has_token(const char *v, size_t vlen, const char *token)
{
    size_t tlen = strlen(token);
    for (size_t i = 0; i + tlen <= vlen; i++) {
        if (strncasecmp(v + i, token, tlen) == 0) {
            return true;
        }
    }
    return false;
}

/*
 * Parses the status line and headers in data[0, head_end) into h. method_head is true for a
 * HEAD request (which never has a body). Returns 0 or -EPROTO.
 */
static int parse_head(const char *data, size_t head_end, bool method_head, struct resp_head *h)
{
    memset(h, 0, sizeof(*h));
    h->head_len = head_end + 4;
    const char *line = data;
    const char *end = data + head_end;
    const char *eol = memchr(line, '\r', (size_t)(end - line));
    if (!eol) {
        eol = end;
    }
    /* "HTTP/1.x SSS reason" */
    if ((size_t)(eol - line) < 12 || strncmp(line, "HTTP/1.", 7) != 0 || line[8] != ' ') {
        return -EPROTO;
    }
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (line[i] < '0' || line[i] > '9') {
            return -EPROTO;
        }
        status = status * 10 + (line[i] - '0');
    }
    if (status < 100) {
        return -EPROTO;
    }
    h->status = status;
    bool have_length = false;
    bool chunked = false;
    line = eol;
    while (line < end) {
        if (line + 2 > end || line[0] != '\r' || line[1] != '\n') {
            return -EPROTO;
        }
        line += 2;
        eol = memchr(line, '\r', (size_t)(end - line));
        if (!eol) {
            eol = end;
        }
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (!colon) {
            return -EPROTO;
        }
        size_t nlen = (size_t)(colon - line);
        const char *v = colon + 1;
        while (v < eol && (*v == ' ' || *v == '\t')) {
            v++;
        }
        size_t vlen = (size_t)(eol - v);
        while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) {
            vlen--;
        }
        if (nlen == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
            size_t n = 0;
            if (vlen == 0) {
                return -EPROTO;
            }
            for (size_t i = 0; i < vlen; i++) {
                if (v[i] < '0' || v[i] > '9' || n > MAX_RESPONSE) {
                    return -EPROTO;
                }
                n = n * 10 + (size_t)(v[i] - '0');
            }
            if (have_length && n != h->content_length) {
                return -EPROTO;
            }
            have_length = true;
            h->content_length = n;
        } else if (nlen == 17 && strncasecmp(line, "Transfer-Encoding", 17) == 0) {
            if (header_value_has_token(v, vlen, "chunked")) {
                chunked = true;
            }
        } else if (nlen == 12 && strncasecmp(line, "Content-Type", 12) == 0) {
            size_t n = vlen < sizeof(h->content_type) - 1 ? vlen : sizeof(h->content_type) - 1;
            memcpy(h->content_type, v, n);
            h->content_type[n] = '\0';
        }
        line = eol;
    }
    if (method_head || status == 204 || status == 304 || (status >= 100 && status < 200)) {
        h->mode = BODY_NONE;
    } else if (chunked) {
        h->mode = BODY_CHUNKED;
    } else if (have_length) {
        if (h->content_length > MAX_RESPONSE) {
            return -EMSGSIZE;
        }
        h->mode = BODY_LENGTH;
    } else {
        h->mode = BODY_UNTIL_CLOSE;
    }
    return 0;
}

/*
 * Decodes a chunked body in src[0, len) into out. Returns 1 when the terminating chunk (and
 * trailers) were seen, 0 when more input is needed, -EPROTO on malformed input.
 */
static int dechunk(const char *src, size_t len, struct buf *out)
{
    size_t pos = 0;
    out->len = 0;
    for (;;) {
        const char *eol = NULL;
        for (size_t i = pos; i + 1 < len; i++) {
            if (src[i] == '\r' && src[i + 1] == '\n') {
                eol = src + i;
                break;
            }
        }
        if (!eol) {
            return len - pos > 1024 ? -EPROTO : 0;
        }
        size_t size = 0;
        size_t digits = 0;
        const char *p = src + pos;
        for (; p < eol; p++) {
            int d;
            if (*p >= '0' && *p <= '9') {
                d = *p - '0';
            } else if (*p >= 'a' && *p <= 'f') {
                d = *p - 'a' + 10;
            } else if (*p >= 'A' && *p <= 'F') {
                d = *p - 'A' + 10;
            } else {
                break; /* chunk extensions (";…") or whitespace follow */
            }
            if (size > MAX_RESPONSE) {
                return -EPROTO;
            }
            size = size * 16 + (size_t)d;
            digits++;
        }
        if (digits == 0 || (p < eol && *p != ';' && *p != ' ' && *p != '\t')) {
            return -EPROTO;
        }
        pos = (size_t)(eol - src) + 2;
        if (size == 0) {
            /* Trailers: lines until an empty one. */
            for (;;) {
                const char *t = NULL;
                for (size_t i = pos; i + 1 < len; i++) {
                    if (src[i] == '\r' && src[i + 1] == '\n') {
                        t = src + i;
                        break;
                    }
                }
                if (!t) {
                    return 0;
                }
                size_t tl = (size_t)(t - src) - pos;
                pos += tl + 2;
                if (tl == 0) {
                    return 1;
                }
            }
        }
        if (len - pos < size + 2) {
            return 0;
        }
        if (src[pos + size] != '\r' || src[pos + size + 1] != '\n') {
            return -EPROTO;
        }
        int rc = buf_append(out, src + pos, size);
        if (rc < 0) {
            return rc;
        }
        pos += size + 2;
    }
}

static int build_request(struct buf *req, const char *host, int port, const char *method,
                         const char *path, const char *token, const char *body)
{
    bool v6 = strchr(host, ':') != NULL;
    size_t blen = body ? strlen(body) : 0;
    bool want_length = body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                       strcmp(method, "PATCH") == 0;
    size_t need = strlen(method) + strlen(path) + strlen(host) + (token ? strlen(token) : 0) + 256;
    int rc = buf_reserve(req, need + blen);
    if (rc < 0) {
        return rc;
    }
    int n = snprintf(req->data, req->cap,
                     "%s %s HTTP/1.1\r\n"
                     "Host: %s%s%s:%d\r\n"
                     "User-Agent: giftctl/" GIFTD_VERSION "\r\n"
                     "Accept: application/json\r\n"
                     "Connection: close\r\n",
                     method, path, v6 ? "[" : "", host, v6 ? "]" : "", port);
    if (n < 0 || (size_t)n >= req->cap) {
        return -EINVAL;
    }
    req->len = (size_t)n;
    if (token) {
        const char *parts[] = {"Authorization: Bearer ", token, "\r\n"};
        for (size_t i = 0; i < 3; i++) {
            rc = buf_append(req, parts[i], strlen(parts[i]));
            if (rc < 0) {
                return rc;
            }
        }
    }
    if (want_length) {
        char line[96];
        n = snprintf(line, sizeof(line), "%sContent-Length: %zu\r\n",
                     body ? "Content-Type: application/json\r\n" : "", blen);
        rc = buf_append(req, line, (size_t)n);
        if (rc < 0) {
            return rc;
        }
    }
    rc = buf_append(req, "\r\n", 2);
    if (rc == 0 && blen) {
        rc = buf_append(req, body, blen);
    }
    return rc;
}

/* Rejects bytes that would let a caller inject header lines. */
static bool clean_field(const char *s)
{
    for (; *s; s++) {
        if (*s == '\r' || *s == '\n' || (unsigned char)*s < 0x20) {
            return false;
        }
    }
    return true;
}

int ctl_http_request(const char *host, int port, const char *method, const char *path,
                     const char *token, const char *body, int timeout_ms, struct ctl_http_resp *out)
{
    memset(out, 0, sizeof(*out));
    if (!host || !*host || !method || !*method || !path || path[0] != '/' || port <= 0 ||
        port > 65535 || !clean_field(host) || !clean_field(method) || !clean_field(path) ||
        strchr(method, ' ') || strchr(path, ' ') || (token && !clean_field(token))) {
        return -EINVAL;
    }
    int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    struct buf req = {0};
    struct buf in = {0};
    struct buf body_out = {0};
    int fd = -1;
    int rc = build_request(&req, host, port, method, path, token, body);
    if (rc < 0) {
        goto done;
    }
    rc = connect_host(host, port, deadline, &fd);
    if (rc < 0) {
        goto done;
    }
    rc = send_all(fd, req.data, req.len, deadline);
    if (rc < 0) {
        goto done;
    }

    bool is_head = strcmp(method, "HEAD") == 0;
    struct resp_head h = {0};
    bool have_head = false;
    bool eof = false;
    for (;;) {
        if (!have_head) {
            const char *e = find_crlfcrlf(in.data ? in.data : "", in.len);
            if (e) {
                rc = parse_head(in.data, (size_t)(e - in.data), is_head, &h);
                if (rc < 0) {
                    goto done;
                }
                if (h.status >= 100 && h.status < 200 && h.status != 101) {
                    /* An interim response: drop it and read the real one. */
                    memmove(in.data, in.data + h.head_len, in.len - h.head_len);
                    in.len -= h.head_len;
                    in.data[in.len] = '\0';
                    continue;
                }
                have_head = true;
            } else if (in.len > MAX_HEADERS) {
                rc = -EPROTO;
                goto done;
            } else if (eof) {
                rc = -EPROTO;
                goto done;
            }
        }
        if (have_head) {
            size_t avail = in.len - h.head_len;
            if (h.mode == BODY_NONE) {
                break;
            }
            if (h.mode == BODY_LENGTH && avail >= h.content_length) {
                rc = buf_append(&body_out, in.data + h.head_len, h.content_length);
                if (rc < 0) {
                    goto done;
                }
                break;
            }
            if (h.mode == BODY_CHUNKED) {
                rc = dechunk(in.data + h.head_len, avail, &body_out);
                if (rc < 0) {
                    goto done;
                }
                if (rc == 1) {
                    break;
                }
            }
            if (eof) {
                if (h.mode == BODY_UNTIL_CLOSE) {
                    rc = buf_append(&body_out, in.data + h.head_len, avail);
                    if (rc < 0) {
                        goto done;
                    }
                    break;
                }
                rc = -EPROTO; /* truncated body */
                goto done;
            }
        }
        int n = recv_some(fd, &in, deadline);
        if (n < 0) {
            rc = n;
            goto done;
        }
        if (n == 0) {
            eof = true;
        }
    }

    if (!body_out.data) {
        rc = buf_append(&body_out, "", 0);
        if (rc < 0) {
            goto done;
        }
    }
    out->status = h.status;
    out->body = body_out.data;
    out->body_len = body_out.len;
    body_out.data = NULL;
    snprintf(out->content_type, sizeof(out->content_type), "%s", h.content_type);
    rc = 0;

done:
    if (fd >= 0) {
        close(fd);
    }
    free(req.data);
    free(in.data);
    free(body_out.data);
    return rc;
}

void ctl_http_resp_cleanup(struct ctl_http_resp *out)
{
    if (!out) {
        return;
    }
    free(out->body);
    out->body = NULL;
    out->body_len = 0;
}

int ctl_url_parse(const char *url, char *out_host, size_t hostlen, int *out_port)
{
    if (!url || !out_host || hostlen == 0 || !out_port) {
        return -EINVAL;
    }
    const char *p = url;
    if (strncasecmp(p, "http://", 7) != 0) {
        return -EINVAL;
    }
    p += 7;
    const char *host;
    size_t hlen;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (!close) {
            return -EINVAL;
        }
        host = p + 1;
        hlen = (size_t)(close - host);
        p = close + 1;
    } else {
        host = p;
        hlen = strcspn(p, ":/");
        p += hlen;
    }
    if (hlen == 0 || hlen >= hostlen) {
        return -EINVAL;
    }
    for (size_t i = 0; i < hlen; i++) {
        unsigned char c = (unsigned char)host[i];
        if (c <= 0x20 || c == '@' || c == '?' || c == '#' || c == '/' || c >= 0x7f) {
            return -EINVAL;
        }
    }
    int port = 80;
    if (*p == ':') {
        p++;
        if (*p < '0' || *p > '9') {
            return -EINVAL;
        }
        port = 0;
        while (*p >= '0' && *p <= '9') {
            port = port * 10 + (*p - '0');
            if (port > 65535) {
                return -EINVAL;
            }
            p++;
        }
        if (port == 0) {
            return -EINVAL;
        }
    }
    if (*p == '/') {
        p++;
    }
    if (*p != '\0') {
        return -EINVAL;
    }
    memcpy(out_host, host, hlen);
    out_host[hlen] = '\0';
    *out_port = port;
    return 0;
}
