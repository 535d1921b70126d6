/* The control API: authenticated JSON requests over TCP between ferryctl
 * (the client) and ferryd (the server, one per host).
 *
 * Wire format.  One TCP connection carries a handshake, then sequential
 * request/response pairs.  Every message is a frame: a 4-byte big-endian
 * length, then that many bytes of JSON encoding one object.  A frame longer
 * than FY_RPC_FRAME_MAX, a truncated frame or a body that is not a JSON
 * object is an error, and the connection is closed.
 *
 * Handshake (mutual challenge-response with the shared cluster key; the key
 * never crosses the wire; nonces are 16 bytes from getrandom(), hex-encoded):
 *
 *   server: {"hello":"ferry-rpc","version":1,"nonce":Ns}
 *   client: {"version":1,"nonce":Nc,"mac":HMAC(key,"client"|Ns|Nc)}
 *   server: {"ok":true,"mac":HMAC(key,"server"|Nc|Ns)}
 *       or: {"ok":false,"code":"AUTH","error":"authentication failed"},
 *           then closes
 *
 * HMAC is HMAC-SHA256 over the raw nonce bytes, sent as 64 hex digits and
 * compared in constant time.  The server proves it holds the key too, so a
 * client never sends a request to an impostor.  A client whose version the
 * server does not speak gets {"ok":false,"error":"protocol version
 * mismatch..."}; a client that does not speak the server's version answers
 * {"version":V} alone, which the server refuses the same way ("code":
 * "VERSION").  A server already serving FY_RPC_MAX_CONNS connections sends
 * {"ok":false,"code":"BUSY",...} instead of its greeting.  Every refusal
 * is logged by the server in one line naming the peer and the reason
 * ("wrong key", "no answer within 5 s", "malformed handshake (...)",
 * "protocol version mismatch ...", "too many connections").
 *
 * Requests, after the handshake:
 *
 *   client: {"id":N,"method":"name","params":{...}}
 *   server: {"id":N,"progress":{...}}          zero or more, in order
 *   server: {"id":N,"result":{...}}
 *       or: {"id":N,"error":{"code":"NOTFOUND","message":"no method x"}}
 *
 * "code" is an fy_errname() name, so a client turns it back into the same
 * fy_err code the server's handler returned.  A request that is valid JSON
 * but lacks "id" or "method" gets a PROTO error and the connection goes on;
 * a frame error (too big, truncated, not JSON) gets {"error":{...}} without
 * an id, a log line, and the connection is closed.
 *
 * Return convention: every function returning int returns 0 on success or a
 * negative fy_err value, with the detail recorded by fy_error() on the
 * calling thread, except where noted.  Notable codes: FY_E_AUTH (wrong key,
 * impostor server), FY_E_VERSION, FY_E_TIMEOUT, FY_E_CLOSED, FY_E_PROTO,
 * FY_E_TOOBIG, FY_E_TRUNCATED, FY_E_CONFIG (key file). */
#ifndef FERRY_CP_RPC_H
#define FERRY_CP_RPC_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define FY_RPC_VERSION 1
#define FY_RPC_FRAME_MAX (1u << 20) /* bytes of JSON in one frame */
#define FY_RPC_MAX_CONNS 64         /* connections one server serves at once */
#define FY_RPC_AUTH_TIMEOUT_MS 5000 /* for the client's handshake answer */
#define FY_RPC_SEND_TIMEOUT_MS 10000 /* a server frame waiting for the client
                                        to read; then the connection closes */
#define FY_RPC_KEY_MIN 16
#define FY_RPC_KEY_MAX 4096

/* ---- the cluster key ----------------------------------------------------- */

/* A shared secret every ferryd and ferryctl of a cluster holds.  Plain data:
 * copy it, keep it on the stack; fy_rpc_key_wipe() it when done. */
struct fy_rpc_key {
    size_t len;
    uint8_t bytes[FY_RPC_KEY_MAX];
};

/* Reads the key from the file at 'path' into '*key': the file's bytes,
 * without trailing newlines (so `echo secret >file` and `head -c 32
 * /dev/urandom >file` both work).  Refuses, with FY_E_CONFIG and a message
 * naming the file and the fix: a file readable or writable by group or
 * others ("chmod 600"), a key shorter than FY_RPC_KEY_MIN or longer than
 * FY_RPC_KEY_MAX bytes; FY_E_SYS if the file cannot be read.  On failure
 * '*key' is wiped.  Blocks on file I/O only; any thread. */
int fy_rpc_key_load(const char *path, struct fy_rpc_key *key);

/* Overwrites the secret in '*key' (the compiler may not elide it).  NULL is
 * a no-op. */
void fy_rpc_key_wipe(struct fy_rpc_key *key);

/* ---- server (ferryd) ------------------------------------------------------ */

struct fy_rpc_server;

/* One request being served; valid only inside the handler it is passed to,
 * on that handler's thread.  (Not to be confused with fy_rpc_call(), the
 * client's verb.) */
struct fy_rpc_call;

