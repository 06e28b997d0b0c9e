/* Unit tests of cluster_map: key slots, the slot map from CLUSTER SLOTS, MOVED/ASK parsing. */
#include "ledger_client/ledger_client_internal.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

static unsigned slot_of(const char *key)
{
    return lslot_of(key, strlen(key));
}

/* The expected slots below were printed once by `redis-cli -p PORT CLUSTER KEYSLOT <key>` (the
 * binary ones by `printf '…' | redis-cli -x CLUSTER KEYSLOT`) against redis-server 7.0.15 in
 * cluster mode (Debian bookworm), then hard-coded. */
Test(lslot_of, matches_redis_cluster_keyslot)
{
    cr_assert_eq(slot_of("foo"), 12182);
    cr_assert_eq(slot_of("bar"), 5061);
    cr_assert_eq(slot_of(""), 0);
    cr_assert_eq(slot_of("123456789"), 12739); /* CRC16-XMODEM check value 0x31C3 */
    cr_assert_eq(slot_of("{user1000}.following"), 3443);
    cr_assert_eq(slot_of("{user1000}.followers"), 3443);
    cr_assert_eq(slot_of("giftd:{p12}:bal:ann"), 14525);
    cr_assert_eq(slot_of("{p0}"), 15882);
    cr_assert_eq(slot_of("{p1023}"), 10169);
    cr_assert_eq(slot_of("giftd:{r:demo}:seq"), 1819);
    cr_assert_eq(slot_of("{r:demo}"), 1819);
}

Test(lslot_of, follows_the_hash_tag_rule)
{
    /* "{}" is no tag: the whole key is hashed. */
    cr_assert_eq(slot_of("{}"), 15257);
    cr_assert_eq(slot_of("{}foo"), 9500);
    cr_assert_eq(slot_of("a{}"), 6082);
    /* Only the first '{' counts, even when its tag is empty and a later one is not. */
    cr_assert_eq(slot_of("foo{}{bar}"), 8363);
    cr_assert_eq(slot_of("ab{}cd{x}"), 14231);
    /* No '}' after the '{': whole key. */
    cr_assert_eq(slot_of("{a"), 10276);
    /* A '}' before the first '{' is ignored: the tag of "a}{b}" is "b". */
    cr_assert_eq(slot_of("a}{b}"), 3300);
    cr_assert_eq(slot_of("a{b}c"), 3300);
    cr_assert_eq(slot_of("{a}{b}"), 15495);
    /* The tag runs to the first '}': "{bar" here, and "{" in "{{}". */
    cr_assert_eq(slot_of("foo{{bar}}zap"), 4015);
    cr_assert_eq(slot_of("{{}"), 4092);
}

Test(lslot_of, is_binary_safe)
{
    /* Bytes over 0x7f and NULs take part, and a tag may hold them. */
    static const char key[] = "\xff\x00\x80{\xfe}";
    cr_assert_eq(lslot_of(key, sizeof(key) - 1), 3793);
    cr_assert_eq(lslot_of("\xff\x00\x80", 3), 7915);
    cr_assert_eq(lslot_of("\xfe", 1), 3793);
    /* len bounds the key: what follows is not read. */
    cr_assert_eq(lslot_of("foo{bar}", 3), 12182);
}

/* Parses RESP text with hiredis's reader: a **new** reply (freeReplyObject). */
static redisReply *parse_resp(const char *text)
{
    redisReader *rd = redisReaderCreate();
    cr_assert_not_null(rd);
    cr_assert_eq(redisReaderFeed(rd, text, strlen(text)), REDIS_OK);
    void *reply = NULL;
    cr_assert_eq(redisReaderGetReply(rd, &reply), REDIS_OK);
    cr_assert_not_null(reply, "incomplete RESP in the test");
    redisReaderFree(rd);
    return reply;
}

static const char *owner_host(const struct lslot_map *m, unsigned slot)
{
    return m->owner[slot] < 0 ? NULL : m->nodes[m->owner[slot]].host;
}

static int owner_port(const struct lslot_map *m, unsigned slot)
{
    return m->owner[slot] < 0 ? -1 : m->nodes[m->owner[slot]].port;
}

/* CLUSTER SLOTS of a redis-server 7.0.15 with 3 masters (27001-27003) and a replica each
 * (27004-27006), after slot 1819 moved to 27002 and 27006 took over 27003's slots: captured
 * byte for byte from the server. Replicas follow each range's master; 0-1818 and 1820-5460 name
 * the same master twice. */
