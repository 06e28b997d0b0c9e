/* fuzz_protocol: client frames through proto_parse; arbitrary bytes through the JSON writer. */
#include <jansson.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "protocol/protocol.h"

#define MAX_COUNT 99 /* gifts.max_count's default */

/* A parsed frame holds what proto_parse's contract promises, whatever the input was. */
static void check_parse(const char *buf, size_t len)
{
    struct proto_msg m;
    const char *detail = "unset";
    enum proto_err rc = proto_parse(buf, len, MAX_COUNT, &m, &detail);
    if (rc != PROTO_OK) {
        CHECK(rc == PROTO_ERR_BAD_JSON || rc == PROTO_ERR_BAD_REQUEST);
        CHECK(detail != NULL && detail[0] != '\0');
        /* The id an error carries back is an identifier or nothing. */
        CHECK(m.id[0] == '\0' || proto_valid_id(m.id, strlen(m.id)));
        return;
    }
    CHECK(detail == NULL);
    CHECK(m.type >= PROTO_MSG_HELLO && m.type <= PROTO_MSG_PING);
    switch (m.type) {
    case PROTO_MSG_HELLO:
        CHECK(strlen(m.token) <= PROTO_TOKEN_MAX);
        break;
    case PROTO_MSG_JOIN:
        CHECK(proto_valid_id(m.room, strlen(m.room)));
        CHECK(!m.resume.on || m.resume.since >= 0);
        CHECK(m.resume.on || m.resume.since == 0);
        CHECK(!m.resume.has_epoch || m.resume.epoch == -1 || m.resume.epoch > 0);
        break;
    case PROTO_MSG_GIFT:
        CHECK(proto_valid_id(m.id, strlen(m.id)));
        CHECK(proto_valid_id(m.gift, strlen(m.gift)));
        CHECK(m.count >= 1 && m.count <= MAX_COUNT);
        break;
    case PROTO_MSG_LEAVE:
    case PROTO_MSG_PING:
        break;
    default:
        break;
    }
}

/* True when s (len bytes) is UTF-8 as jansson judges it (NUL bytes allowed). */
static bool jansson_utf8(const char *s, size_t len)
{
    json_t *v = json_stringn(s, len);
    json_decref(v);
    return v != NULL;
}

/* proto_buf_json_str must write one valid JSON string whatever the bytes, and the same string
 * back when they were valid UTF-8; a whole error frame must be a valid JSON object. */
static void check_writer(const char *s, size_t len)
{
    struct proto_buf b;
    proto_buf_init(&b, 16);
    proto_buf_json_str(&b, s, len);
    CHECK(!b.oom);
    json_t *v = json_loadb(proto_buf_text(&b), b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    CHECK(json_is_string(v));
    if (jansson_utf8(s, len)) {
        CHECK(json_string_length(v) == len && memcmp(json_string_value(v), s, len) == 0);
    }
    json_decref(v);

    /* The same bytes as a message and (cut at the first NUL) an id of an error frame. */
    char *cstr = strndup(s, len);
    CHECK(cstr != NULL);
    proto_buf_reset(&b);
    proto_buf_error(&b, PROTO_ERR_BAD_REQUEST, cstr, cstr);
    v = json_loadb(proto_buf_text(&b), b.len, 0, NULL);
    CHECK(json_is_object(v));
    CHECK(strcmp(json_string_value(json_object_get(v, "code")), "bad_request") == 0);
    json_decref(v);
    free(cstr);
    proto_buf_cleanup(&b);
}

/* proto_valid_name has its own UTF-8 decoder: it must agree with jansson's on 1-64 bytes without
 * control characters, and never accept what jansson refuses. */
static void check_name(const char *s, size_t len)
{
    bool ok = proto_valid_name(s, len);
    bool controls = false;
    for (size_t i = 0; i < len; i++) {
        controls = controls || (unsigned char)s[i] < 0x20;
    }
    if (len >= 1 && len <= 64 && !controls) {
        CHECK(ok == jansson_utf8(s, len));
    } else {
        CHECK(!ok);
    }
    if (proto_valid_id(s, len)) {
        CHECK(ok); /* every identifier is also a valid name */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    check_parse(s, size);
    check_writer(s, size);
    check_name(s, size);
    return 0;
}
