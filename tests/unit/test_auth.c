/* Unit tests for auth: HS256 JWT sign/verify, and every way a token is refused. */
#include "auth/auth.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET "test-secret-0123456789"
#define NOW    ((int64_t)1700000000)

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Appends the base64url encoding (no padding) of in[0..n) to out (NUL-terminated). */
static void enc(char *out, const void *in, size_t n)
{
    const unsigned char *p = in;
    char *o = out + strlen(out);
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        *o++ = b64[v >> 18 & 63];
        *o++ = b64[v >> 12 & 63];
        *o++ = b64[v >> 6 & 63];
        *o++ = b64[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)p[i] << 16;
        *o++ = b64[v >> 18 & 63];
        *o++ = b64[v >> 12 & 63];
    } else if (n - i == 2) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
        *o++ = b64[v >> 18 & 63];
        *o++ = b64[v >> 12 & 63];
        *o++ = b64[v >> 6 & 63];
    }
    *o = '\0';
}

/* Builds "b64(header).b64(payload).b64(HMAC-SHA256(secret, first two parts))" into out. */
static void craft(char *out, const char *header, const char *payload, const char *secret)
{
    out[0] = '\0';
    enc(out, header, strlen(header));
    strcat(out, ".");
    enc(out, payload, strlen(payload));
    unsigned char mac[32];
    unsigned mac_len = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)out, strlen(out), mac,
         &mac_len);
    cr_assert_eq(mac_len, 32);
    strcat(out, ".");
    enc(out, mac, mac_len);
}

static const char *const HS256 = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

static int verify(const char *tok, struct auth_claims *c)
{
    return auth_jwt_verify(tok, strlen(tok), SECRET, strlen(SECRET), NOW, c);
}

/* Verifies a token crafted from payload with a correct HS256 signature. */
static int verify_payload(const char *payload, struct auth_claims *c)
{
    char tok[2048];
    craft(tok, HS256, payload, SECRET);
    return verify(tok, c);
}

static struct auth_claims viewer_claims(void)
{
    struct auth_claims c;
    memset(&c, 0, sizeof c);
    strcpy(c.sub, "user-1");
    strcpy(c.name, "Zoë 🎁");
    c.role = AUTH_ROLE_VIEWER;
    c.exp = NOW + 3600;
    return c;
}

Test(auth_role_name, names_each_role_and_null_for_none)
{
    cr_assert_str_eq(auth_role_name(AUTH_ROLE_VIEWER), "viewer");
    cr_assert_str_eq(auth_role_name(AUTH_ROLE_OVERLAY), "overlay");
    cr_assert_str_eq(auth_role_name(AUTH_ROLE_SERVICE), "service");
    cr_assert_null(auth_role_name(AUTH_ROLE_NONE));
    cr_assert_null(auth_role_name((enum auth_role)42));
}

Test(auth_role_parse, parses_known_and_rejects_others)
{
    cr_assert_eq(auth_role_parse("viewer"), AUTH_ROLE_VIEWER);
    cr_assert_eq(auth_role_parse("overlay"), AUTH_ROLE_OVERLAY);
    cr_assert_eq(auth_role_parse("service"), AUTH_ROLE_SERVICE);
    cr_assert_eq(auth_role_parse("Viewer"), AUTH_ROLE_NONE);
    cr_assert_eq(auth_role_parse("admin"), AUTH_ROLE_NONE);
    cr_assert_eq(auth_role_parse(""), AUTH_ROLE_NONE);
    cr_assert_eq(auth_role_parse(NULL), AUTH_ROLE_NONE);
}

Test(auth_jwt_sign, viewer_round_trips_all_fields)
{
    struct auth_claims in = viewer_claims();
    char *tok = NULL;
    cr_assert_eq(auth_jwt_sign(&in, SECRET, strlen(SECRET), &tok), 0);
    cr_assert_not_null(tok);
    cr_assert_eq(strchr(tok, '='), NULL);

    struct auth_claims out;
    cr_assert_eq(verify(tok, &out), 0);
    cr_assert_str_eq(out.sub, "user-1");
    cr_assert_str_eq(out.name, "Zoë 🎁");
    cr_assert_eq(out.role, AUTH_ROLE_VIEWER);
    cr_assert_str_eq(out.room, "");
    cr_assert_eq(out.exp, NOW + 3600);
    free(tok);
}

