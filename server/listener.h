/* listener: giftd's own listening socket (SO_REUSEPORT); accepted sockets are adopted by lws. */
#ifndef GIFTD_SERVER_LISTENER_H
#define GIFTD_SERVER_LISTENER_H

struct app;

/** Binds and listens on cfg.listen and polls the socket on app's loop. Returns 0, -EINVAL
 * (the address does not parse or resolve) or -EADDRINUSE (no address could be bound). */
int listener_start(struct app *app);
/** Stops accepting; the socket is closed once its poll handle is. No-op when not listening. */
void listener_stop(struct app *app);

#endif
