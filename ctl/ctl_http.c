/* ctl_http: a small blocking HTTP/1.1 client on libcurl (one request per connection). */
#include "ctl/ctl.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A response larger than this is refused rather than buffered without bound. */
#define MAX_RESPONSE (64u * 1024u * 1024u)

struct sink {
    char *data;
    size_t len;
    size_t cap;
    int err; /* why the write callback refused data: -EMSGSIZE or -ENOMEM */
};

/* CURLOPT_WRITEFUNCTION: appends to the sink, keeping it NUL-terminated. */
static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct sink *s = userdata;
    size_t n = size * nmemb;
    if (n > MAX_RESPONSE - s->len) {
        s->err = -EMSGSIZE;
        return 0;
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n + 1) {
            cap *= 2;
        }
        char *p = realloc(s->data, cap);
        if (!p) {
            s->err = -ENOMEM;
            return 0;
        }
        s->data = p;
        s->cap = cap;
    }
    memcpy(s->data + s->len, ptr, n);
    s->len += n;
    s->data[s->len] = '\0';
    return n;
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

/* The negative errno for a failed transfer; fills error for -EPROTO. */
static int failure(CURL *h, CURLcode cc, const struct sink *s, const char *errbuf, char *error,
                   size_t errlen)
{
    long os_errno = 0;
    curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
    switch (cc) {
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return -EINVAL;
    case CURLE_COULDNT_RESOLVE_HOST:
        return -EHOSTUNREACH;
    case CURLE_COULDNT_CONNECT:
        return os_errno > 0 ? -(int)os_errno : -ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_WRITE_ERROR:
        return s->err < 0 ? s->err : -EIO;
    case CURLE_FILESIZE_EXCEEDED:
        return -EMSGSIZE;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
        if (os_errno > 0) {
            return -(int)os_errno;
        }
        break;
    default:
        break;
    }
    snprintf(error, errlen, "%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
    return -EPROTO;
}

int ctl_http_request_url(const char *base_url, const char *method, const char *path,
                         const char *token, const char *body, const char *cacert, int timeout_ms,
                         struct ctl_http_resp *out)
{
    memset(out, 0, sizeof(*out));
    char host[256];
    int port = 0;
    bool tls = false;
    if (!base_url || ctl_url_parse(base_url, host, sizeof(host), &port, &tls) < 0 || !method ||
        !*method || !path || path[0] != '/' || !clean_field(method) || !clean_field(path) ||
        strchr(method, ' ') || strchr(path, ' ') || (token && !clean_field(token))) {
        return -EINVAL;
    }
    /* The URL is rebuilt from its parts, so curl sees exactly the host, port and path given. */
    bool v6 = strchr(host, ':') != NULL;
    char *url = NULL;
    if (asprintf(&url, "%s://%s%s%s:%d%s", tls ? "https" : "http", v6 ? "[" : "", host,
                 v6 ? "]" : "", port, path) < 0) {
        return -ENOMEM;
    }
    char *auth = NULL;
    if (token && asprintf(&auth, "Authorization: Bearer %s", token) < 0) {
        free(url);
        return -ENOMEM;
    }
    struct sink s = {0};
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *headers = NULL;
    int rc = -ENOMEM;
    CURL *h = curl_easy_init();
    if (!h) {
        goto done;
    }
    /* Accept, the bearer token and the body's type; "Expect:" and an empty Content-Type stop
     * curl adding its own (100-continue, a form type for an empty PUT). */
    const char *lines[] = {"Accept: application/json", "Connection: close", "Expect:",
                           body ? "Content-Type: application/json" : "Content-Type:", auth};
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        if (!lines[i]) {
            continue;
        }
        struct curl_slist *l = curl_slist_append(headers, lines[i]);
        if (!l) {
            goto done;
        }
        headers = l;
    }
    bool is_head = strcmp(method, "HEAD") == 0;
    bool want_body = body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                     strcmp(method, "PATCH") == 0;
    CURLcode cc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cc == CURLE_OK) {                                                                      \
            cc = curl_easy_setopt(h, opt, val);                                                    \
        }                                                                                          \
    } while (0)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_PATH_AS_IS, 1L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROXY, ""); /* ignore http_proxy and friends: giftd is addressed directly */
    SET(CURLOPT_FORBID_REUSE, 1L);
    SET(CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? (long)timeout_ms : 1L);
    SET(CURLOPT_USERAGENT, "giftctl/" GIFTD_VERSION);
    SET(CURLOPT_HTTPHEADER, headers);
    SET(CURLOPT_ERRORBUFFER, errbuf);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, &s);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)MAX_RESPONSE);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (cacert) {
        SET(CURLOPT_CAINFO, cacert);
    }
    if (is_head) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") != 0) {
        SET(CURLOPT_CUSTOMREQUEST, method);
    }
    if (want_body && !is_head) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? strlen(body) : 0));
        SET(CURLOPT_POSTFIELDS, body ? body : "");
    }
#undef SET
    if (cc != CURLE_OK) {
        rc = cc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
        goto done;
    }
    cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        rc = failure(h, cc, &s, errbuf, out->error, sizeof(out->error));
        goto done;
    }
    long status = 0;
    const char *ctype = NULL;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ctype);
    if (status < 100 || status > 999) {
        snprintf(out->error, sizeof(out->error), "no HTTP status line");
        rc = -EPROTO;
        goto done;
    }
    if (!s.data && !(s.data = calloc(1, 1))) {
        rc = -ENOMEM;
        goto done;
    }
    out->status = (int)status;
    out->body = s.data; /* steals */
    out->body_len = s.len;
    s.data = NULL;
    snprintf(out->content_type, sizeof(out->content_type), "%s", ctype ? ctype : "");
    rc = 0;

done:
    if (h) {
        curl_easy_cleanup(h);
    }
    curl_slist_free_all(headers);
    free(s.data);
    free(auth);
    free(url);
    return rc;
}

int ctl_http_request(const char *host, int port, const char *method, const char *path,
                     const char *token, const char *body, int timeout_ms, struct ctl_http_resp *out)
{
    memset(out, 0, sizeof(*out));
    if (!host || !*host || port <= 0 || port > 65535) {
        return -EINVAL;
    }
    char base[300];
    bool v6 = strchr(host, ':') != NULL;
    int n =
        snprintf(base, sizeof(base), "http://%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", port);
    if (n < 0 || (size_t)n >= sizeof(base)) {
        return -EINVAL;
    }
    return ctl_http_request_url(base, method, path, token, body, NULL, timeout_ms, out);
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

int ctl_url_parse(const char *url, char *out_host, size_t hostlen, int *out_port, bool *out_tls)
{
    if (!url || !out_host || hostlen == 0 || !out_port) {
        return -EINVAL;
    }
    const char *p = url;
    bool tls;
    if (strncasecmp(p, "http://", 7) == 0) {
        tls = false;
        p += 7;
    } else if (strncasecmp(p, "https://", 8) == 0) {
        tls = true;
        p += 8;
    } else {
        return -EINVAL;
    }
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
    int port = tls ? 443 : 80;
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
    if (out_tls) {
        *out_tls = tls;
    }
    return 0;
}
