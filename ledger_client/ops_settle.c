/* ops_settle: the typed operations of settlement (SPEC 7) — a partition's batch from
 * settle_begin to settle_end, its keys, and the parsing of its rows.
 *
 * Keys of partition n: giftd:{p<n>}:pendlog (the debit scripts append to it), :pending (the
 * log folded by settle_begin), :settling, :settling_batch,
 * :batchseq (the batch counter), :flushlease. The stream sink's per-partition marks live on the
 * stream's slot ("{<stream>}:settled", or "<stream>:settled" when the stream name has a hash
 * tag); the credit marks per creator in giftd:{p<m>}:credited:<creator> beside the creator's
 * giftd:{p<m>}:dia:<creator>. */
#include "ledger_client/ledger_client.h"
#include "ledger_client/ledger_client_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX 256

/* ---- settle_begin ---- */

static bool id_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '-';
}

/* Copies a reply string of at most cap-1 bytes that is a valid identifier (SPEC 3.2). */
static bool copy_id(char *out, size_t cap, const char *s, size_t len)
{
    if (len == 0 || len >= cap || len > 64) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!id_char((unsigned char)s[i])) {
            return false;
        }
    }
    memcpy(out, s, len);
    out[len] = '\0';
    return true;
}

/* Parses field "creator\x1froom\x1fgift" and value "count coins diamonds first last" (the debit
 * script's pending row). */
static bool parse_row(const redisReply *f, const redisReply *v, struct ledger_settle_row *out)
{
    if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
        return false;
    }
    const char *s = f->str, *end = f->str + f->len;
    const char *a = memchr(s, 0x1f, (size_t)(end - s));
    const char *b = a ? memchr(a + 1, 0x1f, (size_t)(end - a - 1)) : NULL;
    if (!b || !copy_id(out->creator, sizeof(out->creator), s, (size_t)(a - s)) ||
        !copy_id(out->room, sizeof(out->room), a + 1, (size_t)(b - a - 1)) ||
        !copy_id(out->gift, sizeof(out->gift), b + 1, (size_t)(end - b - 1))) {
        return false;
    }
    char val[128];
    if (v->len >= sizeof(val)) {
        return false;
    }
    memcpy(val, v->str, v->len);
    val[v->len] = '\0';
    int used = 0;
    return sscanf(val, "%lld %lld %lld %lld %lld%n", &out->count, &out->coins, &out->diamonds,
                  &out->first_ts_ms, &out->last_ts_ms, &used) == 5 &&
           (size_t)used == v->len && out->count >= 0 && out->coins >= 0 && out->diamonds >= 0;
}

/* Fills r from a {2, batch, seq, field1, value1, ...} reply; *out_rows is **new**. */
static int parse_batch(const redisReply *rr, struct ledger_settle_begin_reply *r,
                       struct ledger_settle_row **out_rows)
{
    *out_rows = NULL;
    if (rr->elements < 3 || rr->element[1]->type != REDIS_REPLY_STRING ||
        rr->element[1]->len >= sizeof(r->batch) || !lop_int(rr, 2, &r->seq) ||
        (rr->elements - 3) % 2 != 0) {
        return -EBADMSG;
    }
    memcpy(r->batch, rr->element[1]->str, rr->element[1]->len);
    r->batch[rr->element[1]->len] = '\0';
    size_t n = (rr->elements - 3) / 2;
    struct ledger_settle_row *rows = calloc(n ? n : 1, sizeof(*rows));
    if (!rows) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if (!parse_row(rr->element[3 + 2 * i], rr->element[4 + 2 * i], &rows[i])) {
            /* Written only by the debit script: a row that does not parse is a bug. The batch
             * stays in Redis (nothing is lost). */
            free(rows);
            return -EBADMSG;
        }
    }
    r->rows = rows;
    r->nrows = n;
    *out_rows = rows;
    return 0;
}

