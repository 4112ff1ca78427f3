/*
 * LD_PRELOAD shim: file locks on the queue behave as on the cluster mounts users meet.
 *
 *   GRID_LOCKSHIM_MODE    local   locks hold between processes of one host only (NFS
 *                                 local_lock=all or nolock, Lustre localflock): each host
 *                                 locks a shadow file of its own
 *                         ignore  every lock call succeeds and locks nothing (a misconfigured
 *                                 client)
 *                         enosys  every lock call fails with ENOSYS (Lustre without -o flock)
 *                         nfs4    LOCK_EX on a descriptor opened read-only fails with EBADF
 *                                 (NFSv4's rule); the rest is real
 *   GRID_LOCKSHIM_ROOT    only files under this folder are affected
 *   GRID_LOCKSHIM_SHADOW  local mode: the folder of the per-host shadow files
 *   GRID_LOCKSHIM_LOG     a line per process that loaded the shim, and per lock call on a
 *                         file under the root
 *
 * flock(2), lockf(3) (and lockf64) and fcntl(2)'s record locks are covered.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FDS 4096

static int shadow_of[MAX_FDS];

static void note(const char *what, const char *path) {
    const char *log = getenv("GRID_LOCKSHIM_LOG");
    if (!log) return;
    int fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return;
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    char line[PATH_MAX + 512];
    int n = snprintf(line, sizeof line, "%s %s %d %s\n", what, host, (int)getpid(), path);
    if (n > 0) write(fd, line, (size_t)n);
    close(fd);
}

__attribute__((constructor)) static void loaded(void) {
    if (getenv("GRID_LOCKSHIM_MODE")) note("loaded", "-");
}

/* Whether fd is a file under the root; its path in `path`. */
static int affected(int fd, char *path) {
    const char *root = getenv("GRID_LOCKSHIM_ROOT");
    if (!root || !getenv("GRID_LOCKSHIM_MODE")) return 0;
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, PATH_MAX - 1);
    if (n < 0) return 0;
    path[n] = '\0';
    return strncmp(path, root, strlen(root)) == 0;
}

static const char *mode(void) { return getenv("GRID_LOCKSHIM_MODE"); }

static int real_flock(int fd, int op) {
    static int (*real)(int, int);
    if (!real) real = (int (*)(int, int))dlsym(RTLD_NEXT, "flock");
    return real(fd, op);
}

/* The per-host shadow descriptor standing for fd's file (local mode). */
static int shadow(int fd) {
    struct stat st;
    if (fd < 0 || fd >= MAX_FDS || fstat(fd, &st) != 0) return -1;
    if (shadow_of[fd] > 0) return shadow_of[fd];
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    char dir[PATH_MAX], path[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%s", getenv("GRID_LOCKSHIM_SHADOW"), host);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/%lu-%lu", dir, (unsigned long)st.st_dev,
             (unsigned long)st.st_ino);
    int s = open(path, O_RDWR | O_CREAT, 0644);
    if (s > 0) shadow_of[fd] = s;
    return s;
}

static int shimmed(int fd, int exclusive, int unlock, int (*lock)(int)) {
    char path[PATH_MAX];
    if (!affected(fd, path)) return lock(fd);
    note("lock", path);
    const char *m = mode();
    if (strcmp(m, "ignore") == 0) return 0;
    if (strcmp(m, "enosys") == 0) {
        errno = ENOSYS;
        return -1;
    }
    if (strcmp(m, "nfs4") == 0 && exclusive && !unlock &&
        (fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY) {
        errno = EBADF;
        return -1;
    }
    if (strcmp(m, "local") == 0) {
        int s = shadow(fd);
        if (s < 0) return lock(fd);
        return lock(s);
    }
    return lock(fd);
}

static int flock_op;
static int do_flock(int fd) { return real_flock(fd, flock_op); }

int flock(int fd, int op) {
    flock_op = op;
    return shimmed(fd, (op & LOCK_EX) != 0, (op & LOCK_UN) != 0, do_flock);
}

static int fcntl_cmd;
static struct flock *fcntl_lock;
static int do_fcntl(int fd) {
    static int (*real)(int, int, ...);
    if (!real) real = (int (*)(int, int, ...))dlsym(RTLD_NEXT, "fcntl");
    return real(fd, fcntl_cmd, fcntl_lock);
}

int fcntl(int fd, int cmd, ...) {
    static int (*real)(int, int, ...);
    if (!real) real = (int (*)(int, int, ...))dlsym(RTLD_NEXT, "fcntl");
    va_list args;
    va_start(args, cmd);
    void *arg = va_arg(args, void *);
    va_end(args);
    int locking = cmd == F_SETLK || cmd == F_SETLKW
#ifdef F_OFD_SETLK
                  || cmd == F_OFD_SETLK || cmd == F_OFD_SETLKW
#endif
        ;
    if (!locking) return real(fd, cmd, arg);
    struct flock *lk = arg;
    fcntl_cmd = cmd;
    fcntl_lock = lk;
    return shimmed(fd, lk->l_type == F_WRLCK, lk->l_type == F_UNLCK, do_fcntl);
}

static int lockf_cmd;
static off_t lockf_len;
static int do_lockf(int fd) {
    static int (*real)(int, int, off_t);
    if (!real) real = (int (*)(int, int, off_t))dlsym(RTLD_NEXT, "lockf");
    return real(fd, lockf_cmd, lockf_len);
}

int lockf(int fd, int cmd, off_t len) {
    lockf_cmd = cmd;
    lockf_len = len;
    return shimmed(fd, cmd == F_LOCK || cmd == F_TLOCK, cmd == F_ULOCK, do_lockf);
}

/* What callers built with 64-bit offsets call (Python's os.lockf among them). */
int lockf64(int fd, int cmd, off_t len) { return lockf(fd, cmd, len); }
