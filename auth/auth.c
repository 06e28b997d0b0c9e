/* auth: HS256 JWTs — verify tokens (constant-time) and mint them (giftctl, tests, --dev). */
#include "auth/auth.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Longest token accepted; real ones are a few hundred bytes. */
#define TOKEN_MAX 4096
/* Decoded size bound of one part of a TOKEN_MAX token. */
#define PART_MAX (TOKEN_MAX / 4 * 3 + 3)
#define MAC_LEN  32 /* SHA-256 */

static const char *const role_names[] = {
    [AUTH_ROLE_VIEWER] = "viewer",
    [AUTH_ROLE_OVERLAY] = "overlay",
    [AUTH_ROLE_SERVICE] = "service",
};

const char *auth_role_name(enum auth_role role)
{
    if (role == AUTH_ROLE_VIEWER || role == AUTH_ROLE_OVERLAY || role == AUTH_ROLE_SERVICE) {
        return role_names[role];
    }
    return NULL;
}

enum auth_role auth_role_parse(const char *name)
{
    if (name == NULL) {
        return AUTH_ROLE_NONE;
    }
    for (int r = AUTH_ROLE_VIEWER; r <= AUTH_ROLE_SERVICE; r++) {
        if (strcmp(name, role_names[r]) == 0) {
            return (enum auth_role)r;
        }
    }
    return AUTH_ROLE_NONE;
}

/*
 * SPEC 1 syntax checks. These mirror proto_valid_id/proto_valid_name, kept private because
 * giftd_auth does not link giftd_protocol. UTF-8 validity of names is left to jansson, which
 * refuses invalid UTF-8 both when parsing and in json_string().
 */
static bool valid_id(const char *s, size_t len)
{
    if (len < 1 || len > 64) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':' || c == '-')) {
            return false;
        }
    }
    return true;
}

static bool valid_name_bytes(const char *s, size_t len)
{
    if (len < 1 || len > 64) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x20) {
            return false;
        }
    }
    return true;
}

/* ---- base64url (RFC 4648 section 5, no padding) --------------------------------------------- */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '-') {
        return 62;
    }
    if (c == '_') {
        return 63;
    }
    return -1;
}

/* Encoded length of n bytes, without padding. */
static size_t b64url_len(size_t n)
{
    return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

/* Writes b64url_len(n) characters to out (no NUL). */
static void b64url_encode(const unsigned char *in, size_t n, char *out)
{
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned long v = (unsigned long)in[i] << 16 | (unsigned long)in[i + 1] << 8 | in[i + 2];
        *out++ = b64url[v >> 18 & 63];
        *out++ = b64url[v >> 12 & 63];
        *out++ = b64url[v >> 6 & 63];
        *out++ = b64url[v & 63];
    }
    if (n - i == 1) {
        unsigned long v = (unsigned long)in[i] << 16;
        *out++ = b64url[v >> 18 & 63];
        *out++ = b64url[v >> 12 & 63];
    } else if (n - i == 2) {
        unsigned long v = (unsigned long)in[i] << 16 | (unsigned long)in[i + 1] << 8;
        *out++ = b64url[v >> 18 & 63];
        *out++ = b64url[v >> 12 & 63];
        *out++ = b64url[v >> 6 & 63];
    }
}

/*
 * Decodes n characters into out (cap bytes). Rejects padding, characters outside the
 * base64url alphabet, impossible lengths, and non-zero leftover bits (so each byte string has
 * exactly one accepted encoding). Returns the decoded length, or -1.
 */
static long b64url_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    if (n % 4 == 1 || n / 4 * 3 + 2 > cap) {
        return -1;
    }
    size_t o = 0;
    unsigned long acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0) {
            return -1;
        }
        acc = (acc << 6 | (unsigned long)v) & 0xFFFFFF;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits & 0xFF);
        }
    }
    if ((acc & ((1UL << bits) - 1)) != 0) {
        return -1;
    }
    return (long)o;
}

/* ---- HMAC ----------------------------------------------------------------------------------- */

static bool hmac_sha256(const void *key, size_t key_len, const char *data, size_t n,
                        unsigned char mac[MAC_LEN])
{
    unsigned int mac_len = 0;
    if (key_len > INT_MAX) {
        return false;
    }
    if (HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)data, n, mac, &mac_len) ==
            NULL ||
        mac_len != MAC_LEN) {
        return false;
    }
    return true;
}

