/* Unit tests of the control API (controlplane/rpc.c): calls, progress,
 * errors, the cluster-key handshake in both directions, hostile peers on
 * the raw socket, key files, and stopping a server with clients attached.
 * Everything runs on loopback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "controlplane/rpc.h"
#include "ferry/error.h"

#define KEY_A "cluster-key-A-0123456789abcdef"
#define KEY_B "cluster-key-B-0123456789abcdef"

struct fixture {
    char dir[64];
    struct fy_rpc_key key_a, key_b;
    struct fy_rpc_server *srv;
    pthread_mutex_t log_lock;
    char log[16384];
};

/* ---- helpers ------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    assert_int_equal(chmod(path, mode), 0);
}

static void load_key(struct fixture *f, const char *name, const char *secret,
                     struct fy_rpc_key *key)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    write_file(path, secret, 0600);
    assert_int_equal(fy_rpc_key_load(path, key), 0);
}

static void log_line(void *ctx, const char *line)
{
    struct fixture *f = ctx;
    pthread_mutex_lock(&f->log_lock);
    size_t used = strlen(f->log);
    snprintf(f->log + used, sizeof(f->log) - used, "%s\n", line);
    pthread_mutex_unlock(&f->log_lock);
}

/* Whether a log line holds both 'a' and 'b', waiting up to 'ms'. */
static bool log_has(struct fixture *f, const char *a, const char *b, int ms)
{
    int64_t end = now_ms() + ms;
    do {
        bool found = false;
        pthread_mutex_lock(&f->log_lock);
        for (const char *line = f->log; *line && !found;) {
            const char *nl = strchr(line, '\n');
            size_t n = nl ? (size_t)(nl - line) : strlen(line);
            char buf[1024];
            snprintf(buf, sizeof(buf), "%.*s", (int)n, line);
            found = strstr(buf, a) && strstr(buf, b);
            line += n + (nl ? 1 : 0);
        }
        pthread_mutex_unlock(&f->log_lock);
        if (found)
            return true;
        usleep(10 * 1000);
    } while (now_ms() < end);
    if (ms > 0)
        print_message("log so far:\n%s", f->log);
    return false;
}

/* ---- the methods served --------------------------------------------------- */

static int m_echo(void *ctx, struct fy_rpc_call *call, const json_object *params,
                  json_object **result)
{
    (void)ctx;
    (void)call;
    return json_object_deep_copy((json_object *)params, result, NULL) == 0
               ? 0
               : fy_error(FY_E_NOMEM, "copy");
}

static int m_fail(void *ctx, struct fy_rpc_call *call, const json_object *params,
                  json_object **result)
{
    (void)ctx;
    (void)call;
    (void)params;
    *result = json_object_new_object(); /* must be freed by the server */
    return fy_error(FY_E_PRECHECK, "VM vm1 has a USB device: remove it");
}

static int m_progress(void *ctx, struct fy_rpc_call *call, const json_object *params,
                      json_object **result)
{
    json_object *n;
    int count;

    (void)ctx;
    if (!json_object_object_get_ex(params, "n", &n))
        return fy_error(FY_E_INVAL, "progress needs n");
    count = json_object_get_int(n);
    for (int i = 0; i < count; i++) {
        json_object *p = json_object_new_object();
        json_object_object_add(p, "step", json_object_new_int(i));
        int rc = fy_rpc_reply_progress(call, p);
        if (rc < 0)
            return rc;
    }
    *result = json_object_new_object();
    json_object_object_add(*result, "steps", json_object_new_int(count));
    return 0;
}

static int m_slow(void *ctx, struct fy_rpc_call *call, const json_object *params,
                  json_object **result)
{
    json_object *ms;
    (void)ctx;
    (void)call;
    (void)result;
    if (json_object_object_get_ex(params, "ms", &ms))
        usleep((useconds_t)json_object_get_int(ms) * 1000);
    return 0;
}