static void settle_begin_reply(void *ud, int status, const redisReply *rr)
{
    const struct lop *op = ud;
    if (!op->cb.settle_begin) {
        return;
    }
    struct ledger_settle_begin_reply r = {0};
    struct ledger_settle_row *rows = NULL;
    status = lop_status(status, rr, &r.error);
    long long kind = 0;
    /* {0} lease held elsewhere, {1} nothing to settle, {2, batch, seq, field, value, ...} */
    if (status == 0 && !lop_int(rr, 0, &kind)) {
        status = -EBADMSG;
    }
    if (status == 0) {
        if (kind == 2) {
            r.outcome = LEDGER_SETTLE_BATCH;
            status = parse_batch(rr, &r, &rows);
        } else {
            r.outcome = kind == 0 ? LEDGER_SETTLE_HELD : LEDGER_SETTLE_IDLE;
        }
    }
    op->cb.settle_begin(op->ud, status, status == 0 || status == -EPROTO ? &r : NULL);
    free(rows);
}

int ledger_settle_begin(struct ledger *l, const struct ledger_settle_begin_req *req,
                        ledger_settle_begin_cb *cb, void *ud, struct ledger_req **out_req)
{
    if (!req->node_id || req->lease_ms < 0 || (long)req->partition >= lreq_partitions(l)) {
        return -EINVAL;
    }
    static const char *const suffix[6] = {"pending",  "settling",   "settling_batch",
                                          "batchseq", "flushlease", "pendlog"};
    char keys[6][KEY_MAX], lease[24], part[24], now[24];
    const char *argv[11];
    argv[0] = "6";
    for (int i = 0; i < 6; i++) {
        lkey_partition_key(keys[i], sizeof(keys[i]), req->partition, suffix[i]);
        argv[1 + i] = keys[i];
    }
    argv[7] = req->node_id;
    argv[8] = lop_num(lease, req->lease_ms); /* "0": the node leaves, the lease is given up */
    argv[9] = lop_num(part, req->partition);
    argv[10] = lop_num(now, ledger_now_ms());
    struct lop op = {.cb.settle_begin = cb, .ud = ud};
    return lop_submit(l, LEDGER_SCRIPT_SETTLE_BEGIN, 11, argv, settle_begin_reply, &op, out_req);
}

/* ---- settle_stream ---- */

static void settle_stream_reply(void *ud, int status, const redisReply *rr)
{
    const struct lop *op = ud;
    if (!op->cb.settle_stream) {
        return;
    }
    struct ledger_settle_stream_reply r = {0};
    status = lop_status(status, rr, &r.error);
    if (status == 0) {
        if (rr->type != REDIS_REPLY_INTEGER) {
            status = -EBADMSG;
        } else {
            r.added = rr->integer;
        }
    }
    op->cb.settle_stream(op->ud, status, status == 0 || status == -EPROTO ? &r : NULL);
}

/* The key of the stream's per-partition marks: on the stream's slot. */
static void marks_key(char *out, size_t len, const char *stream)
{
    const char *open = strchr(stream, '{');
    const char *close = open ? strchr(open + 1, '}') : NULL;
    if (open && close && close > open + 1) {
        /* The stream name has a hash tag: the marks share it. */
        snprintf(out, len, "%s:settled", stream);
    } else {
        /* {stream} hashes like the bare stream name: the same cluster slot. */
        snprintf(out, len, "{%s}:settled", stream);
    }
}