static const char slots_real[] =
    "*5\r\n"
    "*4\r\n:0\r\n:1818\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:27001\r\n$40\r\n3aeb4db0fcea869773c155b225aac21a82a26446\r\n*0\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:27004\r\n$40\r\n574979d12380a8132f5ad832c85eef5c2c7078d2\r\n*0\r\n"
    "*4\r\n:1819\r\n:1819\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:27002\r\n$40\r\nc1a599e1e19788e550f1533bf721c85058c91cb8\r\n*0\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:27005\r\n$40\r\n240b2f77912e8ad60ba84e4af2894fb1b6cf2d23\r\n*0\r\n"
    "*4\r\n:1820\r\n:5460\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:27001\r\n$40\r\n3aeb4db0fcea869773c155b225aac21a82a26446\r\n*0\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:27004\r\n$40\r\n574979d12380a8132f5ad832c85eef5c2c7078d2\r\n*0\r\n"
    "*4\r\n:5461\r\n:10922\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:27002\r\n$40\r\nc1a599e1e19788e550f1533bf721c85058c91cb8\r\n*0\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:27005\r\n$40\r\n240b2f77912e8ad60ba84e4af2894fb1b6cf2d23\r\n*0\r\n"
    "*4\r\n:10923\r\n:16383\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:27006\r\n$40\r\n5a98a77f6deb8e474ea67e5adbc9ac743cd51168\r\n*0\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:27003\r\n$40\r\n8b05817de376390c813e06ff72f61959deda4255\r\n*0\r\n";

Test(lslot_map_from_reply, takes_masters_and_dedupes_nodes)
{
    redisReply *r = parse_resp(slots_real);
    struct lslot_map m;
    cr_assert_eq(lslot_map_from_reply(r, "10.0.0.9", 27001, &m), 0);
    freeReplyObject(r);
    cr_assert_eq(m.nnodes, 3, "masters only, each once: got %zu", m.nnodes);
    cr_assert_eq(owner_port(&m, 0), 27001);
    cr_assert_eq(owner_port(&m, 1818), 27001);
    cr_assert_eq(owner_port(&m, 1819), 27002);
    cr_assert_eq(owner_port(&m, 1820), 27001);
    cr_assert_eq(owner_port(&m, 5460), 27001);
    cr_assert_eq(owner_port(&m, 5461), 27002);
    cr_assert_eq(owner_port(&m, 10922), 27002);
    cr_assert_eq(owner_port(&m, 10923), 27006);
    cr_assert_eq(owner_port(&m, 16383), 27006);
    cr_assert_str_eq(owner_host(&m, 16383), "127.0.0.1");
    cr_assert_eq(m.owner[0], m.owner[1820], "one node entry for 27001");
    for (unsigned s = 0; s < LSLOT_COUNT; s++) {
        cr_assert_geq(m.owner[s], 0, "slot %u covered", s);
        cr_assert_neq(owner_port(&m, s), 27003, "27003 is a replica now");
        cr_assert_neq(owner_port(&m, s), 27004, "27004 is a replica");
    }
    /* lslot_map_node finds an existing node and appends a new one. */
    cr_assert_eq(lslot_map_node(&m, "127.0.0.1", 27002), m.owner[1819]);
    cr_assert_eq(lslot_map_node(&m, "127.0.0.1", 27007), 3);
    cr_assert_eq(m.nnodes, 4);
    cr_assert_eq(lslot_map_node(&m, "127.0.0.1", 27007), 3);
    cr_assert_eq(m.nnodes, 4);
    lslot_map_free(&m);
    cr_assert_null(m.nodes);
    cr_assert_eq(m.nnodes, 0);
    cr_assert_eq(m.owner[0], -1);
    lslot_map_free(&m); /* twice is harmless */
    lslot_map_free(NULL);
}

