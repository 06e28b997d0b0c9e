/* loadtest: giftload's shared pieces — latency histogram, frame scanner, HTTP set-up client,
 * WebSocket client connections and the run state they update. */
#ifndef GIFTD_LOADTEST_H
#define GIFTD_LOADTEST_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* ---- latency histogram (log-linear, microseconds) ---------------------------------------- */

/* Values below 2^LOAD_HIST_SUB_BITS are exact; above, each power of two is split into
 * 2^(LOAD_HIST_SUB_BITS-1) buckets, so a bucket is at most 1/128 (0.8 %) of its value wide. */
#define LOAD_HIST_SUB_BITS 8
#define LOAD_HIST_MAX_EXP  42 /* values up to 2^42 us (about 50 days) */
#define LOAD_HIST_BUCKETS                                                                          \
    ((1u << LOAD_HIST_SUB_BITS) +                                                                  \
     (LOAD_HIST_MAX_EXP - LOAD_HIST_SUB_BITS + 1) * (1u << (LOAD_HIST_SUB_BITS - 1)))

struct load_hist {
    uint64_t counts[LOAD_HIST_BUCKETS];
    uint64_t total;
    uint64_t max; /* exact */
    uint64_t min; /* exact; UINT64_MAX when empty */
};

/** Empties h (caller-supplied). */
void load_hist_init(struct load_hist *h);
/** Records one value (microseconds); values beyond the range go to the last bucket. */
void load_hist_record(struct load_hist *h, uint64_t v);
/**
 * The value at quantile q (0..1) — the middle of the bucket holding the ceil(q * total)-th
 * value, never above the exact max. 0 when h is empty.
 */
uint64_t load_hist_quantile(const struct load_hist *h, double q);

/* ---- server frame scanner ---------------------------------------------------------------- */

enum load_ev_type {
    LOAD_EV_OTHER = 0,
    LOAD_EV_GIFT,
    LOAD_EV_ACK,
    LOAD_EV_ERROR,
    LOAD_EV_WELCOME,
    LOAD_EV_JOINED,
    LOAD_EV_ROOM_CLOSED,
};

/* One server event. Strings point into the scanned frame (borrowed, not NUL-terminated). */
struct load_ev {
    enum load_ev_type type;
    const char *id; /* top-level "id" string, NULL when absent */
    size_t id_len;
    const char *code; /* top-level "code" string (errors), NULL when absent */
    size_t code_len;
    int64_t seq;    /* top-level "seq", -1 when absent */
    bool duplicate; /* top-level "duplicate" is true */
};

typedef void (*load_ev_cb)(void *ud, const struct load_ev *ev);

/**
 * Scans one server text frame (buf: len bytes, borrowed) without building a JSON tree: only
 * the top-level keys type, id, code, seq and duplicate are read, nested values are skipped
 * (string-aware). A {"type":"batch","events":[…]} frame calls cb once per element object, in
 * order; any other object calls cb once. Returns the number of events reported, or -EINVAL
 * when the frame is not a JSON object (events reported before the error stay reported).
 */
int load_scan_frame(const char *buf, size_t len, load_ev_cb cb, void *ud);

/**
 * Counts the gift events of a frame the cheap way: a frame starting {"type":"gift" is one;
 * a frame starting {"type":"batch" counts the occurrences of "type":"gift" (which cannot occur
 * inside a JSON string: every quote in a string is escaped). Returns the count, or -1 when the
 * frame has neither shape and must go through load_scan_frame.
 */
long load_count_gifts(const char *buf, size_t len);

/**
 * Reads the send time giftload put in a gift id "<sender>-<n>-<t_us>": the decimal digits after
 * the last '-'. Returns 0 and *out_us, or -EINVAL when the id has no such tail.
 */
int load_id_time(const char *id, size_t len, uint64_t *out_us);

/* ---- blocking HTTP (set-up only) ---------------------------------------------------------- */

/**
 * One HTTP/1.1 request with "Connection: close" to addr (borrowed), Host header host (borrowed).
 * token and body (JSON text) may be NULL. Reads until the server closes (timeout_ms bounds the
 * exchange). *out_status gets the status, *out_body a **new** NUL-terminated body (free()).
 * Returns 0 or a negative errno.
 */
int load_http(const struct sockaddr_in *addr, const char *host, const char *method,
              const char *path, const char *token, const char *body, int timeout_ms,
              int *out_status, char **out_body);

/* ---- the run ----------------------------------------------------------------------------- */

#define LOAD_MAX_CODES 32 /* distinct error / failure strings kept per map */

/* A small string → count map (error codes, failure reasons); overflow goes to "other". */
struct load_codes {
    char name[LOAD_MAX_CODES][48];
    uint64_t n[LOAD_MAX_CODES];
    int used;
};

/** Adds one to name (s: len bytes, borrowed). */
void load_codes_add(struct load_codes *c, const char *s, size_t len);

enum load_conn_state {
    LOAD_CONN_IDLE = 0,   /* not opened yet */
    LOAD_CONN_CONNECTING, /* TCP connect under way */
    LOAD_CONN_HANDSHAKE,  /* upgrade request sent, waiting for 101 */
    LOAD_CONN_OPEN,       /* upgraded, waiting for joined */
    LOAD_CONN_JOINED,     /* received joined: counted in its room */
    LOAD_CONN_CLOSING,    /* uv_close called */
    LOAD_CONN_CLOSED,
};

struct load;

