/* Ferry error codes and error reporting.
 *
 * Every Ferry function that can fail returns 0 on success or a negative
 * fy_err value (-FY_E_...), except where its comment says otherwise.
 *
 * An error is reported once, where it happens: the failing function calls
 * fy_error() with the code and a sentence naming the object and, where there
 * is one, the fix.  fy_error() stores that sentence in a thread-local buffer
 * and returns the negative code, so the usual shape is
 *
 *     if (len > max)
 *         return fy_error(FY_E_TOOBIG, "frame of %u bytes exceeds %u", len, max);
 *
 * Callers pass the code up without reporting it again; whoever finally shows
 * it to a person reads fy_error_detail().
 */
#ifndef FERRY_ERROR_H
#define FERRY_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* X(NAME, message): one line per code.  The order fixes the numbers, which
 * travel in ERROR frames: append only. */
#define FY_ERRORS(X)                                                        \
    X(OK, "success")                                                        \
    X(INVAL, "invalid argument")                                            \
    X(NOMEM, "out of memory")                                               \
    X(SYS, "system call failed")                                            \
    X(IO, "input/output error")                                             \
    X(CLOSED, "connection closed by the peer")                              \
    X(TIMEOUT, "timed out")                                                 \
    X(PROTO, "protocol violation")                                          \
    X(VERSION, "protocol version mismatch")                                 \
    X(CHECKSUM, "checksum mismatch")                                        \
    X(RANGE, "offset outside the region")                                   \
    X(TOOBIG, "frame too large")                                            \
    X(TRUNCATED, "truncated frame")                                         \
    X(PEER, "the peer reported an error")                                   \
    X(VERIFY, "verification failed: the region digests differ")             \
    X(UNSUPPORTED, "not supported")                                         \
    X(CANCELLED, "cancelled")                                               \
    X(BUSY, "busy with another operation")                                  \
    X(NOTFOUND, "not found")                                                \
    X(EXISTS, "already exists")                                             \
    X(NOSPACE, "no space left")                                             \
    X(AUTH, "authentication failed")                                        \
    X(PRECHECK, "refused by a precheck")                                    \
    X(CONFIG, "configuration error")                                        \
    X(AGAIN, "resource temporarily unavailable")

enum fy_err {
#define FY_ERR_ENUM_(name, msg) FY_E_##name,
    FY_ERRORS(FY_ERR_ENUM_)
#undef FY_ERR_ENUM_
    FY_E__COUNT
};

/* The fixed message of 'code' (positive or negative); "unknown error" for
 * a code outside the table.  Never NULL. */
const char *fy_strerror(int code);

/* The symbolic name of 'code' without prefix, e.g. "PROTO".  Never NULL. */
const char *fy_errname(int code);

/* Records 'code' with a printf-style detail for this thread and returns
 * -code (or 0 if code is FY_E_OK).  The detail replaces any earlier one. */
int fy_error(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Like fy_error(FY_E_SYS, ...) and appends ": strerror(errno)". */
int fy_error_sys(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The detail recorded by the last fy_error() on this thread, or the fixed
 * message of the last code if none was given.  Never NULL; "" if none. */
const char *fy_error_detail(void);

/* Forgets this thread's last error. */
void fy_error_clear(void);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_ERROR_H */
