/* ledger_client internals: the keyspace. Only files of ledger_client/ include this. */
#ifndef GIFTD_LEDGER_CLIENT_INTERNAL_H
#define GIFTD_LEDGER_CLIENT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "ledger_client/ledger_client.h"

#include <uv.h>

struct ledger;
struct ledger_opts;
struct lgift_queue;

/* ---- between the transport and the gift sends ---- */
/** ledger_script whose deadline runs from start_ms (ledger_now_ms clock) instead of now: a
 * batch answers by the deadline of the oldest send in it. */
int lscript_since(struct ledger *l, enum ledger_script script, int argc, const char *const *argv,
                  const size_t *argvlen, ledger_reply_cb *cb, void *ud, int64_t start_ms);
/** The options the ledger was made with (borrowed, valid while it lives). */
const struct ledger_opts *lgift_opts(const struct ledger *l);
/** The ledger's queue of gift sends. */
struct lgift_queue *lgift_queue_of(struct ledger *l);
/** **new** queue on loop, or NULL on OOM; freed by lgift_queue_free (answers what is queued
 * -ECANCELED; memory goes when the loop runs again). */
struct lgift_queue *lgift_queue_new(struct ledger *l, uv_loop_t *loop);
void lgift_queue_free(struct lgift_queue *q);

/* Every key giftd writes starts with "giftd:" and carries a hash tag, so that the scripts run
 * unchanged on one Redis or a Redis Cluster: a room's keys are tagged "{r:<room>}", a user's
 * keys and what a debit writes live in the user's partition "{p<n>}" (n = ledger_partition). */

/** A room's key: "giftd:{r:<room>}:<suffix>". */
void lkey_room(char *out, size_t len, const char *room, const char *suffix);
/** A room's pub/sub channel: "giftd:room:<room>". */
void lkey_channel(char *out, size_t len, const char *room);
/** The prefix of partition n's keys: "giftd:{p<n>}:". */
void lkey_partition(char *out, size_t len, unsigned n);
/** A partition-wide key: "giftd:{p<n>}:<suffix>". */
void lkey_partition_key(char *out, size_t len, unsigned n, const char *suffix);
/** A user's key in the user's partition: "giftd:{p<n>}:<kind>:<sub>". */
void lkey_user(char *out, size_t len, long partitions, const char *kind, const char *sub);
/** The current UTC day, "YYYYMMDD" (the day of the daily budget). */
void lkey_utc_day(char *out, size_t len);
/** The key of sub's coins spent on the current UTC day (daily budget). */
void lkey_spent_today(char *out, size_t len, long partitions, const char *sub);
/** The room of a channel name (borrowed bytes), copied to out (65 bytes). -EINVAL when the
 * channel is not a room channel. */
int lkey_channel_room(const char *channel, size_t chlen, char out[65]);

#endif
