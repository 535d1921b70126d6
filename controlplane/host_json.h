/* The host operations' values as JSON (json-c), both directions: what the
 * host.* methods of the control API carry (host_server.c answers with
 * them, host_remote.c reads them) and what the agent shows its clients.
 *
 * Shape: an object per structure whose members have the names of the C
 * fields.  An array field is a JSON array and carries its own count (no
 * "ndisks", "nbacking", "n" members).  Enumerations (power, kind) are
 * their integer values, fy_host_caps.caps the integer bit mask, booleans
 * JSON booleans, sizes and counters integers (uint64 where the field is),
 * times (seconds, downtime, ...) numbers.  The array field 'net' of
 * fy_host_info holds one string per enum fy_net_role, in order.  Binary
 * values are lower-case hex strings: fy_host_endpoint.session_id (32
 * digits), device state, a file's digest (fy_json_hash_encode: 32 digits,
 * high half first); fy_migration_stats.digest is {"lo":N,"hi":N}.
 *
 * Encoders return a new object the caller releases with json_object_put(),
 * or NULL when out of memory.  Decoders fill '*out' (zeroed first) from
 * 'in' and return 0, or FY_E_PROTO naming the structure and the member
 * that is missing, of the wrong type, out of range or too long for its C
 * field; '*out' is then unspecified.  A decoder ignores members it does
 * not know, so either side may add some.  No function blocks; all are
 * safe on any thread. */
#ifndef FERRY_CP_HOST_JSON_H
#define FERRY_CP_HOST_JSON_H

#include <stddef.h>

#include <json-c/json.h>

#include "controlplane/host.h"

json_object *fy_json_host_info_encode(const struct fy_host_info *in);
int fy_json_host_info_decode(const json_object *in, struct fy_host_info *out);

json_object *fy_json_vm_info_encode(const struct fy_vm_info *in);
int fy_json_vm_info_decode(const json_object *in, struct fy_vm_info *out);

json_object *fy_json_migration_stats_encode(const struct fy_migration_stats *in);
int fy_json_migration_stats_decode(const json_object *in, struct fy_migration_stats *out);

json_object *fy_json_round_stats_encode(const struct fy_round_stats *in);
int fy_json_round_stats_decode(const json_object *in, struct fy_round_stats *out);

json_object *fy_json_host_memory_encode(const struct fy_host_memory *in);
int fy_json_host_memory_decode(const json_object *in, struct fy_host_memory *out);

json_object *fy_json_host_caps_encode(const struct fy_host_caps *in);
int fy_json_host_caps_decode(const json_object *in, struct fy_host_caps *out);

json_object *fy_json_host_data_encode(const struct fy_host_data *in);
int fy_json_host_data_decode(const json_object *in, struct fy_host_data *out);

json_object *fy_json_host_endpoint_encode(const struct fy_host_endpoint *in);
int fy_json_host_endpoint_decode(const json_object *in, struct fy_host_endpoint *out);

/* Without the in-process members (cancel, on_round, round_ctx): decoding
 * leaves them NULL. */
json_object *fy_json_send_params_encode(const struct fy_host_send_params *in);
int fy_json_send_params_decode(const json_object *in, struct fy_host_send_params *out);

json_object *fy_json_host_stream_stats_encode(const struct fy_host_stream_stats *in);
int fy_json_host_stream_stats_decode(const json_object *in, struct fy_host_stream_stats *out);

/* ---- members and binary values -------------------------------------------- */

/* 'len' bytes at 'data' as a new JSON string of 2*len hex digits; NULL when
 * out of memory. */
json_object *fy_json_hex_encode(const void *data, size_t len);

/* The hex string member 'key' of 'obj' as bytes: into '*out' (malloc'd, the
 * caller frees it; a zero-length value gives a 1-byte allocation) and
 * '*len'.  FY_E_PROTO naming 'what' and 'key' if the member is missing, not
 * a string or not an even number of hex digits; FY_E_NOMEM.  '*out' is
 * NULL on failure. */
int fy_json_hex_get(const json_object *obj, const char *key, const char *what,
                    void **out, size_t *len);

/* A content hash as a new JSON string of 32 hex digits, the high half
 * first (as the engine prints digests); NULL when out of memory.  _get reads
 * the member 'key' of 'obj' back: FY_E_PROTO naming 'what' and 'key' if it
 * is missing or not 32 hex digits. */
json_object *fy_json_hash_encode(fy_hash128 h);
int fy_json_hash_get(const json_object *obj, const char *key, const char *what,
                     fy_hash128 *out);

/* The string member 'key' of 'obj' into dst[0..cap-1].  FY_E_PROTO naming
 * 'what' and 'key' if it is missing, not a string or does not fit. */
int fy_json_get_str(const json_object *obj, const char *key, const char *what,
                    char *dst, size_t cap);

/* The string member 'key' of 'obj', borrowed from it (valid while 'obj'
 * is); NULL into '*out' when the member is absent or null and 'optional'.
 * FY_E_PROTO otherwise. */
int fy_json_get_strp(const json_object *obj, const char *key, const char *what,
                     bool optional, const char **out);

/* Integer and boolean members; FY_E_PROTO naming 'what' and 'key' if the
 * member is missing, of another type or outside the C type's range. */
int fy_json_get_u64(const json_object *obj, const char *key, const char *what,
                    uint64_t *out);
int fy_json_get_uint(const json_object *obj, const char *key, const char *what,
                     unsigned *out);
int fy_json_get_int(const json_object *obj, const char *key, const char *what,
                    int *out);
int fy_json_get_bool(const json_object *obj, const char *key, const char *what,
                     bool *out);

#endif /* FERRY_CP_HOST_JSON_H */