/* One WebSocket client connection (viewer or sender). Lives in load.conns. */
struct load_conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    struct load *L;
    uint32_t idx;  /* index in load.conns; viewers first, then senders */
    uint32_t room; /* room index */
    uint8_t state; /* enum load_conn_state */
    bool sender;
    bool sampled; /* measures latency */
    bool failed;  /* counted as a connect failure */
    bool got_close_frame;
    uint8_t msg_op;      /* opcode of a fragmented message being assembled, 0 when none */
    uint16_t close_code; /* from the server's close frame */
    char *rbuf;          /* bytes of an incomplete frame (or of the HTTP answer) */
    size_t rlen, rcap;
    char *msg; /* a fragmented message being assembled */
    size_t mlen, mcap;
    char accept[32];    /* expected Sec-WebSocket-Accept during the handshake */
    uint64_t t_open_ns; /* uv_hrtime when the connect started */
    uint64_t gifts_sent;
};

struct load_room {
    uint32_t joined; /* connections of this room that got joined and are still open */
};

/* Scenario (command line). */
struct load_opts {
    char url[256];
    char host[128];
    int port;
    char path[128];
    uint32_t viewers, rooms, senders;
    double rate;     /* gifts/s over all senders */
    char mix[512];   /* "rose:10,heart_me:3" */
    long count;      /* gift count field */
    double duration; /* s */
    double ramp_up;  /* s */
    double connect_rate;
    double connect_timeout; /* s per connection */
    double drain;           /* s, upper bound */
    char secret[256];
    bool setup;
    long coins;
    char prefix[32];
    double sample;
    char json_path[512];
    char windows_path[512]; /* --windows: one JSON line per window of the send phase */
    double window;          /* s, --window */
    bool quiet;
    bool full_scan; /* no pattern counting on non-sampled viewers */
    char source_addrs[512];
    uint64_t seed;
};

struct load_gift {
    char id[65];
    uint32_t weight;
};

enum load_phase {
    LOAD_PHASE_CONNECT = 0,
    LOAD_PHASE_SEND,
    LOAD_PHASE_DRAIN,
    LOAD_PHASE_DONE,
};

struct load {
    struct load_opts o;
    uv_loop_t *loop;
    struct sockaddr_in server;
    struct in_addr *src; /* source addresses, nsrc of them (none: the kernel picks) */
    uint32_t nsrc;
    struct load_gift gifts[32];
    uint32_t ngifts, gift_weight_total;

    struct load_conn *conns;
    uint32_t nconns;
    struct load_room *rooms;
    char (*room_names)[65];

    enum load_phase phase;
    uint64_t rng;
    uint64_t t0_ns;          /* start of the connect phase */
    uint64_t t_last_join_ns; /* last joined */
    uint64_t t_send_ns;      /* start of the send phase */
    uint64_t t_send_end_ns;  /* end of the send phase */
    uint64_t t_drain_start_ns;
    uint64_t t_drain_end_ns;
    uint64_t t_last_delivery_ns;
    uint64_t now_ns; /* uv_hrtime of the read being processed, 0 until needed */
    char *readbuf;   /* shared by every read: frames are consumed before the next read */
    size_t readbuf_len;

    uint32_t opened; /* connections started */
    uint32_t joined; /* currently joined */
    uint32_t ever_joined;
    uint32_t settled; /* joined or failed */
    uint64_t connect_failures;
    struct load_codes connect_errors;
    struct load_codes closed_early;

    uint64_t gifts_total; /* gift slots of the send phase: rate × duration */
    uint64_t gift_slots;  /* slots passed so far (sent, or unsent: no sender was joined) */
    uint64_t gifts_unsent;
    uint64_t room_closed_events;
    uint64_t gifts_sent, gifts_acked, gifts_duplicate, gifts_rejected_n;
    uint32_t next_sender;
    struct load_codes gifts_rejected;
    struct load_codes errors_other;
    uint64_t deliveries, expected;
    uint64_t deliveries_at_tick;
    uint64_t frames, batch_frames, bytes_in;
    uint64_t latency_samples_dropped; /* gift events on sampled viewers without our id */
    struct load_hist hist;
    struct load_hist answer_hist; /* send -> the sender's ack or error, every send */
    uint64_t t_last_answer_ns;
    /* --windows: the same, for the current window only, and the counts at its start. */
    struct load_hist win_hist, win_answer_hist;
    uint64_t win_deliveries, win_acked, win_rejected, win_sent;
    uint64_t win_t_ns;
    FILE *windows;
    uv_timer_t t_window;

    uv_timer_t t_send, t_tick, t_control;
    uv_signal_t sigint, sigterm; /* first: stop sending and drain; second: stop */
    bool interrupted;
    bool stderr_tty;
    char *service_token;
};

/**
 * Starts connection c (state IDLE): binds its source address, connects, and on success sends
 * the upgrade request for ?token=…&room=…. Failures are recorded in L (connect_failures).
 */
void load_conn_open(struct load *L, struct load_conn *c);

/** Sends one masked text frame on an open connection. Returns 0 or a negative errno. */
int load_conn_send_text(struct load_conn *c, const char *text, size_t len);

/**
 * Closes c (any state) without counting it as closed early — the end of the run or a
 * connect timeout (reason non-NULL: counted as a connect failure with that reason).
 */
void load_conn_close(struct load_conn *c, const char *reason);

/** uv_hrtime() of the read being processed (taken once per read, on first use). */
static inline uint64_t load_now_ns(struct load *L)
{
    if (L->now_ns == 0) {
        L->now_ns = uv_hrtime();
    }
    return L->now_ns;
}

/** Called by the connection code for each server event of c (defined in giftload.c). */
void load_on_event(struct load_conn *c, const struct load_ev *ev);

/** Called when c got joined or failed to (giftload.c: bookkeeping of the phases). */
void load_on_settled(struct load_conn *c);

#endif
