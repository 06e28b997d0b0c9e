/* workers: the supervisor of several worker processes serving one port (SO_REUSEPORT). */
#ifndef GIFTD_SERVER_WORKERS_H
#define GIFTD_SERVER_WORKERS_H

/** Forks n worker processes and supervises them (restarts the dead, passes SIGTERM, SIGINT
 * and SIGHUP on). Returns -1 in a worker (out_index set: 0..n-1) and the exit code in the
 * supervisor once every worker stopped. */
int workers_supervise(long n, int *out_index);

#endif
