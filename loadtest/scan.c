/* scan: reads the few fields giftload needs from server frames without building JSON trees. */
#include <errno.h>
#include <string.h>

#include "loadtest/loadtest.h"

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        p++;
    }
    return p;
}

/* p at an opening quote; returns the byte after the closing quote, or NULL. */
static const char *skip_string(const char *p, const char *end)
{
    p++;
    for (;;) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (!q) {
            return NULL;
        }
        /* The quote is escaped when an odd number of backslashes precede it. */
        const char *b = q;
        while (b > p && b[-1] == '\\') {
            b--;
        }
        if (((q - b) & 1) == 0) {
            return q + 1;
        }
        p = q + 1;
    }
}

/* p at any JSON value; returns the byte after it, or NULL. */
static const char *skip_value(const char *p, const char *end)
{
    if (p >= end) {
        return NULL;
    }
    if (*p == '"') {
        return skip_string(p, end);
    }
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < end) {
            char ch = *p;
            if (ch == '"') {
                p = skip_string(p, end);
                if (!p) {
                    return NULL;
                }
                continue;
            }
            if (ch == '{' || ch == '[') {
                depth++;
            } else if (ch == '}' || ch == ']') {
                if (--depth == 0) {
                    return p + 1;
                }
            }
            p++;
        }
        return NULL;
    }
    /* A number or a literal. */
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' &&
           *p != '\t' && *p != '\r') {
        p++;
    }
    return p;
}

static bool key_is(const char *k, size_t klen, const char *lit, size_t litlen)
{
    return klen == litlen && memcmp(k, lit, litlen) == 0;
}

#define KEY_IS(k, klen, lit) key_is(k, klen, lit, sizeof(lit) - 1)

static enum load_ev_type classify(const char *s, size_t len)
{
    if (KEY_IS(s, len, "gift")) {
        return LOAD_EV_GIFT;
    }
    if (KEY_IS(s, len, "ack")) {
        return LOAD_EV_ACK;
    }
    if (KEY_IS(s, len, "error")) {
        return LOAD_EV_ERROR;
    }
    if (KEY_IS(s, len, "welcome")) {
        return LOAD_EV_WELCOME;
    }
    if (KEY_IS(s, len, "joined")) {
        return LOAD_EV_JOINED;
    }
    if (KEY_IS(s, len, "room_closed")) {
        return LOAD_EV_ROOM_CLOSED;
    }
    return LOAD_EV_OTHER;
}

struct scan {
    const char *end;
    load_ev_cb cb;
    void *ud;
    int nev;
};

/*
 * p at '{'. Fills ev from the object's top-level keys; with events_ok, each object of an
 * "events" array is reported through the callback as it is met (in order) and *is_batch tells
 * whether the object said "type":"batch". Returns the byte after the object, or NULL.
 */
