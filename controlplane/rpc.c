/* The control API: frames, the cluster-key handshake, the threaded server
 * and the client.  The protocol is described in rpc.h. */
#include "controlplane/rpc.h"
#include "controlplane/json_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "dataplane/netaddr.h"
#include "ferry/error.h"

#define NONCE_LEN 16
#define MAC_LEN 32
#define HELLO_NAME "ferry-rpc"
#define ADDR_MAX (INET6_ADDRSTRLEN + 16)
/* Once a frame's header has arrived, its body must follow within this. */
#define FRAME_BODY_TIMEOUT_MS 10000
/* How often the accept thread reaps finished connections when idle. */
#define REAP_INTERVAL_MS 1000

/* ---- time, addresses, sockets ------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t deadline_after(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

/* Waits for 'events' on fd until 'deadline' (-1: none).  Returns 1 when
 * ready, 0 on timeout, negative on error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    struct pollfd p = {.fd = fd, .events = events};

    for (;;) {
        int left = -1;
        if (deadline >= 0) {
            int64_t d = deadline - now_ms();
            left = d < 0 ? 0 : d > 60000 ? 60000 : (int)d;
        }
        int n = poll(&p, 1, left);
        if (n > 0)
            return 1;
        if (n == 0 && deadline >= 0 && now_ms() >= deadline)
            return 0;
        if (n < 0 && errno != EINTR)
            return fy_error_sys("poll");
    }
}

/* ---- frames -------------------------------------------------------------
 *
 * 'who' names the other end in messages: "host H" on the client, "the
 * client" on the server (whose log lines name the peer first).  Sockets are non-blocking; every wait is a poll. */

static int send_all(int fd, const void *hdr, size_t hlen, const void *body,
                    size_t blen, int64_t deadline, const char *who)
{
    struct iovec iov[2] = {{(void *)hdr, hlen}, {(void *)body, blen}};
    struct iovec *v = iov;
    int n = 2;

    while (n > 0) {
        struct msghdr mh = {.msg_iov = v, .msg_iovlen = (size_t)n};
        /* MSG_NOSIGNAL: a peer that went away is EPIPE, not SIGPIPE. */
        ssize_t k = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int w = wait_fd(fd, POLLOUT, deadline);
                if (w < 0)
                    return w;
                if (w == 0)
                    return fy_error(FY_E_TIMEOUT, "%s does not read its messages",
                                    who);
                continue;
            }
            if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN)
                return fy_error(FY_E_CLOSED, "%s closed the connection", who);
            return fy_error_sys("%s: send", who);
        }
        while (n > 0 && (size_t)k >= v->iov_len) {
            k -= (ssize_t)v->iov_len;
            v++;
            n--;
        }
        if (n > 0) {
            v->iov_base = (uint8_t *)v->iov_base + k;
            v->iov_len -= (size_t)k;
        }
    }
    return 0;
}

/* Sends 'obj' as one frame.  Does not take ownership of 'obj'. */
static int frame_send(int fd, json_object *obj, int64_t deadline, const char *who)
{
    size_t len = 0;
    const char *s = json_object_to_json_string_length(obj, JSON_C_TO_STRING_PLAIN,
                                                      &len);
    uint8_t hdr[4];

    if (!s)
        return fy_error(FY_E_NOMEM, "cannot encode a message to %s", who);
    if (len > FY_RPC_FRAME_MAX)
        return fy_error(FY_E_TOOBIG,
                        "message to %s is %zu bytes; the limit is %u", who, len,
                        FY_RPC_FRAME_MAX);
    hdr[0] = (uint8_t)(len >> 24);
    hdr[1] = (uint8_t)(len >> 16);
    hdr[2] = (uint8_t)(len >> 8);
    hdr[3] = (uint8_t)len;
    return send_all(fd, hdr, sizeof(hdr), s, len, deadline, who);
}

/* Reads exactly 'len' bytes.  '*got' says how many arrived before an
 * end of file (returned as FY_E_CLOSED) or another error. */
static int recv_all(int fd, void *buf, size_t len, int64_t deadline,
                    const char *who, size_t *got)
{
    *got = 0;
    while (*got < len) {
        ssize_t k = recv(fd, (uint8_t *)buf + *got, len - *got, MSG_DONTWAIT);
        if (k > 0) {
            *got += (size_t)k;
            continue;
        }
        if (k == 0)
            return fy_error(FY_E_CLOSED, "%s closed the connection", who);
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int w = wait_fd(fd, POLLIN, deadline);
            if (w < 0)
                return w;
            if (w == 0)
                return fy_error(FY_E_TIMEOUT, "%s sent nothing for too long", who);
            continue;
        }
        if (errno == ECONNRESET)
            return fy_error(FY_E_CLOSED, "%s reset the connection", who);
        return fy_error_sys("%s: recv", who);
    }
    return 0;
}

/* Receives one frame holding a JSON object into '*out' (the caller's).  The
 * header must start before 'deadline' (-1: none); the body then has until
 * 'deadline' or FRAME_BODY_TIMEOUT_MS, whichever is later.  FY_E_CLOSED
 * for an end of file between frames, FY_E_TRUNCATED inside one. */
