/* cluster_map: Redis Cluster key slots, the slot map from CLUSTER SLOTS, MOVED/ASK redirects. */
#include "ledger_client/ledger_client_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CRC16-XMODEM (polynomial 0x1021, initial value 0, no reflection, no final xor), bit by bit:
 * keys are short, and a table would be a global built at start-up or 512 bytes of constants. */
static uint16_t crc16_xmodem(const unsigned char *p, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int bit = 0; bit < 8; bit++) {
            uint16_t top = crc & 0x8000;
            crc = (uint16_t)(crc << 1);
            if (top) {
                crc ^= 0x1021;
            }
        }
    }
    return crc;
}

unsigned lslot_of(const char *key, size_t len)
{
    /* Redis's rule (cluster.c keyHashSlot): the tag is between the first '{' and the first '}'
     * after it; with no '{', no '}' after it, or nothing between them, the whole key counts. */
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1) {
            key = open + 1;
            len = (size_t)(close - key);
        }
    }
    return crc16_xmodem((const unsigned char *)key, len) & (LSLOT_COUNT - 1);
}

void lslot_map_free(struct lslot_map *m)
{
    if (!m) {
        return;
    }
    free(m->nodes);
    m->nodes = NULL;
    m->nnodes = 0;
    for (size_t i = 0; i < LSLOT_COUNT; i++) {
        m->owner[i] = -1;
    }
}

int lslot_map_node(struct lslot_map *m, const char *host, int port)
{
    size_t hlen = strlen(host);
    if (hlen >= sizeof(m->nodes[0].host) || port < 1 || port > 65535) {
        return -EINVAL;
    }
    for (size_t i = 0; i < m->nnodes; i++) {
        if (m->nodes[i].port == port && strcmp(m->nodes[i].host, host) == 0) {
            return (int)i;
        }
    }
    if (m->nnodes >= INT16_MAX) {
        return -ENOMEM;
    }
    struct lslot_node *nodes = realloc(m->nodes, (m->nnodes + 1) * sizeof(*nodes));
    if (!nodes) {
        return -ENOMEM;
    }
    m->nodes = nodes;
    memcpy(nodes[m->nnodes].host, host, hlen + 1);
    nodes[m->nnodes].port = port;
    return (int)m->nnodes++;
}

/* One range of a CLUSTER SLOTS reply: [start, end, master, replica…], a node being
 * [ip, port, id, (Redis 7) metadata]. Fills the master's slots of m. */
static int map_range(const redisReply *r, const char *asked_host, int asked_port,
                     struct lslot_map *m)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER ||
        r->element[2]->type != REDIS_REPLY_ARRAY || r->element[2]->elements < 2) {
        return -EINVAL;
    }
    long long start = r->element[0]->integer;
    long long end = r->element[1]->integer;
    const redisReply *ip = r->element[2]->element[0];
    const redisReply *port = r->element[2]->element[1];
    if (start < 0 || end < start || end >= LSLOT_COUNT || port->type != REDIS_REPLY_INTEGER ||
        port->integer < 0 || port->integer > 65535 ||
        (ip->type != REDIS_REPLY_STRING && ip->type != REDIS_REPLY_NIL)) {
        return -EINVAL;
    }
    char host[sizeof(m->nodes[0].host)];
    if (ip->type == REDIS_REPLY_NIL || ip->len == 0) {
        /* The node does not know its address (a NIL IP with cluster-preferred-endpoint-type
         * unknown-endpoint; "" before any MEET): the address we asked, with its port. */
        if (strlen(asked_host) >= sizeof(host)) {
            return -EINVAL;
        }
        snprintf(host, sizeof(host), "%s", asked_host);
    } else if (ip->len == 1 && ip->str[0] == '?') {
        return 0; /* no usable endpoint (preferred type hostname, none announced): unknown */
    } else if (ip->len < sizeof(host) && !memchr(ip->str, '\0', ip->len)) {
        memcpy(host, ip->str, ip->len + 1);
    } else {
        return -EINVAL;
    }
    int idx = lslot_map_node(m, host, port->integer > 0 ? (int)port->integer : asked_port);
    if (idx < 0) {
        return idx;
    }
    for (long long s = start; s <= end; s++) {
        m->owner[s] = (int16_t)idx;
    }
    return 0;
}

int lslot_map_from_reply(const redisReply *cluster_slots, const char *asked_host, int asked_port,
                         struct lslot_map *out)
{
    out->nodes = NULL;
    out->nnodes = 0;
    for (size_t i = 0; i < LSLOT_COUNT; i++) {
        out->owner[i] = -1;
    }
    if (!cluster_slots || cluster_slots->type != REDIS_REPLY_ARRAY) {
        return -EINVAL;
    }
    for (size_t i = 0; i < cluster_slots->elements; i++) {
        int rc = map_range(cluster_slots->element[i], asked_host, asked_port, out);
        if (rc < 0) {
            lslot_map_free(out);
            return rc;
        }
    }
    return 0;
}

/* Reads a decimal number of p[0..len) that ends at the end or at a space; *out_used: its digits.
 * -1 when there is none, or it is above max. */
static long read_number(const char *p, size_t len, long max, size_t *out_used)
{
    long v = 0;
    size_t i = 0;
    while (i < len && p[i] >= '0' && p[i] <= '9') {
        v = v * 10 + (p[i] - '0');
        if (v > max) {
            return -1;
        }
        i++;
    }
    *out_used = i;
    return i == 0 ? -1 : v;
}

int lslot_parse_redirect(const char *err, size_t len, bool *out_ask, unsigned *out_slot, char *host,
                         size_t hostlen, int *out_port)
{
    bool ask;
    size_t at;
    if (len > 6 && memcmp(err, "MOVED ", 6) == 0) {
        ask = false;
        at = 6;
    } else if (len > 4 && memcmp(err, "ASK ", 4) == 0) {
        ask = true;
        at = 4;
    } else {
        return -EINVAL;
    }
    size_t used;
    long slot = read_number(err + at, len - at, LSLOT_COUNT - 1, &used);
    at += used;
    if (slot < 0 || at >= len || err[at] != ' ') {
        return -EINVAL;
    }
    at++;
    /* host:port, split at the last ':' (an IPv6 host holds colons); an empty host means the
     * node we asked (Redis 7 with cluster-preferred-endpoint-type unknown-endpoint). */
    const char *ep = err + at;
    size_t eplen = len - at;
    const char *colon = NULL;
    for (size_t i = 0; i < eplen; i++) {
        if (ep[i] == ' ' || ep[i] == '\0' || ep[i] == '\r' || ep[i] == '\n') {
            return -EINVAL;
        }
        if (ep[i] == ':') {
            colon = ep + i;
        }
    }
    if (!colon) {
        return -EINVAL;
    }
    size_t hlen = (size_t)(colon - ep);
    size_t plen = eplen - hlen - 1;
    long port = read_number(colon + 1, plen, 65535, &used);
    if (port < 1 || used != plen || hlen >= hostlen) {
        return -EINVAL;
    }
    memcpy(host, ep, hlen);
    host[hlen] = '\0';
    *out_ask = ask;
    *out_slot = (unsigned)slot;
    *out_port = (int)port;
    return 0;
}
