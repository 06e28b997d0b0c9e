/* http: the HTTP API of SPEC 5 — one request's state and the steps the lws callback calls. */
#ifndef GIFTD_SERVER_HTTP_H
#define GIFTD_SERVER_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "auth/auth.h"
#include "httpapi/httpapi.h"
#include "protocol/protocol.h"

struct app;
struct lws;
struct pending;

struct http_req {
    int kind; /* CONN_HTTP: first member, shared with struct session */
    struct lws *wsi;
    struct app *app;
    enum httpapi_method method;
    char path[256];
    char *body;
    size_t body_len;
    bool too_large;
    bool have_auth;
    struct auth_claims claims;
    bool auth_bad;
    /* The response, once ready. */
    int status;
    char ctype[64];
    char *resp;
    size_t resp_len;
    int stage; /* 0 waiting, 1 headers to write, 2 body to write */
    struct pending *pendings;
};

/** LWS_CALLBACK_HTTP: starts a request (uri: len bytes). Returns 0, or -1 to close. */
int http_begin(struct http_req *h, struct lws *wsi, const char *uri, size_t len);
/** LWS_CALLBACK_HTTP_BODY: appends to the body (bounded). */
void http_body(struct http_req *h, const char *in, size_t len);
/** Handles a complete HTTP request (body read). Returns 0, or -1 to close. */
int http_dispatch(struct http_req *h);
/** Sets the response (JSON text copied) and asks for writable. */
void http_respond(struct http_req *h, int status, const char *json, size_t len);
/** Sets the response to b's text (b borrowed, its text copied); an out-of-memory b answers
 * internal instead. */
void http_respond_buf(struct http_req *h, int status, struct proto_buf *b);
/** Sets an error response: e's HTTP status and code, message (NULL: e's default message);
 * counts it. */
void http_error(struct http_req *h, enum proto_err e, const char *message);
/** WRITEABLE step: writes headers, then the body. Returns -1 when the connection must close. */
int http_writeable(struct http_req *h);
/** LWS_CALLBACK_CLOSED_HTTP: detaches the request's pending calls and frees its buffers. */
void http_cleanup(struct http_req *h);

#endif
