/* The migration store over SQLite: see events.h.
 *
 * Enumerations are stored by name ("running", "Transfer"), so the database
 * reads plainly with the sqlite3 shell and survives reordering of the C
 * enums. */
#include "controlplane/events.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "ferry/error.h"

#define BUSY_TIMEOUT_MS 10000

struct fy_store {
    sqlite3 *db;
    char path[FY_PATH_MAX];
};

static const char *const state_names[FY_MIG_STATE__COUNT] = {
    "running", "succeeded", "failed", "cancelled", "rolled_back",
};
static const char *const class_names[FY_DATA__COUNT] = {
    "memory", "device_state", "disks_hot", "disks_cold",
};
static const char *const category_names[] = {"Transfer", "Switchover", "Cleanup"};
static const char *const side_names[] = {"source", "target"};

const char *fy_mig_state_name(enum fy_mig_state s)
{
    return (unsigned)s < FY_MIG_STATE__COUNT ? state_names[s] : "unknown";
}

const char *fy_data_class_name(enum fy_data_class c)
{
    return (unsigned)c < FY_DATA__COUNT ? class_names[c] : "unknown";
}

const char *fy_event_category_name(enum fy_event_category c)
{
    return (unsigned)c < 3 ? category_names[c] : "unknown";
}

const char *fy_event_side_name(enum fy_event_side s)
{
    return (unsigned)s < 2 ? side_names[s] : "unknown";
}

static int lookup(const char *const *names, unsigned n, const char *s)
{
    for (unsigned i = 0; s && i < n; i++)
        if (strcmp(names[i], s) == 0)
            return (int)i;
    return 0;
}

static int64_t now_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

static int db_error(struct fy_store *st, const char *what)
{
    return fy_error(FY_E_IO, "store %s: %s: %s", st->path, what, sqlite3_errmsg(st->db));
}

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS migrations ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " vm TEXT NOT NULL, kind TEXT NOT NULL,"
    " source TEXT NOT NULL, target TEXT NOT NULL,"
    " state TEXT NOT NULL,"
    " started INTEGER NOT NULL, ended INTEGER NOT NULL DEFAULT 0,"
    " error TEXT NOT NULL DEFAULT '',"
    " net_memory TEXT NOT NULL DEFAULT '',"
    " net_device_state TEXT NOT NULL DEFAULT '',"
    " net_disks_hot TEXT NOT NULL DEFAULT '',"
    " net_disks_cold TEXT NOT NULL DEFAULT '',"
    " wire_bytes INTEGER NOT NULL DEFAULT 0,"
    " pages_sent INTEGER NOT NULL DEFAULT 0,"
    " pages_zero INTEGER NOT NULL DEFAULT 0,"
    " pages_dup INTEGER NOT NULL DEFAULT 0,"
    " downtime REAL NOT NULL DEFAULT 0,"
    " seconds REAL NOT NULL DEFAULT 0,"
    " verified INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS migrations_vm ON migrations(vm);"
    "CREATE TABLE IF NOT EXISTS events ("
    " migration INTEGER NOT NULL REFERENCES migrations(id),"
    " task INTEGER NOT NULL,"
    " ts INTEGER NOT NULL,"
    " category TEXT NOT NULL, side TEXT NOT NULL, text TEXT NOT NULL,"
    " PRIMARY KEY (migration, task));"
    "CREATE TABLE IF NOT EXISTS vm_locks ("
    " vm TEXT PRIMARY KEY,"
    " migration INTEGER NOT NULL,"
    " since INTEGER NOT NULL);";