static int frame_recv(int fd, int64_t deadline, const char *who,
                      json_object **out)
{
    uint8_t hdr[4];
    char *body = NULL;
    json_tokener *tok = NULL;
    json_object *obj = NULL;
    size_t got, len;
    int rc;

    *out = NULL;
    rc = recv_all(fd, hdr, sizeof(hdr), deadline, who, &got);
    if (rc == -FY_E_CLOSED && got > 0)
        return fy_error(FY_E_TRUNCATED, "%s sent a truncated frame header", who);
    if (rc < 0)
        return rc;
    len = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
    if (len > FY_RPC_FRAME_MAX)
        return fy_error(FY_E_TOOBIG, "%s sent a frame of %zu bytes; the limit is %u",
                        who, len, FY_RPC_FRAME_MAX);
    if (len == 0)
        return fy_error(FY_E_PROTO, "%s sent an empty frame", who);
    body = malloc(len);
    if (!body)
        return fy_error(FY_E_NOMEM, "no memory for a %zu-byte frame from %s", len, who);
    int64_t body_deadline = now_ms() + FRAME_BODY_TIMEOUT_MS;
    if (deadline > body_deadline)
        body_deadline = deadline;
    rc = recv_all(fd, body, len, body_deadline, who, &got);
    if (rc == -FY_E_CLOSED) {
        rc = fy_error(FY_E_TRUNCATED, "%s sent a truncated frame: %zu of %zu bytes",
                      who, got, len);
        goto out;
    }
    if (rc < 0)
        goto out;
    tok = json_tokener_new();
    if (!tok) {
        rc = fy_error(FY_E_NOMEM, "no memory to parse a frame from %s", who);
        goto out;
    }
    obj = json_tokener_parse_ex(tok, body, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    if (!obj || jerr != json_tokener_success) {
        rc = fy_error(FY_E_PROTO, "%s sent a frame that is not valid JSON (%s)", who,
                      jerr == json_tokener_continue ? "incomplete"
                                                    : json_tokener_error_desc(jerr));
        goto out;
    }
    for (size_t i = json_tokener_get_parse_end(tok); i < len; i++) {
        if (!strchr(" \t\r\n", body[i])) {
            rc = fy_error(FY_E_PROTO, "%s sent a frame with data after its JSON", who);
            goto out;
        }
    }
    if (!json_object_is_type(obj, json_type_object)) {
        rc = fy_error(FY_E_PROTO, "%s sent a frame that is not a JSON object", who);
        goto out;
    }
    *out = obj;
    obj = NULL;
    rc = 0;
out:
    json_object_put(obj);
    if (tok)
        json_tokener_free(tok);
    free(body);
    return rc;
}

/* ---- handshake pieces --------------------------------------------------- */

/* Decodes the string member 'name' of 'obj', exactly 2*n hex digits, into
 * 'out'.  Returns false if it is missing or malformed. */
static bool get_hex(const json_object *obj, const char *name, uint8_t *out, size_t n)
{
    json_object *v;
    const char *s;

    if (!json_object_object_get_ex(obj, name, &v) ||
        !json_object_is_type(v, json_type_string))
        return false;
    s = json_object_get_string(v);
    return strlen(s) == 2 * n && fy_hex_decode(s, n, out);
}

static int add_hex(json_object *obj, const char *name, const uint8_t *b, size_t n)
{
    char s[2 * MAC_LEN + 1];
    fy_hex_encode(b, n, s);
    json_object_object_add(obj, name, json_object_new_string(s));
    return 0;
}

static int make_nonce(uint8_t out[NONCE_LEN])
{
    size_t got = 0;
    while (got < NONCE_LEN) {
        ssize_t k = getrandom(out + got, NONCE_LEN - got, 0);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return fy_error_sys("getrandom");
        }
        got += (size_t)k;
    }
    return 0;
}

/* HMAC-SHA256(key, label | a | b); 'label' is "client" or "server". */
static int compute_mac(const struct fy_rpc_key *key, const char *label,
                       const uint8_t a[NONCE_LEN], const uint8_t b[NONCE_LEN],
                       uint8_t out[MAC_LEN])
{
    uint8_t msg[6 + 2 * NONCE_LEN];
    unsigned int outlen = MAC_LEN;

    memcpy(msg, label, 6);
    memcpy(msg + 6, a, NONCE_LEN);
    memcpy(msg + 6 + NONCE_LEN, b, NONCE_LEN);
    if (!HMAC(EVP_sha256(), key->bytes, (int)key->len, msg, sizeof(msg), out,
              &outlen) ||
        outlen != MAC_LEN)
        return fy_error(FY_E_SYS, "HMAC-SHA256 failed in libcrypto");
    return 0;
}

static bool get_int(const json_object *obj, const char *name, int64_t *out)
{
    json_object *v;
    if (!json_object_object_get_ex(obj, name, &v) ||
        !json_object_is_type(v, json_type_int))
        return false;
    *out = json_object_get_int64(v);
    return true;
}

