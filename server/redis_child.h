/* redis_child: the private redis-server giftd starts when no redis.url is configured. */
#ifndef GIFTD_SERVER_REDIS_CHILD_H
#define GIFTD_SERVER_REDIS_CHILD_H

#include <sys/types.h>

/* Private redis-server child (redis_child.c). */
struct redis_child {
    pid_t pid;
    char dir[256];
    char sock[300];
};
/** Starts redis-server on a Unix socket in a new temporary directory; waits until it answers.
 * appendonly with everysec. Returns 0 or negative errno. */
int redis_child_start(struct redis_child *rc);
/** Stops the child (SIGTERM, SIGKILL after about 5 s) and removes its directory. No-op for a
 * child not started (or handed to the supervisor). */
void redis_child_stop(struct redis_child *rc);

#endif
