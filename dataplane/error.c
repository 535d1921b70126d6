/* Error codes, names and the per-thread detail of the last error. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ferry/error.h"

static const char *const err_msgs[] = {
#define FY_ERR_MSG_(name, msg) [FY_E_##name] = msg,
    FY_ERRORS(FY_ERR_MSG_)
#undef FY_ERR_MSG_
};

static const char *const err_names[] = {
#define FY_ERR_NAME_(name, msg) [FY_E_##name] = #name,
    FY_ERRORS(FY_ERR_NAME_)
#undef FY_ERR_NAME_
};

static _Thread_local char detail[1024];
static _Thread_local int last_code;

static int code_index(int code)
{
    if (code < 0)
        code = -code;
    return code < FY_E__COUNT ? code : -1;
}

const char *fy_strerror(int code)
{
    int i = code_index(code);
    return i < 0 ? "unknown error" : err_msgs[i];
}

const char *fy_errname(int code)
{
    int i = code_index(code);
    return i < 0 ? "UNKNOWN" : err_names[i];
}

__attribute__((format(printf, 2, 0)))
static int record(int code, const char *fmt, va_list ap, const char *suffix)
{
    int i = code_index(code);
    int n;

    if (i <= 0) {
        last_code = 0;
        detail[0] = '\0';
        return 0;
    }
    /* Format aside first: callers add context to the previous detail with
     * fy_error(code, "...: %s", fy_error_detail()), whose source would
     * otherwise be overwritten while it is read. */
    char buf[sizeof(detail)] = "";
    last_code = i;
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    if (suffix && n >= 0 && (size_t)n < sizeof(buf))
        snprintf(buf + n, sizeof(buf) - (size_t)n, ": %s", suffix);
    memcpy(detail, buf, strlen(buf) + 1);
    return -i;
}

int fy_error(int code, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = record(code, fmt, ap, NULL);
    va_end(ap);
    return rc;
}

int fy_error_sys(const char *fmt, ...)
{
    char ebuf[128];
    int saved = errno;
    va_list ap;
    int rc;

    /* strerror_r (GNU) may return a static string instead of filling ebuf. */
    const char *es = strerror_r(saved, ebuf, sizeof(ebuf));
    va_start(ap, fmt);
    rc = record(saved == ENOMEM ? FY_E_NOMEM : FY_E_SYS, fmt, ap, es);
    va_end(ap);
    errno = saved;
    return rc;
}

const char *fy_error_detail(void)
{
    if (detail[0])
        return detail;
    return last_code ? err_msgs[last_code] : "";
}

void fy_error_clear(void)
{
    last_code = 0;
    detail[0] = '\0';
}