static const char *get_string(const json_object *obj, const char *name)
{
    json_object *v;
    if (!json_object_object_get_ex(obj, name, &v) ||
        !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* The fy_err code named 'name', or FY_E_PEER for a name this build does
 * not know (a newer peer). */
static int code_from_name(const char *name)
{
    for (int i = 1; name && i < FY_E__COUNT; i++)
        if (strcmp(fy_errname(i), name) == 0)
            return i;
    return FY_E_PEER;
}

/* ---- the cluster key ---------------------------------------------------- */

void fy_rpc_key_wipe(struct fy_rpc_key *key)
{
    if (key)
        OPENSSL_cleanse(key, sizeof(*key));
}

int fy_rpc_key_load(const char *path, struct fy_rpc_key *key)
{
    struct stat st;
    size_t len = 0;
    int fd = -1, rc;

    if (!path || !key)
        return fy_error(FY_E_INVAL, "fy_rpc_key_load: NULL argument");
    fy_rpc_key_wipe(key);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fy_error_sys("cannot open the cluster key file %s", path);
    if (fstat(fd, &st) < 0) {
        rc = fy_error_sys("cannot stat the cluster key file %s", path);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = fy_error(FY_E_CONFIG, "cluster key file %s is not a regular file", path);
        goto out;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        rc = fy_error(FY_E_CONFIG,
                      "cluster key file %s is accessible by group or others "
                      "(mode %04o); run: chmod 600 %s",
                      path, (unsigned)(st.st_mode & 07777), path);
        goto out;
    }
    for (;;) {
        /* One byte more than fits tells a too-long file apart. */
        uint8_t extra;
        ssize_t k = len < sizeof(key->bytes)
                        ? read(fd, key->bytes + len, sizeof(key->bytes) - len)
                        : read(fd, &extra, 1);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            rc = fy_error_sys("cannot read the cluster key file %s", path);
            goto out;
        }
        if (k == 0)
            break;
        if (len == sizeof(key->bytes)) {
            rc = fy_error(FY_E_CONFIG,
                          "cluster key file %s is longer than %d bytes; use a "
                          "shorter key, e.g. head -c 32 /dev/urandom",
                          path, FY_RPC_KEY_MAX);
            goto out;
        }
        len += (size_t)k;
    }
    while (len > 0 && (key->bytes[len - 1] == '\n' || key->bytes[len - 1] == '\r'))
        len--;
    if (len < FY_RPC_KEY_MIN) {
        rc = fy_error(FY_E_CONFIG,
                      "cluster key file %s holds %zu bytes; a cluster key needs "
                      "at least %d (e.g. head -c 32 /dev/urandom > %s)",
                      path, len, FY_RPC_KEY_MIN, path);
        goto out;
    }
    key->len = len;
    rc = 0;
out:
    close(fd);
    if (rc < 0)
        fy_rpc_key_wipe(key);
    return rc;
}

/* ---- server ------------------------------------------------------------- */

struct conn {
    struct fy_rpc_server *srv;
    int fd;           /* closed only after the thread is joined */
    pthread_t thread;
    bool done;        /* the thread has finished; under srv->lock */
    char peer[ADDR_MAX];
    char who[16]; /* "the client": log lines name the peer already */
};

struct fy_rpc_call {
    struct conn *conn;
    json_object *id;
};

struct fy_rpc_server {
    int listen_fd;
    int wake[2]; /* stop writes a byte to wake the accept thread */
    pthread_t accept_thread;
    int stopping; /* atomic */
    pthread_mutex_t lock; /* conns[] and their 'done' */
    struct conn *conns[FY_RPC_MAX_CONNS];
    pthread_mutex_t log_lock;
    fy_rpc_log_fn *log_fn;
    void *ctx;
    struct fy_rpc_method *methods;
    size_t n_methods;
    struct fy_rpc_key key;
    char addr[ADDR_MAX];
};

static bool is_stopping(struct fy_rpc_server *srv)
{
    return __atomic_load_n(&srv->stopping, __ATOMIC_ACQUIRE);
}

static void srv_log(struct fy_rpc_server *srv, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void srv_log(struct fy_rpc_server *srv, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    if (!srv->log_fn)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&srv->log_lock);
    srv->log_fn(srv->ctx, line);
    pthread_mutex_unlock(&srv->log_lock);
}

/* Refuses the handshake: tells the client 'code' and 'msg' (best effort,
 * briefly) and logs the reason.  Returns -code. */
static int refuse(struct conn *c, int code, const char *msg, const char *reason)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "ok", json_object_new_boolean(0));
    json_object_object_add(o, "code", json_object_new_string(fy_errname(code)));
    json_object_object_add(o, "error", json_object_new_string(msg));
    frame_send(c->fd, o, deadline_after(1000), c->who);
    json_object_put(o);
    srv_log(c->srv, "rpc: refused %s: %s", c->peer, reason);
    return -code;
}

