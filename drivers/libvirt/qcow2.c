/* Disk images: the backing chain of a qcow2 image, read from its header,
 * and rewriting the reference to a base image after a disk moved (beside
 * it, or under another name: lv_disk_rebase).
 *
 * Why read headers rather than ask libvirt: libvirt reports a chain only
 * for running domains, and a cold migration needs it for stopped ones.  The
 * qcow2 header (docs/interop/qcow2.txt in QEMU) is big-endian: magic
 * "QFI\xfb", version, backing_file_offset (u64 at 8), backing_file_size
 * (u32 at 16), size (u64 at 24). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "drivers/libvirt/lv.h"

extern char **environ;

#define QCOW2_MAGIC 0x514649fbu

static uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Reads the header of 'path': *is_qcow2, its virtual size and the backing
 * file name as stored ("" if none). */
static int read_header(const char *path, bool *is_qcow2, uint64_t *vsize, char *backing,
                       size_t blen)
{
    unsigned char h[32];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;
    int rc = 0;

    *is_qcow2 = false;
    *vsize = 0;
    backing[0] = '\0';
    if (fd < 0)
        return errno == ENOENT ? fy_error(FY_E_NOTFOUND, "disk image %s does not exist",
                                          path)
                               : fy_error_sys("cannot open disk image %s", path);
    n = pread(fd, h, sizeof(h), 0);
    if (n == (ssize_t)sizeof(h) && be(h, 4) == QCOW2_MAGIC) {
        uint64_t off = be(h + 8, 8), len = be(h + 16, 4);

        *is_qcow2 = true;
        *vsize = be(h + 24, 8);
        if (off && len) {
            if (len >= blen) {
                rc = fy_error(FY_E_TOOBIG, "disk image %s names a backing file of %llu "
                              "bytes, more than %zu", path, (unsigned long long)len,
                              blen - 1);
            } else if (pread(fd, backing, len, (off_t)off) != (ssize_t)len) {
                rc = fy_error_sys("cannot read the backing file name of %s", path);
            } else {
                backing[len] = '\0';
            }
        }
    }
    close(fd);
    return rc;
}

/* 'name' as stored in 'image' -> an absolute path (relative names are
 * relative to the image's directory, as QEMU resolves them). */
static int resolve(const char *image, const char *name, char *out, size_t len)
{
    const char *slash = strrchr(image, '/');
    int n;

    if (name[0] == '/' || !slash)
        n = snprintf(out, len, "%s", name);
    else
        n = snprintf(out, len, "%.*s/%s", (int)(slash - image), image, name);
    if (n < 0 || (size_t)n >= len)
        return fy_error(FY_E_TOOBIG, "backing file path of %s too long", image);
    return 0;
}

int lv_disk_chain(struct fy_disk *disk)
{
    char cur[FY_PATH_MAX], name[FY_PATH_MAX];
    struct stat st;
    bool q;
    uint64_t vs;
    int rc;

    disk->nbacking = 0;
    disk->size = disk->virtual_size = 0;
    if (!disk->path[0] || stat(disk->path, &st) != 0)
        return 0;
    disk->size = (uint64_t)st.st_blocks * 512;
    disk->virtual_size = (uint64_t)st.st_size;
    snprintf(cur, sizeof(cur), "%s", disk->path);
    for (unsigned depth = 0;; depth++) {
        if ((rc = read_header(cur, &q, &vs, name, sizeof(name))) < 0)
            return rc;
        if (depth == 0 && q)
            disk->virtual_size = vs;
        if (!name[0])
            return 0;
        if (disk->nbacking == sizeof(disk->backing) / sizeof(disk->backing[0]))
            return fy_error(FY_E_UNSUPPORTED, "disk %s (%s) has a backing chain longer "
                            "than %zu images: commit some of it (qemu-img commit)",
                            disk->name, disk->path,
                            sizeof(disk->backing) / sizeof(disk->backing[0]));
        if ((rc = resolve(cur, name, disk->backing[disk->nbacking],
                          sizeof(disk->backing[0]))) < 0)
            return rc;
        snprintf(cur, sizeof(cur), "%s", disk->backing[disk->nbacking++]);
    }
}

/* Runs argv, returning 0 on exit status 0; otherwise FY_E_IO with the
 * first line of what it printed. */
static int run(char *const argv[])
{
    int pfd[2], status = 0, rc = 0;
    posix_spawn_file_actions_t fa;
    char out[512] = "";
    pid_t pid;
    ssize_t n;

    if (pipe2(pfd, O_CLOEXEC) != 0)
        return fy_error_sys("pipe for %s", argv[0]);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 2);
    rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pfd[1]);
    if (rc != 0) {
        close(pfd[0]);
        errno = rc;
        return fy_error_sys("cannot run %s (install qemu-utils)", argv[0]);
    }
    n = read(pfd[0], out, sizeof(out) - 1);
    out[n > 0 ? n : 0] = '\0';
    while (read(pfd[0], (char[256]){0}, 256) > 0)
        ;
    close(pfd[0]);
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        out[strcspn(out, "\n")] = '\0';
        rc = fy_error(FY_E_IO, "%s %s failed: %s", argv[0], argv[1], out);
    }
    return rc;
}