/* ---- verify --------------------------------------------------------------------------------- */

/* Parses a decoded part as a JSON object; NULL when it is not one. Returns a **new** ref. */
static json_t *load_object(const unsigned char *buf, size_t n)
{
    json_t *v = json_loadb((const char *)buf, n, 0, NULL);
    if (!json_is_object(v)) {
        json_decref(v);
        return NULL;
    }
    return v;
}

/* The JOSE header must say HS256; "none" and every other algorithm are refused. */
static bool header_ok(const json_t *hdr)
{
    const json_t *alg = json_object_get(hdr, "alg");
    if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256") != 0) {
        return false;
    }
    /* "crit" names extensions the verifier must understand (RFC 7515 4.1.11); we know none. */
    if (json_object_get(hdr, "crit") != NULL) {
        return false;
    }
    const json_t *typ = json_object_get(hdr, "typ");
    return typ == NULL || json_is_string(typ);
}

/* Copies string claim key into dst[65] when it passes check; false when missing or bad. */
static bool get_claim(const json_t *claims, const char *key, bool (*check)(const char *, size_t),
                      char dst[65])
{
    const json_t *v = json_object_get(claims, key);
    if (!json_is_string(v)) {
        return false;
    }
    size_t n = json_string_length(v);
    if (!check(json_string_value(v), n)) {
        return false;
    }
    memcpy(dst, json_string_value(v), n);
    dst[n] = '\0';
    return true;
}

static int claims_from_json(const json_t *claims, int64_t now_s, struct auth_claims *out)
{
    memset(out, 0, sizeof *out);
    if (!get_claim(claims, "sub", valid_id, out->sub)) {
        return -EACCES;
    }
    const json_t *role = json_object_get(claims, "role");
    out->role = json_is_string(role) ? auth_role_parse(json_string_value(role)) : AUTH_ROLE_NONE;
    if (out->role == AUTH_ROLE_NONE) {
        return -EACCES;
    }
    const json_t *exp = json_object_get(claims, "exp");
    if (!json_is_integer(exp)) {
        return -EACCES;
    }
    out->exp = (int64_t)json_integer_value(exp);
    if (out->exp <= now_s) {
        return -EACCES;
    }
    /* name is required for viewers; when present for another role it must still be valid. */
    if (out->role == AUTH_ROLE_VIEWER || json_object_get(claims, "name") != NULL) {
        if (!get_claim(claims, "name", valid_name_bytes, out->name)) {
            return -EACCES;
        }
    }
    /* room binds overlay tokens only; it means nothing for other roles and is ignored. */
    if (out->role == AUTH_ROLE_OVERLAY && !get_claim(claims, "room", valid_id, out->room)) {
        return -EACCES;
    }
    return 0;
}

int auth_jwt_verify(const char *token, size_t len, const void *secret, size_t secret_len,
                    int64_t now_s, struct auth_claims *out)
{
    if (token == NULL || out == NULL || secret == NULL || secret_len == 0) {
        return -EINVAL;
    }
    if (len == 0 || len > TOKEN_MAX) {
        return -EACCES;
    }
    const char *dot1 = memchr(token, '.', len);
    if (dot1 == NULL) {
        return -EACCES;
    }
    const char *dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL) {
        return -EACCES;
    }
    size_t hdr_len = (size_t)(dot1 - token);
    size_t pay_len = (size_t)(dot2 - dot1 - 1);
    size_t sig_len = len - (size_t)(dot2 + 1 - token);
    if (hdr_len == 0 || pay_len == 0 || sig_len == 0) {
        return -EACCES;
    }

    /* Authenticate first, so no JSON is parsed from a token we did not sign. */
    unsigned char expect[MAC_LEN];
    unsigned char given[PART_MAX];
    if (!hmac_sha256(secret, secret_len, token, (size_t)(dot2 - token), expect)) {
        return -EACCES;
    }
    long given_len = b64url_decode(dot2 + 1, sig_len, given, sizeof given);
    bool sig_ok = given_len == MAC_LEN && CRYPTO_memcmp(expect, given, MAC_LEN) == 0;
    OPENSSL_cleanse(expect, sizeof expect);
    if (!sig_ok) {
        return -EACCES;
    }

    unsigned char part[PART_MAX];
    long n = b64url_decode(token, hdr_len, part, sizeof part);
    if (n < 0) {
        return -EACCES;
    }
    json_t *hdr = load_object(part, (size_t)n);
    bool hdr_ok = hdr != NULL && header_ok(hdr);
    json_decref(hdr);
    if (!hdr_ok) {
        return -EACCES;
    }

    n = b64url_decode(dot1 + 1, pay_len, part, sizeof part);
    if (n < 0) {
        return -EACCES;
    }
    json_t *claims = load_object(part, (size_t)n);
    if (claims == NULL) {
        return -EACCES;
    }
    struct auth_claims c;
    int rc = claims_from_json(claims, now_s, &c);
    json_decref(claims);
    if (rc == 0) {
        *out = c;
    }
    return rc;
}