Test(auth_jwt_sign, overlay_round_trips_room)
{
    struct auth_claims in;
    memset(&in, 0, sizeof in);
    strcpy(in.sub, "creator:7");
    strcpy(in.room, "room.42");
    in.role = AUTH_ROLE_OVERLAY;
    in.exp = NOW + 1;
    char *tok = NULL;
    cr_assert_eq(auth_jwt_sign(&in, SECRET, strlen(SECRET), &tok), 0);

    struct auth_claims out;
    cr_assert_eq(verify(tok, &out), 0);
    cr_assert_str_eq(out.sub, "creator:7");
    cr_assert_str_eq(out.room, "room.42");
    cr_assert_str_eq(out.name, "");
    cr_assert_eq(out.role, AUTH_ROLE_OVERLAY);
    cr_assert_eq(out.exp, NOW + 1);
    free(tok);
}

Test(auth_jwt_sign, service_round_trips_without_name)
{
    struct auth_claims in;
    memset(&in, 0, sizeof in);
    strcpy(in.sub, "backend");
    in.role = AUTH_ROLE_SERVICE;
    in.exp = NOW + 60;
    char *tok = NULL;
    cr_assert_eq(auth_jwt_sign(&in, SECRET, strlen(SECRET), &tok), 0);
    struct auth_claims out;
    cr_assert_eq(verify(tok, &out), 0);
    cr_assert_eq(out.role, AUTH_ROLE_SERVICE);
    cr_assert_str_eq(out.sub, "backend");
    free(tok);
}

Test(auth_jwt_sign, matches_independent_hmac)
{
    /* A token crafted with the test's own encoder and HMAC verifies, so sign and verify do not
     * merely agree with each other. */
    struct auth_claims out;
    cr_assert_eq(verify_payload("{\"sub\":\"u\",\"role\":\"viewer\",\"name\":\"N\",\"exp\":"
                                "1700000100}",
                                &out),
                 0);
    cr_assert_str_eq(out.name, "N");
    cr_assert_eq(out.exp, 1700000100);
}

Test(auth_jwt_sign, rejects_bad_claims)
{
    char *tok = NULL;
    struct auth_claims c = viewer_claims();
    c.sub[0] = '\0';
    cr_assert_eq(auth_jwt_sign(&c, SECRET, strlen(SECRET), &tok), -EINVAL);

    c = viewer_claims();
    strcpy(c.sub, "a b");
    cr_assert_eq(auth_jwt_sign(&c, SECRET, strlen(SECRET), &tok), -EINVAL);

    c = viewer_claims();
    memset(c.sub, 'a', sizeof c.sub); /* not NUL-terminated */
    cr_assert_eq(auth_jwt_sign(&c, SECRET, strlen(SECRET), &tok), -EINVAL);

    c = viewer_claims();
    c.name[0] = '\0';
    cr_assert_eq(auth_jwt_sign(&c, SECRET, strlen(SECRET), &tok), -EINVAL);

    c = viewer_claims();
    strcpy(c.name, "bad\nname");
    cr_assert_eq(auth_jwt_sign(&c, SECRET, strlen(SECRET), &tok), -EINVAL);

    c = viewer_claims();
    strcpy(c.name, "\xC0\xAF"); /* overlong '/' */
    cr_assert_eq(auth_jwt_sign(&c, SECRET, strlen(SECRET), &tok), -EINVAL);

    c = viewer_claims();
    c.role = AUTH_ROLE_NONE;
    cr_assert_eq(auth_jwt_sign(&c, SECRET, strlen(SECRET), &tok), -EINVAL);

    c = viewer_claims();
    c.role = AUTH_ROLE_OVERLAY; /* overlay without room */
    cr_assert_eq(auth_jwt_sign(&c, SECRET, strlen(SECRET), &tok), -EINVAL);

    c = viewer_claims();
    c.role = AUTH_ROLE_OVERLAY;
    strcpy(c.room, "bad room");
    cr_assert_eq(auth_jwt_sign(&c, SECRET, strlen(SECRET), &tok), -EINVAL);

    c = viewer_claims();
    cr_assert_eq(auth_jwt_sign(&c, SECRET, 0, &tok), -EINVAL);
    cr_assert_null(tok);
}

