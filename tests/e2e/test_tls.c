/* End-to-end: giftd with tls.cert and tls.key (SPEC 8) — https and wss verified against a
 * throwaway self-signed certificate, giftctl over https, and a TLS port that speaks no plain
 * HTTP. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/fixture.h"

/* The node's certificate names only the address the tests use, so https://localhost is a
 * name mismatch. */
#define NODE_SAN "IP:127.0.0.1"

static struct fx f;
static struct tk_tls_cert cert;  /* the node's certificate and key */
static struct tk_tls_cert other; /* a certificate that did not sign the node's */
static char cert_flag[320];
static char key_flag[320];

static void setup(void)
{
    cr_assert_eq(tk_tls_cert_init(&cert, NODE_SAN), 0, "cannot make the node's certificate");
    cr_assert_eq(tk_tls_cert_init(&other, NODE_SAN), 0, "cannot make a second certificate");
    snprintf(cert_flag, sizeof(cert_flag), "--tls.cert=%s", cert.cert);
    snprintf(key_flag, sizeof(key_flag), "--tls.key=%s", cert.key);
    /* Bursts below: lift the per-user gift rate so that they are not refused. */
    const char *extra[] = {cert_flag, key_flag, "--limits.gifts_per_sec=100000",
                           "--limits.frames_per_sec=100000", NULL};
    /* fx_start's readiness checks already go over https, verified with cert. */
    fx_start(&f, 1, extra);
    cr_assert_str_eq(f.node[0].tls_ca, cert.cert);
}

static void teardown(void)
{
    fx_stop(&f);
    tk_tls_cert_cleanup(&cert);
    tk_tls_cert_cleanup(&other);
}

TestSuite(tls, .init = setup, .fini = teardown, .timeout = 90);

