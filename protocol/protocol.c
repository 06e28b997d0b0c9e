/* protocol: SPEC v1 wire vocabulary — error codes, identifiers, client frame parsing, JSON text. */
#include "protocol/protocol.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- error codes ---------------------------------------------------------------------------- */

static const char *const err_codes[PROTO_ERR__COUNT] = {[PROTO_OK] = "ok",
#define PROTO_X_CODE(name, code, status, msg) [PROTO_ERR_##name] = code,
                                                        PROTO_ERRORS(PROTO_X_CODE)
#undef PROTO_X_CODE
};

static const char *const err_messages[PROTO_ERR__COUNT] = {[PROTO_OK] = "ok",
#define PROTO_X_MSG(name, code, status, msg) [PROTO_ERR_##name] = msg,
                                                           PROTO_ERRORS(PROTO_X_MSG)
#undef PROTO_X_MSG
};

static const int err_statuses[PROTO_ERR__COUNT] = {[PROTO_OK] = 200,
#define PROTO_X_STATUS(name, code, status, msg) [PROTO_ERR_##name] = status,
                                                   PROTO_ERRORS(PROTO_X_STATUS)
#undef PROTO_X_STATUS
};

/* An out-of-range value is a caller bug; answer as for INTERNAL rather than read past the end. */
static enum proto_err err_clamp(enum proto_err e)
{
    if ((unsigned)e >= (unsigned)PROTO_ERR__COUNT) {
        return PROTO_ERR_INTERNAL;
    }
    return e;
}

const char *proto_err_code(enum proto_err e)
{
    return err_codes[err_clamp(e)];
}

const char *proto_err_message(enum proto_err e)
{
    return err_messages[err_clamp(e)];
}

int proto_err_http_status(enum proto_err e)
{
    return err_statuses[err_clamp(e)];
}

enum proto_err proto_err_from_code(const char *s)
{
    if (s == NULL) {
        return PROTO_OK;
    }
    for (int i = 1; i < (int)PROTO_ERR__COUNT; i++) {
        if (strcmp(s, err_codes[i]) == 0) {
            return (enum proto_err)i;
        }
    }
    return PROTO_OK;
}

/* ---- identifiers and names ------------------------------------------------------------------ */

static bool id_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '-';
}

bool proto_valid_id(const char *s, size_t len)
{
    if (s == NULL || len < 1 || len > 64) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!id_char((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

/*
 * Length of the well-formed UTF-8 sequence at p (at most n bytes available), or 0 when it is
 * malformed: a stray continuation byte, a truncated sequence, an overlong form, a surrogate
 * (U+D800..U+DFFF) or a code point above U+10FFFF (RFC 3629, table 3-7 of Unicode).
 */
static size_t utf8_seq_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    if (c < 0x80) {
        return 1;
    }
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c == 0xE0) {
        need = 3;
        lo = 0xA0; /* overlong below U+0800 */
    } else if (c == 0xED) {
        need = 3;
        hi = 0x9F; /* surrogates */
    } else if (c >= 0xE1 && c <= 0xEF) {
        need = 3;
    } else if (c == 0xF0) {
        need = 4;
        lo = 0x90; /* overlong below U+10000 */
    } else if (c >= 0xF1 && c <= 0xF3) {
        need = 4;
    } else if (c == 0xF4) {
        need = 4;
        hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0; /* 0x80..0xC1 (continuation or overlong 2-byte lead), 0xF5..0xFF */
    }
    if (n < need || p[1] < lo || p[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < need; i++) {
        if (p[i] < 0x80 || p[i] > 0xBF) {
            return 0;
        }
    }
    return need;
}

bool proto_valid_name(const char *s, size_t len)
{
    if (s == NULL || len < 1 || len > 64) {
        return false;
    }
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (p[i] < 0x20) {
            return false;
        }
        size_t k = utf8_seq_len(p + i, len - i);
        if (k == 0) {
            return false;
        }
        i += k;
    }
    return true;
}

/* ---- client frames -------------------------------------------------------------------------- */

/* Copies a jansson string of at most cap-1 bytes (the caller checked the length). */
static void copy_str(char *dst, size_t cap, const json_t *v)
{
    size_t n = json_string_length(v);
    if (n >= cap) {
        n = cap - 1;
    }
    memcpy(dst, json_string_value(v), n);
    dst[n] = '\0';
}

/* Reads field key of obj as an identifier into dst[65]; false when missing or invalid. */
static bool get_id(const json_t *obj, const char *key, char dst[65])
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_string(v) || !proto_valid_id(json_string_value(v), json_string_length(v))) {
        return false;
    }
    copy_str(dst, 65, v);
    return true;
}

/* A decimal number of 1-18 digits (an epoch or a seq), or -1. */
static long long decimal(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 18 || strspn(s, "0123456789") != n) {
        return -1;
    }
    return strtoll(s, NULL, 10);
}

