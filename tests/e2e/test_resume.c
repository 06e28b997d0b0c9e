/* End-to-end: resuming a room after a reconnect (SPEC 3.4), the room's events over HTTP, the
 * node's own gap filling, and overlay controls (SPEC 5) — real giftd nodes on a real Redis. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/support/fixture.h"

static struct fx f;

/* Two nodes; rooms keep 40 events, so that "already dropped" is reachable. galaxy is not
 * streakable: every send is exactly one seq event. */
static void setup(void)
{
    static const char *const extra[] = {
        "--rooms.history_size=40", "--rooms.presence_interval_ms=200",
        "--limits.gifts_per_sec=100000", "--limits.frames_per_sec=100000", NULL};
    fx_start(&f, 2, extra);
}

static void teardown(void)
{
    fx_stop(&f);
}

TestSuite(resume, .init = setup, .fini = teardown, .timeout = 120);

static bool is_seq_event(const char *t)
{
    return strcmp(t, "gift") == 0 || strcmp(t, "combo_end") == 0 || strcmp(t, "goal_reached") == 0;
}

/* The next gift / combo_end / goal_reached event (others dropped), NULL on timeout. */
static json_t *next_seq_event(struct tk_ws *ws, int timeout_ms)
{
    int64_t end = fx_now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(end - fx_now_ms());
        json_t *j = left > 0 ? tk_ws_recv(ws, left) : NULL;
        if (!j || is_seq_event(fx_str(j, "type"))) {
            return j;
        }
        json_decref(j);
    }
}

static bool replayed(json_t *ev)
{
    return json_is_true(json_object_get(ev, "replay"));
}

/* Sends n galaxies from ws with ids "<stem>-<i>" and waits for each ack; returns the last
 * ack's seq. */
static long long send_acked(struct tk_ws *ws, const char *stem, int n)
{
    long long seq = 0;
    for (int i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof(id), "%s-%d", stem, i);
        fx_send_gift(ws, id, "galaxy", 1);
        json_t *a = fx_answer(ws, id, 5000);
        cr_assert_not_null(a, "no answer to %s", id);
        cr_assert_str_eq(fx_str(a, "type"), "ack", "%s: %s", id, json_dumps(a, 0));
        seq = fx_int(a, "seq");
        json_decref(a);
    }
    return seq;
}

/* A viewer on node that is authenticated but has not joined. */
static struct tk_ws *unjoined(int node, const char *sub)
{
    return fx_connect_as(&f, node, sub, "viewer", NULL);
}

/* Sends join with since_seq (< 0: none) and epoch (NULL: none; raw JSON text) and returns the
 * joined answer (**new**), asserting it is one. */
static json_t *join(struct tk_ws *ws, const char *room, long long since, const char *epoch)
{
    char extra[128] = "";
    if (since >= 0) {
        snprintf(extra, sizeof(extra), ",\"since_seq\":%lld", since);
    }
    if (epoch) {
        size_t n = strlen(extra);
        snprintf(extra + n, sizeof(extra) - n, ",\"epoch\":%s", epoch);
    }
    cr_assert_eq(tk_ws_send_json(ws, "{\"type\":\"join\",\"room\":\"%s\"%s}", room, extra), 0);
    json_t *j = tk_ws_recv(ws, 5000);
    cr_assert_not_null(j, "no answer to the join");
    cr_assert_str_eq(fx_str(j, "type"), "joined", "join answered %s", json_dumps(j, 0));
    return j;
}

