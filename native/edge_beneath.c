/* openat2(2) for edge's file tools: open a path beneath a directory descriptor.
 *
 * edge_open_beneath() resolves `path` relative to `dirfd` with
 * RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS, so neither "..", an absolute
 * symlink, a symlink leading out nor a /proc magic link can take the lookup
 * outside `dirfd`, whatever another process renames in between. It returns
 * the new descriptor, or -errno (-ENOSYS where openat2 does not exist).
 */

#include <errno.h>
#include <fcntl.h>

int edge_open_beneath(int dirfd, const char *path, int flags, int mode);

#ifdef __linux__
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#define EDGE_HAVE_OPENAT2_H 1
#endif
#endif

#ifndef EDGE_HAVE_OPENAT2_H
struct open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};
#endif

#ifndef RESOLVE_NO_MAGICLINKS
#define RESOLVE_NO_MAGICLINKS 0x02
#endif
#ifndef RESOLVE_BENEATH
#define RESOLVE_BENEATH 0x08
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif

int edge_open_beneath(int dirfd, const char *path, int flags, int mode)
{
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(unsigned int)flags;
    /* openat2 refuses a mode without O_CREAT or O_TMPFILE (EINVAL). */
    how.mode = (flags & O_CREAT) ? (uint64_t)(unsigned int)mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    long fd;
    do {
        fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    } while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : (int)fd;
}

#else

int edge_open_beneath(int dirfd, const char *path, int flags, int mode)
{
    (void)dirfd;
    (void)path;
    (void)flags;
    (void)mode;
    return -ENOSYS;
}

#endif
