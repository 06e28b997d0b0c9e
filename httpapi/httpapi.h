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
    HTTPAPI_REVERSE,            /* POST /v1/recharge/reverse */
    HTTPAPI_ROOM_INFO,          /* GET /v1/rooms/{room} */
    HTTPAPI_ROOM_OPEN,          /* PUT /v1/rooms/{room} */
    HTTPAPI_ROOM_CLOSE,         /* DELETE /v1/rooms/{room} */
    HTTPAPI_GOAL_SET,           /* PUT /v1/rooms/{room}/goal */
    HTTPAPI_GOAL_CLEAR,         /* DELETE /v1/rooms/{room}/goal */
    HTTPAPI_ROOM_EVENTS,        /* GET /v1/rooms/{room}/events */
    HTTPAPI_OVERLAY,            /* POST /v1/rooms/{room}/overlay */
    HTTPAPI_BALANCE,            /* GET /v1/users/{user}/balance */
    HTTPAPI_BUDGET,             /* GET or PUT /v1/users/{user}/budget */
    HTTPAPI_TRANSACTIONS,       /* GET /v1/users/{user}/transactions */
    HTTPAPI_METHOD_NOT_ALLOWED, /* 405: another method on a room, balance or budget path */
    HTTPAPI_UPGRADE_REQUIRED,   /* 426: /ws without a WebSocket upgrade */
    HTTPAPI_BAD_ID,             /* 400: a /v1/rooms/… or /v1/users/… path without a valid id */
};

/**
 * Routes a request. path (borrowed, NUL-terminated) is the URI path as lws gives it, without
 * the query. out_id (65 bytes, caller-supplied) receives the room or user identifier for
 * HTTPAPI_ROOM_*, HTTPAPI_GOAL_*, HTTPAPI_OVERLAY and the user routes, "" for the others.
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
    char package[65]; /* the package's id, "" for a recharge of coins */
    long long coins;  /* 1..1000000000, or the package's coins plus its bonus_coins */
};

/* The body of PUT /v1/rooms/{room}/goal. */
#define HTTPAPI_GOAL_TITLE_MAX 100
struct httpapi_goal {
    char title[HTTPAPI_GOAL_TITLE_MAX + 1];
    char gift[65];    /* a gift id for a count goal, "" for a coin goal */
    long long target; /* 1..1000000000000 */
};

/* The body of POST /v1/rooms/{room}/overlay. */
enum httpapi_overlay_action {
    HTTPAPI_OVERLAY_SKIP = 1,
    HTTPAPI_OVERLAY_PAUSE,
    HTTPAPI_OVERLAY_RESUME,
    HTTPAPI_OVERLAY_REPLAY,
};
struct httpapi_overlay {
    enum httpapi_overlay_action action;
    long long seq; /* replay: the event's seq (>= 1) */
};

/* The body of POST /v1/recharge/reverse. */
#define HTTPAPI_REASON_MAX 200
struct httpapi_reverse {
    char payment_id[65];
    char user[65];
    bool has_reason;
    char reason[HTTPAPI_REASON_MAX + 1];
};

/* One cap of PUT /v1/users/{user}/budget. */
struct httpapi_cap {
    bool given;      /* the field was there (absent: the cap keeps its value) */
    bool clear;      /* it was null: remove the cap */
    long long coins; /* given && !clear: 0..1000000000000 */
};
/* The body of PUT /v1/users/{user}/budget. */
struct httpapi_budget {
    struct httpapi_cap daily;   /* daily_coins */
    struct httpapi_cap monthly; /* monthly_coins */
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
 * packages; cat borrowed, may be NULL: no packages) and coins (integer 1..1000000000). A
 * package outside its availability window at now_ms is PROTO_ERR_PACKAGE_UNAVAILABLE; one
 * inside credits its coins plus its bonus_coins. */
enum proto_err httpapi_parse_recharge(const char *body, size_t len, const struct gifts_catalog *cat,
                                      int64_t now_ms, struct httpapi_recharge *out,
                                      const char **out_detail);

/** title (a string of 1..HTTPAPI_GOAL_TITLE_MAX bytes), target (integer 1..1000000000000),
 * gift (absent or null: a coin goal; else an identifier: a count of that gift). */
enum proto_err httpapi_parse_goal(const char *body, size_t len, struct httpapi_goal *out,
                                  const char **out_detail);

/** payment_id and user (identifiers); reason absent, null, or a string of at most
 * HTTPAPI_REASON_MAX bytes. */
enum proto_err httpapi_parse_reverse(const char *body, size_t len, struct httpapi_reverse *out,
                                     const char **out_detail);

/** action: "skip", "pause", "resume", or "replay" with seq (an integer >= 1). */
enum proto_err httpapi_parse_overlay(const char *body, size_t len, struct httpapi_overlay *out,
                                     const char **out_detail);

/** daily_coins and monthly_coins: each absent (kept), null (cleared), or an integer
 * 0..1000000000000. */
enum proto_err httpapi_parse_budget(const char *body, size_t len, struct httpapi_budget *out,
                                    const char **out_detail);

#endif
