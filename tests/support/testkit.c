/* testkit: child processes (redis-server, giftd), HTTP and a WebSocket client for tests. */
#include "tests/support/testkit.h"

#include "auth/auth.h"
#include "ctl/ctl.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REDIS_START_MS  10000
#define GIFTD_START_MS  15000
#define STOP_WAIT_MS    10000
#define HTTP_TIMEOUT_MS 10000
#define WS_HANDSHAKE_MS 10000
#define WS_SEND_MS      10000
#define WS_MAX_MESSAGE  (64u * 1024u * 1024u)
#define RUN_MAX_OUTPUT  (16u * 1024u * 1024u)
#define LOG_TAIL_BYTES  8192
#define START_ATTEMPTS  3
#define WS_GUID         "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ---- time and small helpers ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining_ms(int64_t deadline)
{
    int64_t left = deadline - now_ms();
    if (left < 0) {
        return 0;
    }
    return left > INT_MAX ? INT_MAX : (int)left;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* Tests may write to sockets whose peer died (hiredis uses write()); never die of SIGPIPE. */
__attribute__((constructor)) static void ignore_sigpipe(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = events};
        int n = poll(&pfd, 1, remaining_ms(deadline));
        if (n > 0) {
            return 0;
        }
        if (n == 0) {
            return -ETIMEDOUT;
        }
        if (errno != EINTR) {
            return -errno;
        }
    }
}

static int send_all(int fd, const void *data, size_t len, int64_t deadline)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(fd, POLLOUT, deadline);
            if (rc < 0) {
                return rc;
            }
            continue;
        }
        return n < 0 ? -errno : -EPIPE;
    }
    return 0;
}

/* A non-blocking, close-on-exec TCP connection to 127.0.0.1:port. */
static int connect_local(int port, int64_t deadline, int *out_fd)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -errno;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (errno != EINPROGRESS && errno != EINTR) {
            rc = -errno;
        } else {
            rc = wait_fd(fd, POLLOUT, deadline);
            if (rc == 0) {
                int err = 0;
                socklen_t elen = sizeof(err);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0) {
                    rc = -errno;
                } else if (err) {
                    rc = -err;
                }
            }
        }
    }
    if (rc < 0) {
        close(fd);
        return rc;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    *out_fd = fd;
    return 0;
}

int tk_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    int rc;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        rc = -errno;
    } else {
        rc = ntohs(sa.sin_port);
    }
    close(fd);
    return rc;
}

void tk_unique(char *out, size_t len, const char *stem)
{
    static atomic_uint counter;
    unsigned n = atomic_fetch_add(&counter, 1u) + 1u;
    snprintf(out, len, "%s-%ld-%u", stem, (long)getpid(), n);
}

/* ---- child processes ---- */

/*
 * Forks and execs argv (envp: the whole environment, or NULL for the current one) with stdin
 * from /dev/null and stdout/stderr on out_fd/err_fd (-1: inherit). The child gets SIGKILL when
 * the test process dies, so a crashed test leaves nothing behind. Everything the child does
 * between fork and exec is async-signal-safe.
 */
static int spawn(char *const *argv, char *const *envp, int out_fd, int err_fd, pid_t *out_pid)
{
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) {
        return -errno;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int rc = -errno;
        close(devnull);
        return rc;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = SIG_DFL;
        sigaction(SIGPIPE, &sa, NULL);
        if (dup2(devnull, 0) < 0 || dup2(out_fd >= 0 ? out_fd : 1, 1) < 0 ||
            dup2(err_fd >= 0 ? err_fd : 2, 2) < 0) {
            _exit(127);
        }
        /* The test's own sockets (hiredis, WebSockets) must not leak into the child. */
        if (close_range(3, ~0u, 0) < 0) {
            for (int fd = 3; fd < 1024; fd++) {
                close(fd);
            }
        }
        if (envp) {
            execvpe(argv[0], argv, envp);
        } else {
            execvp(argv[0], argv);
        }
        static const char msg[] = "testkit: exec failed\n";
        ssize_t w = write(2, msg, sizeof(msg) - 1);
        (void)w;
        _exit(127);
    }
    close(devnull);
    *out_pid = pid;
    return 0;
}

/* Reaps pid within timeout_ms. 0 (status in *out_status), -ETIMEDOUT, or -ECHILD. */
static int wait_child(pid_t pid, int timeout_ms, int *out_status)
{
    int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    int nap = 1;
    for (;;) {
        int status = 0;
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            if (out_status) {
                *out_status = status;
            }
            return 0;
        }
        if (w < 0 && errno != EINTR) {
            return -errno;
        }
        int left = remaining_ms(deadline);
        if (left <= 0) {
            return -ETIMEDOUT;
        }
        sleep_ms(nap < left ? nap : left);
        if (nap < 20) {
            nap *= 2;
        }
    }
}

/* Signals pid, reaps it within timeout_ms, else SIGKILLs and reaps it. Returns the status. */
static int terminate_child(pid_t pid, int sig, int timeout_ms, bool *out_killed)
{
    int status = 0;
    *out_killed = false;
    kill(pid, sig);
    if (wait_child(pid, timeout_ms, &status) == -ETIMEDOUT) {
        *out_killed = true;
        kill(pid, SIGKILL);
        wait_child(pid, STOP_WAIT_MS, &status);
    }
    return status;
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_rf(const char *dir)
{
    if (dir[0]) {
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
}

/* ---- redis-server ---- */

/* 1 when the redis on port answers PING and is process pid, 0 when not (yet), <0 on error. */
static int redis_probe(int port, pid_t pid)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = 300000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c) {
        return -ENOMEM;
    }
    int ok = 0;
    if (!c->err) {
        redisReply *reply = redisCommand(c, "PING");
        bool pong = reply && reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "PONG") == 0;
        freeReplyObject(reply);
        if (pong) {
            /* Make sure it is our server, not another one that already had the port. */
            reply = redisCommand(c, "INFO server");
            if (reply && reply->type == REDIS_REPLY_STRING) {
                const char *p = strstr(reply->str, "process_id:");
                ok = p && atol(p + 11) == (long)pid ? 1 : -EADDRINUSE;
            }
            freeReplyObject(reply);
        }
    }
    redisFree(c);
    return ok;
}

/* tk_redis_start_on with extra_args (borrowed, NULL-terminated, may be NULL) after the rest. */
static int redis_start_args(struct tk_redis *r, int port, bool appendonly,
                            const char *const *extra_args)
{
    size_t nextra = 0;
    while (extra_args && extra_args[nextra]) {
        nextra++;
    }
    if (port <= 0 || port > 65535 || r->pid > 0 || nextra > 20) {
        return -EINVAL;
    }
    bool made_dir = false;
    if (!r->dir[0]) {
        snprintf(r->dir, sizeof(r->dir), "/tmp/tk-redis-XXXXXX");
        if (!mkdtemp(r->dir)) {
            int rc = -errno;
            r->dir[0] = '\0';
            return rc;
        }
        made_dir = true;
    }
    r->port = port;
    char port_s[16];
    char logfile[300];
    snprintf(port_s, sizeof(port_s), "%d", port);
    snprintf(logfile, sizeof(logfile), "%s/redis.log", r->dir);
    char *argv[40] = {"redis-server",
                      "--port",
                      port_s,
                      "--bind",
                      "127.0.0.1",
                      "--save",
                      "",
                      "--appendonly",
                      appendonly ? "yes" : "no",
                      "--appendfsync",
                      appendonly ? "always" : "everysec",
                      "--dir",
                      r->dir,
                      "--logfile",
                      logfile,
                      "--daemonize",
                      "no",
                      NULL};
    for (size_t i = 0; i < nextra; i++) {
        argv[17 + i] = (char *)extra_args[i]; /* 17 + 20 + NULL fit in 40 */
    }
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    pid_t pid = 0;
    int rc = spawn(argv, NULL, devnull, -1, &pid);
    if (devnull >= 0) {
        close(devnull);
    }
    if (rc < 0) {
        goto fail;
    }
    int64_t deadline = now_ms() + REDIS_START_MS;
    for (;;) {
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            rc = -ECHILD; /* typically: the port was taken */
            goto fail;
        }
        int p = redis_probe(port, pid);
        if (p == 1) {
            r->pid = pid;
            return 0;
        }
        if (p < 0 || now_ms() >= deadline) {
            bool killed;
            terminate_child(pid, SIGKILL, STOP_WAIT_MS, &killed);
            rc = p < 0 ? p : -ETIMEDOUT;
            goto fail;
        }
        sleep_ms(20);
    }
fail:
    if (made_dir) {
        rm_rf(r->dir);
        r->dir[0] = '\0';
    }
    return rc;
}

int tk_redis_start_on(struct tk_redis *r, int port, bool appendonly)
{
    return redis_start_args(r, port, appendonly, NULL);
}

int tk_redis_start(struct tk_redis *r)
{
    int rc = -EADDRINUSE;
    for (int attempt = 0; attempt < START_ATTEMPTS; attempt++) {
        memset(r, 0, sizeof(*r));
        int port = tk_free_port();
        if (port < 0) {
            return port;
        }
        rc = tk_redis_start_on(r, port, false);
        if (rc != -ECHILD && rc != -EADDRINUSE) {
            return rc;
        }
    }
    return rc;
}

void tk_redis_kill(struct tk_redis *r, int sig)
{
    if (r->pid > 0) {
        bool killed;
        terminate_child(r->pid, sig, STOP_WAIT_MS, &killed);
        r->pid = 0;
    }
}

void tk_redis_stop(struct tk_redis *r)
{
    tk_redis_kill(r, SIGTERM);
    rm_rf(r->dir);
    r->dir[0] = '\0';
}