/* The server's side of the handshake; refuses and logs on any failure. */
static int serve_handshake(struct conn *c)
{
    struct fy_rpc_server *srv = c->srv;
    uint8_t ns[NONCE_LEN], nc[NONCE_LEN], mac[MAC_LEN], expect[MAC_LEN];
    json_object *msg = NULL, *ans = NULL;
    char reason[512];
    int64_t version;
    int rc;

    if ((rc = make_nonce(ns)) < 0) {
        snprintf(reason, sizeof(reason), "internal error: %s", fy_error_detail());
        return refuse(c, FY_E_SYS, "internal error", reason);
    }
    msg = json_object_new_object();
    json_object_object_add(msg, "hello", json_object_new_string(HELLO_NAME));
    json_object_object_add(msg, "version", json_object_new_int(FY_RPC_VERSION));
    add_hex(msg, "nonce", ns, NONCE_LEN);
    rc = frame_send(c->fd, msg, deadline_after(FY_RPC_AUTH_TIMEOUT_MS), c->who);
    json_object_put(msg);
    msg = NULL;
    if (rc < 0) {
        if (!is_stopping(srv))
            srv_log(srv, "rpc: dropped %s before authentication: %s", c->peer,
                    fy_error_detail());
        return rc;
    }

    rc = frame_recv(c->fd, deadline_after(FY_RPC_AUTH_TIMEOUT_MS), c->who, &ans);
    if (rc == -FY_E_TIMEOUT)
        return refuse(c, FY_E_AUTH, "authentication failed",
                      "authentication failed: no answer within 5 s");
    if (rc < 0) {
        if (is_stopping(srv))
            return rc;
        snprintf(reason, sizeof(reason),
                 "authentication failed: malformed handshake (%s)", fy_error_detail());
        return refuse(c, FY_E_AUTH, "authentication failed", reason);
    }
    if (!get_int(ans, "version", &version)) {
        rc = refuse(c, FY_E_AUTH, "authentication failed",
                    "authentication failed: malformed handshake (no version)");
        goto out;
    }
    if (version != FY_RPC_VERSION) {
        char m[160];
        snprintf(m, sizeof(m),
                 "protocol version mismatch: the server speaks ferry-rpc version %d, "
                 "the client %lld",
                 FY_RPC_VERSION, (long long)version);
        rc = refuse(c, FY_E_VERSION, m, m);
        goto out;
    }
    if (!get_hex(ans, "nonce", nc, NONCE_LEN) || !get_hex(ans, "mac", mac, MAC_LEN)) {
        rc = refuse(c, FY_E_AUTH, "authentication failed",
                    "authentication failed: malformed handshake (nonce or mac "
                    "missing or not hex)");
        goto out;
    }
    if ((rc = compute_mac(&srv->key, "client", ns, nc, expect)) < 0) {
        rc = refuse(c, FY_E_SYS, "internal error", fy_error_detail());
        goto out;
    }
    if (CRYPTO_memcmp(mac, expect, MAC_LEN) != 0) {
        rc = refuse(c, FY_E_AUTH, "authentication failed",
                    "authentication failed: wrong key");
        goto out;
    }
    if ((rc = compute_mac(&srv->key, "server", nc, ns, mac)) < 0) {
        rc = refuse(c, FY_E_SYS, "internal error", fy_error_detail());
        goto out;
    }
    msg = json_object_new_object();
    json_object_object_add(msg, "ok", json_object_new_boolean(1));
    add_hex(msg, "mac", mac, MAC_LEN);
    rc = frame_send(c->fd, msg, deadline_after(FY_RPC_SEND_TIMEOUT_MS), c->who);
out:
    json_object_put(msg);
    json_object_put(ans);
    OPENSSL_cleanse(expect, sizeof(expect));
    return rc;
}

static const struct fy_rpc_method *find_method(const struct fy_rpc_server *srv,
                                               const char *name)
{
    for (size_t i = 0; i < srv->n_methods; i++)
        if (strcmp(srv->methods[i].name, name) == 0)
            return &srv->methods[i];
    return NULL;
}

/* Sends {"id":id,"error":{"code":NAME,"message":msg}}; 'id' is borrowed
 * (NULL sends "id":null). */
static int send_error(struct conn *c, json_object *id, int code, const char *msg)
{
    json_object *o = json_object_new_object(), *e = json_object_new_object();
    int rc;

    json_object_object_add(e, "code", json_object_new_string(fy_errname(code)));
    json_object_object_add(e, "message", json_object_new_string(msg));
    json_object_object_add(o, "id", json_object_get(id));
    json_object_object_add(o, "error", e);
    rc = frame_send(c->fd, o, deadline_after(FY_RPC_SEND_TIMEOUT_MS), c->who);
    json_object_put(o);
    return rc;
}

/* Runs one request and sends its response.  Fails only if the response
 * could not be sent. */