int lv_disk_relink(const char *path)
{
    char cur[FY_PATH_MAX], name[FY_PATH_MAX], dir[FY_PATH_MAX], bdir[FY_PATH_MAX];
    char beside[FY_PATH_MAX], next[FY_PATH_MAX];
    int n;
    bool q;
    uint64_t vs;
    int rc;

    snprintf(cur, sizeof(cur), "%s", path);
    for (unsigned depth = 0; depth < 8; depth++) {
        if ((rc = read_header(cur, &q, &vs, name, sizeof(name))) < 0)
            return rc;
        if (!q || !name[0])
            return 0;
        if ((rc = resolve(cur, name, next, sizeof(next))) < 0)
            return rc;
        snprintf(dir, sizeof(dir), "%s", cur);
        dirname(dir);
        snprintf(bdir, sizeof(bdir), "%s", next);
        dirname(bdir);
        n = snprintf(beside, sizeof(beside), "%s/%s", dir, basename(name));
        if (n > 0 && (size_t)n < sizeof(beside) && name[0] == '/' && strcmp(dir, bdir) != 0 &&
            access(beside, R_OK) == 0) {
            bool bq;
            uint64_t bvs;
            char bname[FY_PATH_MAX];
            char *base = basename(name);

            if ((rc = read_header(beside, &bq, &bvs, bname, sizeof(bname))) < 0)
                return rc;
            char *argv[] = {"qemu-img", "rebase", "-u", "-f", "qcow2", "-b", base, "-F",
                            bq ? "qcow2" : "raw", cur, NULL};
            if ((rc = run(argv)) < 0)
                return rc;
            memcpy(next, beside, sizeof(next));
        }
        memcpy(cur, next, sizeof(cur));
    }
    return 0;
}

/* How image 'path' names its base 'backing': by file name when beside it,
 * as lv_disk_relink leaves moved images, so the pair moves together; else
 * by its path.  Points into 'backing'. */
static const char *base_ref(const char *path, const char *backing)
{
    char dir[FY_PATH_MAX], bdir[FY_PATH_MAX];
    const char *slash = strrchr(backing, '/');

    snprintf(dir, sizeof(dir), "%s", path);
    dirname(dir);
    snprintf(bdir, sizeof(bdir), "%s", backing);
    dirname(bdir);
    return slash && strcmp(dir, bdir) == 0 ? slash + 1 : backing;
}

int lv_disk_rebase(struct fy_driver *d, const char *path, const char *backing)
{
    char bname[FY_PATH_MAX], name[FY_PATH_MAX];
    const char *ref;
    bool q, bq;
    uint64_t vs, bvs;
    int rc;

    (void)d;
    if ((rc = read_header(path, &q, &vs, name, sizeof(name))) < 0)
        return rc;
    if (!q)
        return fy_error(FY_E_UNSUPPORTED, "disk image %s is not qcow2: it has no base image "
                        "to point at %s", path, backing);
    if ((rc = read_header(backing, &bq, &bvs, bname, sizeof(bname))) < 0)
        return rc;
    ref = base_ref(path, backing);
    char *argv[] = {"qemu-img", "rebase", "-u", "-f", "qcow2", "-b", (char *)ref, "-F",
                    bq ? "qcow2" : "raw", (char *)path, NULL};
    if ((rc = run(argv)) < 0)
        return fy_error(-rc, "cannot point disk image %s at its base %s: %s", path,
                        backing, fy_error_detail());
    return 0;
}

int lv_disk_create_image(const char *path, const char *format, uint64_t virtual_size,
                         const char *backing)
{
    char size[32], bname[FY_PATH_MAX];
    const char *ref;
    bool bq = false;
    uint64_t bvs;

    snprintf(size, sizeof(size), "%llu", (unsigned long long)virtual_size);
    if (!backing || !backing[0]) {
        char *argv[] = {"qemu-img", "create", "-q", "-f", (char *)format, (char *)path, size,
                        NULL};
        return run(argv);
    }
    if (read_header(backing, &bq, &bvs, bname, sizeof(bname)) < 0)
        return -FY_E_NOTFOUND;
    ref = base_ref(path, backing);
    char *argv[] = {"qemu-img", "create", "-q", "-f", (char *)format, "-b", (char *)ref,
                    "-F", bq ? "qcow2" : "raw", (char *)path, size, NULL};
    return run(argv);
}
