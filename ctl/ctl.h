/* ctl: giftctl's blocking HTTP/1.1 client, also used by the test kit. */
#ifndef GIFTD_CTL_H
#define GIFTD_CTL_H

#include <stddef.h>

struct ctl_http_resp {
    int status;  /* HTTP status, e.g. 200 */
    char *body;  /* **new** NUL-terminated body (ctl_http_resp_cleanup frees), "" if none */
    size_t body_len;
    char content_type[128];
};

/**
 * One blocking HTTP/1.1 request with "Connection: close" to host:port (numeric IPv4 or a
 * name), following no redirects. method, path (with query), token (NULL: no Authorization
 * header; else "Authorization: Bearer <token>"), body (NULL: none; else sent with
 * Content-Type: application/json and Content-Length) are borrowed. Handles Content-Length,
 * chunked and read-until-close responses. timeout_ms bounds the whole exchange.
 * Returns 0 and fills out, or a negative errno (-ECONNREFUSED, -ETIMEDOUT, -EPROTO …).
 */
int ctl_http_request(const char *host, int port, const char *method, const char *path,
                     const char *token, const char *body, int timeout_ms,
                     struct ctl_http_resp *out);

/** Frees out->body; safe on a zeroed struct. */
void ctl_http_resp_cleanup(struct ctl_http_resp *out);

/**
 * Splits a base URL "http://host:port" (no path, or a trailing "/") into host and port.
 * Returns 0 or -EINVAL.
 */
int ctl_url_parse(const char *url, char *out_host, size_t hostlen, int *out_port);

#endif