static int serve_request(struct conn *c, json_object *req)
{
    struct fy_rpc_server *srv = c->srv;
    json_object *id = NULL, *params = NULL, *result = NULL, *resp;
    const struct fy_rpc_method *m;
    const char *method;
    int rc;

    if (!json_object_object_get_ex(req, "id", &id) ||
        !json_object_is_type(id, json_type_int))
        return send_error(c, NULL, FY_E_PROTO, "request without an integer \"id\"");
    method = get_string(req, "method");
    if (!method)
        return send_error(c, id, FY_E_PROTO, "request without a \"method\" string");
    if (json_object_object_get_ex(req, "params", &params) &&
        !json_object_is_type(params, json_type_object))
        return send_error(c, id, FY_E_PROTO, "\"params\" is not an object");
    m = find_method(srv, method);
    if (!m) {
        char msg[256];
        snprintf(msg, sizeof(msg), "no method %s", method);
        return send_error(c, id, FY_E_NOTFOUND, msg);
    }

    json_object *empty = params ? NULL : json_object_new_object();
    struct fy_rpc_call call = {.conn = c, .id = id};
    fy_error_clear();
    rc = m->handler(srv->ctx, &call, params ? params : empty, &result);
    json_object_put(empty);
    if (rc < 0) {
        const char *detail = fy_error_detail();
        json_object_put(result);
        return send_error(c, id, -rc, detail[0] ? detail : fy_strerror(rc));
    }
    resp = json_object_new_object();
    json_object_object_add(resp, "id", json_object_get(id));
    json_object_object_add(resp, "result", result ? result : json_object_new_object());
    rc = frame_send(c->fd, resp, deadline_after(FY_RPC_SEND_TIMEOUT_MS), c->who);
    json_object_put(resp);
    return rc;
}

static void serve_requests(struct conn *c)
{
    for (;;) {
        json_object *req;
        int rc = frame_recv(c->fd, -1, c->who, &req);

        if (rc < 0) {
            if (rc == -FY_E_CLOSED || is_stopping(c->srv))
                return;
            srv_log(c->srv, "rpc: closed %s: %s", c->peer, fy_error_detail());
            send_error(c, NULL, -rc, fy_error_detail());
            return;
        }
        rc = serve_request(c, req);
        json_object_put(req);
        if (rc < 0) {
            if (!is_stopping(c->srv) && rc != -FY_E_CLOSED)
                srv_log(c->srv, "rpc: closed %s: %s", c->peer, fy_error_detail());
            return;
        }
    }
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;

    if (serve_handshake(c) == 0)
        serve_requests(c);
    /* Tell the client now; the descriptor stays open until the join, so
     * that stop never shuts down a number reused by another file. */
    shutdown(c->fd, SHUT_RDWR);
    pthread_mutex_lock(&c->srv->lock);
    c->done = true;
    pthread_mutex_unlock(&c->srv->lock);
    return NULL;
}

static void conn_free(struct conn *c)
{
    close(c->fd);
    free(c);
}

/* Joins and frees the connections whose thread has finished. */
static void reap(struct fy_rpc_server *srv)
{
    pthread_mutex_lock(&srv->lock);
    for (size_t i = 0; i < FY_RPC_MAX_CONNS; i++) {
        struct conn *c = srv->conns[i];
        if (c && c->done) {
            pthread_join(c->thread, NULL);
            conn_free(c);
            srv->conns[i] = NULL;
        }
    }
    pthread_mutex_unlock(&srv->lock);
}

static void refuse_busy(struct fy_rpc_server *srv, int fd, const char *peer)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "ok", json_object_new_boolean(0));
    json_object_object_add(o, "code", json_object_new_string(fy_errname(FY_E_BUSY)));
    json_object_object_add(o, "error",
                           json_object_new_string("too many connections; try again later"));
    frame_send(fd, o, now_ms(), "the client"); /* only if it fits the buffer */
    json_object_put(o);
    close(fd);
    srv_log(srv, "rpc: refused %s: too many connections (%d)", peer, FY_RPC_MAX_CONNS);
}

static void accept_one(struct fy_rpc_server *srv)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char peer[ADDR_MAX];
    struct conn *c;
    size_t slot;
    int one = 1;
    int fd = accept4(srv->listen_fd, (struct sockaddr *)&ss, &sl,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);

    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
            errno == ENOMEM) {
            srv_log(srv, "rpc: cannot accept a connection: %s", strerror(errno));
            usleep(100 * 1000); /* the backlog stays; do not spin */
        }
        return;
    }
    fy_addr_format((struct sockaddr *)&ss, peer, sizeof(peer));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    pthread_mutex_lock(&srv->lock);
    for (slot = 0; slot < FY_RPC_MAX_CONNS && srv->conns[slot]; slot++)
        ;
    pthread_mutex_unlock(&srv->lock);
    if (slot == FY_RPC_MAX_CONNS) {
        refuse_busy(srv, fd, peer);
        return;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        srv_log(srv, "rpc: refused %s: out of memory", peer);
        return;
    }
    c->srv = srv;
    c->fd = fd;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    snprintf(c->who, sizeof(c->who), "the client");
    /* Only this thread fills slots, so the slot found above is still free. */
    pthread_mutex_lock(&srv->lock);
    int err = pthread_create(&c->thread, NULL, conn_main, c);
    if (err == 0)
        srv->conns[slot] = c;
    pthread_mutex_unlock(&srv->lock);
    if (err != 0) {
        srv_log(srv, "rpc: refused %s: cannot start a thread: %s", peer, strerror(err));
        conn_free(c);
    }
}

static void *accept_main(void *arg)
{
    struct fy_rpc_server *srv = arg;

    while (!is_stopping(srv)) {
        struct pollfd p[2] = {{.fd = srv->listen_fd, .events = POLLIN},
                              {.fd = srv->wake[0], .events = POLLIN}};
        int n = poll(p, 2, REAP_INTERVAL_MS);

        reap(srv);
        if (is_stopping(srv))
            break;
        if (n > 0 && (p[0].revents & POLLIN))
            accept_one(srv);
    }
    return NULL;
}