Test(auth_jwt_verify, accepts_token_not_nul_terminated)
{
    struct auth_claims in = viewer_claims();
    char *tok = NULL;
    cr_assert_eq(auth_jwt_sign(&in, SECRET, strlen(SECRET), &tok), 0);
    size_t n = strlen(tok);
    char *copy = malloc(n + 5);
    memcpy(copy, tok, n);
    memcpy(copy + n, ".xyz", 5);
    struct auth_claims out;
    cr_assert_eq(auth_jwt_verify(copy, n, SECRET, strlen(SECRET), NOW, &out), 0);
    cr_assert_eq(auth_jwt_verify(copy, n + 4, SECRET, strlen(SECRET), NOW, &out), -EACCES);
    free(copy);
    free(tok);
}

Test(auth_jwt_verify, rejects_wrong_secret)
{
    struct auth_claims in = viewer_claims();
    char *tok = NULL;
    cr_assert_eq(auth_jwt_sign(&in, SECRET, strlen(SECRET), &tok), 0);
    struct auth_claims out;
    cr_assert_eq(auth_jwt_verify(tok, strlen(tok), "other", 5, NOW, &out), -EACCES);
    /* A prefix of the right secret is a different key. */
    cr_assert_eq(auth_jwt_verify(tok, strlen(tok), SECRET, strlen(SECRET) - 1, NOW, &out), -EACCES);
    free(tok);
}

Test(auth_jwt_verify, rejects_alg_none_with_empty_signature)
{
    char tok[1024] = "";
    enc(tok, "{\"alg\":\"none\"}", 14);
    strcat(tok, ".");
    const char *p = "{\"sub\":\"u\",\"role\":\"service\",\"exp\":1800000000}";
    enc(tok, p, strlen(p));
    strcat(tok, ".");
    struct auth_claims out;
    cr_assert_eq(verify(tok, &out), -EACCES);
}

Test(auth_jwt_verify, rejects_alg_none_with_valid_looking_signature)
{
    char tok[1024];
    craft(tok, "{\"alg\":\"none\"}", "{\"sub\":\"u\",\"role\":\"service\",\"exp\":1800000000}",
          SECRET);
    struct auth_claims out;
    cr_assert_eq(verify(tok, &out), -EACCES);
}

Test(auth_jwt_verify, rejects_other_algorithms_and_bad_headers)
{
    const char *p = "{\"sub\":\"u\",\"role\":\"service\",\"exp\":1800000000}";
    const char *headers[] = {
        "{\"alg\":\"HS512\",\"typ\":\"JWT\"}",
        "{\"alg\":\"hs256\"}",
        "{\"alg\":\"RS256\"}",
        "{\"typ\":\"JWT\"}",
        "{\"alg\":null}",
        "{\"alg\":256}",
        "{\"alg\":\"HS256\",\"crit\":[\"b64\"]}",
        "[\"HS256\"]",
        "\"HS256\"",
        "{\"alg\":\"HS256\"",
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        char tok[1024];
        craft(tok, headers[i], p, SECRET);
        struct auth_claims out;
        cr_assert_eq(verify(tok, &out), -EACCES, "header %s", headers[i]);
    }
    /* The same payload with a plain HS256 header (no typ) is fine. */
    char tok[1024];
    craft(tok, "{\"alg\":\"HS256\"}", p, SECRET);
    struct auth_claims out;
    cr_assert_eq(verify(tok, &out), 0);
}

Test(auth_jwt_verify, rejects_exp_equal_to_now)
{
    struct auth_claims out;
    cr_assert_eq(verify_payload("{\"sub\":\"u\",\"role\":\"service\",\"exp\":1700000000}", &out),
                 -EACCES);
}

Test(auth_jwt_verify, rejects_exp_in_the_past)
{
    struct auth_claims out;
    cr_assert_eq(verify_payload("{\"sub\":\"u\",\"role\":\"service\",\"exp\":1699999999}", &out),
                 -EACCES);
    cr_assert_eq(verify_payload("{\"sub\":\"u\",\"role\":\"service\",\"exp\":0}", &out), -EACCES);
    cr_assert_eq(verify_payload("{\"sub\":\"u\",\"role\":\"service\",\"exp\":1700000001}", &out),
                 0);
}

Test(auth_jwt_verify, rejects_non_integer_exp)
{
    struct auth_claims out;
    cr_assert_eq(
        verify_payload("{\"sub\":\"u\",\"role\":\"service\",\"exp\":\"1800000000\"}", &out),
        -EACCES);
    cr_assert_eq(verify_payload("{\"sub\":\"u\",\"role\":\"service\",\"exp\":1800000000.5}", &out),
                 -EACCES);
}

Test(auth_jwt_verify, rejects_missing_sub)
{
    struct auth_claims out;
    cr_assert_eq(verify_payload("{\"role\":\"service\",\"exp\":1800000000}", &out), -EACCES);
}

