/* pending: Redis requests in flight for a session or an HTTP request (ws.c), detached from
 * their owner when it goes away. */
#ifndef GIFTD_SERVER_PENDING_H
#define GIFTD_SERVER_PENDING_H

#include "protocol/protocol.h"

struct app;
struct http_req;
struct session;

/* An asynchronous Redis request made on behalf of a session (or an HTTP call): detached from
 * its owner when the owner goes away, so a late reply finds no dangling pointer. */
struct pending {
    struct pending *next, *prev;
    struct pending **list; /* the owner's list head, NULL once detached */
    struct session *s;     /* owner session (NULL for HTTP or after detach) */
    struct http_req *h;    /* owner HTTP request */
    struct app *app;
    /* Request-specific state. */
    char room[65];
    char id[65];
    char sub[65];
    char name[65];
    long cost;
    int stage;
    char creator_id[65];
    struct proto_resume resume; /* a join's since_seq and epoch */
    long long seq, epoch;       /* a join's: the room's seq and epoch as its presence read them */
    long long viewers;          /* a join's: the room's viewers then */
    char *goal_json;            /* a join's: the room's goal then (owned; join_release frees it) */
    struct pending *park_next;  /* a join waiting for its room's subscription */
};

/** Allocates a pending request owned by s or h. Returns NULL on OOM. */
struct pending *pending_new(struct app *app, struct session *s, struct http_req *h);
/** After a typed ledger operation started with ud = p returned 0: links p to its owner
 * (detached when the owner goes away) and counts it against the session's back-pressure.
 * The operation's callback must call pending_answered(p) first. */
void pending_track(struct pending *p);
/** First step of a typed callback whose ud is a tracked p: p's request is answered (unlinked,
 * back-pressure released). p->s / p->h then name its owner, NULL when the owner went away;
 * the callback still frees p. */
void pending_answered(struct pending *p);
/** Detaches every pending request of a list (their replies will be ignored). */
void pending_detach_all(struct pending **list);

#endif
