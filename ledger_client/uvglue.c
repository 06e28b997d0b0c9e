/* uvglue: hiredis's async contexts on a libuv loop, giftd's own glue. */
#include "ledger_client/ledger_client_internal.h"

#include <errno.h>
#include <stdlib.h>

#include <hiredis/async.h>

/* ---- hiredis on libuv ----
 * Our own glue rather than hiredis/adapters/libuv.h, for two reasons.
 * - That adapter ignores a poll error (a peer reset shows up as one), so a dead Redis went
 *   unnoticed until the deadline. Here an error is handed to hiredis as readable, and its read
 *   finds the error and disconnects.
 * - It arms POLLOUT for every command and disarms it once written, and libuv 1.44's
 *   uv_poll_start and uv_poll_stop each cost an epoll_ctl (a DEL, then an ADD at the next
 *   poll): about 4 syscalls per loop turn that sends anything, a quarter of the node's CPU at
 *   overload. Here the commands of a loop turn are written at once by a prepare handle, just
 *   before the loop polls again, and POLLOUT is armed only while a write is left over (the
 *   socket buffer was full) or a connect is in progress. */

struct uv_glue {
    redisAsyncContext *ac;
    uv_poll_t poll;
    uv_prepare_t flush;
    int events;      /* armed on the poll handle */
    bool want_write; /* hiredis has output to write */
    int open;        /* handles not yet closed */
};

static void glue_poll(uv_poll_t *h, int status, int events)
{
    struct uv_glue *g = h->data;
    if (!g->ac) {
        return;
    }
    if (status < 0 || (events & UV_READABLE)) {
        redisAsyncHandleRead(g->ac);
        return; /* the context may be gone now */
    }
    if (events & UV_WRITABLE) {
        redisAsyncHandleWrite(g->ac);
    }
}

static void glue_arm(struct uv_glue *g, int events)
{
    if (events == g->events) {
        return;
    }
    g->events = events;
    if (events) {
        uv_poll_start(&g->poll, events, glue_poll);
    } else {
        uv_poll_stop(&g->poll);
    }
}

/* Before the loop polls: write what this turn's callbacks queued. What the socket did not
 * take waits for POLLOUT. */
static void glue_flush(uv_prepare_t *h)
{
    struct uv_glue *g = h->data;
    if (!g->ac || !g->want_write || (g->events & UV_WRITABLE)) {
        return;
    }
    redisAsyncHandleWrite(g->ac); /* calls glue_del_write once all is written */
    if (g->ac && g->want_write) {
        glue_arm(g, g->events | UV_WRITABLE);
    }
}

static void glue_add_read(void *d)
{
    struct uv_glue *g = d;
    glue_arm(g, g->events | UV_READABLE);
}

static void glue_del_read(void *d)
{
    struct uv_glue *g = d;
    glue_arm(g, g->events & ~UV_READABLE);
}

static void glue_add_write(void *d)
{
    struct uv_glue *g = d;
    g->want_write = true;
    if (!(g->ac->c.flags & REDIS_CONNECTED)) {
        glue_arm(g, g->events | UV_WRITABLE); /* a connect completes on POLLOUT */
    }
}

static void glue_del_write(void *d)
{
    struct uv_glue *g = d;
    g->want_write = false;
    glue_arm(g, g->events & ~UV_WRITABLE);
}

static void glue_closed(uv_handle_t *h)
{
    struct uv_glue *g = h->data;
    if (--g->open == 0) {
        free(g);
    }
}

static void glue_cleanup(void *d)
{
    struct uv_glue *g = d;
    g->ac = NULL;
    uv_close((uv_handle_t *)&g->poll, glue_closed);
    uv_close((uv_handle_t *)&g->flush, glue_closed);
}

int lglue_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    struct uv_glue *g = calloc(1, sizeof(*g));
    if (!g) {
        return -ENOMEM;
    }
    if (uv_poll_init(loop, &g->poll, ac->c.fd) != 0) {
        free(g);
        return -EIO;
    }
    uv_prepare_init(loop, &g->flush);
    uv_prepare_start(&g->flush, glue_flush);
    uv_unref((uv_handle_t *)&g->flush); /* it alone does not keep the loop running */
    g->open = 2;
    g->ac = ac;
    g->poll.data = g;
    g->flush.data = g;
    ac->ev.data = g;
    ac->ev.addRead = glue_add_read;
    ac->ev.delRead = glue_del_read;
    ac->ev.addWrite = glue_add_write;
    ac->ev.delWrite = glue_del_write;
    ac->ev.cleanup = glue_cleanup;
    return 0;
}
