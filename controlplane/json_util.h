/* Small JSON and hex helpers shared by the control API's codecs (rpc.c,
 * host_json.c, agent.c). */
#ifndef FERRY_CP_JSON_UTIL_H
#define FERRY_CP_JSON_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

/* Adds member 'k' to object 'o'; a NULL string is added as "". */
static inline void fy_json_put_str(json_object *o, const char *k, const char *v)
{
    json_object_object_add(o, k, json_object_new_string(v ? v : ""));
}

static inline void fy_json_put_int(json_object *o, const char *k, int64_t v)
{
    json_object_object_add(o, k, json_object_new_int64(v));
}

static inline void fy_json_put_u64(json_object *o, const char *k, uint64_t v)
{
    json_object_object_add(o, k, json_object_new_uint64(v));
}

static inline void fy_json_put_bool(json_object *o, const char *k, bool v)
{
    json_object_object_add(o, k, json_object_new_boolean(v));
}

static inline void fy_json_put_double(json_object *o, const char *k, double v)
{
    json_object_object_add(o, k, json_object_new_double(v));
}

/* Writes 'n' bytes as 2n lower-case hex digits and a NUL into 'out'. */
static inline void fy_hex_encode(const void *data, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *b = data;

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static inline int fy_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes 2n hex digits at 's' into 'n' bytes at 'dst'; false (dst partly
 * written) if one is not a hex digit. */
static inline bool fy_hex_decode(const char *s, size_t n, uint8_t *dst)
{
    for (size_t i = 0; i < n; i++) {
        int hi = fy_hex_digit(s[2 * i]), lo = fy_hex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        dst[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

#endif /* FERRY_CP_JSON_UTIL_H */