void tk_redis_url(const struct tk_redis *r, char *out, size_t len)
{
    snprintf(out, len, "redis://127.0.0.1:%d/0", r->port);
}

redisContext *tk_redis_connect(const struct tk_redis *r)
{
    struct timeval tv = {.tv_sec = 5, .tv_usec = 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    cr_assert_not_null(c, "redisConnect: out of memory");
    if (c->err) {
        char err[128];
        snprintf(err, sizeof(err), "%s", c->errstr);
        redisFree(c);
        cr_assert_fail("redisConnect 127.0.0.1:%d: %s", r->port, err);
    }
    return c;
}

/* ---- giftd ---- */

void tk_giftd_dump_log(const struct tk_giftd *g, size_t max_bytes)
{
    FILE *f = fopen(g->log_path, "r");
    if (!f) {
        fprintf(stderr, "testkit: no giftd log at %s\n", g->log_path);
        return;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > (long)max_bytes ? size - (long)max_bytes : 0;
    fseek(f, from, SEEK_SET);
    fprintf(stderr, "---- giftd log %s (last %ld bytes) ----\n", g->log_path, size - from);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        fwrite(chunk, 1, n, stderr);
    }
    fprintf(stderr, "---- end of giftd log ----\n");
    fclose(f);
}

static bool log_mentions_bind_failure(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        return false;
    }
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        found = strcasestr(line, "in use") || strcasestr(line, "EADDRINUSE") ||
                strcasestr(line, "bind");
    }
    fclose(f);
    return found;
}

/* One request to 127.0.0.1:port: over https verified against ca when ca is not "". */
static int http_request(int port, const char *ca, const char *method, const char *path,
                        const char *token, const char *body, int timeout_ms,
                        struct ctl_http_resp *out)
{
    if (!ca[0]) {
        return ctl_http_request("127.0.0.1", port, method, path, token, body, timeout_ms, out);
    }
    char base[64];
    snprintf(base, sizeof(base), "https://127.0.0.1:%d", port);
    return ctl_http_request_url(base, method, path, token, body, ca, timeout_ms, out);
}

static int http_status(int port, const char *ca, const char *path, int timeout_ms)
{
    struct ctl_http_resp resp;
    int rc = http_request(port, ca, "GET", path, NULL, NULL, timeout_ms, &resp);
    if (rc < 0) {
        return rc;
    }
    rc = resp.status;
    ctl_http_resp_cleanup(&resp);
    return rc;
}

/* Polls GET path until it answers 200; -ECHILD if pid exited meanwhile (it is then reaped). */
static int poll_http_200(pid_t pid, int port, const char *ca, const char *path, int timeout_ms,
                         int *out_status)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        if (pid > 0) {
            int status = 0;
            if (waitpid(pid, &status, WNOHANG) == pid) {
                if (out_status) {
                    *out_status = status;
                }
                return -ECHILD;
            }
        }
        int left = remaining_ms(deadline);
        if (left <= 0) {
            return -ETIMEDOUT;
        }
        if (http_status(port, ca, path, left < 1000 ? left : 1000) == 200) {
            return 0;
        }
        if (remaining_ms(deadline) <= 0) {
            return -ETIMEDOUT;
        }
        sleep_ms(20);
    }
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i]);
    }
    free(v);
}

static int giftd_start_once(struct tk_giftd *g, const char *redis_url,
                            const char *const *extra_args, bool last_attempt, bool *out_retry)
{
    *out_retry = false;
    memset(g, 0, sizeof(*g));
    int port = tk_free_port();
    if (port < 0) {
        return port;
    }
    g->port = port;
    /* A node given a certificate speaks only TLS: probe it over https, verified with it. */
    for (size_t i = 0; extra_args && extra_args[i]; i++) {
        if (strncmp(extra_args[i], "--tls.cert=", 11) == 0) {
            snprintf(g->tls_ca, sizeof(g->tls_ca), "%s", extra_args[i] + 11);
        } else if (strcmp(extra_args[i], "--tls.cert") == 0 && extra_args[i + 1]) {
            snprintf(g->tls_ca, sizeof(g->tls_ca), "%s", extra_args[i + 1]);
        }
    }
    snprintf(g->log_path, sizeof(g->log_path), "/tmp/tk-giftd-%ld-XXXXXX.log", (long)getpid());
    int logfd = mkostemps(g->log_path, 4, O_CLOEXEC);
    if (logfd < 0) {
        return -errno;
    }
    size_t nextra = 0;
    while (extra_args && extra_args[nextra]) {
        nextra++;
    }
    size_t cap = 7 + nextra;
    char **argv = calloc(cap, sizeof(*argv));
    int rc = argv ? 0 : -ENOMEM;
    size_t n = 0;
    if (rc == 0) {
        if (asprintf(&argv[n++], "%s", GIFTD_BIN) < 0 ||
            asprintf(&argv[n++], "--listen=127.0.0.1:%d", port) < 0 ||
            asprintf(&argv[n++], "--auth.secret=%s", TK_SECRET) < 0 ||
            asprintf(&argv[n++], "--gifts.catalog=%s/config/catalog.json", GIFTD_SOURCE_DIR) < 0 ||
            asprintf(&argv[n++], "--overlay.dir=%s/overlay", GIFTD_SOURCE_DIR) < 0 ||
            (redis_url && asprintf(&argv[n++], "--redis.url=%s", redis_url) < 0)) {
            argv[--n] = NULL; /* asprintf leaves it undefined on failure */
            rc = -ENOMEM;
        }
        for (size_t i = 0; rc == 0 && i < nextra; i++) {
            argv[n] = strdup(extra_args[i]);
            if (!argv[n++]) {
                rc = -ENOMEM;
            }
        }
    }
    pid_t pid = 0;
    if (rc == 0) {
        rc = spawn(argv, NULL, logfd, logfd, &pid);
    }
    close(logfd);
    if (argv) {
        free_strv(argv, n);
    }
    if (rc < 0) {
        return rc;
    }
    g->pid = pid;
    int status = 0;
    rc = poll_http_200(pid, port, g->tls_ca, "/healthz", GIFTD_START_MS, &status);
    if (rc == 0) {
        return 0;
    }
    if (rc == -ECHILD) {
        g->pid = 0;
        *out_retry = log_mentions_bind_failure(g->log_path);
        if (!*out_retry || last_attempt) {
            fprintf(stderr, "testkit: giftd exited during start (status 0x%x)\n", status);
            tk_giftd_dump_log(g, LOG_TAIL_BYTES);
        }
        return rc;
    }
    fprintf(stderr, "testkit: giftd did not answer /healthz within %d ms\n", GIFTD_START_MS);
    bool killed;
    terminate_child(pid, SIGKILL, STOP_WAIT_MS, &killed);
    g->pid = 0;
    tk_giftd_dump_log(g, LOG_TAIL_BYTES);
    return rc;
}

int tk_giftd_start(struct tk_giftd *g, const char *redis_url, const char *const *extra_args)
{
    int rc = -EADDRINUSE;
    for (int attempt = 0; attempt < START_ATTEMPTS; attempt++) {
        bool retry = false;
        rc = giftd_start_once(g, redis_url, extra_args, attempt + 1 == START_ATTEMPTS, &retry);
        if (!retry || attempt + 1 == START_ATTEMPTS) {
            return rc;
        }
        unlink(g->log_path); /* the port was taken: try another */
    }
    return rc;
}

int tk_giftd_wait_ready(const struct tk_giftd *g, int timeout_ms)
{
    if (g->pid <= 0) {
        return -ESRCH;
    }
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        int left = remaining_ms(deadline);
        if (http_status(g->port, g->tls_ca, "/readyz",
                        left < 200 ? 200 : (left > 1000 ? 1000 : left)) == 200) {
            return 0;
        }
        /* g is const, so do not reap: WNOWAIT leaves the zombie for tk_giftd_wait_exit. */
        siginfo_t info;
        memset(&info, 0, sizeof(info));
        if (waitid(P_PID, (id_t)g->pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            info.si_pid == g->pid) {
            return -ECHILD;
        }
        if (remaining_ms(deadline) <= 0) {
            return -ETIMEDOUT;
        }
        sleep_ms(20);
    }
}

int tk_giftd_signal(const struct tk_giftd *g, int sig)
{
    if (g->pid <= 0) {
        return -ESRCH;
    }
    return kill(g->pid, sig) < 0 ? -errno : 0;
}

int tk_giftd_wait_exit(struct tk_giftd *g, int timeout_ms, int *out_status)
{
    if (g->pid <= 0) {
        return -ESRCH;
    }
    int status = 0;
    int rc = wait_child(g->pid, timeout_ms, &status);
    if (rc == 0 || rc == -ECHILD) {
        g->pid = 0;
    }
    if (rc == 0 && out_status) {
        *out_status = status;
    }
    return rc;
}

void tk_giftd_stop(struct tk_giftd *g)
{
    if (g->pid <= 0) {
        return;
    }
    bool killed = false;
    int status = terminate_child(g->pid, SIGTERM, STOP_WAIT_MS, &killed);
    g->pid = 0;
    if (killed) {
        fprintf(stderr, "testkit: giftd did not exit within %d ms of SIGTERM; killed\n",
                STOP_WAIT_MS);
    } else if (WIFSIGNALED(status)) {
        fprintf(stderr, "testkit: giftd died of signal %d\n", WTERMSIG(status));
    } else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
        fprintf(stderr, "testkit: giftd exited with status %d\n", WEXITSTATUS(status));
    } else {
        return;
    }
    tk_giftd_dump_log(g, LOG_TAIL_BYTES);
}

/* ---- tokens ---- */

