/* http: the blocking HTTP/1.1 client giftload uses for set-up (open rooms, recharge senders). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loadtest/loadtest.h"

#define MAX_ANSWER (4u * 1024u * 1024u)

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on fd until deadline; returns 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - mono_ms();
        if (left <= 0) {
            return -ETIMEDOUT;
        }
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)left);
        if (n > 0) {
            return 0;
        }
        if (n < 0 && errno != EINTR) {
            return -errno;
        }
    }
}

static int send_all(int fd, const char *data, size_t len, int64_t deadline)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return -errno;
        }
        int rc = wait_fd(fd, POLLOUT, deadline);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

/* Reads everything until the peer closes into a **new** buffer. */
static int recv_all(int fd, int64_t deadline, char **out, size_t *out_len)
{
    size_t cap = 4096, len = 0;
    char *b = malloc(cap);
    if (!b) {
        return -ENOMEM;
    }
    for (;;) {
        if (len + 1 >= cap) {
            if (cap >= MAX_ANSWER) {
                free(b);
                return -EMSGSIZE;
            }
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                return -ENOMEM;
            }
            b = nb;
            cap *= 2;
        }
        ssize_t n = recv(fd, b + len, cap - len - 1, MSG_DONTWAIT);
        if (n > 0) {
            len += (size_t)n;
            continue;
        }
        if (n == 0) {
            break;
        }
        if (errno != EAGAIN && errno != EINTR) {
            int e = -errno;
            free(b);
            return e;
        }
        int rc = wait_fd(fd, POLLIN, deadline);
        if (rc < 0) {
            free(b);
            return rc;
        }
    }
    b[len] = '\0';
    *out = b;
    *out_len = len;
    return 0;
}

/* The body of an answer whose headers end at hdr_end: Content-Length or read-until-close. */
static char *answer_body(const char *ans, size_t len, const char *hdr_end)
{
    const char *body = hdr_end + 4;
    size_t blen = len - (size_t)(body - ans);
    for (const char *h = strstr(ans, "\r\n"); h && h < hdr_end; h = strstr(h + 2, "\r\n")) {
        if (strncasecmp(h + 2, "content-length:", 15) == 0) {
            size_t cl = (size_t)strtoull(h + 17, NULL, 10);
            if (cl < blen) {
                blen = cl;
            }
        }
    }
    char *out = malloc(blen + 1);
    if (out) {
        memcpy(out, body, blen);
        out[blen] = '\0';
    }
    return out;
}

int load_http(const struct sockaddr_in *addr, const char *host, const char *method,
              const char *path, const char *token, const char *body, int timeout_ms,
              int *out_status, char **out_body)
{
    int64_t deadline = mono_ms() + timeout_ms;
    size_t blen = body ? strlen(body) : 0;
    size_t cap =
        strlen(method) + strlen(path) + strlen(host) + (token ? strlen(token) : 0) + blen + 256;
    char *req = malloc(cap);
    if (!req) {
        return -ENOMEM;
    }
    int n = snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, path,
                     host);
    if (token) {
        n += snprintf(req + n, cap - (size_t)n, "Authorization: Bearer %s\r\n", token);
    }
    if (body) {
        n += snprintf(req + n, cap - (size_t)n,
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
    }
    n += snprintf(req + n, cap - (size_t)n, "\r\n%s", body ? body : "");

    int rc;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        free(req);
        return -errno;
    }
    if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0 && errno != EINPROGRESS) {
        rc = -errno;
        goto out;
    }
    rc = wait_fd(fd, POLLOUT, deadline);
    if (rc < 0) {
        goto out;
    }
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
        rc = soerr ? -soerr : -errno;
        goto out;
    }
    rc = send_all(fd, req, (size_t)n, deadline);
    if (rc < 0) {
        goto out;
    }
    char *ans = NULL;
    size_t alen = 0;
    rc = recv_all(fd, deadline, &ans, &alen);
    if (rc < 0) {
        goto out;
    }
    const char *hdr_end = strstr(ans, "\r\n\r\n");
    int status = 0;
    if (!hdr_end || sscanf(ans, "HTTP/1.%*d %d", &status) != 1) {
        free(ans);
        rc = -EPROTO;
        goto out;
    }
    *out_body = answer_body(ans, alen, hdr_end);
    free(ans);
    if (!*out_body) {
        rc = -ENOMEM;
        goto out;
    }
    *out_status = status;
    rc = 0;
out:
    close(fd);
    free(req);
    return rc;
}
