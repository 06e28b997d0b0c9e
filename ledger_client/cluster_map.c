/* cluster_map: Redis Cluster key slots, the slot map of CLUSTER SLOTS, MOVED / ASK replies. */
#include "ledger_client/ledger_client_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

/* CRC16-XMODEM (polynomial 0x1021, initial value 0), bit by bit. */
static uint16_t crc16(const char *s, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)s[i] << 8);
        for (int b = 0; b < 8; b++) {
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
        }
    }
    return crc;
}

unsigned lslot_of(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1) {
            return crc16(open + 1, (size_t)(close - open - 1)) & 16383;
        }
    }
    return crc16(key, len) & 16383;
}

int lslot_map_node(struct lslot_map *m, const char *host, int port)
{
    for (size_t i = 0; i < m->nnodes; i++) {
        if (m->nodes[i].port == port && strcmp(m->nodes[i].host, host) == 0) {
            return (int)i;
        }
    }
    struct lslot_node *n = realloc(m->nodes, (m->nnodes + 1) * sizeof(*n));
    if (!n) {
        return -ENOMEM;
    }
    m->nodes = n;
    snprintf(n[m->nnodes].host, sizeof(n[m->nnodes].host), "%s", host);
    n[m->nnodes].port = port;
    return (int)m->nnodes++;
}

void lslot_map_free(struct lslot_map *m)
{
    free(m->nodes);
    m->nodes = NULL;
    m->nnodes = 0;
}

int lslot_map_from_reply(const struct redisReply *r, const char *asked_host, int asked_port,
                         struct lslot_map *out)
{
    memset(out, 0, sizeof(*out));
    for (int s = 0; s < 16384; s++) {
        out->owner[s] = -1;
    }
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        return -EINVAL;
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *range = r->element[i];
        if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 ||
            range->element[0]->type != REDIS_REPLY_INTEGER ||
            range->element[1]->type != REDIS_REPLY_INTEGER ||
            range->element[2]->type != REDIS_REPLY_ARRAY || range->element[2]->elements < 2) {
            lslot_map_free(out);
            return -EINVAL;
        }
        long long lo = range->element[0]->integer, hi = range->element[1]->integer;
        const redisReply *master = range->element[2];
        const redisReply *ip = master->element[0], *port = master->element[1];
        if (lo < 0 || hi > 16383 || lo > hi || port->type != REDIS_REPLY_INTEGER) {
            lslot_map_free(out);
            return -EINVAL;
        }
        const char *host = ip->type == REDIS_REPLY_STRING && ip->len > 0 ? ip->str : asked_host;
        int port_n =
            ip->type == REDIS_REPLY_STRING && ip->len > 0 ? (int)port->integer : (int)port->integer;
        (void)asked_port;
        int n = lslot_map_node(out, host, port_n);
        if (n < 0) {
            lslot_map_free(out);
            return n;
        }
        for (long long s = lo; s <= hi; s++) {
            out->owner[s] = (int16_t)n;
        }
    }
    return 0;
}

int lslot_parse_redirect(const char *err, size_t len, bool *out_ask, unsigned *out_slot, char *host,
                         size_t hostlen, int *out_port)
{
    char buf[320];
    if (len >= sizeof(buf)) {
        return -EINVAL;
    }
    memcpy(buf, err, len);
    buf[len] = '\0';
    bool ask = strncmp(buf, "ASK ", 4) == 0;
    if (!ask && strncmp(buf, "MOVED ", 6) != 0) {
        return -EINVAL;
    }
    char *p = buf + (ask ? 4 : 6);
    char *end;
    unsigned long slot = strtoul(p, &end, 10);
    if (end == p || *end != ' ' || slot > 16383) {
        return -EINVAL;
    }
    char *addr = end + 1;
    char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= hostlen) {
        return -EINVAL;
    }
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || port < 1 || port > 65535) {
        return -EINVAL;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    *out_ask = ask;
    *out_slot = (unsigned)slot;
    *out_port = (int)port;
    return 0;
}