int fy_store_open(const char *path, struct fy_store **out)
{
    struct fy_store *st;
    char *msg = NULL;
    int rc;

    if (!out)
        return fy_error(FY_E_INVAL, "fy_store_open: NULL argument");
    *out = NULL;
    if (!path || !*path)
        return fy_error(FY_E_INVAL, "fy_store_open: no database path given");
    if (!(st = calloc(1, sizeof(*st))))
        return fy_error(FY_E_NOMEM, "store %s: out of memory", path);
    snprintf(st->path, sizeof(st->path), "%s", path);
    if (sqlite3_open_v2(path, &st->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        rc = fy_error(FY_E_IO, "store %s: cannot open: %s", path,
                      st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);
    if (sqlite3_exec(st->db, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;",
                     NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(st->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
        rc = fy_error(FY_E_IO, "store %s: cannot set up the database: %s", path,
                      msg ? msg : sqlite3_errmsg(st->db));
        sqlite3_free(msg);
        goto fail;
    }
    *out = st;
    return 0;
fail:
    sqlite3_close(st->db);
    free(st);
    return rc;
}

void fy_store_close(struct fy_store *st)
{
    if (!st)
        return;
    sqlite3_close(st->db);
    free(st);
}

/* Prepares 'sql' into *stmt, or records the error. */
static int prepare(struct fy_store *st, const char *sql, sqlite3_stmt **stmt)
{
    if (sqlite3_prepare_v2(st->db, sql, -1, stmt, NULL) != SQLITE_OK)
        return db_error(st, "prepare");
    return 0;
}

/* Runs a statement that returns no rows and finalizes it. */
static int step_done(struct fy_store *st, sqlite3_stmt *stmt, const char *what)
{
    int rc = sqlite3_step(stmt) == SQLITE_DONE ? 0 : db_error(st, what);
    sqlite3_finalize(stmt);
    return rc;
}

static void text_col(sqlite3_stmt *s, int col, char *dst, size_t len)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    snprintf(dst, len, "%s", t ? (const char *)t : "");
}

int fy_store_migration_create(struct fy_store *st,
                              const struct fy_migration_record *m, int64_t *id)
{
    sqlite3_stmt *s;
    int rc;

    if (!st || !m || !id)
        return fy_error(FY_E_INVAL, "fy_store_migration_create: NULL argument");
    if ((rc = prepare(st, "INSERT INTO migrations (vm, kind, source, target, state, started)"
                          " VALUES (?, ?, ?, ?, 'running', ?)", &s)) < 0)
        return rc;
    sqlite3_bind_text(s, 1, m->vm, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, fy_migration_kind_name(m->kind), -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, m->source, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 4, m->target, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 5, now_us());
    /* The connection is shared by the agent's threads: hold it so that no
     * other thread's insert (an event of a concurrent migration) comes
     * between this insert and reading its row id. */
    sqlite3_mutex_enter(sqlite3_db_mutex(st->db));
    if ((rc = step_done(st, s, "record a migration")) == 0)
        *id = sqlite3_last_insert_rowid(st->db);
    sqlite3_mutex_leave(sqlite3_db_mutex(st->db));
    return rc;
}

#define MIGRATION_COLUMNS                                                   \
    "id, vm, kind, source, target, state, started, ended, error, net_memory, " \
    "net_device_state, net_disks_hot, net_disks_cold, wire_bytes, pages_sent, " \
    "pages_zero, pages_dup, downtime, seconds, verified"

static void read_migration(sqlite3_stmt *s, struct fy_migration_record *m)
{
    char buf[32];
    enum fy_migration_kind kind = FY_MIG_LIVE;

    memset(m, 0, sizeof(*m));
    m->id = sqlite3_column_int64(s, 0);
    text_col(s, 1, m->vm, sizeof(m->vm));
    text_col(s, 2, buf, sizeof(buf));
    fy_migration_kind_parse(buf, &kind);
    m->kind = kind;
    text_col(s, 3, m->source, sizeof(m->source));
    text_col(s, 4, m->target, sizeof(m->target));
    text_col(s, 5, buf, sizeof(buf));
    m->state = (enum fy_mig_state)lookup(state_names, FY_MIG_STATE__COUNT, buf);
    m->started_us = sqlite3_column_int64(s, 6);
    m->ended_us = sqlite3_column_int64(s, 7);
    text_col(s, 8, m->error, sizeof(m->error));
    for (int c = 0; c < FY_DATA__COUNT; c++)
        text_col(s, 9 + c, m->net[c], sizeof(m->net[c]));
    m->wire_bytes = (uint64_t)sqlite3_column_int64(s, 13);
    m->pages_sent = (uint64_t)sqlite3_column_int64(s, 14);
    m->pages_zero = (uint64_t)sqlite3_column_int64(s, 15);
    m->pages_dup = (uint64_t)sqlite3_column_int64(s, 16);
    m->downtime = sqlite3_column_double(s, 17);
    m->seconds = sqlite3_column_double(s, 18);
    m->verified = sqlite3_column_int(s, 19) != 0;
}

int fy_store_migration_get(struct fy_store *st, int64_t id,
                           struct fy_migration_record *out)
{
    sqlite3_stmt *s;
    int rc;

    if (!st || !out)
        return fy_error(FY_E_INVAL, "fy_store_migration_get: NULL argument");
    if ((rc = prepare(st, "SELECT " MIGRATION_COLUMNS " FROM migrations WHERE id = ?", &s)) < 0)
        return rc;
    sqlite3_bind_int64(s, 1, id);
    switch (sqlite3_step(s)) {
    case SQLITE_ROW:
        read_migration(s, out);
        rc = 0;
        break;
    case SQLITE_DONE:
        rc = fy_error(FY_E_NOTFOUND, "no migration %lld in %s", (long long)id, st->path);
        break;
    default:
        rc = db_error(st, "read a migration");
    }
    sqlite3_finalize(s);
    return rc;
}

int fy_store_migration_list(struct fy_store *st, const char *vm,
                            struct fy_migration_record **out, size_t *n)
{
    struct fy_migration_record *v = NULL, *nv;
    size_t len = 0, cap = 0;
    sqlite3_stmt *s;
    int rc, step;

    if (!st || !out || !n)
        return fy_error(FY_E_INVAL, "fy_store_migration_list: NULL argument");
    *out = NULL;
    *n = 0;
    if ((rc = prepare(st, vm ? "SELECT " MIGRATION_COLUMNS " FROM migrations WHERE vm = ? ORDER BY id"
                             : "SELECT " MIGRATION_COLUMNS " FROM migrations ORDER BY id",
                      &s)) < 0)
        return rc;
    if (vm)
        sqlite3_bind_text(s, 1, vm, -1, SQLITE_TRANSIENT);
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (len == cap) {
            cap = cap ? cap * 2 : 8;
            if (!(nv = realloc(v, cap * sizeof(*v)))) {
                rc = fy_error(FY_E_NOMEM, "listing migrations: out of memory");
                goto out;
            }
            v = nv;
        }
        read_migration(s, &v[len++]);
    }
    if (step != SQLITE_DONE) {
        rc = db_error(st, "list migrations");
        goto out;
    }
    *out = v;
    *n = len;
    v = NULL;
out:
    free(v);
    sqlite3_finalize(s);
    return rc;
}

/* Runs an UPDATE of one migration row and checks that it existed. */
static int update_one(struct fy_store *st, sqlite3_stmt *s, int64_t id, const char *what)
{
    int rc = step_done(st, s, what);
    if (rc == 0 && sqlite3_changes(st->db) == 0)
        rc = fy_error(FY_E_NOTFOUND, "no migration %lld in %s", (long long)id, st->path);
    return rc;
}

int fy_store_migration_set_state(struct fy_store *st, int64_t id,
                                 enum fy_mig_state state, const char *error)
{
    sqlite3_stmt *s;
    int rc;

    if (!st || (unsigned)state >= FY_MIG_STATE__COUNT)
        return fy_error(FY_E_INVAL, "fy_store_migration_set_state: bad argument");
    if ((rc = prepare(st, "UPDATE migrations SET state = ?, error = ?, ended = ? WHERE id = ?", &s)) < 0)
        return rc;
    sqlite3_bind_text(s, 1, state_names[state], -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, error ? error : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 3, state == FY_MIG_RUNNING ? 0 : now_us());
    sqlite3_bind_int64(s, 4, id);
    return update_one(st, s, id, "update a migration's state");
}

int fy_store_migration_set_net(struct fy_store *st, int64_t id,
                               enum fy_data_class c, const char *net)
{
    static const char *const sql[FY_DATA__COUNT] = {
        "UPDATE migrations SET net_memory = ? WHERE id = ?",
        "UPDATE migrations SET net_device_state = ? WHERE id = ?",
        "UPDATE migrations SET net_disks_hot = ? WHERE id = ?",
        "UPDATE migrations SET net_disks_cold = ? WHERE id = ?",
    };
    sqlite3_stmt *s;
    int rc;

    if (!st || (unsigned)c >= FY_DATA__COUNT)
        return fy_error(FY_E_INVAL, "fy_store_migration_set_net: bad argument");
    if ((rc = prepare(st, sql[c], &s)) < 0)
        return rc;
    sqlite3_bind_text(s, 1, net ? net : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, id);
    return update_one(st, s, id, "record a network");
}

int fy_store_migration_set_stats(struct fy_store *st, int64_t id,
                                 const struct fy_migration_record *m)
{
    sqlite3_stmt *s;
    int rc;

    if (!st || !m)
        return fy_error(FY_E_INVAL, "fy_store_migration_set_stats: NULL argument");
    if ((rc = prepare(st, "UPDATE migrations SET wire_bytes = ?, pages_sent = ?, pages_zero = ?,"
                          " pages_dup = ?, downtime = ?, seconds = ?, verified = ? WHERE id = ?",
                      &s)) < 0)
        return rc;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)m->wire_bytes);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)m->pages_sent);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)m->pages_zero);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)m->pages_dup);
    sqlite3_bind_double(s, 5, m->downtime);
    sqlite3_bind_double(s, 6, m->seconds);
    sqlite3_bind_int(s, 7, m->verified ? 1 : 0);
    sqlite3_bind_int64(s, 8, id);
    return update_one(st, s, id, "record statistics");
}