bool proto_resume_from_query(const char *since_seq, const char *epoch, struct proto_resume *out)
{
    struct proto_resume r = {0};
    if (since_seq) {
        r.on = true;
        r.since = decimal(since_seq);
        if (r.since < 0) {
            return false;
        }
    }
    if (epoch) {
        r.has_epoch = true;
        r.epoch = decimal(epoch);
    }
    *out = r;
    return true;
}

static enum proto_err parse_resume(const json_t *root, struct proto_resume *out,
                                   const char **detail)
{
    const json_t *since = json_object_get(root, "since_seq");
    const json_t *epoch = json_object_get(root, "epoch");
    if (since && !json_is_null(since)) {
        if (!json_is_integer(since) || json_integer_value(since) < 0) {
            *detail = "since_seq must be an integer >= 0 (the last seq handled)";
            return PROTO_ERR_BAD_REQUEST;
        }
        out->on = true;
        out->since = json_integer_value(since);
    }
    if (epoch && !json_is_null(epoch)) {
        out->has_epoch = true;
        if (json_is_integer(epoch)) {
            out->epoch = json_integer_value(epoch) > 0 ? json_integer_value(epoch) : -1;
        } else if (json_is_string(epoch)) {
            out->epoch = decimal(json_string_value(epoch));
        } else {
            *detail = "epoch must be the epoch joined gave (an integer)";
            return PROTO_ERR_BAD_REQUEST;
        }
    }
    return PROTO_OK;
}

static enum proto_err parse_gift(const json_t *root, long max_count, struct proto_msg *out,
                                 const char **detail)
{
    if (!get_id(root, "id", out->id)) {
        *detail = "id must be an identifier (1-64 bytes of [A-Za-z0-9_.:-])";
        return PROTO_ERR_BAD_REQUEST;
    }
    if (!get_id(root, "gift", out->gift)) {
        *detail = "gift must be an identifier (1-64 bytes of [A-Za-z0-9_.:-])";
        return PROTO_ERR_BAD_REQUEST;
    }
    const json_t *anon = json_object_get(root, "anonymous");
    if (anon != NULL && !json_is_boolean(anon)) {
        *detail = "anonymous must be true or false";
        return PROTO_ERR_BAD_REQUEST;
    }
    out->anonymous = json_is_true(anon);
    const json_t *count = json_object_get(root, "count");
    if (count == NULL) {
        out->count = 1;
        return PROTO_OK;
    }
    json_int_t c = json_is_integer(count) ? json_integer_value(count) : 0;
    if (c < 1 || c > (json_int_t)max_count) {
        *detail = "count must be an integer from 1 to gifts.max_count";
        return PROTO_ERR_BAD_REQUEST;
    }
    out->count = (long)c;
    return PROTO_OK;
}

static enum proto_err parse_object(const json_t *root, long max_count, struct proto_msg *out,
                                   const char **detail)
{
    const json_t *type = json_object_get(root, "type");
    if (!json_is_string(type)) {
        *detail = "type must be a string";
        return PROTO_ERR_BAD_REQUEST;
    }
    const char *t = json_string_value(type);
    if (strcmp(t, "hello") == 0) {
        out->type = PROTO_MSG_HELLO;
        const json_t *token = json_object_get(root, "token");
        if (!json_is_string(token) || json_string_length(token) > PROTO_TOKEN_MAX) {
            *detail = "token must be a string of at most 2048 bytes";
            return PROTO_ERR_BAD_REQUEST;
        }
        copy_str(out->token, sizeof out->token, token);
        return PROTO_OK;
    }
    if (strcmp(t, "join") == 0) {
        out->type = PROTO_MSG_JOIN;
        if (!get_id(root, "room", out->room)) {
            *detail = "room must be an identifier (1-64 bytes of [A-Za-z0-9_.:-])";
            return PROTO_ERR_BAD_REQUEST;
        }
        return parse_resume(root, &out->resume, detail);
    }
    if (strcmp(t, "leave") == 0) {
        out->type = PROTO_MSG_LEAVE;
        return PROTO_OK;
    }
    if (strcmp(t, "gift") == 0) {
        out->type = PROTO_MSG_GIFT;
        return parse_gift(root, max_count, out, detail);
    }
    if (strcmp(t, "ping") == 0) {
        out->type = PROTO_MSG_PING;
        return PROTO_OK;
    }
    *detail = "unknown type";
    return PROTO_ERR_BAD_REQUEST;
}

enum proto_err proto_parse(const char *buf, size_t len, long max_count, struct proto_msg *out,
                           const char **out_detail)
{
    const char *detail = NULL;
    enum proto_err rc;

    /* Cheap resets: the token buffer is only read when type is HELLO and the parse succeeded. */
    out->type = (enum proto_type)0;
    out->token[0] = '\0';
    out->room[0] = '\0';
    out->id[0] = '\0';
    out->gift[0] = '\0';
    out->count = 1;
    out->anonymous = false;
    memset(&out->resume, 0, sizeof(out->resume));

    json_error_t jerr;
    json_t *root = buf != NULL ? json_loadb(buf, len, 0, &jerr) : NULL;
    if (root == NULL && buf != NULL && json_error_code(&jerr) == json_error_numeric_overflow) {
        /* Valid JSON with an integer beyond 64 bits (a count of 2^63, say): read it as a real,
         * so the frame is judged on its fields and its id comes back with the error. */
        root = json_loadb(buf, len, JSON_DECODE_INT_AS_REAL, NULL);
    }
    if (!json_is_object(root)) {
        detail = "the frame is not a JSON object";
        rc = PROTO_ERR_BAD_JSON;
    } else {
        rc = parse_object(root, max_count, out, &detail);
    }
    json_decref(root);
    if (out_detail != NULL) {
        *out_detail = rc == PROTO_OK ? NULL : detail;
    }
    return rc;
}