char *tk_token(const char *sub, const char *name, const char *role, const char *room, long ttl_s)
{
    struct auth_claims claims;
    memset(&claims, 0, sizeof(claims));
    snprintf(claims.sub, sizeof(claims.sub), "%s", sub ? sub : "");
    snprintf(claims.name, sizeof(claims.name), "%s", name ? name : "");
    snprintf(claims.room, sizeof(claims.room), "%s", room ? room : "");
    claims.role = auth_role_parse(role ? role : "");
    claims.exp = (int64_t)time(NULL) + (int64_t)ttl_s;
    char *token = NULL;
    int rc = auth_jwt_sign(&claims, TK_SECRET, strlen(TK_SECRET), &token);
    cr_assert_eq(rc, 0, "auth_jwt_sign(sub=%s role=%s): %s", sub ? sub : "(null)",
                 role ? role : "(null)", strerror(-rc));
    cr_assert_not_null(token);
    return token;
}

/* Standard base64 of in (n bytes) into a **new** string; url: base64url without padding. */
static char *b64(const unsigned char *in, size_t n, bool url)
{
    size_t cap = 4 * ((n + 2) / 3) + 1;
    char *out = malloc(cap);
    if (!out) {
        return NULL;
    }
    int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    if (len < 0) {
        free(out);
        return NULL;
    }
    out[len] = '\0';
    if (url) {
        for (int i = 0; i < len; i++) {
            if (out[i] == '+') {
                out[i] = '-';
            } else if (out[i] == '/') {
                out[i] = '_';
            } else if (out[i] == '=') {
                out[i] = '\0';
                break;
            }
        }
    }
    return out;
}

char *tk_jwt_raw(const char *header_json, const char *payload_json, const char *secret)
{
    char *h = b64((const unsigned char *)header_json, strlen(header_json), true);
    char *p = b64((const unsigned char *)payload_json, strlen(payload_json), true);
    cr_assert(h && p, "tk_jwt_raw: out of memory");
    char *signing = NULL;
    cr_assert_geq(asprintf(&signing, "%s.%s", h, p), 0);
    free(h);
    free(p);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    cr_assert_not_null(HMAC(EVP_sha256(), secret, (int)strlen(secret),
                            (const unsigned char *)signing, strlen(signing), mac, &maclen));
    char *sig = b64(mac, maclen, true);
    cr_assert_not_null(sig);
    char *token = NULL;
    cr_assert_geq(asprintf(&token, "%s.%s", signing, sig), 0);
    free(signing);
    free(sig);
    return token;
}

/* ---- HTTP ---- */

static int http_into(int port, const char *ca, const char *method, const char *path,
                     const char *token, const char *body, struct tk_http_resp *out)
{
    memset(out, 0, sizeof(*out));
    struct ctl_http_resp resp;
    int rc = http_request(port, ca, method, path, token, body, HTTP_TIMEOUT_MS, &resp);
    if (rc < 0) {
        if (resp.error[0]) {
            fprintf(stderr, "testkit: %s %s on port %d: %s\n", method, path, port, resp.error);
        }
        out->body = strdup("");
        return rc;
    }
    out->status = resp.status;
    out->body = resp.body; /* steals */
    resp.body = NULL;
    out->json = resp.body_len ? json_loadb(out->body, resp.body_len, JSON_DECODE_ANY, NULL) : NULL;
    return 0;
}

int tk_http(int port, const char *method, const char *path, const char *token, const char *body,
            struct tk_http_resp *out)
{
    return http_into(port, "", method, path, token, body, out);
}

int tk_https(int port, const char *cafile, const char *method, const char *path, const char *token,
             const char *body, struct tk_http_resp *out)
{
    if (!cafile || !cafile[0]) {
        memset(out, 0, sizeof(*out));
        out->body = strdup("");
        return -EINVAL;
    }
    return http_into(port, cafile, method, path, token, body, out);
}

void tk_http_resp_cleanup(struct tk_http_resp *r)
{
    if (!r) {
        return;
    }
    free(r->body);
    json_decref(r->json);
    r->body = NULL;
    r->json = NULL;
}

/* ---- TLS certificates ---- */

/* Adds extension nid with OpenSSL's config-syntax value to x (self-signed: issuer is x). */
static bool add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    bool ok = ext && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

static bool write_pem(const char *path, mode_t mode, X509 *x, EVP_PKEY *key)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        return false;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return false;
    }
    bool ok = x ? PEM_write_X509(f, x) == 1
                : PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1;
    return fclose(f) == 0 && ok;
}

int tk_tls_cert_init(struct tk_tls_cert *c, const char *san)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->dir, sizeof(c->dir), "/tmp/tk-tls-XXXXXX");
    if (!mkdtemp(c->dir)) {
        int rc = -errno;
        c->dir[0] = '\0';
        return rc;
    }
    snprintf(c->cert, sizeof(c->cert), "%s/cert.pem", c->dir);
    snprintf(c->key, sizeof(c->key), "%s/key.pem", c->dir);
    int rc = -EIO;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    unsigned char serial[8];
    BIGNUM *bn = NULL;
    if (!key || !x || RAND_bytes(serial, sizeof(serial)) != 1) {
        goto done;
    }
    serial[0] &= 0x7f; /* a positive serial number */
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    X509_NAME *name = X509_get_subject_name(x);
    if (!bn || X509_set_version(x, 2) != 1 || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 86400) || X509_set_pubkey(x, key) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"giftd test",
                                   -1, -1, 0) != 1 ||
        X509_set_issuer_name(x, name) != 1 ||
        !add_ext(x, NID_basic_constraints, "critical,CA:TRUE") ||
        !add_ext(x, NID_subject_key_identifier, "hash") || !add_ext(x, NID_subject_alt_name, san) ||
        X509_sign(x, key, EVP_sha256()) <= 0) {
        goto done;
    }
    if (!write_pem(c->key, 0600, NULL, key) || !write_pem(c->cert, 0644, x, NULL)) {
        goto done;
    }
    rc = 0;
done:
    if (rc < 0) {
        ERR_print_errors_fp(stderr);
        tk_tls_cert_cleanup(c);
    }
    BN_free(bn);
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

void tk_tls_cert_cleanup(struct tk_tls_cert *c)
{
    rm_rf(c->dir);
    c->dir[0] = '\0';
}

/* ---- WebSocket client ---- */

struct tk_ws {
    int fd;
    SSL_CTX *tls_ctx; /* NULL, or the connection's TLS context and session */
    SSL *tls;
    unsigned char *rx; /* received bytes not yet parsed into frames */
    size_t rx_len;
    size_t rx_cap;
    unsigned char *msg; /* a fragmented message being assembled */
    size_t msg_len;
    size_t msg_cap;
    bool in_msg;
    json_t *queue; /* events received and not yet returned */
    json_t *kept;  /* tk_ws_kept: answers read ahead of the one asked for, by id */
    int close_code;
    bool closed; /* close frame received, socket closed, or protocol error */
    bool close_sent;
};

static int grow(unsigned char **buf, size_t *cap, size_t need)
{
    if (need <= *cap) {
        return 0;
    }
    size_t c = *cap ? *cap : 4096;
    while (c < need) {
        c *= 2;
    }
    unsigned char *p = realloc(*buf, c);
    if (!p) {
        return -ENOMEM;
    }
    *buf = p;
    *cap = c;
    return 0;
}

/* After an SSL call failed with ret: waits for what it asks (0: call again) or returns a
 * negative errno (-ECONNRESET when the peer closed). */
static int tls_wait(struct tk_ws *ws, int ret, int64_t deadline)
{
    int err = SSL_get_error(ws->tls, ret);
    switch (err) {
    case SSL_ERROR_WANT_READ:
        return wait_fd(ws->fd, POLLIN, deadline);
    case SSL_ERROR_WANT_WRITE:
        return wait_fd(ws->fd, POLLOUT, deadline);
    case SSL_ERROR_ZERO_RETURN:
        return -ECONNRESET;
    case SSL_ERROR_SYSCALL:
        return errno ? -errno : -ECONNRESET;
    default:
        return -EPROTO;
    }
}

