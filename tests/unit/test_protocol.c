/* Unit tests for protocol: error table, identifiers and names, frame parsing, JSON text. */
#include "protocol/protocol.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COUNT 99

static struct proto_msg msg;

static enum proto_err parse(const char *s, const char **detail)
{
    return proto_parse(s, strlen(s), MAX_COUNT, &msg, detail);
}

/* Asserts that s is refused with code e and a non-empty detail naming field. */
static void expect_err(const char *s, enum proto_err e, const char *field)
{
    const char *detail = NULL;
    cr_assert_eq(parse(s, &detail), e, "frame %s", s);
    cr_assert_not_null(detail, "frame %s", s);
    cr_assert_neq(detail[0], '\0');
    if (field != NULL) {
        cr_assert_not_null(strstr(detail, field), "detail '%s' for %s names %s", detail, s, field);
    }
}

/* ---- error table ---------------------------------------------------------------------------- */

Test(proto_err_from_code, round_trips_every_code)
{
    int n = 0;
#define CHECK(name, code, status, msg)                                                             \
    cr_assert_eq(proto_err_from_code(code), PROTO_ERR_##name);                                     \
    cr_assert_str_eq(proto_err_code(PROTO_ERR_##name), code);                                      \
    cr_assert_str_eq(proto_err_message(PROTO_ERR_##name), msg);                                    \
    cr_assert_eq(proto_err_http_status(PROTO_ERR_##name), status);                                 \
    n++;
    PROTO_ERRORS(CHECK)
#undef CHECK
    cr_assert_eq(n, PROTO_ERR__COUNT - 1);
}

Test(proto_err_http_status, every_code_has_an_error_status)
{
    for (int e = 1; e < PROTO_ERR__COUNT; e++) {
        int s = proto_err_http_status((enum proto_err)e);
        cr_assert(s >= 400 && s <= 599, "code %s status %d", proto_err_code((enum proto_err)e), s);
        cr_assert_not_null(proto_err_code((enum proto_err)e));
        cr_assert_not_null(proto_err_message((enum proto_err)e));
        cr_assert_eq(proto_err_from_code(proto_err_code((enum proto_err)e)), (enum proto_err)e);
    }
    cr_assert_eq(proto_err_http_status(PROTO_OK), 200);
    cr_assert_str_eq(proto_err_code(PROTO_OK), "ok");
}

Test(proto_err_from_code, unknown_code_is_ok)
{
    cr_assert_eq(proto_err_from_code("nope"), PROTO_OK);
    cr_assert_eq(proto_err_from_code(""), PROTO_OK);
    cr_assert_eq(proto_err_from_code("BAD_JSON"), PROTO_OK);
    cr_assert_eq(proto_err_from_code(NULL), PROTO_OK);
}

Test(proto_err_code, out_of_range_is_internal)
{
    cr_assert_str_eq(proto_err_code(PROTO_ERR__COUNT), "internal");
    cr_assert_eq(proto_err_http_status((enum proto_err) - 1), 500);
}

/* ---- identifiers and names ------------------------------------------------------------------ */

Test(proto_valid_id, accepts_1_to_64_allowed_bytes)
{
    char s[66];
    memset(s, 'a', sizeof s);
    cr_assert(proto_valid_id(s, 1));
    cr_assert(proto_valid_id(s, 64));
    cr_assert_not(proto_valid_id(s, 65));
    cr_assert_not(proto_valid_id(s, 0));
    cr_assert(proto_valid_id("AZaz09_.:-", 10));
}

Test(proto_valid_id, rejects_other_bytes)
{
    const char *bad[] = {"a b", "a/b", "a+b", "a@b", "é", "a\tb", "a\"b", "a\\b", "a=b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_not(proto_valid_id(bad[i], strlen(bad[i])), "%s", bad[i]);
    }
    cr_assert_not(proto_valid_id("a\0b", 3));
}

Test(proto_valid_name, accepts_utf8_up_to_64_bytes)
{
    cr_assert(proto_valid_name("Zoë 🎁 名前", strlen("Zoë 🎁 名前")));
    cr_assert(proto_valid_name("\xF4\x8F\xBF\xBF", 4)); /* U+10FFFF */
    cr_assert(proto_valid_name("\xEF\xBF\xBD", 3));     /* U+FFFD */
    char s[66];
    memset(s, 'x', sizeof s);
    cr_assert(proto_valid_name(s, 64));
    cr_assert_not(proto_valid_name(s, 65));
    cr_assert_not(proto_valid_name(s, 0));
    /* 64 bytes made of 32 two-byte characters, and a 65th byte that completes no character */
    char u[70];
    for (int i = 0; i < 32; i++) {
        u[2 * i] = '\xC3';
        u[2 * i + 1] = '\xA9';
    }
    cr_assert(proto_valid_name(u, 64));
    u[64] = 'x';
    cr_assert_not(proto_valid_name(u, 65));
}

Test(proto_valid_name, rejects_invalid_utf8)
{
    struct {
        const char *s;
        size_t n;
    } bad[] = {
        {"\x80", 1},             /* stray continuation */
        {"\xC3", 1},             /* truncated */
        {"a\xE2\x82", 3},        /* truncated 3-byte */
        {"\xC0\xAF", 2},         /* overlong '/' */
        {"\xC1\xBF", 2},         /* overlong */
        {"\xE0\x80\xAF", 3},     /* overlong 3-byte */
        {"\xF0\x80\x80\xAF", 4}, /* overlong 4-byte */
        {"\xED\xA0\x80", 3},     /* U+D800 surrogate */
        {"\xED\xBF\xBF", 3},     /* U+DFFF surrogate */
        {"\xF4\x90\x80\x80", 4}, /* U+110000 */
        {"\xF5\x80\x80\x80", 4}, /* lead byte beyond range */
        {"\xFF", 1},             /* never valid */
        {"\xC3\x28", 2},         /* bad continuation */
        {"\xE2\x28\xA1", 3},     /* bad second byte */
        {"\xF0\x9F\x8E", 3},     /* truncated emoji */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_not(proto_valid_name(bad[i].s, bad[i].n), "case %zu", i);
    }
}

Test(proto_valid_name, rejects_control_characters)
{
    cr_assert_not(proto_valid_name("a\nb", 3));
    cr_assert_not(proto_valid_name("a\tb", 3));
    cr_assert_not(proto_valid_name("a\0b", 3));
    cr_assert_not(proto_valid_name("\x1F", 1));
    cr_assert(proto_valid_name(" ", 1));
}

/* ---- proto_parse: bad_json ------------------------------------------------------------------ */

Test(proto_parse, bad_json_for_non_json)
{
    expect_err("hello", PROTO_ERR_BAD_JSON, NULL);
    expect_err("", PROTO_ERR_BAD_JSON, NULL);
    expect_err("{type:\"ping\"}", PROTO_ERR_BAD_JSON, NULL);
}

Test(proto_parse, bad_json_for_non_objects)
{
    expect_err("[{\"type\":\"ping\"}]", PROTO_ERR_BAD_JSON, NULL);
    expect_err("\"ping\"", PROTO_ERR_BAD_JSON, NULL);
    expect_err("42", PROTO_ERR_BAD_JSON, NULL);
    expect_err("null", PROTO_ERR_BAD_JSON, NULL);
}

Test(proto_parse, bad_json_for_truncated_object)
{
    expect_err("{\"type\":\"ping\"", PROTO_ERR_BAD_JSON, NULL);
    expect_err("{\"type\":\"pi", PROTO_ERR_BAD_JSON, NULL);
    /* The length counts, not a NUL: a valid frame cut short is still refused. */
    const char *f = "{\"type\":\"ping\"}";
    cr_assert_eq(proto_parse(f, strlen(f) - 1, MAX_COUNT, &msg, NULL), PROTO_ERR_BAD_JSON);
}

Test(proto_parse, bad_json_for_trailing_garbage_and_second_object)
{
    expect_err("{\"type\":\"ping\"} x", PROTO_ERR_BAD_JSON, NULL);
    expect_err("{\"type\":\"ping\"}{\"type\":\"ping\"}", PROTO_ERR_BAD_JSON, NULL);
}

/* ---- proto_parse: bad_request --------------------------------------------------------------- */

Test(proto_parse, bad_request_without_type)
{
    expect_err("{}", PROTO_ERR_BAD_REQUEST, "type");
    expect_err("{\"room\":\"r\"}", PROTO_ERR_BAD_REQUEST, "type");
}

Test(proto_parse, bad_request_for_non_string_type)
{
    expect_err("{\"type\":3}", PROTO_ERR_BAD_REQUEST, "type");
    expect_err("{\"type\":null}", PROTO_ERR_BAD_REQUEST, "type");
    expect_err("{\"type\":[\"ping\"]}", PROTO_ERR_BAD_REQUEST, "type");
}

Test(proto_parse, bad_request_for_unknown_type)
{
    expect_err("{\"type\":\"dance\"}", PROTO_ERR_BAD_REQUEST, "type");
    expect_err("{\"type\":\"PING\"}", PROTO_ERR_BAD_REQUEST, "type");
    expect_err("{\"type\":\"\"}", PROTO_ERR_BAD_REQUEST, "type");
    cr_assert_eq(msg.type, 0);
}

Test(proto_parse, bad_request_for_join_without_valid_room)
{
    expect_err("{\"type\":\"join\"}", PROTO_ERR_BAD_REQUEST, "room");
    cr_assert_eq(msg.type, PROTO_MSG_JOIN);
    expect_err("{\"type\":\"join\",\"room\":\"a b\"}", PROTO_ERR_BAD_REQUEST, "room");
    expect_err("{\"type\":\"join\",\"room\":\"\"}", PROTO_ERR_BAD_REQUEST, "room");
    expect_err("{\"type\":\"join\",\"room\":7}", PROTO_ERR_BAD_REQUEST, "room");

    char frame[200];
    char room[66];
    memset(room, 'r', 65);
    room[65] = '\0';
    snprintf(frame, sizeof frame, "{\"type\":\"join\",\"room\":\"%s\"}", room);
    expect_err(frame, PROTO_ERR_BAD_REQUEST, "room");
    room[64] = '\0';
    snprintf(frame, sizeof frame, "{\"type\":\"join\",\"room\":\"%s\"}", room);
    cr_assert_eq(parse(frame, NULL), PROTO_OK);
    cr_assert_str_eq(msg.room, room);
}

Test(proto_parse, bad_request_for_gift_without_valid_id)
{
    expect_err("{\"type\":\"gift\",\"gift\":\"rose\"}", PROTO_ERR_BAD_REQUEST, "id");
    cr_assert_eq(msg.type, PROTO_MSG_GIFT);
    cr_assert_str_eq(msg.id, "");
    expect_err("{\"type\":\"gift\",\"id\":\"a b\",\"gift\":\"rose\"}", PROTO_ERR_BAD_REQUEST, "id");
    cr_assert_str_eq(msg.id, "");
    expect_err("{\"type\":\"gift\",\"id\":12,\"gift\":\"rose\"}", PROTO_ERR_BAD_REQUEST, "id");
}

Test(proto_parse, bad_request_for_gift_without_valid_gift)
{
    expect_err("{\"type\":\"gift\",\"id\":\"m1\"}", PROTO_ERR_BAD_REQUEST, "gift");
    cr_assert_str_eq(msg.id, "m1");
    expect_err("{\"type\":\"gift\",\"id\":\"m2\",\"gift\":\"ro se\"}", PROTO_ERR_BAD_REQUEST,
               "gift");
    cr_assert_str_eq(msg.id, "m2");
}

Test(proto_parse, bad_request_for_count_out_of_range)
{
    expect_err("{\"type\":\"gift\",\"id\":\"m1\",\"gift\":\"rose\",\"count\":0}",
               PROTO_ERR_BAD_REQUEST, "count");
    cr_assert_str_eq(msg.id, "m1");
    expect_err("{\"type\":\"gift\",\"id\":\"m1\",\"gift\":\"rose\",\"count\":-1}",
               PROTO_ERR_BAD_REQUEST, "count");
    expect_err("{\"type\":\"gift\",\"id\":\"m1\",\"gift\":\"rose\",\"count\":100}",
               PROTO_ERR_BAD_REQUEST, "count");
    /* Beyond 64 bits: still valid JSON, so bad_request with the id, not bad_json. */
    expect_err("{\"type\":\"gift\",\"id\":\"m7\",\"gift\":\"rose\",\"count\":"
               "9223372036854775808}",
               PROTO_ERR_BAD_REQUEST, "count");
    cr_assert_str_eq(msg.id, "m7");
    expect_err("{\"type\":\"gift\",\"id\":\"m8\",\"gift\":\"rose\",\"count\":"
               "-99999999999999999999}",
               PROTO_ERR_BAD_REQUEST, "count");
    cr_assert_str_eq(msg.id, "m8");
    /* A huge number is no excuse for broken JSON. */
    expect_err("{\"type\":\"gift\",\"id\":\"m9\",\"count\":99999999999999999999",
               PROTO_ERR_BAD_JSON, NULL);
    cr_assert_eq(parse("{\"type\":\"gift\",\"id\":\"m1\",\"gift\":\"rose\",\"count\":99}", NULL),
                 PROTO_OK);
    cr_assert_eq(msg.count, 99);
}

Test(proto_parse, gift_anonymous_is_a_boolean_defaulting_to_false)
{
    cr_assert_eq(parse("{\"type\":\"gift\",\"id\":\"m1\",\"gift\":\"rose\"}", NULL), PROTO_OK);
    cr_assert(!msg.anonymous);
    cr_assert_eq(
        parse("{\"type\":\"gift\",\"id\":\"m1\",\"gift\":\"rose\",\"anonymous\":true}", NULL),
        PROTO_OK);
    cr_assert(msg.anonymous);
    cr_assert_eq(
        parse("{\"type\":\"gift\",\"id\":\"m1\",\"gift\":\"rose\",\"anonymous\":false}", NULL),
        PROTO_OK);
    cr_assert(!msg.anonymous);
    expect_err("{\"type\":\"gift\",\"id\":\"m2\",\"gift\":\"rose\",\"anonymous\":1}",
               PROTO_ERR_BAD_REQUEST, "anonymous");
    cr_assert_str_eq(msg.id, "m2");
    expect_err("{\"type\":\"gift\",\"id\":\"m3\",\"gift\":\"rose\",\"anonymous\":\"true\"}",
               PROTO_ERR_BAD_REQUEST, "anonymous");
}

Test(proto_parse, bad_request_for_non_integer_count)
{
    expect_err("{\"type\":\"gift\",\"id\":\"m1\",\"gift\":\"rose\",\"count\":\"3\"}",
               PROTO_ERR_BAD_REQUEST, "count");
    expect_err("{\"type\":\"gift\",\"id\":\"m1\",\"gift\":\"rose\",\"count\":1.5}",
               PROTO_ERR_BAD_REQUEST, "count");
    expect_err("{\"type\":\"gift\",\"id\":\"m1\",\"gift\":\"rose\",\"count\":2.0}",
               PROTO_ERR_BAD_REQUEST, "count");
    expect_err("{\"type\":\"gift\",\"id\":\"m1\",\"gift\":\"rose\",\"count\":null}",
               PROTO_ERR_BAD_REQUEST, "count");
    expect_err("{\"type\":\"gift\",\"id\":\"m1\",\"gift\":\"rose\",\"count\":true}",
               PROTO_ERR_BAD_REQUEST, "count");
}

Test(proto_parse, bad_request_for_hello_without_token)
{
    expect_err("{\"type\":\"hello\"}", PROTO_ERR_BAD_REQUEST, "token");
    cr_assert_eq(msg.type, PROTO_MSG_HELLO);
    expect_err("{\"type\":\"hello\",\"token\":5}", PROTO_ERR_BAD_REQUEST, "token");
}

Test(proto_parse, bad_request_for_token_over_max)
{
    size_t n = PROTO_TOKEN_MAX + 1;
    char *frame = malloc(n + 64);
    int k = sprintf(frame, "{\"type\":\"hello\",\"token\":\"");
    memset(frame + k, 'a', n);
    strcpy(frame + k + n, "\"}");
    expect_err(frame, PROTO_ERR_BAD_REQUEST, "token");

    /* exactly PROTO_TOKEN_MAX is accepted */
    memset(frame + k, 'a', n - 1);
    strcpy(frame + k + n - 1, "\"}");
    cr_assert_eq(parse(frame, NULL), PROTO_OK);
    cr_assert_eq(strlen(msg.token), PROTO_TOKEN_MAX);
    free(frame);
}

Test(proto_parse, detail_may_be_null)
{
    cr_assert_eq(proto_parse("{}", 2, MAX_COUNT, &msg, NULL), PROTO_ERR_BAD_REQUEST);
    cr_assert_eq(proto_parse("x", 1, MAX_COUNT, &msg, NULL), PROTO_ERR_BAD_JSON);
}

/* ---- proto_parse: ok ------------------------------------------------------------------------ */

Test(proto_parse, gift_defaults_count_to_one)
{
    const char *detail = "unset";
    cr_assert_eq(parse("{\"type\":\"gift\",\"id\":\"c-1:x\",\"gift\":\"rose\"}", &detail),
                 PROTO_OK);
    cr_assert_null(detail);
    cr_assert_eq(msg.type, PROTO_MSG_GIFT);
    cr_assert_str_eq(msg.id, "c-1:x");
    cr_assert_str_eq(msg.gift, "rose");
    cr_assert_eq(msg.count, 1);
}

Test(proto_parse, gift_with_count)
{
    cr_assert_eq(parse("{\"count\":7,\"gift\":\"lion\",\"id\":\"m\",\"type\":\"gift\"}", NULL),
                 PROTO_OK);
    cr_assert_eq(msg.count, 7);
    cr_assert_str_eq(msg.gift, "lion");
}

Test(proto_parse, ignores_unknown_fields)
{
    cr_assert_eq(parse("{\"type\":\"join\",\"room\":\"r1\",\"extra\":{\"a\":[1,2]},\"v\":2}", NULL),
                 PROTO_OK);
    cr_assert_eq(msg.type, PROTO_MSG_JOIN);
    cr_assert_str_eq(msg.room, "r1");
    cr_assert_eq(parse("{\"type\":\"ping\",\"room\":5}", NULL), PROTO_OK);
    cr_assert_eq(msg.type, PROTO_MSG_PING);
}

Test(proto_parse, parses_hello_leave_ping)
{
    cr_assert_eq(parse("{\"type\":\"hello\",\"token\":\"a.b.c\"}", NULL), PROTO_OK);
    cr_assert_eq(msg.type, PROTO_MSG_HELLO);
    cr_assert_str_eq(msg.token, "a.b.c");
    cr_assert_eq(parse("{\"type\":\"leave\"}", NULL), PROTO_OK);
    cr_assert_eq(msg.type, PROTO_MSG_LEAVE);
    cr_assert_eq(parse(" { \"type\" : \"ping\" } ", NULL), PROTO_OK);
    cr_assert_eq(msg.type, PROTO_MSG_PING);
}

Test(proto_parse, does_not_need_nul_terminator)
{
    const char buf[] = {'{', '"', 't', 'y', 'p', 'e', '"', ':', '"', 'p', 'i', 'n', 'g', '"', '}'};
    cr_assert_eq(proto_parse(buf, sizeof buf, MAX_COUNT, &msg, NULL), PROTO_OK);
    cr_assert_eq(msg.type, PROTO_MSG_PING);
}

Test(proto_parse, clears_previous_fields)
{
    cr_assert_eq(parse("{\"type\":\"gift\",\"id\":\"m1\",\"gift\":\"rose\",\"count\":5}", NULL),
                 PROTO_OK);
    expect_err("{\"type\":\"gift\",\"gift\":\"rose\"}", PROTO_ERR_BAD_REQUEST, "id");
    cr_assert_str_eq(msg.id, "");
    cr_assert_str_eq(msg.gift, "");
}

/* ---- proto_buf ------------------------------------------------------------------------------ */

Test(proto_buf_init, reserves_headroom)
{
    struct proto_buf b;
    proto_buf_init(&b, 16);
    char *t = proto_buf_text(&b);
    cr_assert_not_null(t);
    cr_assert_str_eq(t, "");
    proto_buf_puts(&b, "abc");
    t = proto_buf_text(&b);
    cr_assert_eq(t, b.data + 16);
    cr_assert_eq(b.len, 3);
    cr_assert_eq(memcmp(t, "abc", 3), 0);
    cr_assert_geq(b.cap, 16 + 3);
    /* The headroom is writable in place, as lws_write needs. */
    memset(b.data, 0, 16);
    cr_assert_eq(memcmp(proto_buf_text(&b), "abc", 3), 0);
    cr_assert_not(b.oom);
    proto_buf_cleanup(&b);
    cr_assert_null(b.data);
}

Test(proto_buf_append, grows_and_keeps_content)
{
    struct proto_buf b;
    proto_buf_init(&b, 7);
    for (int i = 0; i < 1000; i++) {
        proto_buf_printf(&b, "%d,", i % 10);
    }
    cr_assert_eq(b.len, 2000);
    const char *t = proto_buf_text(&b);
    for (int i = 0; i < 1000; i++) {
        cr_assert_eq(t[2 * i], '0' + i % 10);
        cr_assert_eq(t[2 * i + 1], ',');
    }
    proto_buf_reset(&b);
    cr_assert_eq(b.len, 0);
    cr_assert_eq(b.headroom, 7);
    proto_buf_printf(&b, "%s-%05d", "x", 42);
    cr_assert_str_eq(proto_buf_text(&b), "x-00042");
    proto_buf_cleanup(&b);
}

Test(proto_buf_printf, grows_for_long_output)
{
    struct proto_buf b;
    proto_buf_init(&b, 0);
    proto_buf_puts(&b, "<");
    proto_buf_printf(&b, "%0900d", 5);
    proto_buf_append(&b, ">", 1);
    cr_assert_eq(b.len, 902);
    const char *t = proto_buf_text(&b);
    cr_assert_eq(t[0], '<');
    cr_assert_eq(t[900], '5');
    cr_assert_eq(t[901], '>');
    proto_buf_cleanup(&b);
}

/* Returns the quoted JSON text of s (len bytes); the caller frees. */
static char *json_text(const char *s, size_t len)
{
    struct proto_buf b;
    proto_buf_init(&b, 4);
    proto_buf_json_str(&b, s, len);
    char *out = strdup(proto_buf_text(&b));
    proto_buf_cleanup(&b);
    return out;
}

Test(proto_buf_json_str, escapes_quotes_backslash_and_controls)
{
    char *t = json_text("a\"b\\c\nd\x01\x1f", 9);
    cr_assert_str_eq(t, "\"a\\\"b\\\\c\\u000ad\\u0001\\u001f\"");
    free(t);
    t = json_text("", 0);
    cr_assert_str_eq(t, "\"\"");
    free(t);
    t = json_text("a\0b", 3);
    cr_assert_str_eq(t, "\"a\\u0000b\"");
    free(t);
}

Test(proto_buf_json_str, passes_utf8_and_slash_through)
{
    const char *s = "Zoë 🎁 名前 / </script>";
    char *t = json_text(s, strlen(s));
    char want[128];
    snprintf(want, sizeof want, "\"%s\"", s);
    cr_assert_str_eq(t, want);
    free(t);
}

Test(proto_buf_json_str, output_parses_back_to_the_input)
{
    const char s[] = "q\"\\\b\f\n\r\t\x7f end é";
    char *t = json_text(s, sizeof s - 1);
    json_error_t err;
    json_t *v = json_loads(t, JSON_DECODE_ANY, &err);
    cr_assert_not_null(v, "%s: %s", t, err.text);
    cr_assert_str_eq(json_string_value(v), s);
    json_decref(v);
    free(t);
}

Test(proto_buf_json_str, replaces_invalid_utf8)
{
    char *t = json_text("a\xC0\xAF"
                        "b\xFF",
                        5);
    cr_assert_str_eq(t, "\"a\xEF\xBF\xBD\xEF\xBF\xBD"
                        "b\xEF\xBF\xBD\"");
    json_t *v = json_loads(t, JSON_DECODE_ANY, NULL);
    cr_assert_not_null(v);
    json_decref(v);
    free(t);
}

Test(proto_buf_json_cstr, null_appends_null)
{
    struct proto_buf b;
    proto_buf_init(&b, 0);
    proto_buf_json_cstr(&b, NULL);
    proto_buf_puts(&b, ",");
    proto_buf_json_cstr(&b, "x");
    cr_assert_str_eq(proto_buf_text(&b), "null,\"x\"");
    proto_buf_cleanup(&b);
}

static json_t *error_frame(enum proto_err e, const char *message, const char *id)
{
    struct proto_buf b;
    proto_buf_init(&b, 10);
    proto_buf_error(&b, e, message, id);
    cr_assert_not(b.oom);
    json_error_t err;
    json_t *v = json_loadb(proto_buf_text(&b), b.len, 0, &err);
    cr_assert_not_null(v, "%s", err.text);
    proto_buf_cleanup(&b);
    return v;
}

Test(proto_buf_error, builds_error_frame_with_default_message)
{
    json_t *v = error_frame(PROTO_ERR_INSUFFICIENT_FUNDS, NULL, "m-1");
    cr_assert_str_eq(json_string_value(json_object_get(v, "type")), "error");
    cr_assert_str_eq(json_string_value(json_object_get(v, "code")), "insufficient_funds");
    cr_assert_str_eq(json_string_value(json_object_get(v, "message")),
                     proto_err_message(PROTO_ERR_INSUFFICIENT_FUNDS));
    cr_assert_str_eq(json_string_value(json_object_get(v, "id")), "m-1");
    cr_assert_eq(json_object_size(v), 4);
    json_decref(v);
}

Test(proto_buf_error, omits_empty_id_and_escapes_message)
{
    json_t *v = error_frame(PROTO_ERR_BAD_REQUEST, "field \"count\"\n bad", "");
    cr_assert_str_eq(json_string_value(json_object_get(v, "code")), "bad_request");
    cr_assert_str_eq(json_string_value(json_object_get(v, "message")), "field \"count\"\n bad");
    cr_assert_null(json_object_get(v, "id"));
    cr_assert_eq(json_object_size(v), 3);
    json_decref(v);

    v = error_frame(PROTO_ERR_BAD_JSON, NULL, NULL);
    cr_assert_null(json_object_get(v, "id"));
    json_decref(v);
}

Test(proto_buf_error, every_code_builds_valid_json)
{
    for (int e = 1; e < PROTO_ERR__COUNT; e++) {
        json_t *v = error_frame((enum proto_err)e, NULL, "x");
        cr_assert_str_eq(json_string_value(json_object_get(v, "code")),
                         proto_err_code((enum proto_err)e));
        json_decref(v);
    }
}

/* ---- join with resume (SPEC 3.4) ------------------------------------------------------------ */

Test(proto_parse, join_without_since_seq_does_not_resume)
{
    cr_assert_eq(parse("{\"type\":\"join\",\"room\":\"r\"}", NULL), PROTO_OK);
    cr_assert_not(msg.resume.on);
    cr_assert_not(msg.resume.has_epoch);
    /* A resume left over from an earlier frame does not survive. */
    cr_assert_eq(parse("{\"type\":\"join\",\"room\":\"r\",\"since_seq\":9,\"epoch\":3}", NULL),
                 PROTO_OK);
    cr_assert_eq(parse("{\"type\":\"join\",\"room\":\"r\",\"since_seq\":null}", NULL), PROTO_OK);
    cr_assert_not(msg.resume.on);
    cr_assert_not(msg.resume.has_epoch);
}

Test(proto_parse, join_reads_since_seq_and_an_integer_or_string_epoch)
{
    cr_assert_eq(parse("{\"type\":\"join\",\"room\":\"r\",\"since_seq\":0}", NULL), PROTO_OK);
    cr_assert(msg.resume.on);
    cr_assert_eq(msg.resume.since, 0);
    cr_assert_not(msg.resume.has_epoch);
    cr_assert_eq(parse("{\"type\":\"join\",\"room\":\"r\",\"since_seq\":41,"
                       "\"epoch\":1796596884513087}",
                       NULL),
                 PROTO_OK);
    cr_assert_eq(msg.resume.since, 41);
    cr_assert(msg.resume.has_epoch);
    cr_assert_eq(msg.resume.epoch, 1796596884513087LL);
    cr_assert_eq(parse("{\"type\":\"join\",\"room\":\"r\",\"since_seq\":1,\"epoch\":\"77\"}", NULL),
                 PROTO_OK);
    cr_assert_eq(msg.resume.epoch, 77);
    /* An epoch giftd never makes matches no room: not an error, just no resume. */
    const char *never[] = {"\"abc\"", "\"\"", "0", "-5", "\"1e3\""};
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++) {
        char frame[128];
        snprintf(frame, sizeof frame,
                 "{\"type\":\"join\",\"room\":\"r\",\"since_seq\":1,\"epoch\":%s}", never[i]);
        cr_assert_eq(parse(frame, NULL), PROTO_OK, "%s", frame);
        cr_assert(msg.resume.has_epoch);
        cr_assert_eq(msg.resume.epoch, -1, "%s", frame);
    }
}

Test(proto_parse, bad_request_for_a_bad_since_seq_or_epoch)
{
    expect_err("{\"type\":\"join\",\"room\":\"r\",\"since_seq\":-1}", PROTO_ERR_BAD_REQUEST,
               "since_seq");
    expect_err("{\"type\":\"join\",\"room\":\"r\",\"since_seq\":\"5\"}", PROTO_ERR_BAD_REQUEST,
               "since_seq");
    expect_err("{\"type\":\"join\",\"room\":\"r\",\"since_seq\":1.5}", PROTO_ERR_BAD_REQUEST,
               "since_seq");
    expect_err("{\"type\":\"join\",\"room\":\"r\",\"since_seq\":1,\"epoch\":[1]}",
               PROTO_ERR_BAD_REQUEST, "epoch");
    expect_err("{\"type\":\"join\",\"room\":\"r\",\"since_seq\":1,\"epoch\":true}",
               PROTO_ERR_BAD_REQUEST, "epoch");
}

Test(proto_resume_from_query, digits_only_for_since_seq)
{
    struct proto_resume r;
    cr_assert(proto_resume_from_query(NULL, NULL, &r));
    cr_assert_not(r.on);
    cr_assert(proto_resume_from_query("12", "345", &r));
    cr_assert(r.on);
    cr_assert_eq(r.since, 12);
    cr_assert(r.has_epoch);
    cr_assert_eq(r.epoch, 345);
    cr_assert(proto_resume_from_query("0", "x", &r));
    cr_assert_eq(r.epoch, -1);
    const char *bad[] = {"", "-1", "1x", " 1", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_not(proto_resume_from_query(bad[i], NULL, &r), "%s", bad[i]);
    }
}