Test(lslot_map_from_reply, empty_or_nil_ip_means_the_node_asked)
{
    /* Captured from a redis-server 7.0.15 cluster node that had met no other node and served
     * slots 0-99: with cluster-preferred-endpoint-type ip its IP is "" (here it also had
     * cluster-announce-hostname node10.local, hence the metadata), with unknown-endpoint NIL. */
    static const char empty_ip[] =
        "*1\r\n*3\r\n:0\r\n:99\r\n*4\r\n$0\r\n\r\n:27010\r\n$40\r\n"
        "e1d412be63c56924d5f143a47151c0f82db847f5\r\n*2\r\n$8\r\nhostname\r\n$12\r\n"
        "node10.local\r\n";
    static const char nil_ip[] = "*1\r\n*3\r\n:0\r\n:99\r\n*4\r\n$-1\r\n:27010\r\n$40\r\n"
                                 "e1d412be63c56924d5f143a47151c0f82db847f5\r\n*4\r\n$2\r\nip\r\n"
                                 "$0\r\n\r\n$8\r\nhostname\r\n$12\r\nnode10.local\r\n";
    const char *texts[] = {empty_ip, nil_ip};
    for (size_t i = 0; i < 2; i++) {
        redisReply *r = parse_resp(texts[i]);
        struct lslot_map m;
        cr_assert_eq(lslot_map_from_reply(r, "redis-a.internal", 27010, &m), 0);
        freeReplyObject(r);
        cr_assert_eq(m.nnodes, 1);
        cr_assert_str_eq(owner_host(&m, 0), "redis-a.internal");
        cr_assert_eq(owner_port(&m, 99), 27010);
        /* A missing range: no range covers 100-16383. */
        cr_assert_eq(m.owner[100], -1);
        cr_assert_eq(m.owner[16383], -1);
        lslot_map_free(&m);
    }
}

Test(lslot_map_from_reply, unknown_endpoint_and_gaps_stay_unknown)
{
    /* "?" (cluster-preferred-endpoint-type hostname without one announced, as 7.0.15 sends
     * it) leaves its range unknown; the old three-element node form (no id, no metadata) and
     * a hostname endpoint are accepted; 10-19 is covered by no range. */
    static const char text[] = "*3\r\n"
                               "*3\r\n:0\r\n:9\r\n*2\r\n$1\r\n?\r\n:7000\r\n"
                               "*3\r\n:20\r\n:29\r\n*2\r\n$9\r\nnode1.lan\r\n:7001\r\n"
                               "*4\r\n:30\r\n:16383\r\n*3\r\n$3\r\n::1\r\n:7002\r\n$2\r\nid\r\n"
                               "*3\r\n$3\r\n::1\r\n:7003\r\n$3\r\nid2\r\n";
    redisReply *r = parse_resp(text);
    struct lslot_map m;
    cr_assert_eq(lslot_map_from_reply(r, "127.0.0.1", 7000, &m), 0);
    freeReplyObject(r);
    cr_assert_eq(m.nnodes, 2);
    cr_assert_eq(m.owner[0], -1);
    cr_assert_eq(m.owner[9], -1);
    cr_assert_eq(m.owner[10], -1);
    cr_assert_eq(m.owner[19], -1);
    cr_assert_str_eq(owner_host(&m, 20), "node1.lan");
    cr_assert_eq(owner_port(&m, 29), 7001);
    cr_assert_str_eq(owner_host(&m, 30), "::1");
    cr_assert_eq(owner_port(&m, 16383), 7002, "the master, not the replica 7003");
    lslot_map_free(&m);
}

Test(lslot_map_from_reply, an_empty_reply_is_an_empty_map)
{
    redisReply *r = parse_resp("*0\r\n");
    struct lslot_map m;
    cr_assert_eq(lslot_map_from_reply(r, "127.0.0.1", 7000, &m), 0);
    freeReplyObject(r);
    cr_assert_eq(m.nnodes, 0);
    cr_assert_eq(m.owner[0], -1);
    lslot_map_free(&m);
}