Test(auth_jwt_verify, rejects_missing_role)
{
    struct auth_claims out;
    cr_assert_eq(verify_payload("{\"sub\":\"u\",\"name\":\"N\",\"exp\":1800000000}", &out),
                 -EACCES);
}

Test(auth_jwt_verify, rejects_missing_exp)
{
    struct auth_claims out;
    cr_assert_eq(verify_payload("{\"sub\":\"u\",\"role\":\"service\"}", &out), -EACCES);
}

Test(auth_jwt_verify, rejects_viewer_without_name)
{
    struct auth_claims out;
    cr_assert_eq(verify_payload("{\"sub\":\"u\",\"role\":\"viewer\",\"exp\":1800000000}", &out),
                 -EACCES);
    cr_assert_eq(verify_payload(
                     "{\"sub\":\"u\",\"role\":\"viewer\",\"name\":\"\",\"exp\":1800000000}", &out),
                 -EACCES);
}

Test(auth_jwt_verify, rejects_bad_names)
{
    struct auth_claims out;
    cr_assert_eq(verify_payload("{\"sub\":\"u\",\"role\":\"viewer\",\"name\":\"a\\nb\","
                                "\"exp\":1800000000}",
                                &out),
                 -EACCES);
    cr_assert_eq(verify_payload("{\"sub\":\"u\",\"role\":\"viewer\",\"name\":7,"
                                "\"exp\":1800000000}",
                                &out),
                 -EACCES);
    char payload[256];
    snprintf(payload, sizeof payload,
             "{\"sub\":\"u\",\"role\":\"viewer\",\"name\":\"%065d\",\"exp\":1800000000}", 0);
    cr_assert_eq(verify_payload(payload, &out), -EACCES);
    snprintf(payload, sizeof payload,
             "{\"sub\":\"u\",\"role\":\"viewer\",\"name\":\"%064d\",\"exp\":1800000000}", 0);
    cr_assert_eq(verify_payload(payload, &out), 0);
    cr_assert_eq(strlen(out.name), 64);
}

Test(auth_jwt_verify, rejects_overlay_without_room)
{
    struct auth_claims out;
    cr_assert_eq(verify_payload("{\"sub\":\"u\",\"role\":\"overlay\",\"exp\":1800000000}", &out),
                 -EACCES);
    cr_assert_eq(verify_payload("{\"sub\":\"u\",\"role\":\"overlay\",\"room\":\"a b\","
                                "\"exp\":1800000000}",
                                &out),
                 -EACCES);
}

Test(auth_jwt_verify, ignores_room_for_viewer)
{
    struct auth_claims out;
    cr_assert_eq(verify_payload("{\"sub\":\"u\",\"role\":\"viewer\",\"name\":\"N\",\"room\":\"r\","
                                "\"exp\":1800000000}",
                                &out),
                 0);
    cr_assert_str_eq(out.room, "");
}

Test(auth_jwt_verify, rejects_unknown_role)
{
    struct auth_claims out;
    cr_assert_eq(verify_payload("{\"sub\":\"u\",\"role\":\"admin\",\"exp\":1800000000}", &out),
                 -EACCES);
    cr_assert_eq(verify_payload("{\"sub\":\"u\",\"role\":1,\"exp\":1800000000}", &out), -EACCES);
}

Test(auth_jwt_verify, rejects_bad_sub)
{
    struct auth_claims out;
    cr_assert_eq(verify_payload("{\"sub\":\"a b\",\"role\":\"service\",\"exp\":1800000000}", &out),
                 -EACCES);
    cr_assert_eq(verify_payload("{\"sub\":\"\",\"role\":\"service\",\"exp\":1800000000}", &out),
                 -EACCES);
    cr_assert_eq(verify_payload("{\"sub\":42,\"role\":\"service\",\"exp\":1800000000}", &out),
                 -EACCES);
}