static const struct fy_rpc_method methods[] = {
    {"echo", m_echo},
    {"fail", m_fail},
    {"progress", m_progress},
    {"slow", m_slow},
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-rpc-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    pthread_mutex_init(&f->log_lock, NULL);
    load_key(f, "key-a", KEY_A "\n", &f->key_a);
    load_key(f, "key-b", KEY_B "\n", &f->key_b);
    if (fy_rpc_server_start("127.0.0.1:0", &f->key_a, methods,
                            sizeof(methods) / sizeof(methods[0]), f, log_line,
                            &f->srv) < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[160];
    fy_rpc_server_stop(f->srv);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    pthread_mutex_destroy(&f->log_lock);
    free(f);
    return 0;
}

static struct fy_rpc_conn *connect_a(struct fixture *f)
{
    struct fy_rpc_conn *conn = NULL;
    int rc = fy_rpc_connect(fy_rpc_server_addr(f->srv), &f->key_a, 5000, &conn);
    if (rc < 0)
        print_message("connect: %s\n", fy_error_detail());
    assert_int_equal(rc, 0);
    return conn;
}

static int64_t get_int(const json_object *o, const char *name)
{
    json_object *v;
    assert_true(json_object_object_get_ex(o, name, &v));
    return json_object_get_int64(v);
}

/* One echo call that must succeed: the server still serves. */
static void assert_serves(struct fixture *f)
{
    struct fy_rpc_conn *conn = connect_a(f);
    json_object *params = json_object_new_object(), *result = NULL;
    json_object_object_add(params, "ping", json_object_new_int(7));
    assert_int_equal(fy_rpc_call(conn, "echo", params, &result, NULL, NULL, 5000), 0);
    assert_int_equal(get_int(result, "ping"), 7);
    json_object_put(result);
    fy_rpc_close(conn);
}

/* ---- raw sockets: what a hostile or broken peer sends --------------------- */

static int port_of(const char *addr)
{
    return atoi(strrchr(addr, ':') + 1);
}

static int raw_connect(struct fixture *f, char *local, size_t locallen)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port_of(fy_rpc_server_addr(f->srv)))};
    struct timeval tv = {.tv_sec = 10};
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(local, locallen, "127.0.0.1:%d", ntohs(sa.sin_port));
    return fd;
}