int fy_store_event_add(struct fy_store *st, int64_t id,
                       enum fy_event_category cat, enum fy_event_side side,
                       const char *text, unsigned *task)
{
    sqlite3_stmt *s;
    int rc;

    if (!st || !text || (unsigned)cat > FY_EV_CLEANUP || (unsigned)side > FY_SIDE_TARGET)
        return fy_error(FY_E_INVAL, "fy_store_event_add: bad argument");
    /* One statement numbers and inserts, so concurrent writers cannot take
     * the same task number. */
    if ((rc = prepare(st, "INSERT INTO events (migration, task, ts, category, side, text)"
                          " SELECT ?1, COALESCE(MAX(task), 0) + 1, ?2, ?3, ?4, ?5"
                          " FROM events WHERE migration = ?1",
                      &s)) < 0)
        return rc;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, now_us());
    sqlite3_bind_text(s, 3, category_names[cat], -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, side_names[side], -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, text, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(s) != SQLITE_DONE) {
        rc = sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_FOREIGNKEY
                 ? fy_error(FY_E_NOTFOUND, "no migration %lld in %s", (long long)id, st->path)
                 : db_error(st, "add an event");
        sqlite3_finalize(s);
        return rc;
    }
    sqlite3_finalize(s);
    if (task) {
        sqlite3_stmt *q;
        if ((rc = prepare(st, "SELECT MAX(task) FROM events WHERE migration = ?", &q)) < 0)
            return rc;
        sqlite3_bind_int64(q, 1, id);
        *task = sqlite3_step(q) == SQLITE_ROW ? (unsigned)sqlite3_column_int(q, 0) : 0;
        sqlite3_finalize(q);
    }
    return 0;
}