/* ---- sign ----------------------------------------------------------------------------------- */

/* Length of a NUL-terminated field of a char[65], or 65 when it is not terminated. */
static size_t field_len(const char field[65])
{
    return strnlen(field, 65);
}

/* Builds the claims object for c; NULL when c is invalid (-EINVAL) or on OOM (-ENOMEM). */
static json_t *claims_to_json(const struct auth_claims *c, int *err)
{
    size_t sub_len = field_len(c->sub);
    size_t name_len = field_len(c->name);
    size_t room_len = field_len(c->room);
    const char *role = auth_role_name(c->role);

    *err = -EINVAL;
    if (role == NULL || !valid_id(c->sub, sub_len) || name_len > 64 || room_len > 64) {
        return NULL;
    }
    if ((c->role == AUTH_ROLE_VIEWER || name_len > 0) && !valid_name_bytes(c->name, name_len)) {
        return NULL;
    }
    if ((c->role == AUTH_ROLE_OVERLAY || room_len > 0) && !valid_id(c->room, room_len)) {
        return NULL;
    }
    /* json_string refuses invalid UTF-8; a copy without the check tells that from OOM. */
    json_t *name = NULL;
    if (name_len > 0 && (name = json_stringn(c->name, name_len)) == NULL) {
        json_t *probe = json_stringn_nocheck(c->name, name_len);
        *err = probe != NULL ? -EINVAL : -ENOMEM;
        json_decref(probe);
        return NULL;
    }
    *err = -ENOMEM;
    json_t *o = json_object();
    if (o == NULL || json_object_set_new(o, "sub", json_string(c->sub)) != 0 ||
        json_object_set_new(o, "role", json_string(role)) != 0 ||
        (name != NULL && json_object_set(o, "name", name) != 0) ||
        (room_len > 0 && json_object_set_new(o, "room", json_string(c->room)) != 0) ||
        json_object_set_new(o, "exp", json_integer((json_int_t)c->exp)) != 0) {
        json_decref(name);
        json_decref(o);
        return NULL;
    }
    json_decref(name);
    *err = 0;
    return o;
}

int auth_jwt_sign(const struct auth_claims *claims, const void *secret, size_t secret_len,
                  char **out_token)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

    if (claims == NULL || secret == NULL || secret_len == 0 || out_token == NULL) {
        return -EINVAL;
    }
    *out_token = NULL;
    int rc;
    json_t *obj = claims_to_json(claims, &rc);
    if (obj == NULL) {
        return rc;
    }
    char *payload = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (payload == NULL) {
        return -ENOMEM;
    }

    size_t hdr_len = sizeof header - 1;
    size_t pay_len = strlen(payload);
    size_t hdr_enc = b64url_len(hdr_len);
    size_t pay_enc = b64url_len(pay_len);
    size_t sig_enc = b64url_len(MAC_LEN);
    char *tok = malloc(hdr_enc + 1 + pay_enc + 1 + sig_enc + 1);
    if (tok == NULL) {
        free(payload);
        return -ENOMEM;
    }
    char *p = tok;
    b64url_encode((const unsigned char *)header, hdr_len, p);
    p += hdr_enc;
    *p++ = '.';
    b64url_encode((const unsigned char *)payload, pay_len, p);
    p += pay_enc;
    free(payload);

    unsigned char mac[MAC_LEN];
    if (!hmac_sha256(secret, secret_len, tok, (size_t)(p - tok), mac)) {
        free(tok);
        return -ENOMEM;
    }
    *p++ = '.';
    b64url_encode(mac, MAC_LEN, p);
    p += sig_enc;
    *p = '\0';
    OPENSSL_cleanse(mac, sizeof mac);
    *out_token = tok;
    return 0;
}