/* Writes all of data (plain or TLS) by deadline. 0 or a negative errno. */
static int ws_write(struct tk_ws *ws, const void *data, size_t len, int64_t deadline)
{
    if (!ws->tls) {
        return send_all(ws->fd, data, len, deadline);
    }
    const char *p = data;
    while (len > 0) {
        size_t n = 0;
        ERR_clear_error();
        errno = 0;
        int ok = SSL_write_ex(ws->tls, p, len, &n);
        if (ok == 1) {
            p += n;
            len -= n;
            continue;
        }
        int rc = tls_wait(ws, ok, deadline);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

static int ws_send_frame(struct tk_ws *ws, unsigned opcode, const void *payload, size_t len)
{
    if (ws->fd < 0) {
        return -ENOTCONN;
    }
    unsigned char mask[4];
    if (RAND_bytes(mask, sizeof(mask)) != 1) {
        return -EIO;
    }
    unsigned char *frame = malloc(len + 14);
    if (!frame) {
        return -ENOMEM;
    }
    size_t h = 0;
    frame[h++] = (unsigned char)(0x80u | opcode);
    if (len < 126) {
        frame[h++] = (unsigned char)(0x80u | len);
    } else if (len <= 0xffff) {
        frame[h++] = 0x80u | 126u;
        frame[h++] = (unsigned char)(len >> 8);
        frame[h++] = (unsigned char)len;
    } else {
        frame[h++] = 0x80u | 127u;
        for (int i = 7; i >= 0; i--) {
            frame[h++] = (unsigned char)((uint64_t)len >> (8 * i));
        }
    }
    memcpy(frame + h, mask, 4);
    h += 4;
    const unsigned char *src = payload;
    for (size_t i = 0; i < len; i++) {
        frame[h + i] = src[i] ^ mask[i & 3];
    }
    int rc = ws_write(ws, frame, h + len, now_ms() + WS_SEND_MS);
    free(frame);
    return rc;
}

static void ws_queue_text(struct tk_ws *ws, const unsigned char *text, size_t len)
{
    json_t *j = json_loadb((const char *)text, len, 0, NULL);
    if (json_is_object(j)) {
        json_t *events = json_object_get(j, "events");
        const char *type = json_string_value(json_object_get(j, "type"));
        if (type && strcmp(type, "batch") == 0 && json_is_array(events)) {
            json_array_extend(ws->queue, events);
        } else {
            json_array_append(ws->queue, j);
        }
    } else {
        json_array_append_new(ws->queue, json_pack("{s:s,s:s%}", "type", "_not_json", "text",
                                                   (const char *)text, len));
    }
    json_decref(j);
}

static void ws_fail(struct tk_ws *ws, const char *why)
{
    fprintf(stderr, "testkit: WebSocket protocol error: %s\n", why);
    ws->closed = true;
}

/*
 * Parses and handles every complete frame in ws->rx. Returns 0, or a negative errno after a
 * protocol error (ws->closed is then set).
 */
static int ws_process(struct tk_ws *ws)
{
    size_t pos = 0;
    int rc = 0;
    while (!ws->closed) {
        size_t avail = ws->rx_len - pos;
        unsigned char *b = ws->rx + pos;
        if (avail < 2) {
            break;
        }
        bool fin = (b[0] & 0x80u) != 0;
        unsigned opcode = b[0] & 0x0fu;
        bool masked = (b[1] & 0x80u) != 0;
        uint64_t len = b[1] & 0x7fu;
        size_t h = 2;
        if ((b[0] & 0x70u) != 0) {
            ws_fail(ws, "reserved bits set");
            rc = -EPROTO;
            break;
        }
        if (len == 126) {
            if (avail < 4) {
                break;
            }
            len = ((uint64_t)b[2] << 8) | b[3];
            h = 4;
        } else if (len == 127) {
            if (avail < 10) {
                break;
            }
            len = 0;
            for (int i = 0; i < 8; i++) {
                len = (len << 8) | b[2 + i];
            }
            h = 10;
        }
        if (len > WS_MAX_MESSAGE) {
            ws_fail(ws, "frame too large");
            rc = -EMSGSIZE;
            break;
        }
        if (masked) {
            h += 4;
        }
        if (avail < h + len) {
            break;
        }
        unsigned char *payload = b + h;
        size_t plen = (size_t)len;
        if (masked) {
            for (size_t i = 0; i < plen; i++) {
                payload[i] ^= b[h - 4 + (i & 3)];
            }
        }
        pos += h + plen;
        if (opcode >= 0x8 && (!fin || plen > 125)) {
            ws_fail(ws, "bad control frame");
            rc = -EPROTO;
            break;
        }
        switch (opcode) {
        case 0x1:
        case 0x2:
            if (ws->in_msg) {
                ws_fail(ws, "new message inside a fragmented one");
                rc = -EPROTO;
                break;
            }
            if (fin) {
                ws_queue_text(ws, payload, plen);
                break;
            }
            ws->in_msg = true;
            ws->msg_len = 0;
            /* Continues with the fragment's payload, like a continuation frame. */
            __attribute__((fallthrough));
        case 0x0:
            if (!ws->in_msg) {
                ws_fail(ws, "continuation without a message");
                rc = -EPROTO;
                break;
            }
            if (ws->msg_len + plen > WS_MAX_MESSAGE ||
                grow(&ws->msg, &ws->msg_cap, ws->msg_len + plen + 1) < 0) {
                ws_fail(ws, "message too large");
                rc = -EMSGSIZE;
                break;
            }
            memcpy(ws->msg + ws->msg_len, payload, plen);
            ws->msg_len += plen;
            if (fin) {
                ws->in_msg = false;
                ws_queue_text(ws, ws->msg, ws->msg_len);
            }
            break;
        case 0x8:
            ws->close_code = plen >= 2 ? (payload[0] << 8) | payload[1] : 1005;
            ws->closed = true;
            if (!ws->close_sent) {
                ws->close_sent = true;
                ws_send_frame(ws, 0x8, payload, plen >= 2 ? 2 : 0);
            }
            break;
        case 0x9:
            ws_send_frame(ws, 0xA, payload, plen);
            break;
        case 0xA:
            break;
        default:
            ws_fail(ws, "unknown opcode");
            rc = -EPROTO;
            break;
        }
        if (rc < 0) {
            break;
        }
    }
    if (pos > 0) {
        memmove(ws->rx, ws->rx + pos, ws->rx_len - pos);
        ws->rx_len -= pos;
    }
    return rc;
}

/* Reads what is available (waiting until deadline). 1 on data, 0 at EOF, negative errno. */
static int ws_read(struct tk_ws *ws, int64_t deadline)
{
    for (;;) {
        if (grow(&ws->rx, &ws->rx_cap, ws->rx_len + 16384) < 0) {
            return -ENOMEM;
        }
        if (ws->tls) {
            /* SSL_read first: TLS may hold decrypted bytes the socket no longer shows. */
            size_t got = 0;
            ERR_clear_error();
            errno = 0;
            int ok = SSL_read_ex(ws->tls, ws->rx + ws->rx_len, ws->rx_cap - ws->rx_len, &got);
            if (ok == 1) {
                ws->rx_len += got;
                return 1;
            }
            int rc = tls_wait(ws, ok, deadline);
            if (rc == -ECONNRESET) {
                return 0;
            }
            if (rc < 0) {
                return rc;
            }
            continue;
        }
        ssize_t n = recv(ws->fd, ws->rx + ws->rx_len, ws->rx_cap - ws->rx_len, 0);
        if (n > 0) {
            ws->rx_len += (size_t)n;
            return 1;
        }
        if (n == 0) {
            return 0;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            return -errno;
        }
        int rc = wait_fd(ws->fd, POLLIN, deadline);
        if (rc < 0) {
            return rc;
        }
    }
}

/* Reads and handles frames until an event is queued, the connection closes, or the deadline. */
static void ws_pump(struct tk_ws *ws, int64_t deadline, bool until_closed)
{
    for (;;) {
        ws_process(ws);
        if (ws->closed || (!until_closed && json_array_size(ws->queue) > 0)) {
            return;
        }
        int rc = ws_read(ws, deadline);
        if (rc == -ETIMEDOUT) {
            return;
        }
        if (rc <= 0) {
            ws_process(ws);
            ws->closed = true;
            return;
        }
    }
}

static const char *find_header(const char *head, const char *name, size_t *out_len)
{
    size_t nlen = strlen(name);
    const char *line = strstr(head, "\r\n");
    while (line) {
        line += 2;
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ' || *v == '\t') {
                v++;
            }
            const char *e = strstr(v, "\r\n");
            size_t len = e ? (size_t)(e - v) : strlen(v);
            while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t')) {
                len--;
            }
            *out_len = len;
            return v;
        }
        line = strstr(line, "\r\n");
    }
    return NULL;
}

/* The TLS handshake on ws->fd, verifying the server against cafile (chain and 127.0.0.1). */
static int tls_connect(struct tk_ws *ws, const char *cafile, int64_t deadline)
{
    ws->tls_ctx = SSL_CTX_new(TLS_client_method());
    if (!ws->tls_ctx) {
        return -ENOMEM;
    }
    /* A peer that closes without close_notify is an ordinary end of stream here. */
    SSL_CTX_set_options(ws->tls_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_verify(ws->tls_ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(ws->tls_ctx, cafile, NULL) != 1) {
        fprintf(stderr, "testkit: cannot load CA file %s\n", cafile);
        return -EINVAL;
    }
    ws->tls = SSL_new(ws->tls_ctx);
    if (!ws->tls || SSL_set_fd(ws->tls, ws->fd) != 1 ||
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ws->tls), "127.0.0.1") != 1) {
        return -ENOMEM;
    }
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int ok = SSL_connect(ws->tls);
        if (ok == 1) {
            return 0;
        }
        int rc = tls_wait(ws, ok, deadline);
        if (rc < 0) {
            long v = SSL_get_verify_result(ws->tls);
            fprintf(stderr, "testkit: TLS handshake failed (%d)%s%s\n", rc,
                    v != X509_V_OK ? ": " : "",
                    v != X509_V_OK ? X509_verify_cert_error_string(v) : "");
            return rc == -ECONNRESET ? rc : -EPROTO;
        }
    }
}

/*
 * Performs the opening handshake, over TLS verified against cafile when cafile is not NULL.
 * Returns the HTTP status (101 with *out_ws set to a **new** connection when the upgrade
 * succeeded and the accept key matched) or a negative errno.
 */
