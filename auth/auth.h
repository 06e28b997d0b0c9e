/* auth: HS256 JWTs — verify tokens (constant-time) and mint them (giftctl, tests, --dev). */
#ifndef GIFTD_AUTH_H
#define GIFTD_AUTH_H

#include <stddef.h>
#include <stdint.h>

enum auth_role {
    AUTH_ROLE_NONE = 0, /* a guest or a not-yet-authenticated connection */
    AUTH_ROLE_VIEWER,
    AUTH_ROLE_OVERLAY,
    AUTH_ROLE_SERVICE,
};

/* Verified claims. Identifiers are 1–64 bytes of [A-Za-z0-9_.:-]; name is 1–64 bytes UTF-8. */
struct auth_claims {
    char sub[65];
    char name[65]; /* "" when absent (allowed for overlay and service) */
    enum auth_role role;
    char room[65]; /* overlay only, "" otherwise */
    int64_t exp;   /* Unix seconds */
};

/** "viewer", "overlay", "service", or NULL for AUTH_ROLE_NONE. */
const char *auth_role_name(enum auth_role role);

/** Parses a role name; returns AUTH_ROLE_NONE for anything else. name is borrowed. */
enum auth_role auth_role_parse(const char *name);

/**
 * Verifies an HS256 JWT (token: len bytes, borrowed, need not be NUL-terminated).
 * Rejects (-EACCES): not three base64url parts, bad base64url or JSON, alg other than HS256,
 * bad signature (compared with CRYPTO_memcmp), missing sub/role/exp, unknown role,
 * a viewer without name, an overlay without room, identifiers or names out of SPEC's syntax,
 * exp <= now_s. On success fills out (caller-supplied) and returns 0.
 */
int auth_jwt_verify(const char *token, size_t len, const void *secret, size_t secret_len,
                    int64_t now_s, struct auth_claims *out);

/**
 * Mints an HS256 JWT for claims (borrowed): sub, role, exp always; name and room when non-empty.
 * On success *out_token is a **new** NUL-terminated string (free()) and 0 is returned;
 * -EINVAL for bad claims, -ENOMEM.
 */
int auth_jwt_sign(const struct auth_claims *claims, const void *secret, size_t secret_len,
                  char **out_token);

#endif