Test(tls, healthz_over_https_is_verified_against_the_certificate)
{
    struct tk_http_resp r = {0};
    cr_assert_eq(tk_https(f.node[0].port, cert.cert, "GET", "/healthz", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(fx_str(r.json, "status"), "ok");
    tk_http_resp_cleanup(&r);

    /* Verification is real: a CA that did not sign the node's certificate refuses it. */
    cr_assert_eq(tk_https(f.node[0].port, other.cert, "GET", "/healthz", NULL, NULL, &r), -EPROTO);
    tk_http_resp_cleanup(&r);

    /* The API answers over https as over http: a service call and a refused one. */
    fx_open_room(&f, "t0", "cara");
    cr_assert_eq(
        tk_https(f.node[0].port, cert.cert, "GET", "/v1/users/ann/balance", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 401, "no token: %d %s", r.status, r.body);
    tk_http_resp_cleanup(&r);
}

Test(tls, plain_clients_get_no_http_on_the_tls_port)
{
    int port = f.node[0].port;
    /* Plain HTTP: the server never answers in plain text (the connection is cut). */
    struct tk_http_resp r = {0};
    int rc = tk_http(port, "GET", "/healthz", NULL, NULL, &r);
    cr_assert_lt(rc, 0, "plain GET /healthz on the TLS port answered HTTP %d", r.status);
    tk_http_resp_cleanup(&r);
    /* A plain WebSocket upgrade gets no HTTP status either. */
    rc = tk_ws_connect_status(port, "/ws");
    cr_assert_lt(rc, 0, "plain WebSocket upgrade on the TLS port answered HTTP %d", rc);
    /* A wss client that does not trust the certificate gets no connection. */
    cr_assert_null(tk_ws_connect_tls(port, "/ws", other.cert));
    /* The node is unharmed. */
    cr_assert_eq(tk_https(port, cert.cert, "GET", "/healthz", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    tk_http_resp_cleanup(&r);
}

Test(tls, wss_viewers_authenticate_join_and_receive_gifts)
{
    fx_open_room(&f, "t1", "cara");
    cr_assert_eq(fx_recharge(&f, "ann", 1000), 1000);
    /* ann authenticates with the query token and joins (fx_viewer asserts welcome, joined). */
    struct tk_ws *ann = fx_viewer(&f, 0, "ann", "t1");
    /* bob opens without a token and authenticates with hello. */
    struct tk_ws *bob = tk_ws_connect_tls(f.node[0].port, "/ws?room=t1", cert.cert);
    cr_assert_not_null(bob);
    char *tok = tk_token("bob", "Bob", "viewer", NULL, 600);
    cr_assert_eq(tk_ws_send_json(bob, "{\"type\":\"hello\",\"token\":\"%s\"}", tok), 0);
    free(tok);
    json_t *w = tk_ws_expect(bob, "welcome", 5000);
    cr_assert_not_null(w, "no welcome after hello over wss");
    cr_assert_str_eq(fx_str(json_object_get(w, "user"), "name"), "Bob");
    json_decref(w);
    json_t *j = tk_ws_expect(bob, "joined", 5000);
    cr_assert_not_null(j);
    cr_assert_str_eq(fx_str(j, "room"), "t1");
    json_decref(j);

    /* One gift: acknowledged to ann, broadcast to both. */
    fx_send_gift(ann, "tls-1", "rose", 3);
    json_t *ack = fx_answer(ann, "tls-1", 5000);
    cr_assert_not_null(ack);
    cr_assert_str_eq(fx_str(ack, "type"), "ack", "%s", json_dumps(ack, JSON_COMPACT));
    long long seq = fx_int(ack, "seq");
    json_decref(ack);
    json_t *g = tk_ws_expect(bob, "gift", 5000);
    cr_assert_not_null(g, "bob received no gift event over wss");
    cr_assert_str_eq(fx_str(g, "id"), "tls-1");
    cr_assert_eq(fx_int(g, "seq"), seq);
    cr_assert_eq(fx_int(g, "count"), 3);
    cr_assert_str_eq(fx_str(json_object_get(g, "from"), "id"), "ann");
    cr_assert_str_eq(fx_str(json_object_get(g, "gift"), "id"), "rose");
    json_decref(g);

    /* A burst: the events reach bob (several to a frame when they queue up), all of them, in
     * order, and every send is acknowledged. */
    enum { BURST = 60 };
    for (int i = 0; i < BURST; i++) {
        char id[32];
        snprintf(id, sizeof(id), "tls-b%d", i);
        fx_send_gift(ann, id, i % 2 ? "rose" : "heart_me", 1);
    }
    for (int i = 0; i < BURST; i++) {
        char id[32];
        snprintf(id, sizeof(id), "tls-b%d", i);
        json_t *a = fx_answer(ann, id, 10000);
        cr_assert_not_null(a, "no answer to %s", id);
        cr_assert_str_eq(fx_str(a, "type"), "ack", "%s", json_dumps(a, JSON_COMPACT));
        json_decref(a);
    }
    long long last = seq;
    int got = 0;
    int64_t end = fx_now_ms() + 15000;
    while (got < BURST && fx_now_ms() < end) {
        json_t *e = tk_ws_recv(bob, (int)(end - fx_now_ms()));
        if (!e) {
            break;
        }
        const char *t = fx_str(e, "type");
        if (strcmp(t, "gift") == 0 || strcmp(t, "combo_end") == 0) {
            cr_assert_gt(fx_int(e, "seq"), last, "events out of order");
            last = fx_int(e, "seq");
            got += strcmp(t, "gift") == 0;
        }
        json_decref(e);
    }
    cr_assert_eq(got, BURST, "bob received %d of %d gift events", got, BURST);
    tk_ws_free(bob);
    tk_ws_free(ann);
}

/* Runs giftctl with args (borrowed, NULL-terminated) and env (may be NULL); returns its exit
 * status, *out its stdout parsed as JSON (NULL: not JSON), *err its stderr (**new**). */
static int ctl(const char *const *args, const char *const *env, json_t **out, char **err)
{
    const char *argv[24] = {GIFTCTL_BIN};
    int n = 1;
    for (int i = 0; args[i] && n < 23; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    char *so = NULL;
    char *se = NULL;
    int rc = tk_run(argv, env, 15000, &so, &se);
    if (out) {
        *out = json_loads(so ? so : "", 0, NULL);
    }
    if (err) {
        *err = se;
    } else {
        free(se);
    }
    free(so);
    return rc;
}

Test(tls, giftctl_speaks_https_and_verifies_the_certificate)
{
    char url[64];
    char localhost_url[64];
    char plain_url[64];
    char ca_env[320];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d", f.node[0].port);
    snprintf(localhost_url, sizeof(localhost_url), "https://localhost:%d", f.node[0].port);
    snprintf(plain_url, sizeof(plain_url), "http://127.0.0.1:%d", f.node[0].port);
    snprintf(ca_env, sizeof(ca_env), "GIFTD_CACERT=%s", cert.cert);
    const char *secret_env[] = {"GIFTD_SECRET=" TK_SECRET, NULL};
    const char *ca_secret_env[] = {"GIFTD_SECRET=" TK_SECRET, ca_env, NULL};
    json_t *j = NULL;
    char *err = NULL;

    const char *open[] = {"--url", url,         "--cacert", cert.cert,        "room", "open",
                          "t2",    "--creator", "cara",     "--creator-name", "Cara", NULL};
    cr_assert_eq(ctl(open, secret_env, &j, NULL), 0);
    cr_assert(json_is_true(json_object_get(j, "live")));
    json_decref(j);
    /* GIFTD_CACERT does what --cacert does. */
    const char *recharge[] = {"--url",        url,      "recharge", "--user", "ann",
                              "--payment-id", "tls-p1", "--coins",  "7",      NULL};
    cr_assert_eq(ctl(recharge, ca_secret_env, &j, NULL), 0);
    cr_assert_eq(fx_int(j, "balance"), 7);
    json_decref(j);

    /* Not verified, no answer: the system's CA store does not know the certificate ... */
    const char *show[] = {"--url", url, "room", "show", "t2", NULL};
    cr_assert_eq(ctl(show, secret_env, NULL, &err), 1);
    cr_assert(strstr(err, "certificate"), "stderr: %s", err);
    free(err);
    /* ... nor does another CA ... */
    const char *wrong_ca[] = {"--url", url, "--cacert", other.cert, "room", "show", "t2", NULL};
    cr_assert_eq(ctl(wrong_ca, secret_env, NULL, &err), 1);
    cr_assert(strstr(err, "certificate"), "stderr: %s", err);
    free(err);
    /* ... and the right CA for a name the certificate does not carry is refused too. */
    const char *wrong_name[] = {"--url", localhost_url, "--cacert", cert.cert,
                                "room",  "show",        "t2",       NULL};
    cr_assert_eq(ctl(wrong_name, secret_env, NULL, &err), 1);
    cr_assert(strstr(err, "localhost"), "stderr: %s", err);
    free(err);
    /* Plain http:// to the TLS port gets no answer. */
    const char *plain[] = {"--url", plain_url, "room", "show", "t2", NULL};
    cr_assert_eq(ctl(plain, secret_env, NULL, &err), 1);
    cr_assert(strstr(err, "giftctl: GET"), "stderr: %s", err);
    free(err);
    /* A CA file that cannot be read is a usage error. */
    const char *no_file[] = {"--url", url,    "--cacert", "/nonexistent/ca.pem",
                             "room",  "show", "t2",       NULL};
    cr_assert_eq(ctl(no_file, secret_env, NULL, &err), 2);
    free(err);
}