Test(lslot_map_from_reply, rejects_what_is_not_cluster_slots)
{
#define RESP(s)                                                                                    \
    {                                                                                              \
        s, sizeof(s) - 1                                                                           \
    }
    static const struct {
        const char *text;
        size_t len;
    } bad[] = {
        RESP("-ERR This instance has cluster support disabled\r\n"),
        RESP("+OK\r\n"),
        RESP("*1\r\n:5\r\n"),                                             /* a range not an array */
        RESP("*1\r\n*2\r\n:0\r\n:9\r\n"),                                 /* no master */
        RESP("*1\r\n*3\r\n:9\r\n:0\r\n*2\r\n$1\r\na\r\n:7000\r\n"),       /* end before start */
        RESP("*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\na\r\n:7000\r\n"),   /* slot out of range */
        RESP("*1\r\n*3\r\n:-1\r\n:9\r\n*2\r\n$1\r\na\r\n:7000\r\n"),      /* negative slot */
        RESP("*1\r\n*3\r\n:0\r\n:9\r\n*2\r\n$1\r\na\r\n:70000\r\n"),      /* port out of range */
        RESP("*1\r\n*3\r\n:0\r\n:9\r\n*2\r\n$1\r\na\r\n$4\r\n7000\r\n"),  /* port a string */
        RESP("*1\r\n*3\r\n:0\r\n:9\r\n*2\r\n:1\r\n:7000\r\n"),            /* ip an integer */
        RESP("*1\r\n*3\r\n$1\r\n0\r\n:9\r\n*2\r\n$1\r\na\r\n:7000\r\n"),  /* start a string */
        RESP("*1\r\n*3\r\n:0\r\n:9\r\n*1\r\n$1\r\na\r\n"),                /* node without port */
        RESP("*2\r\n*3\r\n:0\r\n:9\r\n*2\r\n$1\r\na\r\n:7000\r\n:1\r\n"), /* then junk */
        RESP("*1\r\n*3\r\n:0\r\n:9\r\n*2\r\n$3\r\na\0b\r\n:7000\r\n"),    /* NUL in host */
    };
#undef RESP
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        redisReader *rd = redisReaderCreate();
        cr_assert_eq(redisReaderFeed(rd, bad[i].text, bad[i].len), REDIS_OK);
        void *reply = NULL;
        cr_assert_eq(redisReaderGetReply(rd, &reply), REDIS_OK);
        cr_assert_not_null(reply, "case %zu incomplete", i);
        redisReaderFree(rd);
        struct lslot_map m;
        cr_assert_eq(lslot_map_from_reply(reply, "127.0.0.1", 7000, &m), -EINVAL, "case %zu", i);
        cr_assert_null(m.nodes, "case %zu", i);
        cr_assert_eq(m.nnodes, 0);
        cr_assert_eq(m.owner[0], -1, "case %zu: nothing left behind", i);
        lslot_map_free(&m);
        freeReplyObject(reply);
    }
    struct lslot_map m;
    cr_assert_eq(lslot_map_from_reply(NULL, "127.0.0.1", 7000, &m), -EINVAL);
    lslot_map_free(&m);
}

Test(lslot_map_node, rejects_bad_addresses)
{
    struct lslot_map m;
    redisReply *r = parse_resp("*0\r\n");
    cr_assert_eq(lslot_map_from_reply(r, "127.0.0.1", 7000, &m), 0);
    freeReplyObject(r);
    char longhost[300];
    memset(longhost, 'h', sizeof(longhost) - 1);
    longhost[sizeof(longhost) - 1] = '\0';
    cr_assert_eq(lslot_map_node(&m, longhost, 7000), -EINVAL);
    longhost[256] = '\0';
    cr_assert_eq(lslot_map_node(&m, longhost, 7000), -EINVAL, "256 chars + NUL do not fit");
    longhost[255] = '\0';
    cr_assert_eq(lslot_map_node(&m, longhost, 7000), 0, "255 chars + NUL fit");
    cr_assert_eq(lslot_map_node(&m, "a", 0), -EINVAL);
    cr_assert_eq(lslot_map_node(&m, "a", 65536), -EINVAL);
    cr_assert_eq(m.nnodes, 1);
    lslot_map_free(&m);
}

/* Parses s as a redirect; the host lands in host (64 bytes). */
static int redirect(const char *s, bool *ask, unsigned *slot, char host[64], int *port)
{
    return lslot_parse_redirect(s, strlen(s), ask, slot, host, 64, port);
}

