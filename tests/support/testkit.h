/* testkit: helpers for integration and end-to-end tests (redis-server, giftd, HTTP, WebSocket). */
#ifndef GIFTD_TESTKIT_H
#define GIFTD_TESTKIT_H

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The auth.secret every giftd started by tk_giftd_start uses. */
#define TK_SECRET "test-secret-0123456789abcdef"

/* A private redis-server child process. */
struct tk_redis {
    pid_t pid;     /* 0 when not running */
    int port;      /* 127.0.0.1:port */
    char dir[256]; /* its working directory (logs, AOF); "" until started */
};

/**
 * Starts redis-server on a free 127.0.0.1 port with --save "" --appendonly no, --dir a new
 * mkdtemp directory (r->dir, which also holds redis.log), and waits until PING answers (10 s).
 * r is caller-supplied and overwritten. Returns 0 or a negative errno.
 */
int tk_redis_start(struct tk_redis *r);

/**
 * Starts redis-server on the given port: a restart after tk_redis_kill reuses r->dir (a new
 * directory is made when r->dir is ""). With appendonly, an AOF with appendfsync always is
 * kept in r->dir, so data survives a kill -9. Waits until PING answers PONG (10 s).
 * Returns 0 or a negative errno.
 */
int tk_redis_start_on(struct tk_redis *r, int port, bool appendonly);

/** Sends sig to the server and reaps it (SIGKILL after 10 s); r->pid becomes 0. Keeps r->dir. */
void tk_redis_kill(struct tk_redis *r, int sig);

/** SIGTERM, reap, then removes r->dir and everything in it. Safe on a stopped server. */
void tk_redis_stop(struct tk_redis *r);

/** Writes "redis://127.0.0.1:PORT/0" into out (len bytes). */
void tk_redis_url(const struct tk_redis *r, char *out, size_t len);

/** A **new** synchronous hiredis connection (redisFree); asserts (Criterion) it connected. */
redisContext *tk_redis_connect(const struct tk_redis *r);

/* A giftd child process. */
struct tk_giftd {
    pid_t pid;          /* 0 once reaped */
    int port;           /* it listens on 127.0.0.1:port */
    char log_path[256]; /* its stdout and stderr; the file is kept after it exits */
    char tls_ca[256];   /* "" for plain HTTP; with --tls.cert=FILE among its flags, FILE: it
                           speaks only TLS, and FILE (self-signed) verifies its certificate */
};

/**
 * Starts GIFTD_BIN with --listen=127.0.0.1:<free port> --auth.secret=TK_SECRET
 * --gifts.catalog=GIFTD_SOURCE_DIR/config/catalog.json --overlay.dir=GIFTD_SOURCE_DIR/overlay
 * --redis.url=<redis_url> (omitted when redis_url is NULL) plus extra_args (borrowed,
 * NULL-terminated, may be NULL; appended last so they win). stdout and stderr go to a log file
 * in /tmp (g->log_path); the environment is inherited. Waits until GET /healthz answers 200
 * (15 s), over https verified against the certificate when extra_args hold --tls.cert=FILE. Returns
 * 0, or a negative errno (-ECHILD when giftd exited during start, -ETIMEDOUT); on failure the log
 * tail is printed to stderr and nothing is left running.
 */
int tk_giftd_start(struct tk_giftd *g, const char *redis_url, const char *const *extra_args);

/** Waits until GET /readyz answers 200 (over https for a TLS node). Returns 0 or -ETIMEDOUT
 * (-ECHILD if giftd exited). */
int tk_giftd_wait_ready(const struct tk_giftd *g, int timeout_ms);

/** kill(g->pid, sig). Returns 0 or a negative errno (-ESRCH when not running). */
int tk_giftd_signal(const struct tk_giftd *g, int sig);

/**
 * Waits up to timeout_ms for giftd to exit and reaps it (g->pid becomes 0). out_status (may be
 * NULL) receives the waitpid status. Returns 0 when it exited, -ETIMEDOUT, or -ESRCH.
 */
int tk_giftd_wait_exit(struct tk_giftd *g, int timeout_ms, int *out_status);

/**
 * SIGTERM, waits 10 s, then SIGKILL. Prints the log tail to stderr if giftd did not exit 0.
 * Safe on an already reaped giftd.
 */
void tk_giftd_stop(struct tk_giftd *g);

