/* fuzz_auth: auth_jwt_verify on raw tokens, on signed fuzzed parts and on signed fuzzed JSON. */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "auth/auth.h"
#include "fuzz/fuzz.h"

/*
 * The input's first byte picks what the rest is:
 *   'r'  a token, verified as it is (almost never signed: this reaches the splitting and the
 *        signature's decoding);
 *   's'  "header.payload" text, which the harness signs, so the verifier goes on to decode
 *        both parts as base64url and parse them;
 *   else header JSON, a newline, payload JSON (everything when there is no newline is the
 *        payload, under {"alg":"HS256"}): the harness encodes and signs them, which reaches
 *        the claim checks.
 */

static const char secret[] = "fuzz-secret-0123456789";
#define NOW_S      1700000000 /* 2023-11-14: fixed, so that exp decides the same way every run */
#define TOKEN_ROOM 12288      /* room for any token the harness builds from an input */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Appends the unpadded base64url form of in (n bytes) at out; returns the characters written. */
static size_t encode(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned long v = (unsigned long)in[i] << 16;
        size_t left = n - i;
        if (left > 1) {
            v |= (unsigned long)in[i + 1] << 8;
        }
        if (left > 2) {
            v |= in[i + 2];
        }
        size_t chars = left >= 3 ? 4 : left + 1;
        for (size_t k = 0; k < chars; k++) {
            out[o++] = b64url[v >> (18 - 6 * k) & 63];
        }
    }
    return o;
}

/* Appends ".<signature>" to tok (len bytes of "header.payload"); returns the new length. */
static size_t sign(char *tok, size_t len)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    CHECK(HMAC(EVP_sha256(), secret, (int)(sizeof secret - 1), (const unsigned char *)tok, len, mac,
               &mac_len) != NULL);
    tok[len++] = '.';
    return len + encode(mac, mac_len, tok + len);
}

/* Claims that verified obey auth.h, and signing them again gives a token that verifies to the
 * same claims. */
static void check_claims(const struct auth_claims *c)
{
    CHECK(c->role == AUTH_ROLE_VIEWER || c->role == AUTH_ROLE_OVERLAY ||
          c->role == AUTH_ROLE_SERVICE);
    CHECK(c->exp > NOW_S);
    size_t sub_len = strnlen(c->sub, sizeof c->sub);
    CHECK(sub_len >= 1 && sub_len <= 64);
    CHECK(strnlen(c->name, sizeof c->name) <= 64);
    CHECK(strnlen(c->room, sizeof c->room) <= 64);
    CHECK(c->role != AUTH_ROLE_VIEWER || c->name[0] != '\0');
    CHECK(c->role == AUTH_ROLE_OVERLAY ? c->room[0] != '\0' : c->room[0] == '\0');

    char *tok = NULL;
    CHECK(auth_jwt_sign(c, secret, sizeof secret - 1, &tok) == 0);
    struct auth_claims again;
    CHECK(auth_jwt_verify(tok, strlen(tok), secret, sizeof secret - 1, NOW_S, &again) == 0);
    CHECK(strcmp(again.sub, c->sub) == 0 && strcmp(again.name, c->name) == 0 &&
          strcmp(again.room, c->room) == 0 && again.role == c->role && again.exp == c->exp);
    free(tok);
}

static void verify(const char *tok, size_t len)
{
    struct auth_claims c;
    int rc = auth_jwt_verify(tok, len, secret, sizeof secret - 1, NOW_S, &c);
    CHECK(rc == 0 || rc == -EACCES);
    if (rc == 0) {
        check_claims(&c);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char tok[TOKEN_ROOM];
    if (size == 0) {
        verify("", 0);
        return 0;
    }
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    if (data[0] == 'r') {
        verify(rest, n);
        return 0;
    }
    if (n > 8192) {
        return 0; /* far past the verifier's 4096-byte limit; the harness's buffer ends here */
    }
    if (data[0] == 's') {
        memcpy(tok, rest, n);
        verify(tok, sign(tok, n));
        return 0;
    }
    /* JSON parts: header (or a default) before the first newline, payload after it. */
    const char *nl = memchr(data, '\n', size);
    static const char default_hdr[] = "{\"alg\":\"HS256\"}";
    const char *hdr = default_hdr, *pay = (const char *)data;
    size_t hdr_len = sizeof default_hdr - 1, pay_len = size;
    if (nl != NULL) {
        hdr = (const char *)data;
        hdr_len = (size_t)(nl - hdr);
        pay = nl + 1;
        pay_len = size - hdr_len - 1;
    }
    size_t len = encode((const unsigned char *)hdr, hdr_len, tok);
    tok[len++] = '.';
    len += encode((const unsigned char *)pay, pay_len, tok + len);
    verify(tok, sign(tok, len));
    return 0;
}