/* The room's epoch as JSON text (from GET /v1/rooms/{room}) and its seq. */
static long long room_epoch(const char *room, char out[32])
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/rooms/%s", room);
    struct tk_http_resp r;
    cr_assert_eq(tk_http(f.node[0].port, "GET", path, NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    json_t *e = json_object_get(r.json, "epoch");
    cr_assert(json_is_integer(e) && json_integer_value(e) > 0, "epoch %s", r.body);
    snprintf(out, 32, "%lld", (long long)json_integer_value(e));
    long long seq = fx_int(r.json, "seq");
    tk_http_resp_cleanup(&r);
    return seq;
}

/* Reads seq events until the one with seq last; asserts they are from..last, each once, in
 * order, with replay set on exactly those up to replay_upto. */
static void expect_seqs(struct tk_ws *ws, long long from, long long last, long long replay_upto)
{
    for (long long want = from; want <= last; want++) {
        json_t *ev = next_seq_event(ws, 5000);
        cr_assert_not_null(ev, "seq %lld never came", want);
        cr_assert_eq(fx_int(ev, "seq"), want, "expected seq %lld, got %s", want,
                     json_dumps(ev, JSON_COMPACT));
        cr_assert_eq(replayed(ev), want <= replay_upto, "seq %lld: replay flag wrong: %s", want,
                     json_dumps(ev, JSON_COMPACT));
        json_decref(ev);
    }
}

/* The session's events after seq s, and a resume of them on a fresh connection to node. */
static void resume_after_absence(int node, const char *room, const char *source_metric)
{
    fx_open_room(&f, room, "cara");
    fx_recharge(&f, "ann", 100000);
    struct tk_ws *sender = fx_viewer(&f, 0, "ann", room);
    struct tk_ws *v = unjoined(1, "vic");
    json_t *j = join(v, room, -1, NULL);
    cr_assert_null(json_object_get(j, "resumed"), "resumed only answers a since_seq");
    json_t *ep = json_object_get(j, "epoch");
    cr_assert(json_is_integer(ep) && json_integer_value(ep) > 0, "joined.epoch: %s",
              json_dumps(j, 0));
    char epoch[32];
    snprintf(epoch, sizeof(epoch), "%lld", (long long)json_integer_value(ep));
    json_decref(j);

    long long s = send_acked(sender, "a", 3);
    expect_seqs(v, s - 2, s, 0);
    tk_ws_free(v); /* gone: it handled s */
    long long last = send_acked(sender, "b", 5);
    cr_assert_eq(last, s + 5);

    long long before = fx_metric(&f, node, source_metric);
    v = unjoined(node, "vic");
    j = join(v, room, s, epoch);
    cr_assert(json_is_true(json_object_get(j, "resumed")), "%s", json_dumps(j, 0));
    cr_assert_eq(fx_int(j, "seq"), last);
    json_decref(j);
    expect_seqs(v, s + 1, last, last);
    /* Then live, with the next seq. */
    long long next = send_acked(sender, "c", 1);
    expect_seqs(v, last + 1, next, 0);
    cr_assert_eq(fx_metric(&f, node, source_metric), before + 1, "%s", source_metric);
    tk_ws_free(v);
    tk_ws_free(sender);
}

Test(resume, missed_events_replay_from_redis_on_a_node_without_the_room)
{
    /* Node 0 has the room (the sender); node 1 had only the viewer, which left. */
    resume_after_absence(1, "rs-redis", "giftd_resumes_total{source=\"redis\"}");
}

Test(resume, missed_events_replay_from_the_ring_of_a_node_with_the_room)
{
    /* The sender's node has watched the room all along: its ring holds the missed events. */
    resume_after_absence(0, "rs-ring", "giftd_resumes_total{source=\"ring\"}");
}

Test(resume, a_wrong_epoch_is_not_resumed_and_nothing_is_replayed)
{
    fx_open_room(&f, "rs-epoch", "cara");
    fx_recharge(&f, "ann", 100000);
    struct tk_ws *sender = fx_viewer(&f, 0, "ann", "rs-epoch");
    long long s = send_acked(sender, "a", 4);
    char epoch[32];
    cr_assert_eq(room_epoch("rs-epoch", epoch), s);
    const char *wrong[] = {"1", "\"not-an-epoch\"", "\"12345\""};
    for (size_t i = 0; i < 3; i++) {
        struct tk_ws *v = unjoined(1, "vic");
        json_t *j = join(v, "rs-epoch", 1, wrong[i]);
        cr_assert(json_is_false(json_object_get(j, "resumed")), "%s", json_dumps(j, 0));
        cr_assert_eq(fx_int(j, "seq"), s);
        json_decref(j);
        /* Nothing replayed: the next event is live. */
        char stem[8];
        snprintf(stem, sizeof(stem), "w%zu", i);
        long long next = send_acked(sender, stem, 1);
        json_t *ev = next_seq_event(v, 5000);
        cr_assert_not_null(ev);
        cr_assert_eq(fx_int(ev, "seq"), next, "got %s", json_dumps(ev, 0));
        cr_assert(!replayed(ev));
        json_decref(ev);
        s = next;
        tk_ws_free(v);
    }
    /* An epoch that is not a number or a string is a bad request. */
    struct tk_ws *v = unjoined(1, "vic");
    cr_assert_eq(tk_ws_send_json(v, "{\"type\":\"join\",\"room\":\"rs-epoch\",\"since_seq\":1,"
                                    "\"epoch\":[1]}"),
                 0);
    json_t *e = tk_ws_expect(v, "error", 5000);
    cr_assert_not_null(e);
    cr_assert_str_eq(fx_str(e, "code"), "bad_request");
    json_decref(e);
    cr_assert_eq(tk_ws_send_json(v, "{\"type\":\"join\",\"room\":\"rs-epoch\",\"since_seq\":-1}"),
                 0);
    e = tk_ws_expect(v, "error", 5000);
    cr_assert_not_null(e);
    cr_assert_str_eq(fx_str(e, "code"), "bad_request");
    json_decref(e);
    tk_ws_free(v);
    tk_ws_free(sender);
}

Test(resume, since_seq_at_or_past_the_last_seq_resumes_with_nothing_to_replay)
{
    fx_open_room(&f, "rs-none", "cara");
    fx_recharge(&f, "ann", 100000);
    struct tk_ws *sender = fx_viewer(&f, 0, "ann", "rs-none");
    long long s = send_acked(sender, "a", 2);
    char epoch[32];
    room_epoch("rs-none", epoch);
    for (long long since = s; since <= s + 5; since += 5) {
        struct tk_ws *v = unjoined(1, "vic");
        json_t *j = join(v, "rs-none", since, epoch);
        cr_assert(json_is_true(json_object_get(j, "resumed")), "%s", json_dumps(j, 0));
        json_decref(j);
        char stem[24];
        snprintf(stem, sizeof(stem), "n%lld", since);
        long long next = send_acked(sender, stem, 1);
        expect_seqs(v, next, next, 0);
        s = next;
        tk_ws_free(v);
    }
    tk_ws_free(sender);
}

Test(resume, events_already_dropped_are_not_resumed)
{
    fx_open_room(&f, "rs-drop", "cara");
    fx_recharge(&f, "ann", 1000000);
    struct tk_ws *sender = fx_viewer(&f, 0, "ann", "rs-drop");
    long long first = send_acked(sender, "a", 1);
    char epoch[32];
    room_epoch("rs-drop", epoch);
    /* 45 more: rooms.history_size is 40, so the events after `first` are partly dropped. */
    long long last = send_acked(sender, "b", 45);
    for (int node = 0; node < 2; node++) {
        struct tk_ws *v = unjoined(node, "vic");
        json_t *j = join(v, "rs-drop", first, epoch);
        cr_assert(json_is_false(json_object_get(j, "resumed")), "node %d: %s", node,
                  json_dumps(j, 0));
        cr_assert_eq(fx_int(j, "seq"), last);
        json_decref(j);
        long long next = send_acked(sender, node ? "c1" : "c0", 1);
        expect_seqs(v, next, next, 0);
        last = next;
        tk_ws_free(v);
    }
    /* Exactly history_size back is still kept. */
    struct tk_ws *v = unjoined(1, "vic");
    json_t *j = join(v, "rs-drop", last - 40, epoch);
    cr_assert(json_is_true(json_object_get(j, "resumed")), "%s", json_dumps(j, 0));
    json_decref(j);
    expect_seqs(v, last - 39, last, last);
    tk_ws_free(v);
    tk_ws_free(sender);
}

Test(resume, since_seq_and_epoch_in_the_query)
{
    fx_open_room(&f, "rs-query", "cara");
    fx_recharge(&f, "ann", 100000);
    struct tk_ws *sender = fx_viewer(&f, 0, "ann", "rs-query");
    long long s = send_acked(sender, "a", 4);
    char epoch[32];
    room_epoch("rs-query", epoch);
    char *tok = tk_token("vic", "vic", "viewer", NULL, 3600);
    char path[1024];
    snprintf(path, sizeof(path), "/ws?token=%s&room=rs-query&since_seq=%lld&epoch=%s", tok, s - 3,
             epoch);
    struct tk_ws *v = tk_ws_connect(f.node[1].port, path);
    cr_assert_not_null(v);
    json_t *j = tk_ws_expect(v, "joined", 5000);
    cr_assert_not_null(j);
    cr_assert(json_is_true(json_object_get(j, "resumed")), "%s", json_dumps(j, 0));
    json_decref(j);
    expect_seqs(v, s - 2, s, s);
    tk_ws_free(v);
    /* A since_seq that is not a number is refused. */
    snprintf(path, sizeof(path), "/ws?token=%s&room=rs-query&since_seq=abc", tok);
    v = tk_ws_connect(f.node[1].port, path);
    cr_assert_not_null(v);
    j = tk_ws_expect(v, "error", 5000);
    cr_assert_not_null(j);
    cr_assert_str_eq(fx_str(j, "code"), "bad_request");
    json_decref(j);
    tk_ws_free(v);
    free(tok);
    tk_ws_free(sender);
}

/* A join that races a burst of gifts from another node: every seq after since_seq arrives
 * exactly once, in order, replayed ones first. Many rounds, on both nodes. */
Test(resume, a_join_racing_a_burst_skips_nothing_and_repeats_nothing)
{
    fx_open_room(&f, "rs-race", "cara");
    fx_recharge(&f, "ann", 10000000);
    struct tk_ws *sender = fx_viewer(&f, 1, "ann", "rs-race");
    long long s = send_acked(sender, "a", 3);
    char epoch[32];
    room_epoch("rs-race", epoch);
    for (int round = 0; round < 12; round++) {
        /* 25 sends in flight, then a resume from a few seqs back, while they land. */
        for (int i = 0; i < 25; i++) {
            char id[64];
            snprintf(id, sizeof(id), "r%d-%d", round, i);
            fx_send_gift(sender, id, "galaxy", 1);
        }
        long long since = s - (round % 4);
        struct tk_ws *v = unjoined(round % 2, "vic");
        json_t *j = join(v, "rs-race", since, epoch);
        cr_assert(json_is_true(json_object_get(j, "resumed")), "round %d: %s", round,
                  json_dumps(j, 0));
        json_decref(j);
        long long want = since + 1;
        bool live = false;
        while (want <= s + 25) {
            json_t *ev = next_seq_event(v, 5000);
            cr_assert_not_null(ev, "round %d: seq %lld never came", round, want);
            cr_assert_eq(fx_int(ev, "seq"), want, "round %d: expected seq %lld, got %s", round,
                         want, json_dumps(ev, JSON_COMPACT));
            /* Replayed events come first, then only live ones. */
            if (!replayed(ev)) {
                live = true;
            }
            cr_assert(!(live && replayed(ev)), "round %d: a replay after a live event", round);
            cr_assert(replayed(ev) || want > since, "round %d", round);
            json_decref(ev);
            want++;
        }
        for (int i = 0; i < 25; i++) {
            char id[64];
            snprintf(id, sizeof(id), "r%d-%d", round, i);
            json_t *a = fx_answer(sender, id, 5000);
            cr_assert_not_null(a);
            json_decref(a);
        }
        s += 25;
        /* Nothing more, not even a duplicate. */
        json_t *more = next_seq_event(v, 150);
        cr_assert_null(more, "round %d: extra %s", round, json_dumps(more, JSON_COMPACT));
        tk_ws_free(v);
    }
    tk_ws_free(sender);
}

Test(resume, http_events_pages_the_kept_events_and_says_when_some_were_dropped)
{
    fx_open_room(&f, "rs-http", "cara");
    fx_recharge(&f, "ann", 1000000);
    struct tk_ws *sender = fx_viewer(&f, 0, "ann", "rs-http");
    long long last = send_acked(sender, "a", 10);
    char epoch[32];
    room_epoch("rs-http", epoch);
    struct tk_http_resp r;
    char path[128];
    snprintf(path, sizeof(path), "/v1/rooms/rs-http/events?since_seq=%lld&limit=4", last - 10);
    cr_assert_eq(tk_http(f.node[1].port, "GET", path, NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(fx_str(r.json, "room"), "rs-http");
    cr_assert_eq(fx_int(r.json, "seq"), last);
    char got[32];
    snprintf(got, sizeof(got), "%lld", fx_int(r.json, "epoch"));
    cr_assert_str_eq(got, epoch);
    cr_assert(json_is_true(json_object_get(r.json, "complete")));
    json_t *ev = json_object_get(r.json, "events");
    cr_assert_eq(json_array_size(ev), 4);
    for (size_t i = 0; i < 4; i++) {
        json_t *e = json_array_get(ev, i);
        cr_assert_eq(fx_int(e, "seq"), last - 9 + (long long)i);
        cr_assert_str_eq(fx_str(e, "type"), "gift");
        cr_assert_null(json_object_get(e, "replay"), "events are as first sent");
    }
    tk_http_resp_cleanup(&r);
    /* Default limit: everything kept after since_seq. */
    snprintf(path, sizeof(path), "/v1/rooms/rs-http/events?since_seq=%lld", last - 3);
    cr_assert_eq(tk_http(f.node[0].port, "GET", path, NULL, NULL, &r), 0);
    cr_assert_eq(json_array_size(json_object_get(r.json, "events")), 3);
    tk_http_resp_cleanup(&r);
    /* Past the end: nothing, complete. */
    snprintf(path, sizeof(path), "/v1/rooms/rs-http/events?since_seq=%lld", last);
    cr_assert_eq(tk_http(f.node[0].port, "GET", path, NULL, NULL, &r), 0);
    cr_assert_eq(json_array_size(json_object_get(r.json, "events")), 0);
    cr_assert(json_is_true(json_object_get(r.json, "complete")));
    tk_http_resp_cleanup(&r);
    /* 40 more: the first events are dropped (history_size 40); what is kept comes back. */
    last = send_acked(sender, "b", 40);
    cr_assert_eq(
        tk_http(f.node[0].port, "GET", "/v1/rooms/rs-http/events?since_seq=0", NULL, NULL, &r), 0);
    cr_assert(json_is_false(json_object_get(r.json, "complete")), "%s", r.body);
    ev = json_object_get(r.json, "events");
    cr_assert_eq(json_array_size(ev), 40);
    cr_assert_eq(fx_int(json_array_get(ev, 0), "seq"), last - 39);
    cr_assert_eq(fx_int(json_array_get(ev, 39), "seq"), last);
    tk_http_resp_cleanup(&r);
    /* Unknown room: 404; bad arguments: 400; a wrong method: 405. */
    cr_assert_eq(tk_http(f.node[0].port, "GET", "/v1/rooms/nosuchroom/events", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 404);
    tk_http_resp_cleanup(&r);
    const char *bad[] = {"?since_seq=-1", "?since_seq=x", "?limit=0", "?limit=1001"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "/v1/rooms/rs-http/events%s", bad[i]);
        cr_assert_eq(tk_http(f.node[0].port, "GET", path, NULL, NULL, &r), 0);
        cr_assert_eq(r.status, 400, "%s: %d", bad[i], r.status);
        cr_assert_str_eq(fx_str(json_object_get(r.json, "error"), "code"), "bad_request");
        tk_http_resp_cleanup(&r);
    }
    cr_assert_eq(tk_http(f.node[0].port, "POST", "/v1/rooms/rs-http/events", f.service, "{}", &r),
                 0);
    cr_assert_eq(r.status, 405);
    tk_http_resp_cleanup(&r);
    tk_ws_free(sender);
}

/* POST /v1/rooms/{room}/overlay as token with body; returns the status, *out the answer. */
static int overlay_post(const char *room, const char *token, const char *body, json_t **out)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/rooms/%s/overlay", room);
    struct tk_http_resp r;
    cr_assert_eq(tk_http(f.node[1].port, "POST", path, token, body, &r), 0);
    int status = r.status;
    if (out) {
        *out = json_incref(r.json);
    }
    tk_http_resp_cleanup(&r);
    return status;
}

/* The next overlay event on ws (others dropped), NULL on timeout. */
static json_t *next_overlay(struct tk_ws *ws, int timeout_ms)
{
    return tk_ws_expect(ws, "overlay", timeout_ms);
}

Test(resume, overlay_controls_reach_overlays_only)
{
    fx_open_room(&f, "rs-ovl", "cara");
    fx_recharge(&f, "ann", 100000);
    struct tk_ws *sender = fx_viewer(&f, 0, "ann", "rs-ovl");
    struct tk_ws *ovl0 = fx_connect_as(&f, 0, "cara", "overlay", "rs-ovl");
    struct tk_ws *ovl1 = fx_connect_as(&f, 1, "cara", "overlay", "rs-ovl");
    struct tk_ws *viewer = fx_viewer(&f, 1, "vic", "rs-ovl");
    long long s = send_acked(sender, "a", 2);

    const char *actions[] = {"skip", "pause", "resume"};
    for (size_t i = 0; i < 3; i++) {
        char body[64];
        snprintf(body, sizeof(body), "{\"action\":\"%s\"}", actions[i]);
        json_t *a = NULL;
        cr_assert_eq(overlay_post("rs-ovl", f.service, body, &a), 200);
        json_decref(a);
        struct tk_ws *both[2] = {ovl0, ovl1};
        for (int k = 0; k < 2; k++) {
            json_t *e = next_overlay(both[k], 5000);
            cr_assert_not_null(e, "overlay %d: no %s", k, actions[i]);
            cr_assert_str_eq(fx_str(e, "action"), actions[i]);
            cr_assert_str_eq(fx_str(e, "room"), "rs-ovl");
            cr_assert_null(json_object_get(e, "event"));
            json_decref(e);
        }
    }
    /* Replay: the room event of that seq, as it was sent; by the room's creator too. */
    char *creator = tk_token("cara", "cara", "viewer", NULL, 3600);
    char body[64];
    snprintf(body, sizeof(body), "{\"action\":\"replay\",\"seq\":%lld}", s - 1);
    cr_assert_eq(overlay_post("rs-ovl", creator, body, NULL), 200);
    json_t *e = next_overlay(ovl1, 5000);
    cr_assert_not_null(e);
    cr_assert_str_eq(fx_str(e, "action"), "replay");
    json_t *ev = json_object_get(e, "event");
    cr_assert_str_eq(fx_str(ev, "type"), "gift");
    cr_assert_eq(fx_int(ev, "seq"), s - 1);
    cr_assert_str_eq(fx_str(ev, "id"), "a-0");
    json_decref(e);
    /* A viewer of the room never sees a control. */
    json_t *x = tk_ws_expect(viewer, "overlay", 400);
    cr_assert_null(x, "a viewer got %s", json_dumps(x, 0));
    /* Refusals: another viewer 403, no such seq 404, bad body 400, no such room 404. */
    char *other = tk_token("vic", "vic", "viewer", NULL, 3600);
    cr_assert_eq(overlay_post("rs-ovl", other, "{\"action\":\"skip\"}", NULL), 403);
    snprintf(body, sizeof(body), "{\"action\":\"replay\",\"seq\":%lld}", s + 100);
    cr_assert_eq(overlay_post("rs-ovl", f.service, body, NULL), 404);
    cr_assert_eq(overlay_post("rs-ovl", f.service, "{\"action\":\"replay\"}", NULL), 400);
    cr_assert_eq(overlay_post("rs-ovl", f.service, "{\"action\":\"dance\"}", NULL), 400);
    cr_assert_eq(overlay_post("rs-ovl", NULL, "{\"action\":\"skip\"}", NULL), 401);
    cr_assert_eq(overlay_post("nosuchroom", f.service, "{\"action\":\"skip\"}", NULL), 404);
    /* None of those reached the overlays. */
    e = next_overlay(ovl0, 5000);
    cr_assert_not_null(e);
    cr_assert_str_eq(fx_str(e, "action"), "replay");
    json_decref(e);
    x = next_overlay(ovl0, 400);
    cr_assert_null(x, "a refused control arrived: %s", json_dumps(x, 0));
    free(other);
    free(creator);
    tk_ws_free(viewer);
    tk_ws_free(ovl0);
    tk_ws_free(ovl1);
    tk_ws_free(sender);
}

/* The node's own gaps: its pub/sub connection is killed (CLIENT KILL) while gifts go on from
 * the other node; its viewers still get every seq once, the missing ones read from history. */
Test(resume, a_node_fills_its_own_gap_after_a_pubsub_reconnect)
{
    fx_open_room(&f, "rs-gap", "cara");
    fx_recharge(&f, "ann", 10000000);
    struct tk_ws *sender = fx_viewer(&f, 1, "ann", "rs-gap");
    struct tk_ws *v = fx_viewer(&f, 0, "vic", "rs-gap");
    long long s = send_acked(sender, "a", 2);
    expect_seqs(v, s - 1, s, 0);
    redisContext *rc = tk_redis_connect(&f.redis);
    long long filled = fx_metric(&f, 0, "giftd_gap_events_total");
    for (int round = 0; round < 8 && fx_metric(&f, 0, "giftd_gap_events_total") == filled;
         round++) {
        /* Kill node 0's subscriber (CLIENT LIST shows it by its SUBSCRIBE). */
        redisReply *list = redisCommand(rc, "CLIENT LIST TYPE pubsub");
        cr_assert_not_null(list);
        for (char *line = list->str; line && *line;) {
            char *nl = strchr(line, '\n');
            unsigned long long id = strtoull(line + 3, NULL, 10);
            freeReplyObject(redisCommand(rc, "CLIENT KILL ID %llu", id));
            line = nl ? nl + 1 : NULL;
        }
        freeReplyObject(list);
        char stem[16];
        snprintf(stem, sizeof(stem), "g%d", round);
        long long last = send_acked(sender, stem, 5);
        expect_seqs(v, s + 1, last, 0);
        s = last;
    }
    cr_assert_gt(fx_metric(&f, 0, "giftd_gap_events_total"), filled,
                 "no gap was filled in 8 rounds");
    redisFree(rc);
    tk_ws_free(v);
    tk_ws_free(sender);
}

/* How many connections subscribe to room's channel (PUBSUB NUMSUB). */
static long long subscribers(redisContext *rc, const char *room)
{
    redisReply *r = redisCommand(rc, "PUBSUB NUMSUB giftd:{r:%s}:ch", room);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
    long long n = r->element[1]->integer;
    freeReplyObject(r);
    return n;
}

/* A room's first viewer on a node gets joined only once the node's subscription to the room is
 * in place: what is published right after joined (here the room's close) reaches it. Every
 * other round the nodes' subscriber connections are killed just before the join, so that the
 * join certainly comes before the subscription (made again after a 50 ms backoff). */
Test(resume, joined_comes_after_the_subscription_so_nothing_right_after_is_missed)
{
    redisContext *rc = tk_redis_connect(&f.redis);
    cr_assert_not_null(rc);
    /* A room watched on both nodes throughout keeps their subscribers of type pubsub. */
    fx_open_room(&f, "rs-anchor", "cara");
    struct tk_ws *anchor[2] = {fx_viewer(&f, 0, "olga", "rs-anchor"),
                               fx_viewer(&f, 1, "olga", "rs-anchor")};
    for (int i = 0; i < 10; i++) {
        char room[32];
        snprintf(room, sizeof(room), "rs-sub%d", i);
        fx_open_room(&f, room, "cara");
        if (i % 2) {
            freeReplyObject(redisCommand(rc, "CLIENT KILL TYPE pubsub"));
        }
        struct tk_ws *v = fx_viewer(&f, (i / 2) % 2, "vic", room);
        cr_assert_eq(subscribers(rc, room), 1, "joined before the node subscribed to %s", room);
        fx_close_room(&f, room);
        json_t *c = tk_ws_expect(v, "room_closed", 3000);
        cr_assert_not_null(c, "%s: room_closed did not arrive", room);
        json_decref(c);
        tk_ws_free(v);
    }
    tk_ws_free(anchor[0]);
    tk_ws_free(anchor[1]);
    redisFree(rc);
}

/* The node's last viewer of a room leaves (the node unsubscribes) and a viewer joins it again
 * before Redis answered that UNSUBSCRIBE (Redis paused): the join waits for the new
 * SUBSCRIBE's answer, which comes after the UNSUBSCRIBE's, and the viewer then hears the room
 * (the new subscription is not taken for the old one). */
Test(resume, a_room_joined_again_while_its_unsubscribe_is_in_flight_still_receives)
{
    fx_open_room(&f, "rs-again", "cara");
    fx_recharge(&f, "ann", 1000000);
    struct tk_ws *sender = fx_viewer(&f, 1, "ann", "rs-again");
    struct tk_ws *v = fx_viewer(&f, 0, "vic", "rs-again");
    long long s = send_acked(sender, "a", 1);
    expect_seqs(v, s, s, 0);
    redisContext *rc = tk_redis_connect(&f.redis);
    cr_assert_not_null(rc);
    freeReplyObject(redisCommand(rc, "CLIENT PAUSE 600 ALL"));
    tk_ws_free(v); /* node 0's last viewer: it unsubscribes (paused) */
    struct timespec pause = {0, 150 * 1000 * 1000};
    nanosleep(&pause, NULL);
    v = fx_viewer(&f, 0, "vic", "rs-again");
    s = send_acked(sender, "b", 1);
    expect_seqs(v, s, s, 0);
    cr_assert_eq(subscribers(rc, "rs-again"), 2, "both nodes subscribed, once each");
    redisFree(rc);
    tk_ws_free(v);
    tk_ws_free(sender);
}

/* A room closed while a node's subscriber is down: its viewers still hear room_closed once the
 * node is subscribed again (the history read that fills its gap says the room is closed), and
 * a gift is then refused there. */
Test(resume, a_close_missed_while_the_subscriber_was_down_still_reaches_the_viewers)
{
    fx_open_room(&f, "rs-shut", "cara");
    fx_recharge(&f, "ann", 1000);
    struct tk_ws *v = fx_viewer(&f, 0, "ann", "rs-shut");
    long long s = send_acked(v, "a", 1);
    expect_seqs(v, s, s, 0);
    redisContext *rc = tk_redis_connect(&f.redis);
    cr_assert_not_null(rc);
    redisReply *k = redisCommand(rc, "CLIENT KILL TYPE pubsub");
    cr_assert(k && k->type == REDIS_REPLY_INTEGER && k->integer >= 1, "no subscriber killed");
    freeReplyObject(k);
    struct tk_http_resp r = {0};
    cr_assert_eq(tk_http(f.node[1].port, "DELETE", "/v1/rooms/rs-shut", f.service, NULL, &r), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    tk_http_resp_cleanup(&r);
    json_t *c = tk_ws_expect(v, "room_closed", 5000);
    cr_assert_not_null(c, "room_closed never came");
    json_decref(c);
    cr_assert_null(tk_ws_expect(v, "room_closed", 500), "room_closed twice");
    fx_expect_refusal(v, "late", "galaxy", 1, "room_not_live");
    redisFree(rc);
    tk_ws_free(v);
}