static int ws_handshake(int port, const char *path, const char *cafile, struct tk_ws **out_ws)
{
    *out_ws = NULL;
    if (!path || path[0] != '/' || strpbrk(path, " \r\n")) {
        return -EINVAL;
    }
    int64_t deadline = now_ms() + WS_HANDSHAKE_MS;
    unsigned char nonce[16];
    if (RAND_bytes(nonce, sizeof(nonce)) != 1) {
        return -EIO;
    }
    char *key = b64(nonce, sizeof(nonce), false);
    if (!key) {
        return -ENOMEM;
    }
    char expect[64] = "";
    {
        char *cat = NULL;
        unsigned char digest[SHA_DIGEST_LENGTH];
        if (asprintf(&cat, "%s%s", key, WS_GUID) < 0) {
            free(key);
            return -ENOMEM;
        }
        SHA1((const unsigned char *)cat, strlen(cat), digest);
        free(cat);
        char *acc = b64(digest, sizeof(digest), false);
        if (!acc) {
            free(key);
            return -ENOMEM;
        }
        snprintf(expect, sizeof(expect), "%s", acc);
        free(acc);
    }
    char *req = NULL;
    int n = asprintf(&req,
                     "GET %s HTTP/1.1\r\n"
                     "Host: 127.0.0.1:%d\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "User-Agent: giftd-testkit\r\n"
                     "\r\n",
                     path, port, key);
    free(key);
    if (n < 0) {
        return -ENOMEM;
    }
    struct tk_ws *ws = calloc(1, sizeof(*ws));
    if (!ws) {
        free(req);
        return -ENOMEM;
    }
    ws->fd = -1;
    ws->close_code = -1;
    ws->queue = json_array();
    ws->kept = json_object();
    int rc = ws->queue && ws->kept ? connect_local(port, deadline, &ws->fd) : -ENOMEM;
    if (rc == 0 && cafile) {
        rc = tls_connect(ws, cafile, deadline);
    }
    if (rc == 0) {
        rc = ws_write(ws, req, (size_t)n, deadline);
    }
    free(req);
    /* Read the response head; bytes after it (early frames) stay in ws->rx. */
    size_t head_len = 0;
    while (rc == 0) {
        for (size_t i = 0; i + 3 < ws->rx_len; i++) {
            if (memcmp(ws->rx + i, "\r\n\r\n", 4) == 0) {
                head_len = i + 4;
                break;
            }
        }
        if (head_len) {
            break;
        }
        if (ws->rx_len > 65536) {
            rc = -EPROTO;
            break;
        }
        int r = ws_read(ws, deadline);
        if (r == 0) {
            rc = -ECONNRESET;
        } else if (r < 0) {
            rc = r;
        }
    }
    if (rc < 0) {
        tk_ws_free(ws);
        return rc;
    }
    char *head = strndup((const char *)ws->rx, head_len);
    if (!head) {
        tk_ws_free(ws);
        return -ENOMEM;
    }
    int status = -EPROTO;
    if (strncmp(head, "HTTP/1.", 7) == 0 && head[8] == ' ' && head[9] >= '1' && head[9] <= '5' &&
        head[10] >= '0' && head[10] <= '9' && head[11] >= '0' && head[11] <= '9') {
        status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
    }
    if (status == 101) {
        size_t alen = 0;
        const char *accept = find_header(head, "Sec-WebSocket-Accept", &alen);
        if (!accept || alen != strlen(expect) || memcmp(accept, expect, alen) != 0) {
            fprintf(stderr, "testkit: WebSocket handshake: bad Sec-WebSocket-Accept\n");
            status = -EPROTO;
        }
    }
    free(head);
    memmove(ws->rx, ws->rx + head_len, ws->rx_len - head_len);
    ws->rx_len -= head_len;
    if (status == 101) {
        *out_ws = ws;
    } else {
        tk_ws_free(ws);
    }
    return status;
}

struct tk_ws *tk_ws_connect(int port, const char *path_and_query)
{
    struct tk_ws *ws = NULL;
    int status = ws_handshake(port, path_and_query, NULL, &ws);
    if (status != 101) {
        fprintf(stderr, "testkit: WebSocket upgrade of %.40s… on port %d: %s%d\n",
                path_and_query ? path_and_query : "(null)", port, status < 0 ? "error " : "HTTP ",
                status);
        return NULL;
    }
    return ws;
}

int tk_ws_connect_status(int port, const char *path_and_query)
{
    struct tk_ws *ws = NULL;
    int status = ws_handshake(port, path_and_query, NULL, &ws);
    tk_ws_free(ws);
    return status;
}

struct tk_ws *tk_ws_connect_tls(int port, const char *path_and_query, const char *cafile)
{
    struct tk_ws *ws = NULL;
    if (!cafile || !cafile[0]) {
        return NULL;
    }
    int status = ws_handshake(port, path_and_query, cafile, &ws);
    if (status != 101) {
        fprintf(stderr, "testkit: wss upgrade of %.40s… on port %d: %s%d\n",
                path_and_query ? path_and_query : "(null)", port, status < 0 ? "error " : "HTTP ",
                status);
        return NULL;
    }
    return ws;
}

int tk_ws_send_text(struct tk_ws *ws, const char *text, size_t len)
{
    return ws_send_frame(ws, 0x1, text, len);
}

int tk_ws_send_json(struct tk_ws *ws, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = NULL;
    int n = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return -ENOMEM;
    }
    int rc = ws_send_frame(ws, 0x1, text, (size_t)n);
    free(text);
    return rc;
}

json_t *tk_ws_recv(struct tk_ws *ws, int timeout_ms)
{
    if (json_array_size(ws->queue) == 0) {
        ws_pump(ws, now_ms() + (timeout_ms > 0 ? timeout_ms : 0), false);
    }
    if (json_array_size(ws->queue) == 0) {
        return NULL;
    }
    json_t *ev = json_incref(json_array_get(ws->queue, 0));
    json_array_remove(ws->queue, 0);
    return ev;
}

json_t *tk_ws_expect(struct tk_ws *ws, const char *type, int timeout_ms)
{
    int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        json_t *ev = tk_ws_recv(ws, remaining_ms(deadline));
        if (!ev) {
            return NULL;
        }
        const char *t = json_string_value(json_object_get(ev, "type"));
        if (t && strcmp(t, type) == 0) {
            return ev;
        }
        json_decref(ev);
    }
}

bool tk_ws_wait_closed(struct tk_ws *ws, int timeout_ms)
{
    ws_pump(ws, now_ms() + (timeout_ms > 0 ? timeout_ms : 0), true);
    return ws->closed;
}

int tk_ws_close_code(const struct tk_ws *ws)
{
    return ws->close_code;
}

int tk_ws_close(struct tk_ws *ws, int code)
{
    unsigned char payload[2] = {(unsigned char)((unsigned)code >> 8), (unsigned char)code};
    ws->close_sent = true;
    return ws_send_frame(ws, 0x8, payload, code > 0 ? 2 : 0);
}

void tk_ws_free(struct tk_ws *ws)
{
    if (!ws) {
        return;
    }
    SSL_free(ws->tls);
    SSL_CTX_free(ws->tls_ctx);
    if (ws->fd >= 0) {
        close(ws->fd);
    }
    free(ws->rx);
    free(ws->msg);
    json_decref(ws->queue);
    json_decref(ws->kept);
    free(ws);
}

json_t *tk_ws_kept(struct tk_ws *ws)
{
    return ws->kept;
}

/* ---- running commands ---- */

int tk_run(const char *const *argv, const char *const *env, int timeout_ms, char **out_stdout,
           char **out_stderr)
{
    if (out_stdout) {
        *out_stdout = NULL;
    }
    if (out_stderr) {
        *out_stderr = NULL;
    }
    /* The child's environment: env first (getenv returns the first match), then ours. */
    size_t nenv = 0;
    size_t nown = 0;
    while (env && env[nenv]) {
        nenv++;
    }
    while (environ[nown]) {
        nown++;
    }
    char **envp = calloc(nenv + nown + 1, sizeof(*envp));
    if (!envp) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < nenv; i++) {
        envp[i] = (char *)env[i];
    }
    for (size_t i = 0; i < nown; i++) {
        envp[nenv + i] = environ[i];
    }
    int out_pipe[2] = {-1, -1};
    int err_pipe[2] = {-1, -1};
    if (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0) {
        int rc = -errno;
        for (int i = 0; i < 2; i++) {
            if (out_pipe[i] >= 0) {
                close(out_pipe[i]);
            }
        }
        free(envp);
        return rc;
    }
    pid_t pid = 0;
    int rc = spawn((char *const *)argv, envp, out_pipe[1], err_pipe[1], &pid);
    free(envp);
    close(out_pipe[1]);
    close(err_pipe[1]);
    struct {
        int fd;
        unsigned char *data;
        size_t len;
        size_t cap;
    } s[2] = {{out_pipe[0], NULL, 0, 0}, {err_pipe[0], NULL, 0, 0}};
    int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    bool timed_out = false;
    while (rc == 0 && (s[0].fd >= 0 || s[1].fd >= 0)) {
        struct pollfd pfd[2] = {{.fd = s[0].fd, .events = POLLIN},
                                {.fd = s[1].fd, .events = POLLIN}};
        int left = remaining_ms(deadline);
        if (left <= 0) {
            timed_out = true;
            break;
        }
        int n = poll(pfd, 2, left);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            rc = -errno;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (s[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                continue;
            }
            if (grow(&s[i].data, &s[i].cap, s[i].len + 4097) < 0) {
                rc = -ENOMEM;
                break;
            }
            ssize_t r = read(s[i].fd, s[i].data + s[i].len, s[i].cap - s[i].len - 1);
            if (r > 0 && s[i].len + (size_t)r <= RUN_MAX_OUTPUT) {
                s[i].len += (size_t)r;
            } else if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN) ||
                       s[i].len + (size_t)r > RUN_MAX_OUTPUT) {
                close(s[i].fd);
                s[i].fd = -1;
            }
        }
    }
    for (int i = 0; i < 2; i++) {
        if (s[i].fd >= 0) {
            close(s[i].fd);
        }
    }
    int status = 0;
    if (pid > 0) {
        if (timed_out || rc < 0) {
            kill(pid, SIGKILL);
        }
        int w = wait_child(pid, timed_out || rc < 0 ? STOP_WAIT_MS : remaining_ms(deadline) + 1,
                           &status);
        if (w == -ETIMEDOUT) {
            timed_out = true;
            kill(pid, SIGKILL);
            wait_child(pid, STOP_WAIT_MS, &status);
        }
    }
    char **outs[2] = {out_stdout, out_stderr};
    for (int i = 0; i < 2; i++) {
        if (outs[i]) {
            if (!s[i].data) {
                s[i].data = (unsigned char *)strdup("");
            } else {
                s[i].data[s[i].len] = '\0';
            }
            *outs[i] = (char *)s[i].data;
        } else {
            free(s[i].data);
        }
    }
    if (rc < 0) {
        return rc;
    }
    if (timed_out) {
        return -ETIMEDOUT;
    }
    if (WIFEXITED(status)) {
        return WEXITSTATUS(status);
    }
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -ECHILD;
}

