/* config: giftd's configuration — one JSON file, GIFTD_* environment, --key=value flags. */
#ifndef GIFTD_CONFIG_H
#define GIFTD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/*
 * Every configuration key of SPEC section 8 (plus a few of giftd's own), in one place.
 * X(field, "dotted.key", type, default, min, max, help)
 *   type: STR (char *, default is a string literal or NULL), INT (long, bounded by min..max),
 *         BOOL (bool, default 0/1; min/max unused).
 * The environment name is derived: upper-case, dots as underscores, prefixed GIFTD_.
 * Append-only in spirit: tests and docs/config.md list these keys.
 */
#define CONFIG_KEYS(X)                                                                             \
    X(listen, "listen", STR, "0.0.0.0:8080", 0, 0, "host:port to serve WebSocket and HTTP on")    \
    X(tls_cert, "tls.cert", STR, NULL, 0, 0, "PEM certificate file; with tls.key serves wss/https") \
    X(tls_key, "tls.key", STR, NULL, 0, 0, "PEM private key file for tls.cert")                   \
    X(redis_url, "redis.url", STR, NULL, 0, 0,                                                     \
      "redis://host:port/db or unix:///path; empty starts a private redis-server")               \
    X(redis_cluster, "redis.cluster", STR, NULL, 0, 0,                                             \
      "instead of redis.url: Redis Cluster seed nodes host:port, comma-separated")               \
    X(auth_secret, "auth.secret", STR, NULL, 0, 0, "HS256 shared secret for JWTs (required)")     \
    X(auth_allow_guests, "auth.allow_guests", BOOL, 0, 0, 0,                                       \
      "accept connections without a token as read-only guests")                                  \
    X(auth_hello_timeout_ms, "auth.hello_timeout_ms", INT, 10000, 100, 600000,                     \
      "close (1008) a connection that has not authenticated within this time")                   \
    X(gifts_catalog, "gifts.catalog", STR, "config/catalog.json", 0, 0, "gift catalog JSON file") \
    X(gifts_combo_window_ms, "gifts.combo_window_ms", INT, 3000, 100, 60000,                       \
      "a streakable gift resent within this window continues the combo")                         \
    X(gifts_max_count, "gifts.max_count", INT, 99, 1, 10000, "largest count of one gift send")     \
    X(ledger_idempotency_ttl_s, "ledger.idempotency_ttl_s", INT, 86400, 60, 2592000,               \
      "how long a (user, id) send is remembered for retries")                                    \
    X(ledger_timeout_ms, "ledger.timeout_ms", INT, 2000, 10, 60000,                                \
      "deadline of one Redis request; past it the sender gets ledger_unavailable")               \
    X(ledger_outbox_grace_ms, "ledger.outbox_grace_ms", INT, 5000, 100, 600000,                    \
      "Redis Cluster only: a debit not yet broadcast after this is broadcast by another node")                 \
    X(ledger_max_inflight, "ledger.max_inflight", INT, 4096, 1, 1000000,                           \
      "Redis requests in flight per node before senders are pushed back")                        \
    X(ledger_partitions, "ledger.partitions", INT, 1024, 1, 16384,                                 \
      "user partitions (hash tags); fixed for the life of the data")                             \
    X(ledger_history_size, "ledger.history_size", INT, 1000, 1, 100000,                            \
      "transactions (recharges, reversals, gifts) kept per user")                                \
    X(ledger_history_ttl_s, "ledger.history_ttl_s", INT, 7776000, 60, 315360000,                   \
      "how long a user's transactions are kept")                                                 \
    X(rooms_presence_interval_ms, "rooms.presence_interval_ms", INT, 1000, 50, 60000,              \
      "viewers/leaderboard events at most this often per room")                                  \
    X(rooms_leaderboard_size, "rooms.leaderboard_size", INT, 10, 1, 100,                           \
      "senders in a room's leaderboard")                                                         \
    X(rooms_history_size, "rooms.history_size", INT, 1000, 1, 100000,                              \
      "events a room keeps for resumes and GET .../events")                                      \
    X(rooms_history_ttl_s, "rooms.history_ttl_s", INT, 86400, 1, 31536000,                         \
      "how long a room keeps an event")                                                          \
    X(limits_max_frame_bytes, "limits.max_frame_bytes", INT, 4096, 256, 1048576,                   \
      "largest client frame; larger closes with 1009")                                           \
    X(limits_frames_per_sec, "limits.frames_per_sec", INT, 50, 1, 1000000,                         \
      "client frames per second per connection")                                                 \
    X(limits_gifts_per_sec, "limits.gifts_per_sec", INT, 20, 1, 1000000,                           \
      "gift sends per second per user")                                                          \
    X(limits_max_connections, "limits.max_connections", INT, 0, 0, 10000000,                       \
      "open connections per process (0: the open-file limit less 64); past it 1013 / 503")       \
    X(limits_connections_per_ip_per_sec, "limits.connections_per_ip_per_sec", INT, 0, 0, 10000000, \
      "new connections per second from one address (0: no limit); past it 1013 / 503")           \
    X(fanout_max_queue, "fanout.max_queue", INT, 1024, 16, 1048576,                                \
      "events a viewer may fall behind its room before it is closed (4008)")                     \
    X(flush_interval_ms, "flush.interval_ms", INT, 1000, 10, 3600000,                              \
      "how often pending earnings are settled")                                                  \
    X(flush_sink, "flush.sink", STR, "redis-stream", 0, 0, "redis-stream or postgres")             \
    X(flush_stream, "flush.stream", STR, "giftd:settlements", 0, 0,                                \
      "Redis stream of settlement rows (redis-stream sink)")                                     \
    X(flush_postgres, "flush.postgres", STR, NULL, 0, 0,                                           \
      "libpq connection string (postgres sink)")                                                 \
    X(workers, "workers", INT, 0, 0, 256, "worker processes; 0 means one per core")                \
    X(overlay_dir, "overlay.dir", STR, "overlay", 0, 0, "directory served at /overlay/ and /demo/")

#define CONFIG_FIELD_STR  char *
#define CONFIG_FIELD_INT  long
#define CONFIG_FIELD_BOOL bool

/* The whole configuration. Strings are owned by the struct (config_cleanup frees them). */
struct config {
#define CONFIG_X_FIELD(field, key, type, def, min, max, help) CONFIG_FIELD_##type field;
    CONFIG_KEYS(CONFIG_X_FIELD)
#undef CONFIG_X_FIELD
};

/** Fills cfg with every key's default. Strings are **new** copies. Returns 0 or -ENOMEM. */
int config_init(struct config *cfg);

/** Frees the strings of cfg (not cfg itself). Safe on a zeroed or already cleaned struct. */
void config_cleanup(struct config *cfg);

/**
 * Sets one key from its textual value, as a flag or environment variable gives it.
 * key: dotted name (borrowed). value: text (borrowed); for BOOL: true/false/1/0/yes/no;
 * for STR an empty value sets NULL.
 * Returns 0; -ENOENT for an unknown key; -EINVAL for a bad value. On failure writes
 * "<key>: <reason>" into err (errlen bytes) and leaves cfg unchanged.
 */
int config_set(struct config *cfg, const char *key, const char *value, char *err, size_t errlen);

/**
 * Applies a JSON config file: an object whose keys are either dotted ("redis.url") or nested
 * ({"redis": {"url": ...}}), values of the key's JSON type (string, integer, boolean; null
 * resets a string to NULL). Unknown keys, wrong types and out-of-range values fail with
 * -EINVAL, an unreadable or unparsable file with -EIO/-EINVAL; err names the key (or the file
 * and line for a syntax error). cfg is unchanged on failure.
 */
int config_apply_file(struct config *cfg, const char *path, char *err, size_t errlen);

/**
 * Applies GIFTD_* variables of envp (NULL-terminated "NAME=value" array, borrowed) for every
 * known key. Variables with the GIFTD_ prefix that name no key are ignored here (the caller
 * may warn: see config_unknown_env). Returns 0 or -EINVAL with err naming the key.
 */
int config_apply_env(struct config *cfg, char *const *envp, char *err, size_t errlen);

/**
 * Returns the first GIFTD_* variable of envp that maps to no key, or NULL (borrowed from envp).
 * Tool variables GIFTD_URL, GIFTD_TOKEN, GIFTD_SECRET and GIFTD_CACERT (used by giftctl/giftload)
 * are skipped.
 */
const char *config_unknown_env(char *const *envp);

/**
 * Checks cross-key rules after everything is applied: listen parses as host:port, tls.cert
 * and tls.key come together, redis.url scheme, flush.sink value and flush.postgres present for
 * the postgres sink, auth.secret present and at least 16 bytes. Returns 0 or -EINVAL with err
 * naming the key.
 */
int config_validate(const struct config *cfg, char *err, size_t errlen);

/** Writes "  --key=VALUE  (GIFTD_KEY, default X)  help" lines for every key to out. */
void config_print_help(FILE *out);

/** Writes the effective configuration as a JSON object (auth.secret shown as "***"). */
void config_print_json(const struct config *cfg, FILE *out);

/**
 * Splits cfg->listen into host and port. host is written into out_host (hostlen bytes).
 * Returns 0 or -EINVAL.
 */
int config_listen_parse(const char *listen, char *out_host, size_t hostlen, int *out_port);

#endif