static int listen_at(const char *addr, int *fd_out, char *bound, size_t boundlen)
{
    struct addrinfo *ai = NULL;
    int rc, fd = -1, err = 0;

    if ((rc = fy_addr_resolve(addr, true, &ai)) < 0)
        return rc;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        int one = 1;
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    a->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0)
            break;
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        errno = err;
        return fy_error_sys("cannot listen for the control API at %s", addr);
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        rc = fy_error_sys("getsockname for %s", addr);
        close(fd);
        return rc;
    }
    fy_addr_format((struct sockaddr *)&ss, bound, boundlen);
    *fd_out = fd;
    return 0;
}

int fy_rpc_server_start(const char *addr, const struct fy_rpc_key *key,
                        const struct fy_rpc_method *methods, size_t n,
                        void *ctx, fy_rpc_log_fn *log_fn,
                        struct fy_rpc_server **out)
{
    struct fy_rpc_server *srv = NULL;
    int rc;

    if (out)
        *out = NULL;
    if (!addr || !key || !out || (n > 0 && !methods))
        return fy_error(FY_E_INVAL, "fy_rpc_server_start: NULL argument");
    if (key->len < FY_RPC_KEY_MIN || key->len > FY_RPC_KEY_MAX)
        return fy_error(FY_E_INVAL, "cluster key of %zu bytes; it needs %d to %d",
                        key->len, FY_RPC_KEY_MIN, FY_RPC_KEY_MAX);
    for (size_t i = 0; i < n; i++) {
        if (!methods[i].name || !methods[i].handler)
            return fy_error(FY_E_INVAL, "method %zu has no name or no handler", i);
        for (size_t j = 0; j < i; j++)
            if (strcmp(methods[i].name, methods[j].name) == 0)
                return fy_error(FY_E_INVAL, "method %s is listed twice",
                                methods[i].name);
    }

