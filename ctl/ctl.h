/* ctl: giftctl's blocking HTTP/1.1 client (libcurl), also used by the test kit. */
#ifndef GIFTD_CTL_H
#define GIFTD_CTL_H

#include <stdbool.h>
#include <stddef.h>

struct ctl_http_resp {
    int status; /* HTTP status, e.g. 200 */
    char *body; /* **new** NUL-terminated body (ctl_http_resp_cleanup frees), "" if none */
    size_t body_len;
    char content_type[128];
    char error[256]; /* after -EPROTO: what failed (a TLS handshake or certificate, a reply that
                        is not HTTP), in libcurl's words; "" otherwise */
};

/**
 * One blocking HTTP/1.1 request with "Connection: close" to base_url ("http://host[:port]" or
 * "https://host[:port]", as ctl_url_parse accepts), following no redirects and using no proxy.
 * base_url, method, path (with query, sent as is), token (NULL: no Authorization header; else
 * "Authorization: Bearer <token>"), body (NULL: none; else sent with Content-Type:
 * application/json and Content-Length) and cacert are borrowed. An https:// server's certificate
 * chain and name are always verified: against the PEM file cacert, or the system's CA store when
 * cacert is NULL. timeout_ms bounds the whole exchange.
 * Returns 0 and fills out, or a negative errno: -EINVAL (bad arguments), -ECONNREFUSED and the
 * other errors of connect(), -EHOSTUNREACH (the name did not resolve), -ETIMEDOUT, -ECONNRESET,
 * -EMSGSIZE (a body over 64 MiB), -EPROTO (TLS failed or the reply is not HTTP; out->error
 * says more), -ENOMEM. out is caller-supplied; clean it with ctl_http_resp_cleanup even on
 * failure.
 */
int ctl_http_request_url(const char *base_url, const char *method, const char *path,
                         const char *token, const char *body, const char *cacert, int timeout_ms,
                         struct ctl_http_resp *out);

/** ctl_http_request_url to http://host:port (host: a name, IPv4 or IPv6 address; borrowed). */
int ctl_http_request(const char *host, int port, const char *method, const char *path,
                     const char *token, const char *body, int timeout_ms,
                     struct ctl_http_resp *out);

/** Frees out->body; safe on a zeroed struct. */
void ctl_http_resp_cleanup(struct ctl_http_resp *out);

/**
 * Splits a base URL "http://host[:port]" or "https://host[:port]" (no path, or a trailing "/";
 * an IPv6 host in brackets) into host and port (default 80 for http, 443 for https).
 * out_tls (may be NULL) is set to true for https. Returns 0 or -EINVAL.
 */
int ctl_url_parse(const char *url, char *out_host, size_t hostlen, int *out_port, bool *out_tls);

#endif
