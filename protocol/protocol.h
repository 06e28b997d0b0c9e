/* protocol: SPEC v1 wire vocabulary — error codes, identifiers, client frame parsing, JSON text. */
#ifndef GIFTD_PROTOCOL_H
#define GIFTD_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The client-visible error codes of SPEC 3.3, in one list: enum constant, wire code,
 * HTTP status, default message. Append-only: clients match on the wire code.
 */
#define PROTO_ERRORS(X)                                                                            \
    X(BAD_JSON, "bad_json", 400, "the frame is not a JSON object")                                 \
    X(BAD_REQUEST, "bad_request", 400, "missing or invalid field")                                 \
    X(TOO_LARGE, "too_large", 413, "frame too large")                                              \
    X(UNAUTHORIZED, "unauthorized", 401, "no valid token")                                         \
    X(FORBIDDEN, "forbidden", 403, "this role may not do that")                                    \
    X(NOT_JOINED, "not_joined", 409, "join a room first")                                          \
    X(ROOM_NOT_LIVE, "room_not_live", 404, "the room is not live")                                 \
    X(UNKNOWN_GIFT, "unknown_gift", 404, "no such gift in the catalog")                            \
    X(GIFT_UNAVAILABLE, "gift_unavailable", 409, "this gift is not available now")                 \
    X(SELF_GIFT, "self_gift", 409, "a creator cannot send gifts to their own room")                \
    X(INSUFFICIENT_FUNDS, "insufficient_funds", 409, "balance too low; nothing was debited")       \
    X(BUDGET_EXCEEDED, "budget_exceeded", 409, "a budget would be exceeded; nothing debited")      \
    X(RATE_LIMITED, "rate_limited", 429, "too many requests")                                      \
    X(LEDGER_UNAVAILABLE, "ledger_unavailable", 503,                                               \
      "ledger unavailable; retry with the same id to learn the outcome")                           \
    X(INTERNAL, "internal", 500, "internal error")                                                 \
    X(NOT_FOUND, "not_found", 404, "no such resource")                                             \
    X(PACKAGE_UNAVAILABLE, "package_unavailable", 409, "this package is not available now")

enum proto_err {
    PROTO_OK = 0,
#define PROTO_X_ENUM(name, code, status, msg) PROTO_ERR_##name,
    PROTO_ERRORS(PROTO_X_ENUM)
#undef PROTO_X_ENUM
        PROTO_ERR__COUNT
};

/** Wire code ("bad_json" …) of e; "ok" for PROTO_OK. Static string. */
const char *proto_err_code(enum proto_err e);
/** Default human message of e. Static string. */
const char *proto_err_message(enum proto_err e);
/** HTTP status for e (200 for PROTO_OK). */
int proto_err_http_status(enum proto_err e);
/** Looks up a wire code; returns PROTO_OK when s is not a known code. s borrowed. */
enum proto_err proto_err_from_code(const char *s);

/** True when s (len bytes) is 1–64 bytes of [A-Za-z0-9_.:-]. */
bool proto_valid_id(const char *s, size_t len);
/** True when s (len bytes) is 1–64 bytes of valid UTF-8 with no control characters (< 0x20). */
bool proto_valid_name(const char *s, size_t len);

enum proto_type {
    PROTO_MSG_HELLO = 1,
    PROTO_MSG_JOIN,
    PROTO_MSG_LEAVE,
    PROTO_MSG_GIFT,
    PROTO_MSG_PING,
};

#define PROTO_TOKEN_MAX 2048

/* A join's request to resume (SPEC 3.4): the last seq the client handled and its epoch. */
struct proto_resume {
    bool on;         /* since_seq was given */
    long long since; /* >= 0 */
    bool has_epoch;  /* epoch was given */
    long long epoch; /* the epoch given; -1 when it is no epoch giftd makes (not a number) */
};

/**
 * The resume of a join from the WebSocket query's since_seq and epoch values (each NULL when
 * absent). since_seq must be decimal digits; an epoch that is not is one no room has.
 * Returns false (out untouched) for a bad since_seq.
 */
bool proto_resume_from_query(const char *since_seq, const char *epoch, struct proto_resume *out);

/* One parsed client frame. Fixed-size fields: no allocation, nothing to free. */
struct proto_msg {
    enum proto_type type;
    char token[PROTO_TOKEN_MAX + 1]; /* hello */
    char room[65];                   /* join */
    struct proto_resume resume;      /* join: since_seq, epoch */
    char id[65];                     /* gift: the idempotency key; also set (when a valid
                                        identifier) on a failed gift parse, so the error can
                                        carry it */
    char gift[65];                   /* gift */
    long count;                      /* gift, default 1 */
    bool anonymous;                  /* gift: shown without its sender, default false */
};

/**
 * Parses one client text frame (buf: len bytes, borrowed) into out (caller-supplied).
 * max_count is gifts.max_count. Returns PROTO_OK, or:
 *   PROTO_ERR_BAD_JSON    not valid JSON, or valid JSON that is not an object;
 *   PROTO_ERR_BAD_REQUEST missing/non-string type, unknown type, missing or invalid field
 *                         (hello without string token or token over PROTO_TOKEN_MAX; join
 *                         without a valid identifier room, since_seq not an integer >= 0,
 *                         epoch neither an integer nor a string; gift with a missing/invalid id or
 *                         gift, count not an integer in 1..max_count).
 * On failure, out->type is set when the type was recognised and out->id when the gift id was
 * a valid identifier (else ""). out_detail (may be NULL) receives a static human message
 * naming the offending field ("count must be an integer from 1 to gifts.max_count", …).
 */
enum proto_err proto_parse(const char *buf, size_t len, long max_count, struct proto_msg *out,
                           const char **out_detail);

/*
 * A growable byte buffer for building JSON text. The first `headroom` bytes are reserved in
 * front of the text (for LWS_PRE), so a finished buffer can be written to a socket in place.
 */
struct proto_buf {
    char *data;      /* headroom + len bytes used, cap allocated */
    size_t headroom; /* bytes reserved in front of the text */
    size_t len;      /* text length (excluding headroom) */
    size_t cap;      /* allocated bytes including headroom */
    bool oom;        /* an append failed; the buffer content is incomplete */
};

/** Initialises b with headroom bytes reserved; allocates lazily. */
void proto_buf_init(struct proto_buf *b, size_t headroom);
/** Frees b's storage; b may be reused after proto_buf_init. */
void proto_buf_cleanup(struct proto_buf *b);
/** Empties b, keeping its storage and headroom. */
void proto_buf_reset(struct proto_buf *b);
/** Text start (after headroom). Valid until the next append. */
char *proto_buf_text(struct proto_buf *b);
/** Appends len raw bytes. */
void proto_buf_append(struct proto_buf *b, const char *s, size_t len);
/** Appends a NUL-terminated raw string. */
void proto_buf_puts(struct proto_buf *b, const char *s);
/** Appends printf-formatted raw text. */
void proto_buf_printf(struct proto_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/** Appends s (len bytes) as a quoted JSON string, escaping ", \ and control characters. */
void proto_buf_json_str(struct proto_buf *b, const char *s, size_t len);
/** proto_buf_json_str for a NUL-terminated string; NULL appends null. */
void proto_buf_json_cstr(struct proto_buf *b, const char *s);

/**
 * Appends a whole error frame: {"type":"error","code":…,"message":…[,"id":…]}.
 * message NULL uses the default message; id NULL or "" omits the field.
 */
void proto_buf_error(struct proto_buf *b, enum proto_err e, const char *message, const char *id);

#endif