int fy_store_events_list(struct fy_store *st, int64_t id,
                         struct fy_event **out, size_t *n)
{
    struct fy_event *v = NULL, *nv;
    size_t len = 0, cap = 0;
    sqlite3_stmt *s;
    char buf[32];
    int rc, step;

    if (!st || !out || !n)
        return fy_error(FY_E_INVAL, "fy_store_events_list: NULL argument");
    *out = NULL;
    *n = 0;
    if ((rc = prepare(st, "SELECT task, ts, category, side, text FROM events"
                          " WHERE migration = ? ORDER BY task", &s)) < 0)
        return rc;
    sqlite3_bind_int64(s, 1, id);
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (len == cap) {
            cap = cap ? cap * 2 : 32;
            if (!(nv = realloc(v, cap * sizeof(*v)))) {
                rc = fy_error(FY_E_NOMEM, "listing events: out of memory");
                goto out;
            }
            v = nv;
        }
        struct fy_event *e = &v[len++];
        memset(e, 0, sizeof(*e));
        e->migration = id;
        e->task = (unsigned)sqlite3_column_int(s, 0);
        e->ts_us = sqlite3_column_int64(s, 1);
        text_col(s, 2, buf, sizeof(buf));
        e->category = (enum fy_event_category)lookup(category_names, 3, buf);
        text_col(s, 3, buf, sizeof(buf));
        e->side = (enum fy_event_side)lookup(side_names, 2, buf);
        text_col(s, 4, e->text, sizeof(e->text));
    }
    if (step != SQLITE_DONE) {
        rc = db_error(st, "list events");
        goto out;
    }
    *out = v;
    *n = len;
    v = NULL;