Test(auth_jwt_verify, rejects_malformed_structure)
{
    struct auth_claims in = viewer_claims();
    char *good = NULL;
    cr_assert_eq(auth_jwt_sign(&in, SECRET, strlen(SECRET), &good), 0);
    char *dot1 = strchr(good, '.');
    char *dot2 = strchr(dot1 + 1, '.');
    char tok[2048];
    struct auth_claims out;

    /* two parts */
    snprintf(tok, sizeof tok, "%.*s", (int)(dot2 - good), good);
    cr_assert_eq(verify(tok, &out), -EACCES);
    /* four parts */
    snprintf(tok, sizeof tok, "%s.AAAA", good);
    cr_assert_eq(verify(tok, &out), -EACCES);
    /* empty signature */
    snprintf(tok, sizeof tok, "%.*s.", (int)(dot2 - good), good);
    cr_assert_eq(verify(tok, &out), -EACCES);
    /* empty header */
    snprintf(tok, sizeof tok, "%s", dot1);
    cr_assert_eq(verify(tok, &out), -EACCES);
    /* empty payload */
    snprintf(tok, sizeof tok, "%.*s.%s", (int)(dot1 - good), good, dot2);
    cr_assert_eq(verify(tok, &out), -EACCES);
    /* only dots, and nothing at all */
    cr_assert_eq(verify("..", &out), -EACCES);
    cr_assert_eq(verify("", &out), -EACCES);
    cr_assert_eq(verify("abc", &out), -EACCES);
    free(good);
}

Test(auth_jwt_verify, rejects_bad_base64)
{
    struct auth_claims in = viewer_claims();
    char *good = NULL;
    cr_assert_eq(auth_jwt_sign(&in, SECRET, strlen(SECRET), &good), 0);
    size_t n = strlen(good);
    char tok[2048];
    struct auth_claims out;

    /* padding on the signature (43 characters, so one '=' would pad it to 44) */
    snprintf(tok, sizeof tok, "%s=", good);
    cr_assert_eq(verify(tok, &out), -EACCES);
    /* standard-alphabet characters instead of base64url ones */
    for (size_t i = 0; i < n; i++) {
        if (good[i] == '.') {
            continue;
        }
        strcpy(tok, good);
        tok[i] = '+';
        cr_assert_eq(verify(tok, &out), -EACCES, "'+' at %zu", i);
        tok[i] = '/';
        cr_assert_eq(verify(tok, &out), -EACCES, "'/' at %zu", i);
    }
    /* a space, a NUL inside the length, and a non-ASCII byte */
    strcpy(tok, good);
    tok[1] = ' ';
    cr_assert_eq(verify(tok, &out), -EACCES);
    strcpy(tok, good);
    tok[1] = '\0';
    cr_assert_eq(auth_jwt_verify(tok, n, SECRET, strlen(SECRET), NOW, &out), -EACCES);
    strcpy(tok, good);
    tok[n - 1] = (char)0xC3;
    cr_assert_eq(verify(tok, &out), -EACCES);
    /* signature cut to 41 characters: 41 % 4 == 1 is no valid base64 length */
    snprintf(tok, sizeof tok, "%.*s", (int)(n - 2), good);
    cr_assert_eq(verify(tok, &out), -EACCES);
    /* a non-canonical last character: same decoded bytes with the unused low bits set */
    strcpy(tok, good);
    char *last = tok + n - 1;
    const char *pos = strchr(b64, *last);
    cr_assert_not_null(pos);
    *last = b64[(pos - b64) | 1];
    cr_assert_neq(*last, good[n - 1]);
    cr_assert_eq(verify(tok, &out), -EACCES);
    free(good);
}

Test(auth_jwt_verify, rejects_padded_payload)
{
    /* A payload whose encoding needs padding, sent with the padding. */
    const char *p = "{\"sub\":\"u\",\"role\":\"service\",\"exp\":1800000000}   ";
    for (int extra = 0; extra < 3; extra++) {
        char tok[1024] = "";
        enc(tok, HS256, strlen(HS256));
        strcat(tok, ".");
        size_t plen = strlen(p) - (size_t)extra;
        enc(tok, p, plen);
        if (plen % 3 == 0) {
            continue;
        }
        strcat(tok, plen % 3 == 1 ? "==" : "=");
        unsigned char mac[32];
        unsigned mac_len = 0;
        HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (unsigned char *)tok, strlen(tok), mac,
             &mac_len);
        strcat(tok, ".");
        enc(tok, mac, mac_len);
        struct auth_claims out;
        cr_assert_eq(verify(tok, &out), -EACCES, "padding with plen %zu", plen);
    }
}

Test(auth_jwt_verify, rejects_non_json_payload)
{
    struct auth_claims out;
    cr_assert_eq(verify_payload("not json", &out), -EACCES);
    cr_assert_eq(verify_payload("[1,2,3]", &out), -EACCES);
    cr_assert_eq(verify_payload("\"sub\"", &out), -EACCES);
    cr_assert_eq(verify_payload("{\"sub\":\"u\",\"role\":\"service\",\"exp\":1800000000", &out),
                 -EACCES);
}