Test(lslot_parse_redirect, moved_and_ask)
{
    bool ask = true;
    unsigned slot = 0;
    char host[64];
    int port = 0;
    /* The texts Redis 7.0.15 sent (without the leading '-'). */
    cr_assert_eq(redirect("MOVED 3999 127.0.0.1:6381", &ask, &slot, host, &port), 0);
    cr_assert_eq(ask, false);
    cr_assert_eq(slot, 3999);
    cr_assert_str_eq(host, "127.0.0.1");
    cr_assert_eq(port, 6381);
    cr_assert_eq(redirect("ASK 1819 127.0.0.1:27001", &ask, &slot, host, &port), 0);
    cr_assert_eq(ask, true);
    cr_assert_eq(slot, 1819);
    cr_assert_eq(port, 27001);
    /* IPv6: split at the last ':'. */
    cr_assert_eq(redirect("MOVED 0 ::1:6381", &ask, &slot, host, &port), 0);
    cr_assert_eq(slot, 0);
    cr_assert_str_eq(host, "::1");
    cr_assert_eq(port, 6381);
    cr_assert_eq(redirect("ASK 16383 fe80::1:2:65535", &ask, &slot, host, &port), 0);
    cr_assert_str_eq(host, "fe80::1:2");
    cr_assert_eq(port, 65535);
    cr_assert_eq(slot, 16383);
    /* Redis 7, cluster-preferred-endpoint-type unknown-endpoint: no host. */
    cr_assert_eq(redirect("MOVED 12182 :27006", &ask, &slot, host, &port), 0);
    cr_assert_str_eq(host, "");
    cr_assert_eq(port, 27006);
    /* Type hostname without one announced: "?" verbatim. */
    cr_assert_eq(redirect("MOVED 12182 ?:27006", &ask, &slot, host, &port), 0);
    cr_assert_str_eq(host, "?");
    cr_assert_eq(redirect("MOVED 5 redis-2.example:6379", &ask, &slot, host, &port), 0);
    cr_assert_str_eq(host, "redis-2.example");
    /* len bounds the text. */
    const char *s = "MOVED 3999 127.0.0.1:6381garbage";
    cr_assert_eq(lslot_parse_redirect(s, strlen(s) - 7, &ask, &slot, host, 64, &port), 0);
    cr_assert_eq(port, 6381);
}

Test(lslot_parse_redirect, rejects_other_errors)
{
    static const char *const bad[] = {
        "",
        "MOVED",
        "MOVED ",
        "MOVED 3999",
        "MOVED 3999 ",
        "MOVED 3999 127.0.0.1",
        "MOVED 3999 127.0.0.1:",
        "MOVED 3999 127.0.0.1:0",
        "MOVED 3999 127.0.0.1:65536",
        "MOVED 3999 127.0.0.1:6381 ",
        "MOVED 3999 127.0.0.1:6381 extra",
        "MOVED 3999 127.0.0.1:63x1",
        "MOVED 3999 127.0.0.1:-1",
        "MOVED 16384 127.0.0.1:6381",
        "MOVED 99999999999999999999 127.0.0.1:6381",
        "MOVED -1 127.0.0.1:6381",
        "MOVED x 127.0.0.1:6381",
        "MOVED  3999 127.0.0.1:6381",
        "MOVED 3999  127.0.0.1:6381",
        "moved 3999 127.0.0.1:6381",
        "ASKING 3999 127.0.0.1:6381",
        "TRYAGAIN Multiple keys request during rehashing of slot",
        "CLUSTERDOWN Hash slot not served",
        "ERR unknown command",
        "NOSCRIPT No matching script. Please use EVAL.",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bool ask;
        unsigned slot;
        char host[64];
        int port;
        cr_assert_eq(redirect(bad[i], &ask, &slot, host, &port), -EINVAL, "\"%s\"", bad[i]);
    }
    /* A host longer than the buffer. */
    bool ask;
    unsigned slot;
    char host[8];
    int port;
    const char *s = "MOVED 1 a-long-hostname:7000";
    cr_assert_eq(lslot_parse_redirect(s, strlen(s), &ask, &slot, host, sizeof(host), &port),
                 -EINVAL);
    s = "MOVED 1 1234567:7000"; /* 7 bytes + NUL fit */
    cr_assert_eq(lslot_parse_redirect(s, strlen(s), &ask, &slot, host, sizeof(host), &port), 0);
    cr_assert_str_eq(host, "1234567");
    /* An embedded NUL or CR is not a redirect. */
    cr_assert_eq(lslot_parse_redirect("MOVED 1 a\0b:7000", 16, &ask, &slot, host, 8, &port),
                 -EINVAL);
    cr_assert_eq(lslot_parse_redirect("MOVED 1 a:7000\r\n", 16, &ask, &slot, host, 8, &port),
                 -EINVAL);
}