int tk_ws_set_rcvbuf(struct tk_ws *ws, int bytes)
{
    return setsockopt(ws->fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes)) == 0 ? 0 : -errno;
}

/* ---- PostgreSQL ---- */

#include <glob.h>
#include <grp.h>
#include <pwd.h>

#define PG_START_MS 30000

/* The bin directory of the newest PostgreSQL installed the Debian way. */
static int pg_bindir(char *out, size_t len)
{
    glob_t g;
    if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) != 0 || g.gl_pathc == 0) {
        globfree(&g);
        return -ENOENT;
    }
    /* Versions sort as numbers: "15" after "9.6". */
    const char *best = NULL;
    double best_v = -1;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        double v = atof(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"));
        if (v > best_v) {
            best_v = v;
            best = g.gl_pathv[i];
        }
    }
    snprintf(out, len, "%.*s", (int)(strrchr(best, '/') - best), best);
    globfree(&g);
    return 0;
}

/* Forks and execs argv as the postgres OS user when we are root, with stdout and stderr on
 * log_fd. The child gets SIGKILL when the test process dies (set after the user change, which
 * clears it). */
static int pg_spawn(char *const *argv, int log_fd, pid_t *out_pid)
{
    uid_t uid = 0;
    gid_t gid = 0;
    bool drop = geteuid() == 0;
    if (drop) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw) {
            return -ENOENT;
        }
        uid = pw->pw_uid;
        gid = pw->pw_gid;
    }
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) {
        return -errno;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int rc = -errno;
        close(devnull);
        return rc;
    }
    if (pid == 0) {
        if (drop && (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)) {
            _exit(126);
        }
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = SIG_DFL;
        sigaction(SIGPIPE, &sa, NULL);
        if (dup2(devnull, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0) {
            _exit(127);
        }
        if (close_range(3, ~0u, 0) < 0) {
            for (int fd = 3; fd < 1024; fd++) {
                close(fd);
            }
        }
        execv(argv[0], argv);
        _exit(127);
    }
    close(devnull);
    *out_pid = pid;
    return 0;
}

static int pg_open_log(const struct tk_pg *pg)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/pg.log", pg->dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    return fd < 0 ? -errno : fd;
}

void tk_pg_dump_log(const struct tk_pg *pg, size_t max_bytes)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/pg.log", pg->dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        return;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > (long)max_bytes ? size - (long)max_bytes : 0;
    fseek(f, from, SEEK_SET);
    fprintf(stderr, "---- postgres log %s ----\n", path);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        fwrite(chunk, 1, n, stderr);
    }
    fprintf(stderr, "---- end of postgres log ----\n");
    fclose(f);
}

void tk_pg_conninfo(const struct tk_pg *pg, char *out, size_t len)
{
    snprintf(out, len, "host=%s port=%d user=postgres dbname=postgres", pg->dir, pg->port);
}

/* Starts the postmaster on pg->dir/data and waits until it accepts connections. */
static int pg_run(struct tk_pg *pg)
{
    char bindir[200], prog[256], data[300], port_s[16];
    int rc = pg_bindir(bindir, sizeof(bindir));
    if (rc < 0) {
        return rc;
    }
    snprintf(prog, sizeof(prog), "%s/postgres", bindir);
    snprintf(data, sizeof(data), "%s/data", pg->dir);
    snprintf(port_s, sizeof(port_s), "%d", pg->port);
    char *argv[] = {prog,
                    "-D",
                    data,
                    "-p",
                    port_s,
                    "-k",
                    pg->dir,
                    "-c",
                    "listen_addresses=",
                    "-c",
                    "fsync=off",
                    "-c",
                    "full_page_writes=off",
                    NULL};
    int log_fd = pg_open_log(pg);
    if (log_fd < 0) {
        return log_fd;
    }
    pid_t pid = 0;
    rc = pg_spawn(argv, log_fd, &pid);
    close(log_fd);
    if (rc < 0) {
        return rc;
    }
    char conninfo[400];
    tk_pg_conninfo(pg, conninfo, sizeof(conninfo));
    int64_t deadline = now_ms() + PG_START_MS;
    for (;;) {
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fprintf(stderr, "testkit: postgres exited during start (status 0x%x)\n", status);
            tk_pg_dump_log(pg, LOG_TAIL_BYTES);
            return -ECHILD;
        }
        if (PQping(conninfo) == PQPING_OK) {
            pg->pid = pid;
            return 0;
        }
        if (now_ms() >= deadline) {
            bool killed;
            terminate_child(pid, SIGKILL, STOP_WAIT_MS, &killed);
            fprintf(stderr, "testkit: postgres did not accept connections in %d ms\n", PG_START_MS);
            tk_pg_dump_log(pg, LOG_TAIL_BYTES);
            return -ETIMEDOUT;
        }
        sleep_ms(20);
    }
}

int tk_pg_start(struct tk_pg *pg)
{
    memset(pg, 0, sizeof(*pg));
    char bindir[200];
    int rc = pg_bindir(bindir, sizeof(bindir));
    if (rc < 0) {
        fprintf(stderr, "testkit: no PostgreSQL server found (install postgresql)\n");
        return rc;
    }
    snprintf(pg->dir, sizeof(pg->dir), "/tmp/tk-pg-XXXXXX");
    if (!mkdtemp(pg->dir)) {
        rc = -errno;
        pg->dir[0] = '\0';
        return rc;
    }
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw || chown(pg->dir, pw->pw_uid, pw->pw_gid) < 0) {
            rc = pw ? -errno : -ENOENT;
            goto fail;
        }
    }
    /* Any number names the socket; a free TCP port keeps it unlike anyone else's. */
    pg->port = tk_free_port();
    if (pg->port < 0) {
        rc = pg->port;
        goto fail;
    }
    char prog[256], data[300];
    snprintf(prog, sizeof(prog), "%s/initdb", bindir);
    snprintf(data, sizeof(data), "%s/data", pg->dir);
    char *argv[] = {prog,    "-D", data,   "-U",         "postgres", "-A",
                    "trust", "-E", "UTF8", "--locale=C", "-N",       NULL};
    int log_fd = pg_open_log(pg);
    if (log_fd < 0) {
        rc = log_fd;
        goto fail;
    }
    pid_t pid = 0;
    rc = pg_spawn(argv, log_fd, &pid);
    close(log_fd);
    if (rc < 0) {
        goto fail;
    }
    int status = 0;
    rc = wait_child(pid, PG_START_MS, &status);
    if (rc < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (rc == -ETIMEDOUT) {
            kill(pid, SIGKILL);
            wait_child(pid, STOP_WAIT_MS, NULL);
        }
        fprintf(stderr, "testkit: initdb failed (status 0x%x)\n", status);
        tk_pg_dump_log(pg, LOG_TAIL_BYTES);
        rc = rc < 0 ? rc : -ECHILD;
        goto fail;
    }
    rc = pg_run(pg);
    if (rc < 0) {
        goto fail;
    }
    return 0;
fail:
    rm_rf(pg->dir);
    pg->dir[0] = '\0';
    return rc;
}

void tk_pg_kill(struct tk_pg *pg, int sig)
{
    if (pg->pid > 0) {
        bool killed;
        terminate_child(pg->pid, sig, STOP_WAIT_MS, &killed);
        pg->pid = 0;
    }
}

int tk_pg_restart(struct tk_pg *pg)
{
    if (pg->pid > 0 || !pg->dir[0]) {
        return -EINVAL;
    }
    return pg_run(pg);
}

void tk_pg_stop(struct tk_pg *pg)
{
    tk_pg_kill(pg, SIGINT);
    rm_rf(pg->dir);
    pg->dir[0] = '\0';
}

PGconn *tk_pg_connect(const struct tk_pg *pg)
{
    char conninfo[400];
    tk_pg_conninfo(pg, conninfo, sizeof(conninfo));
    PGconn *c = PQconnectdb(conninfo);
    cr_assert_not_null(c, "PQconnectdb: out of memory");
    if (PQstatus(c) != CONNECTION_OK) {
        char err[256];
        snprintf(err, sizeof(err), "%s", PQerrorMessage(c));
        PQfinish(c);
        cr_assert_fail("PQconnectdb %s: %s", conninfo, err);
    }
    return c;
}

/* ---- Redis Cluster ---- */

#define CLUSTER_START_MS  30000
#define CLUSTER_SETTLE_MS 30000
#define CLUSTER_NODE_MS   "5000" /* cluster-node-timeout */
#define CLUSTER_MIGRATE_N 10     /* keys per MIGRATE, like redis-cli --cluster-pipeline */
#define CLUSTER_POLL_MS   20

/* Prints the last max_bytes of node i's redis.log to stderr. */
static void cl_dump_log(const struct tk_cluster *c, int i, size_t max_bytes)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/redis.log", c->node[i].dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        return;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size > (long)max_bytes ? size - (long)max_bytes : 0, SEEK_SET);
    fprintf(stderr, "---- cluster node %d (port %d) %s ----\n", i, c->node[i].port, path);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        fwrite(chunk, 1, n, stderr);
    }
    fprintf(stderr, "---- end of node %d's log ----\n", i);
    fclose(f);
}

