/* workers: the supervisor of several worker processes serving one port (SO_REUSEPORT). Each
 * worker is a whole giftd node (its own loop, Redis connections and subscriptions), so
 * fan-out across workers is the same path as across machines. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "server/log.h"
#include "server/workers.h"

#define WORKERS_MAX 256

static pid_t spawn(int index, int *out_index)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* A worker must not outlive its supervisor. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) {
            _exit(1);
        }
        *out_index = index;
        return 0;
    }
    return pid;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int workers_supervise(long n, int *out_index)
{
    if (n > WORKERS_MAX) {
        n = WORKERS_MAX;
    }
    pid_t pids[WORKERS_MAX] = {0};
    int64_t started[WORKERS_MAX] = {0};
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, &old);
    for (long i = 0; i < n; i++) {
        pid_t pid = spawn((int)i, out_index);
        if (pid == 0) {
            sigprocmask(SIG_SETMASK, &old, NULL);
            return -1; /* the worker goes on to serve */
        }
        if (pid < 0) {
            log_err("fork: %s", strerror(errno));
            continue;
        }
        pids[i] = pid;
        started[i] = mono_ms();
    }
    log_info("supervisor: %ld workers serving", n);
    int stopping = 0;
    int64_t stop_deadline = 0;
    for (;;) {
        /* Reap and restart. */
        int status;
        pid_t dead;
        while ((dead = waitpid(-1, &status, WNOHANG)) > 0) {
            for (long i = 0; i < n; i++) {
                if (pids[i] != dead) {
                    continue;
                }
                pids[i] = 0;
                if (stopping) {
                    break;
                }
                log_warn("worker %ld (pid %d) died (%s %d); restarting", i, (int)dead,
                         WIFSIGNALED(status) ? "signal" : "exit",
                         WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
                /* A worker that dies at once again and again is restarted at most once a
                 * second, so a broken configuration does not spin. */
                if (mono_ms() - started[i] < 1000) {
                    struct timespec ts = {1, 0};
                    nanosleep(&ts, NULL);
                }
                pid_t pid = spawn((int)i, out_index);
                if (pid == 0) {
                    sigprocmask(SIG_SETMASK, &old, NULL);
                    return -1;
                }
                pids[i] = pid > 0 ? pid : 0;
                started[i] = mono_ms();
                break;
            }
        }
        long alive = 0;
        for (long i = 0; i < n; i++) {
            alive += pids[i] > 0;
        }
        if (stopping && alive == 0) {
            log_info("supervisor: all workers stopped");
            return 0;
        }
        if (stopping && mono_ms() > stop_deadline) {
            for (long i = 0; i < n; i++) {
                if (pids[i] > 0) {
                    log_warn("worker %ld (pid %d) did not stop: SIGKILL", i, (int)pids[i]);
                    kill(pids[i], SIGKILL);
                }
            }
            stop_deadline = mono_ms() + 60000;
        }
        struct timespec wait = {0, 200 * 1000000};
        int sig = sigtimedwait(&set, NULL, &wait);
        if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP) {
            /* Pass it on: SIGHUP reloads each worker's catalog; SIGTERM/SIGINT stop them. */
            for (long i = 0; i < n; i++) {
                if (pids[i] > 0) {
                    kill(pids[i], sig);
                }
            }
            if (sig != SIGHUP && !stopping) {
                stopping = 1;
                stop_deadline = mono_ms() + 15000;
                log_info("supervisor: %s: stopping %ld workers", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                         alive);
            }
        }
    }
}
