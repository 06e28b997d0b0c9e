/* rooms: this node's rooms and their fan-out — viewers, a ring of encoded events per room,
 * pub/sub, presence, combos. */
#ifndef GIFTD_SERVER_ROOMS_H
#define GIFTD_SERVER_ROOMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct app;
struct ledger_presence_req;
struct session;

/* A batch frame stops growing once it holds this many bytes (one more event may follow). */
#define FANOUT_BATCH_MAX_BYTES (256 * 1024)
/* The most lws sends in one send(): a whole batch frame, its last event and its header. */
#define FANOUT_TX_MAX (FANOUT_BATCH_MAX_BYTES + 64 * 1024)
/* Frames written per slice of a pass (each costs about 10-20 us of CPU on loopback). */
#define FANOUT_SLICE 32

/* One encoded room event, shared by every viewer of the room on this node. */
struct fanout_msg {
    uint64_t seq;            /* room seq, 0 for events without one */
    long long epoch;         /* the epoch of seq (0 for events without one) */
    struct fanout_msg *next; /* while held back by a gap fill */
    bool closes_room;        /* room_closed: viewers leave the room after it */
    size_t len;              /* text length */
    unsigned char buf[];     /* LWS_PRE bytes of headroom, then the text */
};

/** **new** message holding a copy of text (len bytes), or NULL on OOM. */
struct fanout_msg *fanout_msg_new(const char *text, size_t len);

/* A room on this node: its local viewers and its ring of recent events. */
struct room {
    char name[65];
    struct room *hnext; /* hash chain */
    struct app *app;
    struct session *viewers; /* doubly linked through session->rnext/rprev */
    long nviewers;
    long joining;  /* joins awaiting Redis */
    long reported; /* count last written to the presence hash, -1 never */
    bool live;
    char creator_id[65];
    char creator_name[65];
    bool subscribed;
    /* Redis confirmed the room's subscription (once is enough): until then a join waits
     * (parked, at most ledger.timeout_ms), so that nothing published between its read of the
     * room and the subscription is missed. */
    bool confirmed;
    struct pending *parked, *parked_tail; /* joins waiting for that, in order */
    struct room *pnext, **pprev;          /* the app's list of rooms with parked joins */
    int64_t parked_ms;                    /* since when the oldest has waited (uv_now) */
    unsigned opened_gen;                  /* counts the openings the node heard of */
    bool close_made;                      /* a gap fill passed on a room_closed it found */
    bool dirty;                           /* has events not yet passed to all its viewers */
    struct room *dnext;                   /* the app's list of dirty rooms */
    struct session *pass_next; /* where the pass over the viewers resumes, NULL: a new pass */
    uint64_t pass_head;        /* head when the current pass began */
    int64_t combo_due_ms;      /* a combo of this room may end at this time, 0 none known */
    bool combo_sweeping;       /* a combo sweep of this room awaits Redis */
    struct fanout_msg **ring;  /* ring_cap slots, indexed by absolute position % ring_cap */
    size_t ring_cap;
    uint64_t head;    /* absolute position of the next event */
    uint64_t tail;    /* events before it are freed (sent to every viewer, or overwritten) */
    uint64_t trim_at; /* head at which to look for events to free next */
    /* The seq events passed to the ring follow one another: a seq that jumps is held back
     * (with whatever follows it) until the missing events are read from the room's history
     * (ARCHITECTURE "History and resume"); a repeated one is dropped. */
    long long epoch;                     /* of the last seq passed on, 0 none yet */
    uint64_t last_seq;                   /* the last seq passed on */
    bool filling;                        /* a history read is filling a gap */
    unsigned fill_gen;                   /* tells a late fill reply from the current one */
    struct fanout_msg *held, *held_tail; /* messages that arrived during the fill */
};

/** The room record for name, created (empty, not subscribed) when create is true. */
struct room *rooms_get(struct app *app, const char *name, bool create);
/** Frees a room with no viewers (unsubscribing). */
void rooms_release(struct app *app, struct room *room);
/** Appends an event to the room's ring and wakes its viewers. steals msg. */
void rooms_broadcast(struct room *room, struct fanout_msg *msg);
/** End of a loop turn (uv_check): sends the new events of the dirty rooms to their viewers,
 * directly where their sockets take them, through WRITEABLE where they do not. One call
 * writes at most FANOUT_SLICE frames; an unfinished pass resumes after the next poll (which
 * then does not wait), so new input is taken between slices of a long pass. */
void rooms_fanout_pass(struct app *app);
/** WRITEABLE step for room events: one frame with everything pending (a batch when several).
 * Returns -1 when the session must close (slow consumer or write failure). */
int fanout_write(struct session *s);
/** Adds a session to a room's local viewers; its cursor starts after the event with seq
 * after_seq still in the ring (so events that raced the join are not lost). */
void rooms_attach(struct room *room, struct session *s, uint64_t after_seq);
/** Removes a session from its room (releasing the room when it was the last). */
void rooms_detach(struct session *s);
/** Pub/sub message from Redis for a room (name and msg borrowed, valid during the call);
 * epoch: that of a seq-carrying event, else 0. */
void rooms_on_message(struct app *app, const char *room, long long epoch, const char *msg,
                      size_t len);
/** The room was opened (again): live, and a gap fill asked for before does not close it. */
void rooms_opened(struct room *room);
/** What a join read of the room: its seq and epoch then. A room whose stream has not
 * started takes it as the seq its next event follows. */
void rooms_note_seq(struct room *room, long long epoch, uint64_t seq);
/** The ring position of the event with seq since + 1 of epoch, when the ring still holds it
 * and every seq event after it (a resume served without Redis); else false. */
bool rooms_ring_from(const struct room *room, long long epoch, uint64_t since, uint64_t *out_pos);
/** Subscribes again to every room with local viewers (after a pub/sub reconnect), and reads
 * what each missed from its history. */
void rooms_resubscribe(struct app *app);
/* The presence work of one interval is spread over this many ticks (a slice of the rooms
 * each), so that a thousand rooms do not all run their presence script, and publish their
 * leaderboards to every viewer, in the same millisecond. */
#define ROOMS_PRESENCE_SLICES 32
/** Writes this node's viewer counts to Redis for rooms whose count changed or needs refresh:
 * the rooms of slice (0 .. ROOMS_PRESENCE_SLICES-1), or all of them when slice is -1. */
void rooms_presence_tick(struct app *app, bool refresh_all, int slice);
/** Ends due combos of rooms this node serves (timer). */
void rooms_combo_tick(struct app *app);
/** Ends a room's due combos (all: every open combo, the room is closing). */
void rooms_combo_sweep(struct app *app, const char *room, bool all);
/** Fills the presence request of room (name borrowed by out) with this node's count (< 0:
 * only read); publish says whether the ledger may publish viewers/leaderboard events. */
void rooms_presence_req(const struct app *app, struct ledger_presence_req *out, const char *room,
                        long count, bool publish);
/** Frees every room (shutdown). */
void rooms_free_all(struct app *app);

#endif
