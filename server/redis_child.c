/* redis_child: the private redis-server giftd starts when no redis.url is configured. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "server/log.h"
#include "server/redis_child.h"

static bool answers(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) {
        return false;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n >= sizeof(sa.sun_path)) {
        close(fd);
        return false;
    }
    memcpy(sa.sun_path, path, n + 1);
    bool ok = false;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        write(fd, "PING\r\n", 6) == 6) {
        char buf[16] = {0};
        struct timeval tv = {.tv_sec = 1};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        ok = read(fd, buf, sizeof(buf) - 1) > 0 && strncmp(buf, "+PONG", 5) == 0;
    }
    close(fd);
    return ok;
}

int redis_child_start(struct redis_child *rc)
{
    snprintf(rc->dir, sizeof(rc->dir), "%s/giftd-redis-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(rc->dir)) {
        return -errno;
    }
    snprintf(rc->sock, sizeof(rc->sock), "%s/redis.sock", rc->dir);
    if (strlen(rc->sock) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        rmdir(rc->dir);
        return -ENAMETOOLONG; /* a Unix socket path has at most 107 bytes: shorten TMPDIR */
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        return -errno;
    }
    if (pid == 0) {
        /* The private server must not outlive giftd, even when giftd is killed. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) {
            _exit(1);
        }
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
        }
        char logf[320];
        snprintf(logf, sizeof(logf), "%s/redis.log", rc->dir);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", rc->sock,
               "--unixsocketperm", "700", "--dir", rc->dir, "--save", "", "--appendonly", "yes",
               "--appendfsync", "everysec", "--logfile", logf, "--daemonize", "no",
               (char *)NULL);
        _exit(127);
    }
    rc->pid = pid;
    for (int i = 0; i < 200; i++) {
        if (answers(rc->sock)) {
            return 0;
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            rc->pid = 0;
            return -ECHILD;
        }
        struct timespec ts = {0, 25 * 1000000};
        nanosleep(&ts, NULL);
    }
    redis_child_stop(rc);
    return -ETIMEDOUT;
}

void redis_child_stop(struct redis_child *rc)
{
    if (rc->pid > 0) {
        kill(rc->pid, SIGTERM);
        int status;
        for (int i = 0; i < 200 && waitpid(rc->pid, &status, WNOHANG) == 0; i++) {
            struct timespec ts = {0, 25 * 1000000};
            nanosleep(&ts, NULL);
        }
        if (waitpid(rc->pid, &status, WNOHANG) == 0) {
            kill(rc->pid, SIGKILL);
            waitpid(rc->pid, &status, 0);
        }
        rc->pid = 0;
    }
    if (rc->dir[0]) {
        char cmd[600];
        const char *names[] = {"redis.sock", "redis.log", "appendonly.aof", "dump.rdb", NULL};
        for (int i = 0; names[i]; i++) {
            snprintf(cmd, sizeof(cmd), "%s/%s", rc->dir, names[i]);
            unlink(cmd);
        }
        /* Redis 7 keeps the AOF as a directory of files. */
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", rc->dir);
        if (system(cmd) != 0) {
            log_warn("could not remove %s", rc->dir);
        }
        rc->dir[0] = '\0';
    }
}