/** Prints the last max_bytes of g's log to stderr (for debugging a failing test). */
void tk_giftd_dump_log(const struct tk_giftd *g, size_t max_bytes);

/**
 * A **new** (free()) HS256 token signed with TK_SECRET through auth_jwt_sign. name and room may
 * be NULL. ttl_s may be negative for an expired token. Asserts that signing succeeded.
 */
char *tk_token(const char *sub, const char *name, const char *role, const char *room, long ttl_s);

/**
 * A **new** (free()) JWT with arbitrary header and payload JSON (borrowed, used verbatim),
 * signed with HMAC-SHA256 and secret (borrowed), for negative tests (alg "none", missing
 * claims, wrong secret …). Asserts on failure.
 */
char *tk_jwt_raw(const char *header_json, const char *payload_json, const char *secret);

/* One HTTP answer: body is **new** ("" when empty), json is a **new** reference or NULL. */
struct tk_http_resp {
    int status;
    char *body;
    json_t *json;
};

/**
 * One HTTP/1.1 request to 127.0.0.1:port (10 s timeout). token and body (JSON text) may be
 * NULL. Fills out (caller-supplied; clean it with tk_http_resp_cleanup even on failure) with
 * the status, body and parsed JSON (NULL when the body is not JSON). Returns 0 or a negative
 * errno.
 */
int tk_http(int port, const char *method, const char *path, const char *token, const char *body,
            struct tk_http_resp *out);

/**
 * tk_http over TLS: https://127.0.0.1:port, the server's certificate verified (chain and the
 * name 127.0.0.1) against the PEM file cafile (borrowed). Returns 0 or a negative errno
 * (-EPROTO when the handshake or the verification failed).
 */
int tk_https(int port, const char *cafile, const char *method, const char *path, const char *token,
             const char *body, struct tk_http_resp *out);

/** Frees out's body and JSON; safe on a zeroed struct and twice. */
void tk_http_resp_cleanup(struct tk_http_resp *r);

/* A throwaway self-signed certificate (its own CA) with a P-256 key. */
struct tk_tls_cert {
    char dir[256];  /* mkdtemp directory holding both files; "" when not made */
    char cert[300]; /* PEM certificate: pass it as tls.cert, and as the CA file to verify it */
    char key[300];  /* PEM private key, unencrypted: tls.key */
};

/**
 * Makes a key and a self-signed certificate valid from an hour ago for a day, with
 * subjectAltName san (borrowed, OpenSSL syntax: "IP:127.0.0.1,DNS:localhost"), written to
 * c->cert and c->key in a new directory. c is caller-supplied and overwritten. Returns 0 or a
 * negative errno (-EIO when OpenSSL failed).
 */
int tk_tls_cert_init(struct tk_tls_cert *c, const char *san);

/** Removes the files and the directory; safe on a zeroed struct and twice. */
void tk_tls_cert_cleanup(struct tk_tls_cert *c);

/* A blocking WebSocket client (RFC 6455). */
struct tk_ws;

/**
 * Opens ws://127.0.0.1:port<path_and_query> (e.g. "/ws?token=…&room=r1"; borrowed) and checks
 * Sec-WebSocket-Accept. Returns a **new** connection (tk_ws_free), or NULL when the connection
 * failed or the server answered other than 101.
 */
struct tk_ws *tk_ws_connect(int port, const char *path_and_query);

/** The HTTP status of an upgrade attempt (101 on success), or a negative errno. */
int tk_ws_connect_status(int port, const char *path_and_query);

/**
 * tk_ws_connect over TLS (wss://127.0.0.1:port…): the server's certificate is verified (chain
 * and the name 127.0.0.1) against the PEM file cafile (borrowed). Every other tk_ws_* call
 * works the same on the connection. NULL when the TLS handshake, the verification or the
 * upgrade failed.
 */
struct tk_ws *tk_ws_connect_tls(int port, const char *path_and_query, const char *cafile);

/** Sends one masked text frame (text: len bytes, borrowed). Returns 0 or a negative errno. */
int tk_ws_send_text(struct tk_ws *ws, const char *text, size_t len);

