/* httpapi: the HTTP API's request vocabulary (SPEC 5) — routes and request bodies, no sockets. */
#ifndef GIFTD_HTTPAPI_H
#define GIFTD_HTTPAPI_H

#include <stdbool.h>
#include <stddef.h>

#include "protocol/protocol.h"

struct gifts_catalog;

enum httpapi_method {
    HTTPAPI_GET = 1,
    HTTPAPI_POST,
    HTTPAPI_PUT,
    HTTPAPI_DELETE,
    HTTPAPI_OTHER,
};

/* What a request (method and path) asks for. */
enum httpapi_route {
    HTTPAPI_NOT_FOUND = 0,      /* 404 not_found: unknown path, or wrong method on a fixed path */
    HTTPAPI_HEALTHZ,            /* GET /healthz */
    HTTPAPI_READYZ,             /* GET /readyz */
    HTTPAPI_METRICS,            /* GET /metrics */
    HTTPAPI_GIFTS,              /* GET /v1/gifts */
    HTTPAPI_PACKAGES,           /* GET /v1/packages */
    HTTPAPI_RECHARGE,           /* POST /v1/recharge */
    HTTPAPI_ROOM_INFO,          /* GET /v1/rooms/{room} */
    HTTPAPI_ROOM_OPEN,          /* PUT /v1/rooms/{room} */
    HTTPAPI_ROOM_CLOSE,         /* DELETE /v1/rooms/{room} */
    HTTPAPI_BALANCE,            /* GET /v1/users/{user}/balance */
    HTTPAPI_BUDGET,             /* GET or PUT /v1/users/{user}/budget */
    HTTPAPI_METHOD_NOT_ALLOWED, /* 405: another method on a room, balance or budget path */
    HTTPAPI_UPGRADE_REQUIRED,   /* 426: /ws without a WebSocket upgrade */
    HTTPAPI_BAD_ID,             /* 400: a /v1/rooms/… or /v1/users/… path without a valid id */
};

/**
 * Routes a request. path (borrowed, NUL-terminated) is the URI path as lws gives it, without
 * the query. out_id (65 bytes, caller-supplied) receives the room or user identifier for
 * HTTPAPI_ROOM_*, HTTPAPI_BALANCE and HTTPAPI_BUDGET, and "" for every other route.
 */
enum httpapi_route httpapi_route(enum httpapi_method method, const char *path, char out_id[65]);

#define HTTPAPI_TITLE_MAX 200

/* The body of PUT /v1/rooms/{room}. */
struct httpapi_room_open {
    char creator_id[65];
    char creator_name[65];
    bool has_title; /* false: title absent or null */
    char title[HTTPAPI_TITLE_MAX + 1];
};

/* The body of POST /v1/recharge, the package (if any) resolved to its coins. */
struct httpapi_recharge {
    char payment_id[65];
    char user[65];
    long long coins; /* 1..1000000000, or the package's coins */
};

/* The body of PUT /v1/users/{user}/budget. */
struct httpapi_budget {
    bool clear;            /* daily_coins was null: remove the cap */
    long long daily_coins; /* !clear: 0..1000000000000 */
};

/*
 * The body parsers below take the request body (body: len bytes, borrowed; NULL when the
 * request had none) and fill out (caller-supplied). They return PROTO_OK, PROTO_ERR_BAD_JSON
 * when the body is missing, not JSON or not a JSON object, or PROTO_ERR_BAD_REQUEST for a
 * missing or invalid field. out_detail (may be NULL) receives a static human message naming
 * the field on failure ("creator.id: must be an identifier", …), NULL on success.
 */

/** creator.id (identifier), creator.name (display name), title (absent, null, or a string of
 * at most HTTPAPI_TITLE_MAX bytes). */
enum proto_err httpapi_parse_room_open(const char *body, size_t len, struct httpapi_room_open *out,
                                       const char **out_detail);

/** payment_id and user (identifiers) and exactly one of package (the id of one of cat's
 * packages; cat borrowed, may be NULL: no packages) and coins (integer 1..1000000000). */
enum proto_err httpapi_parse_recharge(const char *body, size_t len, const struct gifts_catalog *cat,
                                      struct httpapi_recharge *out, const char **out_detail);

/** daily_coins: null, or an integer 0..1000000000000. */
enum proto_err httpapi_parse_budget(const char *body, size_t len, struct httpapi_budget *out,
                                    const char **out_detail);

#endif