/* A **new** connection to live node i (1 s timeout), or NULL. */
static redisContext *cl_connect(const struct tk_cluster *c, int i)
{
    if (i < 0 || i >= c->nnodes || c->node[i].pid <= 0) {
        return NULL;
    }
    struct timeval tv = {.tv_sec = 1, .tv_usec = 0};
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", c->node[i].port, tv);
    if (ctx && (ctx->err || redisSetTimeout(ctx, (struct timeval){.tv_sec = 15}) != REDIS_OK)) {
        redisFree(ctx);
        return NULL;
    }
    return ctx;
}

/* One command to node i on a fresh connection: a **new** reply (errors included), or NULL
 * when the node is down or did not answer. */
__attribute__((format(printf, 3, 4))) static redisReply *cl_cmd(const struct tk_cluster *c, int i,
                                                                const char *fmt, ...)
{
    redisContext *ctx = cl_connect(c, i);
    if (!ctx) {
        return NULL;
    }
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(ctx, fmt, ap);
    va_end(ap);
    redisFree(ctx);
    return r;
}

/* cl_cmd that must answer +OK; prints what it got otherwise. Returns 0 or -EIO. */
static int cl_ok(const struct tk_cluster *c, int i, const char *what, redisReply *r)
{
    bool ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0;
    if (!ok) {
        fprintf(stderr, "testkit: cluster node %d (port %d): %s: %s\n", i, c->node[i].port, what,
                r ? (r->str ? r->str : "unexpected reply") : "no answer");
    }
    freeReplyObject(r);
    return ok ? 0 : -EIO;
}

/* A node's own line of CLUSTER NODES: "<id> <ip:port@bus> <flags> <master> <ping> <pong>
 * <epoch> <link> <slot>…", a slot being "n", "a-b", or "[n->-id]"/"[n-<-id]" (in migration). */
struct cl_self {
    bool master;
    char master_id[41]; /* of a replica; "" for a master */
    char slots[8192];   /* the slot fields, space-separated */
};