static void raw_send(int fd, const void *buf, size_t len)
{
    assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void raw_send_frame(int fd, const char *json)
{
    uint32_t len = htonl((uint32_t)strlen(json));
    raw_send(fd, &len, 4);
    raw_send(fd, json, strlen(json));
}

/* Reads one frame; NULL at end of file or on a reset. */
static json_object *raw_recv_frame(int fd)
{
    uint8_t hdr[4];
    size_t got = 0;
    char *body;
    json_object *obj;

    while (got < 4) {
        ssize_t k = recv(fd, hdr + got, 4 - got, 0);
        if (k <= 0)
            return NULL;
        got += (size_t)k;
    }
    uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
                   (uint32_t)hdr[2] << 8 | hdr[3];
    assert_true(len <= FY_RPC_FRAME_MAX);
    body = calloc(1, len + 1);
    for (got = 0; got < len;) {
        ssize_t k = recv(fd, body + got, len - got, 0);
        if (k <= 0) {
            free(body);
            return NULL;
        }
        got += (size_t)k;
    }
    obj = json_tokener_parse(body);
    free(body);
    return obj;
}

/* The server's greeting, which every raw client reads first. */
static void raw_read_hello(int fd)
{
    json_object *hello = raw_recv_frame(fd);
    json_object *v;
    assert_non_null(hello);
    assert_true(json_object_object_get_ex(hello, "hello", &v));
    assert_string_equal(json_object_get_string(v), "ferry-rpc");
    assert_int_equal(get_int(hello, "version"), FY_RPC_VERSION);
    json_object_put(hello);
}

/* The server closes the connection (after at most a refusal frame). */
static void raw_assert_closed(int fd)
{
    json_object *o;
    while ((o = raw_recv_frame(fd)) != NULL) {
        json_object *ok;
        assert_true(json_object_object_get_ex(o, "ok", &ok));
        assert_false(json_object_get_boolean(ok));
        json_object_put(o);
    }
}

/* ---- a fake server: greets with 'hello', then answers with 'reply' ------- */

struct fake_server {
    int listen_fd;
    char addr[64];
    const char *hello;
    const char *reply;
    pthread_t thread;
    int frames_after_reply; /* what the client sent after our reply */
};

static void *fake_main(void *arg)
{
    struct fake_server *fs = arg;
    int fd = accept(fs->listen_fd, NULL, NULL);
    json_object *o;
    struct timeval tv = {.tv_sec = 5};

    if (fd < 0)
        return NULL;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    raw_send_frame(fd, fs->hello);
    o = raw_recv_frame(fd);
    json_object_put(o);
    if (o && fs->reply) {
        raw_send_frame(fd, fs->reply);
        while ((o = raw_recv_frame(fd)) != NULL) {
            fs->frames_after_reply++;
            json_object_put(o);
        }
    }
    close(fd);
    return NULL;
}

static void fake_start(struct fake_server *fs, const char *hello, const char *reply)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);

    memset(fs, 0, sizeof(*fs));
    fs->hello = hello;
    fs->reply = reply;
    fs->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(bind(fs->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fs->listen_fd, 4), 0);
    assert_int_equal(getsockname(fs->listen_fd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(fs->addr, sizeof(fs->addr), "127.0.0.1:%d", ntohs(sa.sin_port));
    assert_int_equal(pthread_create(&fs->thread, NULL, fake_main, fs), 0);
}

static void fake_stop(struct fake_server *fs)
{
    pthread_join(fs->thread, NULL);
    close(fs->listen_fd);
}

/* ---- calls ------------------------------------------------------------------ */

static void test_rpc__call__result_round_trips(void **state)
{
    struct fixture *f = *state;
    struct fy_rpc_conn *conn = connect_a(f);
    json_object *params = json_object_new_object(), *result = NULL, *v;

    json_object_object_add(params, "vm", json_object_new_string("vm1"));
    json_object_object_add(params, "mem", json_object_new_int64(1ll << 40));
    assert_int_equal(fy_rpc_call(conn, "echo", params, &result, NULL, NULL, 5000), 0);
    assert_non_null(result);
    assert_true(json_object_object_get_ex(result, "vm", &v));
    assert_string_equal(json_object_get_string(v), "vm1");
    assert_int_equal(get_int(result, "mem"), 1ll << 40);
    json_object_put(result);
    fy_rpc_close(conn);
}

static void test_rpc__no_params__handler_gets_empty_object(void **state)
{
    struct fixture *f = *state;
    struct fy_rpc_conn *conn = connect_a(f);
    json_object *result = NULL;

    assert_int_equal(fy_rpc_call(conn, "echo", NULL, &result, NULL, NULL, 5000), 0);
    assert_true(json_object_is_type(result, json_type_object));
    assert_int_equal(json_object_object_length(result), 0);
    json_object_put(result);
    fy_rpc_close(conn);
}

static void test_rpc__sequential_calls_on_one_connection__each_answered(void **state)
{
    struct fixture *f = *state;
    struct fy_rpc_conn *conn = connect_a(f);

    for (int i = 0; i < 50; i++) {
        json_object *params = json_object_new_object(), *result = NULL;
        json_object_object_add(params, "i", json_object_new_int(i));
        assert_int_equal(fy_rpc_call(conn, "echo", params, &result, NULL, NULL, 5000), 0);
        assert_int_equal(get_int(result, "i"), i);
        json_object_put(result);
    }
    fy_rpc_close(conn);
}

struct client_arg {
    struct fixture *f;
    int rc;
};

static void *slow_client(void *arg)
{
    struct client_arg *a = arg;
    struct fy_rpc_conn *conn = NULL;
    json_object *params = json_object_new_object();

    json_object_object_add(params, "ms", json_object_new_int(300));
    a->rc = fy_rpc_connect(fy_rpc_server_addr(a->f->srv), &a->f->key_a, 5000, &conn);
    if (a->rc == 0)
        a->rc = fy_rpc_call(conn, "slow", params, NULL, NULL, NULL, 5000);
    else
        json_object_put(params);
    fy_rpc_close(conn);
    return NULL;
}

static void test_rpc__concurrent_clients__served_in_parallel(void **state)
{
    struct fixture *f = *state;
    enum { N = 8 };
    pthread_t t[N];
    struct client_arg a[N];
    int64_t start = now_ms();

    for (int i = 0; i < N; i++) {
        a[i] = (struct client_arg){.f = f, .rc = -1};
        assert_int_equal(pthread_create(&t[i], NULL, slow_client, &a[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(a[i].rc, 0);
    }
    /* Eight 300 ms handlers one after another would take 2.4 s. */
    assert_true(now_ms() - start < 1500);
}

struct progress_log {
    int seen[16];
    int n;
};

static void on_progress(void *cb_ctx, const json_object *progress)
{
    struct progress_log *pl = cb_ctx;
    json_object *v;
    assert_true(json_object_object_get_ex(progress, "step", &v));
    assert_true(pl->n < 16);
    pl->seen[pl->n++] = json_object_get_int(v);
}

static void test_rpc__progress_frames__arrive_in_order_before_result(void **state)
{
    struct fixture *f = *state;
    struct fy_rpc_conn *conn = connect_a(f);
    struct progress_log pl = {.n = 0};
    json_object *params = json_object_new_object(), *result = NULL;

    json_object_object_add(params, "n", json_object_new_int(10));
    assert_int_equal(fy_rpc_call(conn, "progress", params, &result, on_progress, &pl,
                                 5000),
                     0);
    assert_int_equal(pl.n, 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(pl.seen[i], i);
    assert_int_equal(get_int(result, "steps"), 10);
    json_object_put(result);

    /* Without a callback the progress is dropped and the result still comes. */
    params = json_object_new_object();
    json_object_object_add(params, "n", json_object_new_int(3));
    assert_int_equal(fy_rpc_call(conn, "progress", params, &result, NULL, NULL, 5000), 0);
    assert_int_equal(get_int(result, "steps"), 3);
    json_object_put(result);
    fy_rpc_close(conn);
}

static void test_rpc__handler_error__client_gets_code_and_message(void **state)
{
    struct fixture *f = *state;
    struct fy_rpc_conn *conn = connect_a(f);
    json_object *result = NULL;
    char want[256];

    assert_int_equal(fy_rpc_call(conn, "fail", NULL, &result, NULL, NULL, 5000),
                     -FY_E_PRECHECK);
    assert_null(result);
    snprintf(want, sizeof(want), "host %s: VM vm1 has a USB device: remove it",
             fy_rpc_server_addr(f->srv));
    assert_string_equal(fy_error_detail(), want);
    /* The connection goes on. */
    assert_int_equal(fy_rpc_call(conn, "echo", NULL, NULL, NULL, NULL, 5000), 0);
    fy_rpc_close(conn);
}

static void test_rpc__unknown_method__notfound(void **state)
{
    struct fixture *f = *state;
    struct fy_rpc_conn *conn = connect_a(f);

    assert_int_equal(fy_rpc_call(conn, "nosuch", NULL, NULL, NULL, NULL, 5000),
                     -FY_E_NOTFOUND);
    assert_non_null(strstr(fy_error_detail(), "no method nosuch"));
    assert_int_equal(fy_rpc_call(conn, "echo", NULL, NULL, NULL, NULL, 5000), 0);
    fy_rpc_close(conn);
}

static void test_rpc__server_stopped__pending_client_gets_closed(void **state)
{
    struct fixture *f = *state;
    struct fy_rpc_conn *conn = connect_a(f);
    int64_t start = now_ms();

    fy_rpc_server_stop(f->srv);
    f->srv = NULL;
    assert_true(now_ms() - start < 2000);
    assert_int_equal(fy_rpc_call(conn, "echo", NULL, NULL, NULL, NULL, 5000),
                     -FY_E_CLOSED);
    /* A failed connection stays failed. */
    assert_int_equal(fy_rpc_call(conn, "echo", NULL, NULL, NULL, NULL, 5000),
                     -FY_E_CLOSED);
    assert_non_null(strstr(fy_error_detail(), "reconnect"));
    fy_rpc_close(conn);
}

static void *stop_later(void *arg)
{
    struct fixture *f = arg;
    usleep(100 * 1000);
    fy_rpc_server_stop(f->srv);
    return NULL;
}

static void test_rpc__server_stopped_during_a_call__handler_finishes_first(void **state)
{
    struct fixture *f = *state;
    struct fy_rpc_conn *conn = connect_a(f);
    json_object *params = json_object_new_object();
    pthread_t t;
    int rc;

    json_object_object_add(params, "ms", json_object_new_int(400));
    assert_int_equal(pthread_create(&t, NULL, stop_later, f), 0);
    rc = fy_rpc_call(conn, "slow", params, NULL, NULL, NULL, 5000);
    pthread_join(t, NULL);
    f->srv = NULL;
    /* The result may or may not make it out before the socket closes; the
     * point is that stop waited for the handler and nothing leaked. */
    assert_true(rc == 0 || rc == -FY_E_CLOSED);
    fy_rpc_close(conn);
}

/* ---- authentication ------------------------------------------------------ */

static void test_rpc__wrong_key__auth_refused_and_logged(void **state)
{
    struct fixture *f = *state;
    struct fy_rpc_conn *conn = NULL;

    assert_int_equal(fy_rpc_connect(fy_rpc_server_addr(f->srv), &f->key_b, 5000, &conn),
                     -FY_E_AUTH);
    assert_null(conn);
    assert_non_null(strstr(fy_error_detail(), "authentication failed"));
    assert_non_null(strstr(fy_error_detail(), "same cluster key"));
    assert_true(log_has(f, "refused 127.0.0.1:", "wrong key", 3000));
    assert_serves(f);
}

static void test_rpc__impostor_server__client_refuses_it(void **state)
{
    struct fixture *f = *state;
    struct fake_server fs;
    struct fy_rpc_conn *conn = NULL;

    (void)f;
    /* Accepts whatever the client says and answers with a MAC it cannot
     * have computed without the key. */
    fake_start(&fs,
               "{\"hello\":\"ferry-rpc\",\"version\":1,"
               "\"nonce\":\"00112233445566778899aabbccddeeff\"}",
               "{\"ok\":true,\"mac\":"
               "\"0000000000000000000000000000000000000000000000000000000000000000\"}");
    assert_int_equal(fy_rpc_connect(fs.addr, &f->key_a, 5000, &conn), -FY_E_AUTH);
    assert_null(conn);
    assert_non_null(strstr(fy_error_detail(), "impostor"));
    fake_stop(&fs);
    assert_int_equal(fs.frames_after_reply, 0);
}

static void test_rpc__real_server_with_other_key__client_refused(void **state)
{
    struct fixture *f = *state;
    struct fy_rpc_server *other = NULL;
    struct fy_rpc_conn *conn = NULL;

    assert_int_equal(fy_rpc_server_start("127.0.0.1:0", &f->key_b, methods, 1, f,
                                         log_line, &other),
                     0);
    assert_int_equal(fy_rpc_connect(fy_rpc_server_addr(other), &f->key_a, 5000, &conn),
                     -FY_E_AUTH);
    fy_rpc_server_stop(other);
}

static void test_rpc__server_speaks_other_version__client_gets_version_error(void **state)
{
    struct fake_server fs;
    struct fixture *f = *state;
    struct fy_rpc_conn *conn = NULL;

    fake_start(&fs,
               "{\"hello\":\"ferry-rpc\",\"version\":2,"
               "\"nonce\":\"00112233445566778899aabbccddeeff\"}",
               NULL);
    assert_int_equal(fy_rpc_connect(fs.addr, &f->key_a, 5000, &conn), -FY_E_VERSION);
    assert_non_null(strstr(fy_error_detail(), "version 2"));
    fake_stop(&fs);
}

static void test_rpc__client_speaks_other_version__refused_and_logged(void **state)
{
    struct fixture *f = *state;
    char local[64];
    int fd = raw_connect(f, local, sizeof(local));
    json_object *o, *v;

    raw_read_hello(fd);
    raw_send_frame(fd, "{\"version\":2}");
    o = raw_recv_frame(fd);
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, "code", &v));
    assert_string_equal(json_object_get_string(v), "VERSION");
    assert_true(json_object_object_get_ex(o, "error", &v));
    assert_non_null(strstr(json_object_get_string(v), "version mismatch"));
    json_object_put(o);
    raw_assert_closed(fd);
    close(fd);
    assert_true(log_has(f, local, "version mismatch", 3000));
}

static void test_rpc__raw_garbage__refused_and_logged(void **state)
{
    struct fixture *f = *state;
    char local[64];
    int fd = raw_connect(f, local, sizeof(local));

    raw_read_hello(fd);
    raw_send(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
    raw_assert_closed(fd);
    close(fd);
    assert_true(log_has(f, local, "malformed handshake", 3000));
    assert_serves(f);
}

static void test_rpc__raw_json_that_is_not_an_answer__refused_and_logged(void **state)
{
    struct fixture *f = *state;
    char local[64];
    int fd = raw_connect(f, local, sizeof(local));

    raw_read_hello(fd);
    raw_send_frame(fd, "{\"version\":1,\"nonce\":\"zz\",\"mac\":\"00\"}");
    raw_assert_closed(fd);
    close(fd);
    assert_true(log_has(f, local, "malformed handshake", 3000));
}

static void test_rpc__raw_invalid_json__refused_and_logged(void **state)
{
    struct fixture *f = *state;
    char local[64];
    int fd = raw_connect(f, local, sizeof(local));

    raw_read_hello(fd);
    raw_send_frame(fd, "{\"version\":1,");
    raw_assert_closed(fd);
    close(fd);
    assert_true(log_has(f, local, "not valid JSON", 3000));
}

static void test_rpc__raw_2mib_length__refused_and_logged(void **state)
{
    struct fixture *f = *state;
    char local[64];
    int fd = raw_connect(f, local, sizeof(local));
    uint8_t hdr[4] = {0x00, 0x20, 0x00, 0x00};

    raw_read_hello(fd);
    raw_send(fd, hdr, 4);
    raw_send(fd, "{}", 2);
    raw_assert_closed(fd);
    close(fd);
    assert_true(log_has(f, local, "2097152 bytes", 3000));
    assert_true(log_has(f, local, "malformed handshake", 0));
    assert_serves(f);
}

static void test_rpc__raw_truncated_frame__refused_and_logged(void **state)
{
    struct fixture *f = *state;
    char local[64];
    int fd = raw_connect(f, local, sizeof(local));
    uint8_t hdr[4] = {0, 0, 0, 100};

    raw_read_hello(fd);
    raw_send(fd, hdr, 4);
    raw_send(fd, "{\"version\"", 10);
    shutdown(fd, SHUT_WR);
    raw_assert_closed(fd);
    close(fd);
    assert_true(log_has(f, local, "truncated", 3000));
    assert_serves(f);
}

static void hex_to_bytes(const char *hex, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

/* Authenticates a raw socket with KEY_A, as fy_rpc_connect() would. */
static void raw_authenticate(int fd)
{
    json_object *hello = raw_recv_frame(fd), *v, *reply;
    uint8_t msg[6 + 32], mac[32];
    unsigned maclen = sizeof(mac);
    char answer[256], machex[65];

    assert_non_null(hello);
    assert_true(json_object_object_get_ex(hello, "nonce", &v));
    memcpy(msg, "client", 6);
    hex_to_bytes(json_object_get_string(v), msg + 6, 16);
    memset(msg + 22, 0x5a, 16); /* our nonce */
    json_object_put(hello);
    assert_non_null(HMAC(EVP_sha256(), KEY_A, (int)strlen(KEY_A), msg, sizeof(msg),
                         mac, &maclen));
    for (int i = 0; i < 32; i++)
        snprintf(machex + 2 * i, 3, "%02x", mac[i]);
    snprintf(answer, sizeof(answer),
             "{\"version\":1,\"nonce\":\"5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a\","
             "\"mac\":\"%s\"}",
             machex);
    raw_send_frame(fd, answer);
    reply = raw_recv_frame(fd);
    assert_non_null(reply);
    assert_true(json_object_object_get_ex(reply, "ok", &v));
    assert_true(json_object_get_boolean(v));
    json_object_put(reply);
}

static void test_rpc__request_without_method__proto_error_connection_goes_on(void **state)
{
    struct fixture *f = *state;
    char local[64];
    int fd = raw_connect(f, local, sizeof(local));
    json_object *o, *e, *v;

    raw_authenticate(fd);
    raw_send_frame(fd, "{\"id\":5,\"params\":{}}");
    o = raw_recv_frame(fd);
    assert_non_null(o);
    assert_int_equal(get_int(o, "id"), 5);
    assert_true(json_object_object_get_ex(o, "error", &e));
    assert_true(json_object_object_get_ex(e, "code", &v));
    assert_string_equal(json_object_get_string(v), "PROTO");
    json_object_put(o);
    raw_send_frame(fd, "{\"id\":6,\"method\":\"echo\",\"params\":{\"a\":1}}");
    o = raw_recv_frame(fd);
    assert_non_null(o);
    assert_int_equal(get_int(o, "id"), 6);
    assert_true(json_object_object_get_ex(o, "result", &v));
    assert_int_equal(get_int(v, "a"), 1);
    json_object_put(o);
    close(fd);
}

static void test_rpc__authenticated_2mib_frame__closed_and_logged(void **state)
{
    struct fixture *f = *state;
    char local[64];
    int fd = raw_connect(f, local, sizeof(local));
    uint8_t hdr[4] = {0x00, 0x20, 0x00, 0x00};
    json_object *o, *e, *v;

    raw_authenticate(fd);
    raw_send(fd, hdr, 4);
    o = raw_recv_frame(fd);
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, "error", &e));
    assert_true(json_object_object_get_ex(e, "code", &v));
    assert_string_equal(json_object_get_string(v), "TOOBIG");
    json_object_put(o);
    assert_null(raw_recv_frame(fd));
    close(fd);
    assert_true(log_has(f, local, "2097152 bytes", 3000));
    assert_serves(f);
}

static void test_rpc__raw_client_closes_at_once__logged(void **state)
{
    struct fixture *f = *state;
    char local[64];
    int fd = raw_connect(f, local, sizeof(local));

    close(fd);
    assert_true(log_has(f, "rpc: ", local, 3000));
}

static void test_rpc__raw_silent_client__refused_after_5s_others_served(void **state)
{
    struct fixture *f = *state;
    char local[64];
    int64_t start = now_ms();
    int fd = raw_connect(f, local, sizeof(local));

    raw_read_hello(fd);
    /* While it says nothing, others are served. */
    assert_serves(f);
    assert_false(log_has(f, local, "refused", 0));
    raw_assert_closed(fd);
    close(fd);
    assert_true(log_has(f, local, "no answer within 5 s", 3000));
    assert_true(now_ms() - start >= FY_RPC_AUTH_TIMEOUT_MS - 100);
}

static void test_rpc__too_many_connections__refused_busy_and_logged(void **state)
{
    struct fixture *f = *state;
    struct fy_rpc_conn *conns[FY_RPC_MAX_CONNS] = {NULL};
    struct fy_rpc_conn *extra = NULL;

    for (int i = 0; i < FY_RPC_MAX_CONNS; i++)
        conns[i] = connect_a(f);
    assert_int_equal(fy_rpc_connect(fy_rpc_server_addr(f->srv), &f->key_a, 5000, &extra),
                     -FY_E_BUSY);
    assert_true(log_has(f, "refused 127.0.0.1:", "too many connections", 3000));
    for (int i = 0; i < FY_RPC_MAX_CONNS; i++)
        fy_rpc_close(conns[i]);
    /* Closed connections free their slots. */
    usleep(100 * 1000);
    assert_serves(f);
}

/* ---- key files ---------------------------------------------------------- */

static void test_rpc__key_file_mode_0644__refused_with_chmod_hint(void **state)
{
    struct fixture *f = *state;
    struct fy_rpc_key key;
    char path[128];

    snprintf(path, sizeof(path), "%s/open-key", f->dir);
    write_file(path, KEY_A, 0644);
    assert_int_equal(fy_rpc_key_load(path, &key), -FY_E_CONFIG);
    assert_non_null(strstr(fy_error_detail(), "chmod 600"));
    assert_non_null(strstr(fy_error_detail(), path));
    assert_int_equal(key.len, 0);
}

static void test_rpc__key_shorter_than_16_bytes__refused(void **state)
{
    struct fixture *f = *state;
    struct fy_rpc_key key;
    char path[128];

    snprintf(path, sizeof(path), "%s/short-key", f->dir);
    write_file(path, "fifteen-bytes!!\n", 0600);
    assert_int_equal(fy_rpc_key_load(path, &key), -FY_E_CONFIG);
    assert_non_null(strstr(fy_error_detail(), "at least 16"));
}

static void test_rpc__key_file_missing__sys_error_names_file(void **state)
{
    struct fy_rpc_key key;
    (void)state;
    assert_int_equal(fy_rpc_key_load("/nonexistent/ferry.key", &key), -FY_E_SYS);
    assert_non_null(strstr(fy_error_detail(), "/nonexistent/ferry.key"));
}

static void test_rpc__key_trailing_newline__same_key_as_without(void **state)
{
    struct fixture *f = *state;
    struct fy_rpc_key key;
    char path[128];

    snprintf(path, sizeof(path), "%s/no-newline", f->dir);
    write_file(path, KEY_A, 0600);
    assert_int_equal(fy_rpc_key_load(path, &key), 0);
    assert_int_equal(key.len, strlen(KEY_A));
    assert_memory_equal(key.bytes, f->key_a.bytes, key.len);
    assert_int_equal(f->key_a.len, key.len);
}

static void test_rpc__server_on_ipv6_loopback__serves(void **state)
{
    struct fixture *f = *state;
    struct fy_rpc_server *srv = NULL;
    struct fy_rpc_conn *conn = NULL;

    if (fy_rpc_server_start("[::1]:0", &f->key_a, methods, 1, f, log_line, &srv) < 0)
        skip(); /* no IPv6 here */
    assert_non_null(strstr(fy_rpc_server_addr(srv), "[::1]:"));
    assert_int_equal(fy_rpc_connect(fy_rpc_server_addr(srv), &f->key_a, 5000, &conn), 0);
    assert_int_equal(fy_rpc_call(conn, "echo", NULL, NULL, NULL, NULL, 5000), 0);
    fy_rpc_close(conn);
    fy_rpc_server_stop(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rpc__call__result_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__no_params__handler_gets_empty_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__sequential_calls_on_one_connection__each_answered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__concurrent_clients__served_in_parallel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__progress_frames__arrive_in_order_before_result, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__handler_error__client_gets_code_and_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__unknown_method__notfound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__server_stopped__pending_client_gets_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__server_stopped_during_a_call__handler_finishes_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__wrong_key__auth_refused_and_logged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__impostor_server__client_refuses_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__real_server_with_other_key__client_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__server_speaks_other_version__client_gets_version_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__client_speaks_other_version__refused_and_logged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__raw_garbage__refused_and_logged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__raw_json_that_is_not_an_answer__refused_and_logged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__raw_invalid_json__refused_and_logged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__raw_2mib_length__refused_and_logged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__raw_truncated_frame__refused_and_logged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__request_without_method__proto_error_connection_goes_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__authenticated_2mib_frame__closed_and_logged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__raw_client_closes_at_once__logged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__raw_silent_client__refused_after_5s_others_served, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__too_many_connections__refused_busy_and_logged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__key_file_mode_0644__refused_with_chmod_hint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__key_shorter_than_16_bytes__refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__key_file_missing__sys_error_names_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__key_trailing_newline__same_key_as_without, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc__server_on_ipv6_loopback__serves, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