/** Sends a printf-formatted text frame. Returns 0 or a negative errno. */
int tk_ws_send_json(struct tk_ws *ws, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/**
 * The next server event as a **new** JSON object: a {"type":"batch","events":[…]} frame is
 * unpacked and its events returned one by one, in order. A text frame that is not JSON is
 * returned as {"type":"_not_json","text":…}. Answers pings. NULL on timeout or close.
 */
json_t *tk_ws_recv(struct tk_ws *ws, int timeout_ms);

/**
 * Receives events until one whose "type" equals type (borrowed) and returns it (**new**);
 * other events are dropped. NULL on timeout or close.
 */
json_t *tk_ws_expect(struct tk_ws *ws, const char *type, int timeout_ms);

/**
 * Reads (and keeps for tk_ws_recv) events until the server's close frame arrives or the
 * socket closes. Returns true when closed, false on timeout.
 */
bool tk_ws_wait_closed(struct tk_ws *ws, int timeout_ms);

/** The close code the server sent (1005 when its close frame had none), -1 if none yet. */
int tk_ws_close_code(const struct tk_ws *ws);

/** Sends a close frame with code (no code when code <= 0). Returns 0 or a negative errno. */
int tk_ws_close(struct tk_ws *ws, int code);

/** Sets the socket's receive buffer (SO_RCVBUF, which also stops the kernel growing it): a
 * small one makes a client that does not read fall behind quickly. Returns 0 or -errno. */
int tk_ws_set_rcvbuf(struct tk_ws *ws, int bytes);
/** An object kept with ws (borrowed) for readers that take answers out of the order they
 * arrive in: fx_answer keeps there the answers it read before the one it wanted (id -> array). */
json_t *tk_ws_kept(struct tk_ws *ws);
/** Closes the socket and frees ws. NULL is a no-op. */
void tk_ws_free(struct tk_ws *ws);

/** A port that was free on 127.0.0.1 a moment ago (bind port 0, read it, close), or -errno. */
int tk_free_port(void);

/** Writes "stem-<pid>-<counter>" into out (len bytes): unique per call within a test run. */
void tk_unique(char *out, size_t len, const char *stem);

/**
 * Runs argv (borrowed, NULL-terminated; argv[0] a path or a name on PATH) with stdin from
 * /dev/null, the environment inherited plus env (borrowed, "NAME=value" strings,
 * NULL-terminated, may be NULL), and collects stdout and stderr. out_stdout and out_stderr (may
 * be NULL) receive **new** NUL-terminated strings. Kills the child after timeout_ms.
 * Returns its exit status (0–255), 128+signal when it was killed, or a negative errno
 * (-ETIMEDOUT).
 */
int tk_run(const char *const *argv, const char *const *env, int timeout_ms, char **out_stdout,
           char **out_stderr);

/* ---- PostgreSQL (the postgres settlement sink) ---- */

/* A throwaway PostgreSQL cluster: initdb into a new directory, one postmaster child listening
 * only on a Unix socket in that directory (so no TCP port is taken). As root, initdb and the
 * server run as the `postgres` OS user (PostgreSQL refuses root); otherwise as the caller. */
struct tk_pg {
    pid_t pid;     /* the postmaster, 0 when not running */
    int port;      /* names the socket <dir>/.s.PGSQL.<port> */
    char dir[256]; /* mkdtemp directory: data/ holds the cluster, pg.log the server log */
};

/**
 * initdb (trust authentication, superuser `postgres`) into a new mkdtemp directory, then
 * starts the server (fsync off) and waits until it accepts connections (30 s). pg is
 * caller-supplied and overwritten. Returns 0 or a negative errno (-ENOENT: no initdb found
 * under /usr/lib/postgresql/(version)/bin); on failure the server log tail is printed and
 * nothing is left behind.
 */
int tk_pg_start(struct tk_pg *pg);

/** Sends sig to the postmaster (SIGINT: fast shutdown; SIGKILL: crash) and reaps it, SIGKILL
 * after 10 s; pg->pid becomes 0. The data directory stays. */
void tk_pg_kill(struct tk_pg *pg, int sig);

/** Starts a killed cluster again on the same data and socket; waits until it accepts
 * connections (30 s). Returns 0 or a negative errno. */
int tk_pg_restart(struct tk_pg *pg);

/** Fast shutdown, then removes pg->dir. Safe on a stopped or never-started cluster. */
void tk_pg_stop(struct tk_pg *pg);

/** Writes the libpq conninfo "host=<dir> port=<port> user=postgres dbname=postgres". */
void tk_pg_conninfo(const struct tk_pg *pg, char *out, size_t len);

/** A **new** connection (PQfinish); asserts (Criterion) that it connected. */
PGconn *tk_pg_connect(const struct tk_pg *pg);

/** Prints the last max_bytes of the server log to stderr. */
void tk_pg_dump_log(const struct tk_pg *pg, size_t max_bytes);

/* ---- Redis Cluster ---- */

#define TK_CLUSTER_MAX_NODES 16
#define TK_CLUSTER_SLOTS     16384

/* A private Redis Cluster of redis-server 7.0 children on 127.0.0.1: node i is node[i] (its
 * port, pid and directory, which holds nodes.conf and redis.log). Nodes 0..masters-1 start as
 * masters with contiguous, equal slot ranges; node masters+k replicates master k % masters.
 * Roles change on a failover: ask tk_cluster_master_of, not the index. A test may kill a node
 * with tk_redis_kill(&c->node[i], sig). */
struct tk_cluster {
    int nnodes;
    int masters; /* at start */
    struct tk_redis node[TK_CLUSTER_MAX_NODES];
    int bus_port[TK_CLUSTER_MAX_NODES]; /* cluster-port: the cluster bus */
    char id[TK_CLUSTER_MAX_NODES][41];  /* CLUSTER MYID */
};

/**
 * Starts masters * (1 + replicas) redis-server children (at most TK_CLUSTER_MAX_NODES) with
 * --cluster-enabled yes, each on a free port and a free cluster bus port, in its own mkdtemp
 * directory, --save "" and --appendonly no; assigns the slots (CLUSTER ADDSLOTSRANGE), joins
 * them (CLUSTER MEET), attaches the replicas (CLUSTER REPLICATE) and waits until every node
 * says cluster_state:ok, every replica's link is up and all nodes agree on the slots (30 s).
 * c is caller-supplied and overwritten. Returns 0 or a negative errno; on failure nothing is
 * left running.
 */
int tk_cluster_start(struct tk_cluster *c, int masters, int replicas);

/** tk_cluster_start, with appendonly yes and appendfsync always when appendonly is true. */
int tk_cluster_start_with(struct tk_cluster *c, int masters, int replicas, bool appendonly);

/** SIGTERMs and reaps each node still running (by its PID), then removes every node's
 * directory. Safe on a stopped cluster and twice. */
void tk_cluster_stop(struct tk_cluster *c);

/**
 * Waits until every live node says cluster_state:ok, every live replica's link to its master
 * is up and all live nodes' CLUSTER SLOTS name the same masters. Returns 0 or -ETIMEDOUT.
 */
int tk_cluster_wait_ok(const struct tk_cluster *c, int timeout_ms);

/** Writes "127.0.0.1:p1,127.0.0.1:p2,…" of the live nodes into out (len bytes; truncated at a
 * node when it does not fit). */
void tk_cluster_seeds(const struct tk_cluster *c, char *out, size_t len);

/** The index of the live master that serves slot now (by its own CLUSTER NODES line), -ENOENT
 * when none claims it, -EINVAL for a slot over 16383. */
int tk_cluster_master_of(struct tk_cluster *c, unsigned slot);

/**
 * Moves slot to master to_node, live, the way redis-cli reshards: CLUSTER SETSLOT IMPORTING at
 * the target, MIGRATING at the source, MIGRATE of every key 10 at a time, then SETSLOT NODE at
 * the target, the source and every other master; waits for tk_cluster_wait_ok (30 s). Clients
 * may keep writing keys of the slot meanwhile (following ASK and MOVED). Returns 0 (also when
 * to_node already serves it), -EINVAL (to_node not a live master), -EIO or -ETIMEDOUT.
 */
int tk_cluster_move_slot(struct tk_cluster *c, unsigned slot, int to_node);

/**
 * CLUSTER FAILOVER on a replica of master (FORCE when master was killed), waits until the
 * replica says role:master, the old master (if alive) role:slave, and tk_cluster_wait_ok
 * (30 s). Returns the index of the new master, -ENOENT (no live replica), -EIO or -ETIMEDOUT.
 */
int tk_cluster_failover(struct tk_cluster *c, int master);

/** A **new** synchronous connection to node (redisFree); asserts (Criterion) it connected. */
redisContext *tk_cluster_connect_node(const struct tk_cluster *c, int node);

#endif