static int cl_myself(const struct tk_cluster *c, int i, struct cl_self *out)
{
    redisReply *r = cl_cmd(c, i, "CLUSTER NODES");
    if (!r || r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return -EIO;
    }
    int rc = -ENOENT;
    char *save = NULL;
    for (char *line = strtok_r(r->str, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char flags[128], master[41];
        int used = 0;
        if (sscanf(line, "%*s %*s %127s %40s %*s %*s %*s %*s%n", flags, master, &used) < 2 ||
            !strstr(flags, "myself")) {
            continue;
        }
        out->master = strstr(flags, "master") != NULL;
        snprintf(out->master_id, sizeof(out->master_id), "%s", out->master ? "" : master);
        snprintf(out->slots, sizeof(out->slots), "%s", used > 0 ? line + used : "");
        rc = 0;
        break;
    }
    freeReplyObject(r);
    return rc;
}

/* Whether a slot list of CLUSTER NODES ("0-5460 7000 [1->-id]") claims slot. */
static bool cl_claims(const char *slots, unsigned slot)
{
    const char *p = slots;
    while (*p) {
        while (*p == ' ') {
            p++;
        }
        if (!*p) {
            break;
        }
        if (*p != '[') {
            char *end;
            unsigned long a = strtoul(p, &end, 10);
            unsigned long b = *end == '-' ? strtoul(end + 1, &end, 10) : a;
            if (slot >= a && slot <= b) {
                return true;
            }
        }
        p += strcspn(p, " ");
    }
    return false;
}

static int cmp_line(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Node i's view of the cluster from CLUSTER NODES: a line "<id> <role> <master> <slots>" per
 * node, sorted, without what only the node itself knows (myself, slots in migration) or what
 * changes by the second (pings, failure flags). A **new** string, or NULL. */
static char *cl_topology(const struct tk_cluster *c, int i)
{
    redisReply *r = cl_cmd(c, i, "CLUSTER NODES");
    if (!r || r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return NULL;
    }
    char *lines[TK_CLUSTER_MAX_NODES * 2];
    size_t n = 0;
    char *save = NULL;
    for (char *line = strtok_r(r->str, "\n", &save); line && n < sizeof(lines) / sizeof(lines[0]);
         line = strtok_r(NULL, "\n", &save)) {
        lines[n++] = line;
    }
    qsort(lines, n, sizeof(lines[0]), cmp_line);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    for (size_t k = 0; f && k < n; k++) {
        char id[41], flags[128], master[41];
        int used = 0;
        if (sscanf(lines[k], "%40s %*s %127s %40s %*s %*s %*s %*s%n", id, flags, master, &used) <
            3) {
            continue;
        }
        fprintf(f, "%s %s %s", id, strstr(flags, "master") ? "master" : "slave", master);
        for (char *p = lines[k] + used; used > 0 && *p;) {
            p += strspn(p, " ");
            size_t tok = strcspn(p, " ");
            if (tok && *p != '[') {
                fprintf(f, " %.*s", (int)tok, p);
            }
            p += tok;
        }
        fputc('\n', f);
    }
    if (f) {
        fclose(f);
    }
    freeReplyObject(r);
    return text;
}

/* Whether node i's CLUSTER INFO (cluster true) or INFO replication holds want ("cluster_state:ok",
 * "master_link_status:up"): 1 or 0, -EIO if the node is down. */
static int cl_info_has(const struct tk_cluster *c, int i, bool cluster, const char *want)
{
    redisReply *r = cluster ? cl_cmd(c, i, "CLUSTER INFO") : cl_cmd(c, i, "INFO replication");
    if (!r || r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return -EIO;
    }
    bool has = strstr(r->str, want) != NULL;
    freeReplyObject(r);
    return has ? 1 : 0;
}

/* 1 when every live node says cluster_state:ok, every live replica's link to its master is up
 * and all live nodes see the same masters, replicas and slots; 0 when not (yet). A manual
 * failover needs the master to know its replica, not just the replica its master. */
static int cl_settled(const struct tk_cluster *c)
{
    char *first = NULL;
    int settled = 1;
    for (int i = 0; i < c->nnodes && settled; i++) {
        if (c->node[i].pid <= 0) {
            continue;
        }
        struct cl_self self;
        if (cl_info_has(c, i, true, "cluster_state:ok") != 1 || cl_myself(c, i, &self) < 0 ||
            (!self.master && cl_info_has(c, i, false, "master_link_status:up") != 1)) {
            settled = 0;
            break;
        }
        char *view = cl_topology(c, i);
        if (!view || (first && strcmp(first, view) != 0)) {
            settled = 0;
        }
        if (!first) {
            first = view;
        } else {
            free(view);
        }
    }
    free(first);
    return settled;
}

int tk_cluster_wait_ok(const struct tk_cluster *c, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    while (!cl_settled(c)) {
        if (now_ms() >= deadline) {
            fprintf(stderr, "testkit: the cluster did not settle in %d ms\n", timeout_ms);
            return -ETIMEDOUT;
        }
        sleep_ms(CLUSTER_POLL_MS);
    }
    return 0;
}

/* Starts node i in cluster mode on a free port and a free bus port (cluster-port: port+10000
 * may be above 65535 or taken). */
static int cl_start_node(struct tk_cluster *c, int i, bool appendonly)
{
    int rc = -EADDRINUSE;
    for (int attempt = 0; attempt < START_ATTEMPTS; attempt++) {
        memset(&c->node[i], 0, sizeof(c->node[i]));
        int port = tk_free_port();
        int bus = tk_free_port();
        if (port < 0 || bus < 0) {
            return port < 0 ? port : bus;
        }
        if (bus == port) {
            continue;
        }
        char bus_s[16];
        snprintf(bus_s, sizeof(bus_s), "%d", bus);
        const char *extra[] = {"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                               "--cluster-port", bus_s, "--cluster-node-timeout", CLUSTER_NODE_MS,
                               /* a replica's first sync starts at once, not after 5 s */
                               "--repl-diskless-sync-delay", "0", NULL};
        rc = redis_start_args(&c->node[i], port, appendonly, extra);
        if (rc == 0) {
            c->bus_port[i] = bus;
            return 0;
        }
        if (rc != -ECHILD && rc != -EADDRINUSE) {
            return rc;
        }
    }
    return rc;
}

int tk_cluster_start_with(struct tk_cluster *c, int masters, int replicas, bool appendonly)
{
    memset(c, 0, sizeof(*c));
    if (masters < 1 || replicas < 0 || masters * (1 + replicas) > TK_CLUSTER_MAX_NODES) {
        return -EINVAL;
    }
    c->masters = masters;
    int n = masters * (1 + replicas);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        rc = cl_start_node(c, i, appendonly);
        if (rc < 0) {
            goto fail;
        }
        c->nnodes = i + 1;
        redisReply *r = cl_cmd(c, i, "CLUSTER MYID");
        if (!r || r->type != REDIS_REPLY_STRING || r->len != 40) {
            freeReplyObject(r);
            rc = -EIO;
            goto fail;
        }
        memcpy(c->id[i], r->str, 41);
        freeReplyObject(r);
        /* Distinct config epochs, as redis-cli --cluster create sets them: no collisions to
         * resolve. Only accepted before the node knows any other. */
        rc = cl_ok(c, i, "SET-CONFIG-EPOCH", cl_cmd(c, i, "CLUSTER SET-CONFIG-EPOCH %d", i + 1));
        if (rc < 0) {
            goto fail;
        }
    }
    /* The first `masters` nodes share the slots in contiguous ranges. */
    for (int m = 0; m < masters; m++) {
        int from = (int)((long)TK_CLUSTER_SLOTS * m / masters);
        int to = (int)((long)TK_CLUSTER_SLOTS * (m + 1) / masters) - 1;
        rc = cl_ok(c, m, "ADDSLOTSRANGE", cl_cmd(c, m, "CLUSTER ADDSLOTSRANGE %d %d", from, to));
        if (rc < 0) {
            goto fail;
        }
    }
    for (int i = 1; i < n; i++) {
        rc = cl_ok(c, 0, "MEET",
                   cl_cmd(c, 0, "CLUSTER MEET 127.0.0.1 %d %d", c->node[i].port, c->bus_port[i]));
        if (rc < 0) {
            goto fail;
        }
    }
    /* A replica can only follow a master it knows: wait until every node knows all. */
    char known[64];
    snprintf(known, sizeof(known), "cluster_known_nodes:%d\r", n);
    int64_t deadline = now_ms() + CLUSTER_START_MS;
    for (int i = 0; i < n; i++) {
        while (cl_info_has(c, i, true, known) != 1) {
            if (now_ms() >= deadline) {
                fprintf(stderr, "testkit: cluster nodes did not meet in %d ms\n", CLUSTER_START_MS);
                rc = -ETIMEDOUT;
                goto fail;
            }
            sleep_ms(CLUSTER_POLL_MS);
        }
    }
    /* Node masters + k follows master k % masters. */
    for (int i = masters; i < n; i++) {
        int m = (i - masters) % masters;
        rc = cl_ok(c, i, "REPLICATE", cl_cmd(c, i, "CLUSTER REPLICATE %s", c->id[m]));
        if (rc < 0) {
            goto fail;
        }
    }
    rc = tk_cluster_wait_ok(c, remaining_ms(deadline));
    if (rc < 0) {
        goto fail;
    }
    return 0;
fail:
    tk_cluster_stop(c);
    return rc;
}

int tk_cluster_start(struct tk_cluster *c, int masters, int replicas)
{
    return tk_cluster_start_with(c, masters, replicas, false);
}

void tk_cluster_stop(struct tk_cluster *c)
{
    for (int i = 0; i < c->nnodes; i++) {
        tk_redis_stop(&c->node[i]);
    }
}

void tk_cluster_seeds(const struct tk_cluster *c, char *out, size_t len)
{
    size_t used = 0;
    if (len) {
        out[0] = '\0';
    }
    for (int i = 0; i < c->nnodes; i++) {
        if (c->node[i].pid <= 0) {
            continue;
        }
        int n = snprintf(out + used, len > used ? len - used : 0, "%s127.0.0.1:%d", used ? "," : "",
                         c->node[i].port);
        if (n < 0 || (size_t)n >= len - used) {
            if (len > used) {
                out[used] = '\0'; /* no half node */
            }
            break;
        }
        used += (size_t)n;
    }
}

int tk_cluster_master_of(struct tk_cluster *c, unsigned slot)
{
    if (slot >= TK_CLUSTER_SLOTS) {
        return -EINVAL;
    }
    for (int i = 0; i < c->nnodes; i++) {
        struct cl_self self;
        if (c->node[i].pid > 0 && cl_myself(c, i, &self) == 0 && self.master &&
            cl_claims(self.slots, slot)) {
            return i;
        }
    }
    return -ENOENT;
}

/* Moves every key of slot from node src to node dst, CLUSTER_MIGRATE_N at a time. */
static int cl_migrate_keys(struct tk_cluster *c, unsigned slot, int src, int dst)
{
    redisContext *ctx = cl_connect(c, src);
    if (!ctx) {
        return -EIO;
    }
    int rc = 0;
    for (;;) {
        redisReply *keys =
            redisCommand(ctx, "CLUSTER GETKEYSINSLOT %u %d", slot, CLUSTER_MIGRATE_N);
        if (!keys || keys->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(keys);
            rc = -EIO;
            break;
        }
        if (keys->elements == 0) {
            freeReplyObject(keys);
            break;
        }
        /* MIGRATE host port "" 0 timeout KEYS k…: atomic per batch; a client that asks for
         * a key of the batch afterwards is sent on (ASK) to dst. */
        size_t argc = 8 + keys->elements;
        const char **argv = calloc(argc, sizeof(*argv));
        size_t *argvlen = calloc(argc, sizeof(*argvlen));
        char port_s[16];
        snprintf(port_s, sizeof(port_s), "%d", c->node[dst].port);
        const char *head[] = {"MIGRATE", "127.0.0.1", port_s, "", "0", "10000", "KEYS"};
        redisReply *r = NULL;
        if (argv && argvlen) {
            for (size_t k = 0; k < 7; k++) {
                argv[k] = head[k];
                argvlen[k] = strlen(head[k]);
            }
            for (size_t k = 0; k < keys->elements; k++) {
                argv[7 + k] = keys->element[k]->str;
                argvlen[7 + k] = keys->element[k]->len;
            }
            r = redisCommandArgv(ctx, (int)(7 + keys->elements), argv, argvlen);
        }
        free(argv);
        free(argvlen);
        freeReplyObject(keys);
        /* NOKEY: the keys went away (deleted, expired) in between. */
        bool ok = r && r->type == REDIS_REPLY_STATUS &&
                  (strcmp(r->str, "OK") == 0 || strcmp(r->str, "NOKEY") == 0);
        if (!ok) {
            fprintf(stderr, "testkit: MIGRATE of slot %u: %s\n", slot,
                    r && r->str ? r->str : ctx->errstr);
            freeReplyObject(r);
            rc = -EIO;
            break;
        }
        freeReplyObject(r);
    }
    redisFree(ctx);
    return rc;
}

int tk_cluster_move_slot(struct tk_cluster *c, unsigned slot, int to_node)
{
    struct cl_self self;
    if (slot >= TK_CLUSTER_SLOTS || to_node < 0 || to_node >= c->nnodes ||
        cl_myself(c, to_node, &self) < 0 || !self.master) {
        return -EINVAL;
    }
    int src = tk_cluster_master_of(c, slot);
    if (src < 0) {
        return src;
    }
    if (src == to_node) {
        return 0;
    }
    /* The order of the resharding protocol (redis-cli --cluster reshard): IMPORTING at the
     * target before MIGRATING at the source, so that an ASK always finds the target ready. */
    int rc = cl_ok(c, to_node, "SETSLOT IMPORTING",
                   cl_cmd(c, to_node, "CLUSTER SETSLOT %u IMPORTING %s", slot, c->id[src]));
    if (rc == 0) {
        rc = cl_ok(c, src, "SETSLOT MIGRATING",
                   cl_cmd(c, src, "CLUSTER SETSLOT %u MIGRATING %s", slot, c->id[to_node]));
    }
    if (rc == 0) {
        rc = cl_migrate_keys(c, slot, src, to_node);
    }
    if (rc < 0) {
        return rc;
    }
    /* The owner changes at the target first, then at the source (which then sends its shard
     * subscribers of the slot an unrequested sunsubscribe), then at the other masters. */
    rc = cl_ok(c, to_node, "SETSLOT NODE",
               cl_cmd(c, to_node, "CLUSTER SETSLOT %u NODE %s", slot, c->id[to_node]));
    if (rc == 0) {
        rc = cl_ok(c, src, "SETSLOT NODE",
                   cl_cmd(c, src, "CLUSTER SETSLOT %u NODE %s", slot, c->id[to_node]));
    }
    for (int i = 0; i < c->nnodes && rc == 0; i++) {
        if (i != src && i != to_node && c->node[i].pid > 0 && cl_myself(c, i, &self) == 0 &&
            self.master) {
            rc = cl_ok(c, i, "SETSLOT NODE",
                       cl_cmd(c, i, "CLUSTER SETSLOT %u NODE %s", slot, c->id[to_node]));
        }
    }
    return rc < 0 ? rc : tk_cluster_wait_ok(c, CLUSTER_SETTLE_MS);
}

int tk_cluster_failover(struct tk_cluster *c, int master)
{
    if (master < 0 || master >= c->nnodes) {
        return -EINVAL;
    }
    int replica = -1;
    for (int i = 0; i < c->nnodes && replica < 0; i++) {
        struct cl_self self;
        if (i != master && c->node[i].pid > 0 && cl_myself(c, i, &self) == 0 && !self.master &&
            strcmp(self.master_id, c->id[master]) == 0) {
            replica = i;
        }
    }
    if (replica < 0) {
        return -ENOENT;
    }
    /* A manual failover waits for the replica to catch up with its master, then swaps them;
     * with the master dead, FORCE skips that handshake (a majority of masters still votes). */
    int rc = cl_ok(c, replica, "FAILOVER",
                   cl_cmd(c, replica,
                          c->node[master].pid > 0 ? "CLUSTER FAILOVER" : "CLUSTER FAILOVER FORCE"));
    if (rc < 0) {
        return rc;
    }
    int64_t deadline = now_ms() + CLUSTER_SETTLE_MS;
    for (;;) {
        bool done = cl_info_has(c, replica, false, "role:master") == 1 &&
                    (c->node[master].pid <= 0 || cl_info_has(c, master, false, "role:slave") == 1);
        if (done) {
            break;
        }
        if (now_ms() >= deadline) {
            fprintf(stderr, "testkit: failover of node %d to %d did not finish\n", master, replica);
            cl_dump_log(c, replica, LOG_TAIL_BYTES);
            cl_dump_log(c, master, LOG_TAIL_BYTES);
            return -ETIMEDOUT;
        }
        sleep_ms(CLUSTER_POLL_MS);
    }
    rc = tk_cluster_wait_ok(c, remaining_ms(deadline));
    return rc < 0 ? rc : replica;
}

redisContext *tk_cluster_connect_node(const struct tk_cluster *c, int node)
{
    cr_assert(node >= 0 && node < c->nnodes, "no cluster node %d", node);
    return tk_redis_connect(&c->node[node]);
}