Test(auth_jwt_verify, rejects_tampered_payload_with_original_signature)
{
    struct auth_claims in = viewer_claims();
    in.role = AUTH_ROLE_VIEWER;
    char *good = NULL;
    cr_assert_eq(auth_jwt_sign(&in, SECRET, strlen(SECRET), &good), 0);
    char *dot1 = strchr(good, '.');
    char *dot2 = strchr(dot1 + 1, '.');

    /* Same header and signature, payload upgraded to service. */
    char tok[2048] = "";
    snprintf(tok, sizeof tok, "%.*s.", (int)(dot1 - good), good);
    const char *evil =
        "{\"sub\":\"user-1\",\"role\":\"service\",\"name\":\"Zo\",\"exp\":1800000000}";
    enc(tok, evil, strlen(evil));
    strcat(tok, dot2);
    struct auth_claims out;
    cr_assert_eq(verify(tok, &out), -EACCES);

    /* A single flipped payload character also fails. */
    strcpy(tok, good);
    size_t i = (size_t)(dot1 - good) + 5;
    tok[i] = tok[i] == 'A' ? 'B' : 'A';
    cr_assert_eq(verify(tok, &out), -EACCES);
    free(good);
}

/* Crafts a correctly signed service token padded with an ignored claim of pad bytes. */
static size_t craft_padded(char *tok, size_t pad)
{
    static char filler[4096];
    static char payload[4200];
    memset(filler, 'x', pad);
    filler[pad] = '\0';
    snprintf(payload, sizeof payload,
             "{\"sub\":\"u\",\"role\":\"service\",\"exp\":1800000000,\"pad\":\"%s\"}", filler);
    craft(tok, "{\"alg\":\"HS256\"}", payload, SECRET);
    return strlen(tok);
}

Test(auth_jwt_verify, rejects_token_over_4096_bytes)
{
    /* Find the padding at which the token first exceeds 4096 bytes: the largest accepted token
     * and the smallest refused one differ by at most a few bytes. */
    static char tok[8192];
    size_t pad = 2900;
    while (craft_padded(tok, pad + 1) <= 4096) {
        pad++;
    }
    struct auth_claims out;
    cr_assert_leq(craft_padded(tok, pad), 4096);
    cr_assert_eq(verify(tok, &out), 0);
    size_t n = craft_padded(tok, pad + 1);
    cr_assert_gt(n, 4096);
    cr_assert_leq(n, 4100);
    cr_assert_eq(verify(tok, &out), -EACCES);
}

Test(auth_jwt_verify, rejects_impossible_base64_length)
{
    /* A payload whose encoding gets one extra 'A' (6 zero bits, so no extra byte): 4k+1
     * characters is no valid base64 length, even though the token is signed over it. */
    const char *p = "{\"sub\":\"u\",\"role\":\"service\",\"exp\":1800000000}";
    cr_assert_eq(strlen(p) % 3, 0);
    char tok[1024] = "";
    enc(tok, "{\"alg\":\"HS256\"}", 15);
    strcat(tok, ".");
    enc(tok, p, strlen(p));
    strcat(tok, "A");
    unsigned char mac[32];
    unsigned mac_len = 0;
    HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (unsigned char *)tok, strlen(tok), mac,
         &mac_len);
    strcat(tok, ".");
    enc(tok, mac, mac_len);
    struct auth_claims out;
    cr_assert_eq(verify(tok, &out), -EACCES);
}

Test(auth_jwt_verify, rejects_bad_arguments)
{
    struct auth_claims out;
    cr_assert_eq(auth_jwt_verify(NULL, 0, SECRET, strlen(SECRET), NOW, &out), -EINVAL);
    cr_assert_eq(auth_jwt_verify("a.b.c", 5, SECRET, 0, NOW, &out), -EINVAL);
    cr_assert_eq(auth_jwt_verify("a.b.c", 5, SECRET, strlen(SECRET), NOW, NULL), -EINVAL);
}

Test(auth_jwt_verify, leaves_out_untouched_on_failure)
{
    struct auth_claims out;
    memset(&out, 0x5A, sizeof out);
    cr_assert_eq(verify_payload("{\"sub\":\"u\",\"role\":\"viewer\",\"exp\":1800000000}", &out),
                 -EACCES);
    cr_assert_eq(out.sub[0], 0x5A);
}