out:
    free(v);
    sqlite3_finalize(s);
    return rc;
}

int fy_store_lock_holder(struct fy_store *st, const char *vm, int64_t *id)
{
    sqlite3_stmt *s;
    int rc;

    if (!st || !vm || !id)
        return fy_error(FY_E_INVAL, "fy_store_lock_holder: NULL argument");
    if ((rc = prepare(st, "SELECT migration FROM vm_locks WHERE vm = ?", &s)) < 0)
        return rc;
    sqlite3_bind_text(s, 1, vm, -1, SQLITE_TRANSIENT);
    switch (sqlite3_step(s)) {
    case SQLITE_ROW:
        *id = sqlite3_column_int64(s, 0);
        break;
    case SQLITE_DONE:
        *id = 0;
        break;
    default:
        rc = db_error(st, "read a VM lock");
    }
    sqlite3_finalize(s);
    return rc;
}

int fy_store_lock_vm(struct fy_store *st, const char *vm, int64_t id)
{
    struct fy_migration_record m;
    sqlite3_stmt *s;
    int64_t holder = 0;
    int rc;

    if (!st || !vm)
        return fy_error(FY_E_INVAL, "fy_store_lock_vm: NULL argument");
    if ((rc = prepare(st, "INSERT OR IGNORE INTO vm_locks (vm, migration, since) VALUES (?, ?, ?)",
                      &s)) < 0)
        return rc;
    sqlite3_bind_text(s, 1, vm, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, id);
    sqlite3_bind_int64(s, 3, now_us());
    if ((rc = step_done(st, s, "lock a VM")) < 0)
        return rc;
    if ((rc = fy_store_lock_holder(st, vm, &holder)) < 0)
        return rc;
    if (holder == id)
        return 0;
    if (fy_store_migration_get(st, holder, &m) == 0)
        return fy_error(FY_E_BUSY,
                        "VM %s is locked by migration %lld (%s to %s, %s): wait for it "
                        "to end or cancel it",
                        vm, (long long)holder, fy_migration_kind_name(m.kind), m.target,
                        fy_mig_state_name(m.state));
    return fy_error(FY_E_BUSY, "VM %s is locked by migration %lld: wait for it to end",
                    vm, (long long)holder);
}

int fy_store_unlock_vm(struct fy_store *st, const char *vm, int64_t id)
{
    sqlite3_stmt *s;
    int rc;

    if (!st || !vm)
        return fy_error(FY_E_INVAL, "fy_store_unlock_vm: NULL argument");
    if ((rc = prepare(st, "DELETE FROM vm_locks WHERE vm = ? AND migration = ?", &s)) < 0)
        return rc;
    sqlite3_bind_text(s, 1, vm, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, id);
    if ((rc = step_done(st, s, "unlock a VM")) < 0)
        return rc;
    if (sqlite3_changes(st->db) == 0)
        return fy_error(FY_E_NOTFOUND, "migration %lld holds no lock on VM %s",
                        (long long)id, vm);
    return 0;
}