    srv = calloc(1, sizeof(*srv));
    if (!srv)
        return fy_error(FY_E_NOMEM, "no memory for the control API server");
    srv->listen_fd = -1;
    srv->wake[0] = srv->wake[1] = -1;
    srv->methods = calloc(n ? n : 1, sizeof(*methods));
    if (!srv->methods) {
        rc = fy_error(FY_E_NOMEM, "no memory for the control API server");
        goto fail;
    }
    if (n)
        memcpy(srv->methods, methods, n * sizeof(*methods));
    srv->n_methods = n;
    srv->key = *key;
    srv->ctx = ctx;
    srv->log_fn = log_fn;
    pthread_mutex_init(&srv->lock, NULL);
    pthread_mutex_init(&srv->log_lock, NULL);
    if ((rc = listen_at(addr, &srv->listen_fd, srv->addr, sizeof(srv->addr))) < 0)
        goto fail;
    if (pipe2(srv->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        rc = fy_error_sys("pipe for the control API server");
        goto fail;
    }
    int err = pthread_create(&srv->accept_thread, NULL, accept_main, srv);
    if (err != 0) {
        errno = err;
        rc = fy_error_sys("cannot start the control API's accept thread");
        goto fail;
    }
    *out = srv;
    return 0;
fail:
    if (srv->listen_fd >= 0)
        close(srv->listen_fd);
    if (srv->wake[0] >= 0) {
        close(srv->wake[0]);
        close(srv->wake[1]);
    }
    fy_rpc_key_wipe(&srv->key);
    free(srv->methods);
    free(srv);
    return rc;
}

const char *fy_rpc_server_addr(const struct fy_rpc_server *srv)
{
    return srv ? srv->addr : "";
}

void fy_rpc_server_stop(struct fy_rpc_server *srv)
{
    if (!srv)
        return;
    __atomic_store_n(&srv->stopping, 1, __ATOMIC_RELEASE);
    while (write(srv->wake[1], "x", 1) < 0 && errno == EINTR)
        ;
    pthread_join(srv->accept_thread, NULL);

    /* Only this thread touches conns[] from here; their threads still take
     * the lock to mark themselves done. */
    pthread_mutex_lock(&srv->lock);
    for (size_t i = 0; i < FY_RPC_MAX_CONNS; i++)
        if (srv->conns[i])
            shutdown(srv->conns[i]->fd, SHUT_RDWR);
    pthread_mutex_unlock(&srv->lock);
    for (size_t i = 0; i < FY_RPC_MAX_CONNS; i++) {
        if (srv->conns[i]) {
            pthread_join(srv->conns[i]->thread, NULL);
            conn_free(srv->conns[i]);
            srv->conns[i] = NULL;
        }
    }
    close(srv->listen_fd);
    close(srv->wake[0]);
    close(srv->wake[1]);
    pthread_mutex_destroy(&srv->lock);
    pthread_mutex_destroy(&srv->log_lock);
    fy_rpc_key_wipe(&srv->key);
    free(srv->methods);
    free(srv);
}

int fy_rpc_reply_progress(struct fy_rpc_call *call, json_object *progress)
{
    json_object *o;
    int rc;

    if (!call || !progress || !json_object_is_type(progress, json_type_object)) {
        json_object_put(progress);
        return fy_error(FY_E_INVAL, "fy_rpc_reply_progress: needs a call and an object");
    }
    if (is_stopping(call->conn->srv)) {
        json_object_put(progress);
        return fy_error(FY_E_CLOSED, "the control API server is stopping");
    }
    o = json_object_new_object();
    json_object_object_add(o, "id", json_object_get(call->id));
    json_object_object_add(o, "progress", progress);
    rc = frame_send(call->conn->fd, o, deadline_after(FY_RPC_SEND_TIMEOUT_MS),
                    call->conn->who);
    json_object_put(o);
    return rc;
}

/* ---- client ------------------------------------------------------------- */

struct fy_rpc_conn {
    int fd;
    bool broken;     /* a failed call left the stream out of step */
    int64_t next_id;
    char who[300];   /* "host ADDR" */
};

static int connect_to(const char *addr, int64_t deadline, const char *who, int *out)
{
    struct addrinfo *ai = NULL;
    int rc, fd = -1, err = ECONNREFUSED;
    bool timed_out = false;

    if ((rc = fy_addr_resolve(addr, false, &ai)) < 0)
        return rc;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    a->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS) {
            int w = wait_fd(fd, POLLOUT, deadline);
            socklen_t el = sizeof(err);
            if (w > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 &&
                err == 0)
                break;
            if (w == 0)
                timed_out = true;
        } else {
            err = errno;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        if (timed_out)
            return fy_error(FY_E_TIMEOUT, "cannot connect to %s: timed out", who);
        errno = err;
        return fy_error_sys("cannot connect to %s (is ferryd running there?)", who);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    *out = fd;
    return 0;
}

/* A refusal frame {"ok":false,"code":...,"error":...} as an fy_err. */
static int refused(const struct fy_rpc_conn *conn, const json_object *msg)
{
    const char *err = get_string(msg, "error");
    const char *name = get_string(msg, "code");
    int code = name ? code_from_name(name) : FY_E_AUTH;

    if (!err)
        err = "no reason given";
    if (code == FY_E_AUTH)
        return fy_error(FY_E_AUTH,
                        "%s refused us: %s; check that both hosts hold the same "
                        "cluster key file",
                        conn->who, err);
    return fy_error(code, "%s refused us: %s", conn->who, err);
}

static int client_handshake(struct fy_rpc_conn *conn, const struct fy_rpc_key *key,
                            int64_t deadline)
{
    uint8_t ns[NONCE_LEN], nc[NONCE_LEN], mac[MAC_LEN], expect[MAC_LEN];
    json_object *hello = NULL, *ans = NULL, *reply = NULL;
    json_object *okv;
    const char *name;
    int64_t version;
    int rc;

    if ((rc = frame_recv(conn->fd, deadline, conn->who, &hello)) < 0)
        goto out;
    if (json_object_object_get_ex(hello, "ok", &okv) && !json_object_get_boolean(okv)) {
        rc = refused(conn, hello);
        goto out;
    }
    name = get_string(hello, "hello");
    if (!name || strcmp(name, HELLO_NAME) != 0 || !get_int(hello, "version", &version)) {
        rc = fy_error(FY_E_PROTO, "%s is not a ferry-rpc server (bad greeting)",
                      conn->who);
        goto out;
    }
    if (version != FY_RPC_VERSION) {
        /* Tell the server too, so its log says why. */
        ans = json_object_new_object();
        json_object_object_add(ans, "version", json_object_new_int(FY_RPC_VERSION));
        frame_send(conn->fd, ans, deadline_after(1000), conn->who);
        rc = fy_error(FY_E_VERSION,
                      "protocol version mismatch: %s speaks ferry-rpc version %lld, "
                      "this client %d; run the same Ferry release on both",
                      conn->who, (long long)version, FY_RPC_VERSION);
        goto out;
    }
    if (!get_hex(hello, "nonce", ns, NONCE_LEN)) {
        rc = fy_error(FY_E_PROTO, "%s sent a greeting without a valid nonce", conn->who);
        goto out;
    }
    if ((rc = make_nonce(nc)) < 0 || (rc = compute_mac(key, "client", ns, nc, mac)) < 0)
        goto out;
    ans = json_object_new_object();
    json_object_object_add(ans, "version", json_object_new_int(FY_RPC_VERSION));
    add_hex(ans, "nonce", nc, NONCE_LEN);
    add_hex(ans, "mac", mac, MAC_LEN);
    if ((rc = frame_send(conn->fd, ans, deadline, conn->who)) < 0)
        goto out;
    if ((rc = frame_recv(conn->fd, deadline, conn->who, &reply)) < 0)
        goto out;
    if (!json_object_object_get_ex(reply, "ok", &okv) ||
        !json_object_is_type(okv, json_type_boolean)) {
        rc = fy_error(FY_E_PROTO, "%s answered the handshake without \"ok\"", conn->who);
        goto out;
    }
    if (!json_object_get_boolean(okv)) {
        rc = refused(conn, reply);
        goto out;
    }
    if ((rc = compute_mac(key, "server", nc, ns, expect)) < 0)
        goto out;
    if (!get_hex(reply, "mac", mac, MAC_LEN) || CRYPTO_memcmp(mac, expect, MAC_LEN) != 0) {
        rc = fy_error(FY_E_AUTH,
                      "%s did not prove it holds our cluster key: an impostor or a "
                      "host with another key; not talking to it",
                      conn->who);
        goto out;
    }
    rc = 0;
out:
    OPENSSL_cleanse(expect, sizeof(expect));
    json_object_put(hello);
    json_object_put(ans);
    json_object_put(reply);
    return rc;
}

int fy_rpc_connect(const char *addr, const struct fy_rpc_key *key, int timeout_ms,
                   struct fy_rpc_conn **out)
{
    struct fy_rpc_conn *conn;
    int64_t deadline = deadline_after(timeout_ms);
    int rc;