/* A method's handler.  'ctx' is the server's ctx; 'params' is the request's
 * "params" object ({} if the request had none), borrowed for the call.  On
 * success returns 0 and may set '*result' to an object it hands over to the
 * server (left NULL, the client gets {}).  On failure returns a negative
 * fy_err value; the detail it recorded with fy_error() becomes the error
 * message the client sees (fy_strerror() of the code if it recorded none),
 * and any '*result' is freed.
 *
 * Runs on the connection's own thread and may block as long as it needs (a
 * whole migration): only that connection waits.  Handlers of different
 * connections run concurrently, so they share 'ctx' under their own
 * locking.  fy_rpc_server_stop() waits for running handlers to return. */
typedef int fy_rpc_handler_fn(void *ctx, struct fy_rpc_call *call,
                              const json_object *params, json_object **result);

struct fy_rpc_method {
    const char *name;            /* not NULL; must outlive the server */
    fy_rpc_handler_fn *handler;  /* not NULL */
};

/* Receives one line (no trailing newline) about a refused peer or a
 * connection closed for a protocol error, e.g. "rpc: refused
 * 127.0.0.1:40112: authentication failed: wrong key".  Called from the
 * server's threads, never two at once; must not call back into the server. */
typedef void fy_rpc_log_fn(void *ctx, const char *line);

/* Listens at 'addr' ("HOST:PORT", "[V6]:PORT"; port 0 picks a free port,
 * see fy_rpc_server_addr()) and serves 'methods' (copied: 'n' entries,
 * unique names) with the cluster key 'key' (copied).  Starts an accept
 * thread and, per authenticated connection, one thread that serves its
 * requests in order; at most FY_RPC_MAX_CONNS connections at once, more are
 * refused and logged.  'ctx' is passed to handlers and to 'log_fn' (which
 * may be NULL: nothing is logged).  On success '*out' owns the server; on failure
 * nothing is left running and '*out' is NULL.  Does not block beyond
 * binding. */
int fy_rpc_server_start(const char *addr, const struct fy_rpc_key *key,
                        const struct fy_rpc_method *methods, size_t n,
                        void *ctx, fy_rpc_log_fn *log_fn,
                        struct fy_rpc_server **out);

/* The address the server is bound to, numeric, "ADDR:PORT" or
 * "[ADDR]:PORT", with the actual port.  Owned by the server; valid until
 * fy_rpc_server_stop(). */
const char *fy_rpc_server_addr(const struct fy_rpc_server *srv);

/* Stops accepting, closes every connection (a client in a call sees
 * FY_E_CLOSED), waits for running handlers to return, joins every thread
 * and frees 'srv'.  NULL is a no-op.  Must not be called from a handler.
 * Returns nothing: it cannot fail. */
void fy_rpc_server_stop(struct fy_rpc_server *srv);

/* Sends 'progress' (consumed, even on failure; must be an object) to the
 * client of 'call' as {"id":N,"progress":...}, ahead of the final result.
 * Only from the handler's own thread, before it returns.  Blocks until the
 * frame is in the socket buffer (at most FY_RPC_SEND_TIMEOUT_MS if the
 * client stops reading).  Fails with FY_E_CLOSED once the client has gone
 * or the server is stopping: a long handler may take that as a cue to
 * wind down. */
int fy_rpc_reply_progress(struct fy_rpc_call *call, json_object *progress);

/* ---- client (ferryctl) ---------------------------------------------------- */

struct fy_rpc_conn;

/* Receives a progress object during fy_rpc_call(), in the order the handler
 * sent them, on the caller's thread; 'progress' is borrowed for the
 * callback only. */
typedef void fy_rpc_progress_fn(void *cb_ctx, const json_object *progress);

/* Connects to the ferryd at 'addr' ("HOST:PORT") and authenticates both
 * ways with 'key' (not kept), all within 'timeout_ms' (-1: no limit).
 * FY_E_AUTH if the server refused our key or failed to prove it holds it,
 * FY_E_VERSION on a protocol version mismatch, FY_E_BUSY if the server has
 * no room for another connection; errors name the host.  On success
 * '*out' owns the connection; on failure it is NULL.  Blocks; any thread. */
int fy_rpc_connect(const char *addr, const struct fy_rpc_key *key,
                   int timeout_ms, struct fy_rpc_conn **out);

/* Calls 'method' with 'params' (consumed, even on failure; NULL sends {}),
 * and waits for its result.  Progress frames go to 'progress_cb' (NULL
 * drops them) with 'cb_ctx'.  'timeout_ms' bounds each wait for the next
 * frame (result or progress), -1 for none: a long migration that keeps
 * reporting progress does not time out.
 *
 * On success returns 0 and, if 'result' is not NULL, sets '*result' to the
 * result object, which the caller frees with json_object_put().  If the
 * handler failed, returns its fy_err code (FY_E_PEER for a name this build
 * does not know) with the detail "host H: <server's message>", and
 * '*result' is NULL.  After a transport failure or timeout the connection
 * is unusable: later calls fail with FY_E_CLOSED; fy_rpc_close() it.
 *
 * Blocks.  One call at a time per connection; different connections may be
 * used from different threads. */
int fy_rpc_call(struct fy_rpc_conn *conn, const char *method,
                json_object *params, json_object **result,
                fy_rpc_progress_fn *progress_cb, void *cb_ctx,
                int timeout_ms);

/* Closes the connection and frees 'conn'.  NULL is a no-op. */
void fy_rpc_close(struct fy_rpc_conn *conn);

#endif /* FERRY_CP_RPC_H */