int ledger_settle_stream(struct ledger *l, const struct ledger_settle_stream_req *req,
                         ledger_settle_stream_cb *cb, void *ud, struct ledger_req **out_req)
{
    if (!req->stream || !req->batch || strlen(req->stream) > 200 || (req->nrows && !req->rows) ||
        req->nrows > ((size_t)1 << 20)) {
        return -EINVAL;
    }
    size_t argc = 6 + 8 * req->nrows;
    const char **argv = calloc(argc, sizeof(*argv));
    char(*nums)[5][24] = calloc(req->nrows ? req->nrows : 1, sizeof(*nums));
    if (!argv || !nums) {
        free(argv);
        free(nums);
        return -ENOMEM;
    }
    char marks[KEY_MAX], part[24], seq[24];
    marks_key(marks, sizeof(marks), req->stream);
    argv[0] = "2";
    argv[1] = req->stream;
    argv[2] = marks;
    argv[3] = req->batch;
    argv[4] = lop_num(part, req->partition);
    argv[5] = lop_num(seq, req->seq);
    for (size_t i = 0; i < req->nrows; i++) {
        const struct ledger_settle_row *row = &req->rows[i];
        const char **a = argv + 6 + 8 * i;
        long long v[5] = {row->count, row->coins, row->diamonds, row->first_ts_ms, row->last_ts_ms};
        a[0] = row->creator;
        a[1] = row->room;
        a[2] = row->gift;
        for (int k = 0; k < 5; k++) {
            a[3 + k] = lop_num(nums[i][k], v[k]);
        }
    }
    struct lop op = {.cb.settle_stream = cb, .ud = ud};
    int rc = lop_submit(l, LEDGER_SCRIPT_SETTLE_STREAM, (int)argc, argv, settle_stream_reply, &op,
                        out_req);
    free(argv);
    free(nums);
    return rc;
}

/* ---- settle_credit ---- */

static void settle_credit_reply(void *ud, int status, const redisReply *rr)
{
    const struct lop *op = ud;
    if (!op->cb.settle_credit) {
        return;
    }
    struct ledger_settle_credit_reply r = {0};
    status = lop_status(status, rr, &r.error);
    if (status == 0) {
        if (rr->type != REDIS_REPLY_INTEGER) {
            status = -EBADMSG;
        } else {
            r.credited = rr->integer == 1;
        }
    }
    op->cb.settle_credit(op->ud, status, status == 0 || status == -EPROTO ? &r : NULL);
}

int ledger_settle_credit(struct ledger *l, const struct ledger_settle_credit_req *req,
                         ledger_settle_credit_cb *cb, void *ud, struct ledger_req **out_req)
{
    size_t n = req->creator ? strlen(req->creator) : 0;
    if (n < 1 || n > 64) {
        return -EINVAL;
    }
    long P = lreq_partitions(l);
    char kdia[KEY_MAX], kmark[KEY_MAX], part[24], seq[24], dia[24];
    lkey_user(kdia, sizeof(kdia), P, "dia", req->creator);
    lkey_user(kmark, sizeof(kmark), P, "credited", req->creator);
    const char *argv[] = {"2",
                          kdia,
                          kmark,
                          lop_num(part, req->partition),
                          lop_num(seq, req->seq),
                          lop_num(dia, req->diamonds)};
    struct lop op = {.cb.settle_credit = cb, .ud = ud};
    return lop_submit(l, LEDGER_SCRIPT_SETTLE_CREDIT, 6, argv, settle_credit_reply, &op, out_req);
}

/* ---- settle_end ---- */

static void settle_end_reply(void *ud, int status, const redisReply *rr)
{
    const struct lop *op = ud;
    if (!op->cb.settle_end) {
        return;
    }
    struct ledger_settle_end_reply r = {0};
    status = lop_status(status, rr, &r.error);
    if (status == 0) {
        if (rr->type != REDIS_REPLY_INTEGER) {
            status = -EBADMSG;
        } else {
            r.ended = rr->integer == 1;
        }
    }
    op->cb.settle_end(op->ud, status, status == 0 || status == -EPROTO ? &r : NULL);
}

int ledger_settle_end(struct ledger *l, const struct ledger_settle_end_req *req,
                      ledger_settle_end_cb *cb, void *ud, struct ledger_req **out_req)
{
    if (!req->batch || (long)req->partition >= lreq_partitions(l)) {
        return -EINVAL;
    }
    char ks[KEY_MAX], kb[KEY_MAX];
    lkey_partition_key(ks, sizeof(ks), req->partition, "settling");
    lkey_partition_key(kb, sizeof(kb), req->partition, "settling_batch");
    const char *argv[] = {"2", ks, kb, req->batch};
    struct lop op = {.cb.settle_end = cb, .ud = ud};
    return lop_submit(l, LEDGER_SCRIPT_SETTLE_END, 4, argv, settle_end_reply, &op, out_req);
}
