/* keys: the ledger's keyspace — every key name, hash tag and channel giftd uses. */
#include "ledger_client/ledger_client.h"
#include "ledger_client/ledger_client_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define CHANNEL_PREFIX "giftd:{r:"
#define CHANNEL_SUFFIX "}:ch"

void lkey_room(char *out, size_t len, const char *room, const char *suffix)
{
    snprintf(out, len, "giftd:{r:%s}:%s", room, suffix);
}

void lkey_channel(char *out, size_t len, const char *room)
{
    snprintf(out, len, CHANNEL_PREFIX "%s" CHANNEL_SUFFIX, room);
}

void lkey_channel_arg(char *out, size_t len, const struct ledger *l, const char *room)
{
    snprintf(out, len, "%c" CHANNEL_PREFIX "%s" CHANNEL_SUFFIX, lreq_sharded(l) ? 'S' : 'P', room);
}

void lkey_partition(char *out, size_t len, unsigned n)
{
    snprintf(out, len, "giftd:{p%u}:", n);
}

void lkey_partition_key(char *out, size_t len, unsigned n, const char *suffix)
{
    snprintf(out, len, "giftd:{p%u}:%s", n, suffix);
}

void lkey_user(char *out, size_t len, long partitions, const char *kind, const char *sub)
{
    snprintf(out, len, "giftd:{p%u}:%s:%s", ledger_partition(sub, partitions), kind, sub);
}

void lkey_utc_day(char *out, size_t len)
{
    time_t t = (time_t)(ledger_now_ms() / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, "%Y%m%d", &tm);
}

int lkey_channel_room(const char *channel, size_t chlen, char out[65])
{
    size_t n = sizeof(CHANNEL_PREFIX) - 1, m = sizeof(CHANNEL_SUFFIX) - 1;
    if (chlen <= n + m || chlen > n + m + 64 || memcmp(channel, CHANNEL_PREFIX, n) != 0 ||
        memcmp(channel + chlen - m, CHANNEL_SUFFIX, m) != 0) {
        return -EINVAL;
    }
    memcpy(out, channel + n, chlen - n - m);
    out[chlen - n - m] = '\0';
    return 0;
}