/* ---- JSON text buffer ----------------------------------------------------------------------- */

void proto_buf_init(struct proto_buf *b, size_t headroom)
{
    b->data = NULL;
    b->headroom = headroom;
    b->len = 0;
    b->cap = 0;
    b->oom = false;
}

void proto_buf_cleanup(struct proto_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->oom = false;
}

void proto_buf_reset(struct proto_buf *b)
{
    b->len = 0;
    b->oom = false;
    if (b->data != NULL) {
        b->data[b->headroom] = '\0';
    }
}

/*
 * Makes room for extra more text bytes plus a NUL terminator (kept after the text so it can be
 * used as a C string). Sets oom and returns false when that is impossible.
 */
static bool buf_reserve(struct proto_buf *b, size_t extra)
{
    if (b->oom) {
        return false;
    }
    size_t used = b->headroom + b->len;
    if (used < b->headroom || extra > SIZE_MAX - used - 1) {
        b->oom = true;
        return false;
    }
    size_t need = used + extra + 1;
    if (need <= b->cap) {
        return true;
    }
    size_t cap = b->cap > 0 ? b->cap : 256;
    while (cap < need) {
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    }
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        b->oom = true;
        return false;
    }
    if (b->data == NULL) {
        p[b->headroom] = '\0';
    }
    b->data = p;
    b->cap = cap;
    return true;
}

char *proto_buf_text(struct proto_buf *b)
{
    if (b->data == NULL && !buf_reserve(b, 0)) {
        return NULL;
    }
    return b->data + b->headroom;
}

void proto_buf_append(struct proto_buf *b, const char *s, size_t len)
{
    if (!buf_reserve(b, len)) {
        return;
    }
    char *end = b->data + b->headroom + b->len;
    if (len > 0) {
        memcpy(end, s, len);
    }
    end[len] = '\0';
    b->len += len;
}

void proto_buf_puts(struct proto_buf *b, const char *s)
{
    proto_buf_append(b, s, strlen(s));
}

void proto_buf_printf(struct proto_buf *b, const char *fmt, ...)
{
    if (!buf_reserve(b, 0)) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    size_t avail = b->cap - b->headroom - b->len;
    int n = vsnprintf(b->data + b->headroom + b->len, avail, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->data[b->headroom + b->len] = '\0';
        b->oom = true;
        return;
    }
    if ((size_t)n >= avail) {
        if (!buf_reserve(b, (size_t)n)) {
            b->data[b->headroom + b->len] = '\0';
            return;
        }
        va_start(ap, fmt);
        n = vsnprintf(b->data + b->headroom + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->data[b->headroom + b->len] = '\0';
            b->oom = true;
            return;
        }
    }
    b->len += (size_t)n;
}

void proto_buf_json_str(struct proto_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    size_t run = 0; /* start of the pending run of bytes that need no escaping */

    proto_buf_append(b, "\"", 1);
    while (i < len) {
        unsigned char c = p[i];
        char esc[6];
        size_t esc_len;
        size_t k = 1;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            esc_len = 2;
        } else if (c < 0x20) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xF];
            esc_len = 6;
        } else if (c < 0x80 || (k = utf8_seq_len(p + i, len - i)) != 0) {
            i += k;
            continue;
        } else {
            /* Invalid UTF-8 would make the whole frame invalid JSON: replace the byte. */
            memcpy(esc, "\xEF\xBF\xBD", 3);
            esc_len = 3;
        }
        proto_buf_append(b, s + run, i - run);
        proto_buf_append(b, esc, esc_len);
        i++;
        run = i;
    }
    proto_buf_append(b, s + run, i - run);
    proto_buf_append(b, "\"", 1);
}

void proto_buf_json_cstr(struct proto_buf *b, const char *s)
{
    if (s == NULL) {
        proto_buf_append(b, "null", 4);
        return;
    }
    proto_buf_json_str(b, s, strlen(s));
}

void proto_buf_error(struct proto_buf *b, enum proto_err e, const char *message, const char *id)
{
    proto_buf_puts(b, "{\"type\":\"error\",\"code\":");
    proto_buf_json_cstr(b, proto_err_code(e));
    proto_buf_puts(b, ",\"message\":");
    proto_buf_json_cstr(b, message != NULL ? message : proto_err_message(e));
    if (id != NULL && id[0] != '\0') {
        proto_buf_puts(b, ",\"id\":");
        proto_buf_json_cstr(b, id);
    }
    proto_buf_puts(b, "}");
}