    if (out)
        *out = NULL;
    if (!addr || !key || !out)
        return fy_error(FY_E_INVAL, "fy_rpc_connect: NULL argument");
    if (key->len < FY_RPC_KEY_MIN || key->len > FY_RPC_KEY_MAX)
        return fy_error(FY_E_INVAL, "cluster key of %zu bytes; it needs %d to %d",
                        key->len, FY_RPC_KEY_MIN, FY_RPC_KEY_MAX);
    conn = calloc(1, sizeof(*conn));
    if (!conn)
        return fy_error(FY_E_NOMEM, "no memory for a connection to %s", addr);
    conn->fd = -1;
    snprintf(conn->who, sizeof(conn->who), "host %s", addr);
    if ((rc = connect_to(addr, deadline, conn->who, &conn->fd)) < 0 ||
        (rc = client_handshake(conn, key, deadline)) < 0) {
        fy_rpc_close(conn);
        return rc;
    }
    *out = conn;
    return 0;
}

int fy_rpc_call(struct fy_rpc_conn *conn, const char *method, json_object *params,
                json_object **result, fy_rpc_progress_fn *progress_cb, void *cb_ctx,
                int timeout_ms)
{
    json_object *req = NULL, *msg = NULL, *v;
    int64_t id, got_id;
    int rc;

    if (result)
        *result = NULL;
    if (!conn || !method) {
        json_object_put(params);
        return fy_error(FY_E_INVAL, "fy_rpc_call: NULL connection or method");
    }
    if (params && !json_object_is_type(params, json_type_object)) {
        json_object_put(params);
        return fy_error(FY_E_INVAL, "params of %s to %s: not a JSON object", method,
                        conn->who);
    }
    if (conn->broken) {
        json_object_put(params);
        return fy_error(FY_E_CLOSED, "connection to %s is closed after an earlier "
                        "failure; reconnect", conn->who);
    }
    id = ++conn->next_id;
    req = json_object_new_object();
    json_object_object_add(req, "id", json_object_new_int64(id));
    json_object_object_add(req, "method", json_object_new_string(method));
    json_object_object_add(req, "params", params ? params : json_object_new_object());
    rc = frame_send(conn->fd, req, deadline_after(timeout_ms), conn->who);
    json_object_put(req);
    if (rc < 0) {
        /* A message too big was never sent: the stream is still in step. */
        if (rc != -FY_E_TOOBIG)
            conn->broken = true;
        return rc;
    }

    for (;;) {
        if ((rc = frame_recv(conn->fd, deadline_after(timeout_ms), conn->who, &msg)) < 0)
            goto broken;
        if (!get_int(msg, "id", &got_id)) {
            /* A frame without an id: the server closes after a protocol error. */
            json_object *e;
            if (json_object_object_get_ex(msg, "error", &e)) {
                rc = fy_error(code_from_name(get_string(e, "code")), "%s: %s",
                              conn->who, get_string(e, "message") ? get_string(e, "message") : "error");
                goto broken;
            }
            rc = fy_error(FY_E_PROTO, "%s sent a response without an id", conn->who);
            goto broken;
        }
        if (got_id != id) {
            rc = fy_error(FY_E_PROTO, "%s answered request %lld while we wait for %lld",
                          conn->who, (long long)got_id, (long long)id);
            goto broken;
        }
        if (json_object_object_get_ex(msg, "progress", &v)) {
            if (progress_cb)
                progress_cb(cb_ctx, v);
            json_object_put(msg);
            msg = NULL;
            continue;
        }
        if (json_object_object_get_ex(msg, "error", &v)) {
            const char *m = get_string(v, "message");
            rc = fy_error(code_from_name(get_string(v, "code")), "%s: %s", conn->who,
                          m ? m : "error without a message");
            json_object_put(msg);
            return rc;
        }
        if (json_object_object_get_ex(msg, "result", &v)) {
            if (result)
                *result = json_object_get(v);
            json_object_put(msg);
            return 0;
        }
        rc = fy_error(FY_E_PROTO, "%s sent a response with neither result nor error",
                      conn->who);
        goto broken;
    }
broken:
    conn->broken = true;
    json_object_put(msg);
    return rc;
}

void fy_rpc_close(struct fy_rpc_conn *conn)
{
    if (!conn)
        return;
    if (conn->fd >= 0)
        close(conn->fd);
    free(conn);
}