static const char *scan_object(struct scan *s, const char *p, struct load_ev *ev, bool events_ok,
                               bool *is_batch)
{
    const char *end = s->end;
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') {
        return p + 1;
    }
    for (;;) {
        if (p >= end || *p != '"') {
            return NULL;
        }
        const char *k = p + 1;
        const char *ke = skip_string(p, end);
        if (!ke) {
            return NULL;
        }
        size_t klen = (size_t)(ke - 1 - k);
        p = skip_ws(ke, end);
        if (p >= end || *p != ':') {
            return NULL;
        }
        p = skip_ws(p + 1, end);
        if (p >= end) {
            return NULL;
        }
        if (*p == '"' &&
            (KEY_IS(k, klen, "type") || KEY_IS(k, klen, "id") || KEY_IS(k, klen, "code"))) {
            const char *q = skip_string(p, end);
            if (!q) {
                return NULL;
            }
            const char *v = p + 1;
            size_t vlen = (size_t)(q - 1 - v);
            if (k[0] == 't') {
                ev->type = classify(v, vlen);
                if (is_batch && KEY_IS(v, vlen, "batch")) {
                    *is_batch = true;
                }
            } else if (k[0] == 'i') {
                ev->id = v;
                ev->id_len = vlen;
            } else {
                ev->code = v;
                ev->code_len = vlen;
            }
            p = q;
        } else if (KEY_IS(k, klen, "seq") && ((*p >= '0' && *p <= '9'))) {
            int64_t n = 0;
            while (p < end && *p >= '0' && *p <= '9') {
                n = n * 10 + (*p - '0');
                p++;
            }
            ev->seq = n;
        } else if (KEY_IS(k, klen, "duplicate")) {
            ev->duplicate = (size_t)(end - p) >= 4 && memcmp(p, "true", 4) == 0;
            p = skip_value(p, end);
        } else if (events_ok && *p == '[' && KEY_IS(k, klen, "events")) {
            p = skip_ws(p + 1, end);
            if (p < end && *p == ']') {
                p++;
            } else {
                for (;;) {
                    if (p >= end) {
                        return NULL;
                    }
                    if (*p == '{') {
                        struct load_ev in = {.seq = -1};
                        p = scan_object(s, p, &in, false, NULL);
                        if (!p) {
                            return NULL;
                        }
                        s->cb(s->ud, &in);
                        s->nev++;
                    } else {
                        p = skip_value(p, end);
                        if (!p) {
                            return NULL;
                        }
                    }
                    p = skip_ws(p, end);
                    if (p < end && *p == ',') {
                        p = skip_ws(p + 1, end);
                        continue;
                    }
                    if (p < end && *p == ']') {
                        p++;
                        break;
                    }
                    return NULL;
                }
            }
        } else {
            p = skip_value(p, end);
        }
        if (!p) {
            return NULL;
        }
        p = skip_ws(p, end);
        if (p < end && *p == ',') {
            p = skip_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}') {
            return p + 1;
        }
        return NULL;
    }
}

int load_scan_frame(const char *buf, size_t len, load_ev_cb cb, void *ud)
{
    struct scan s = {.end = buf + len, .cb = cb, .ud = ud, .nev = 0};
    const char *p = skip_ws(buf, s.end);
    if (p >= s.end || *p != '{') {
        return -EINVAL;
    }
    struct load_ev ev = {.seq = -1};
    bool is_batch = false;
    if (!scan_object(&s, p, &ev, true, &is_batch)) {
        return -EINVAL;
    }
    if (!is_batch) {
        cb(ud, &ev);
        s.nev++;
    }
    return s.nev;
}

long load_count_gifts(const char *buf, size_t len)
{
    static const char gift[] = "{\"type\":\"gift\"";
    static const char batch[] = "{\"type\":\"batch\"";
    static const char pat[] = "\"type\":\"gift\"";
    if (len >= sizeof(gift) - 1 && memcmp(buf, gift, sizeof(gift) - 1) == 0) {
        return 1;
    }
    if (len < sizeof(batch) - 1 || memcmp(buf, batch, sizeof(batch) - 1) != 0) {
        return -1;
    }
    long n = 0;
    const char *p = buf + sizeof(batch) - 1;
    const char *end = buf + len;
    for (;;) {
        const char *q = memmem(p, (size_t)(end - p), pat, sizeof(pat) - 1);
        if (!q) {
            return n;
        }
        n++;
        p = q + sizeof(pat) - 1;
    }
}

int load_id_time(const char *id, size_t len, uint64_t *out_us)
{
    size_t i = len;
    while (i > 0 && id[i - 1] >= '0' && id[i - 1] <= '9') {
        i--;
    }
    if (i == len || i == 0 || id[i - 1] != '-' || len - i > 19) {
        return -EINVAL;
    }
    uint64_t v = 0;
    for (size_t j = i; j < len; j++) {
        v = v * 10 + (uint64_t)(id[j] - '0');
    }
    *out_us = v;
    return 0;
}
