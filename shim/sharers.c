/*
 * Which processes share a target's address space: CLONE_VM without CLONE_THREAD
 * (vfork and posix_spawn children, a raw clone). Patching the target changes their
 * code too, so attach() (ptrace.c) refuses such a target or stops them with it.
 *
 * Two ways to find them:
 *   sharers_full()       kcmp(KCMP_VM) of the target against every process in /proc:
 *                        O(processes) per attach (2.7 ms at ~1000 processes). What a
 *                        single `patchc apply PID` does.
 *   vm_pass() + sharers_from_pass()
 *                        for a run over many targets (`patchc apply --all`): one pass
 *                        over /proc groups every process by address space (n log n
 *                        kcmp calls, once per run); then each attach compares the
 *                        target only with its group at the pass and with the processes
 *                        created since: O(new processes) per attach.
 *
 * The kernel facts this rests on (kernel/fork.c copy_mm and copy_process, fs/exec.c
 * exec_mmap, kernel/kcmp.c, kernel/pid.c alloc_pid, kernel/pid_namespace.c
 * pid_ns_ctl_handler, fs/proc/base.c proc_pid_readdir;
 * https://man7.org/linux/man-pages/man2/kcmp.2.html):
 *
 * - A task's mm is chosen when the task is created: clone(CLONE_VM) shares its
 *   creator's, anything else gets a copy, a new mm. After that only execve changes
 *   it, to a new mm nobody else has (exec_mmap). No call joins an existing mm. So two
 *   processes that did not share an mm at the pass never will, and a sharer found
 *   later than the pass is a process created after it.
 * - kcmp(a, b, KCMP_VM) compares the two mm pointers through a per-boot obfuscation
 *   that keeps them totally ordered: 0 equal, 1 a < b, 2 a > b. Sorting by it puts
 *   the processes of one mm next to each other. It needs PTRACE_MODE_READ over both
 *   (EPERM otherwise: a process that is not ours to trace; sharers_full skips it the
 *   same way) and fails with ESRCH for a pid that is no task.
 * - Pids come from a cyclic cursor per pid namespace (alloc_pid: idr_alloc_cyclic
 *   from the last pid + 1 up to pid_max, then again from 300), and
 *   /proc/sys/kernel/ns_last_pid is the last one allocated in the reader's namespace.
 *   A process created after we read L0 and before we read L1 has its pid in the
 *   cyclic interval (L0, L1], provided the cursor did not go once around pid_max in
 *   between and no process chose its pid (clone3 set_tid and writes to ns_last_pid
 *   need CAP_CHECKPOINT_RESTORE over the namespace: checkpoint/restore tools, not
 *   covered here). Going around takes pid_max minus the pids in use allocations. No
 *   CPU allocates a pid faster than once per PASS_ALLOC_NS (5 us: less than the kernel
 *   work of any clone(), the pid allocation itself under a global lock), so in
 *   pass_gap_ns() = (pid_max / 4) * 5 us / CPUs at most a quarter of pid_max pids are
 *   allocated. The check uses the interval only while the cursor was last seen (by the
 *   pass, a check, or patchc's heartbeat, src/shim/sharers.ts) at most that long before,
 *   has moved less than half of pid_max since the pass, and fewer than a quarter of
 *   pid_max tasks exist (so going around would take more than half of pid_max
 *   allocations); otherwise it compares with every process, as sharers_full does. With
 *   pid_max 32768 and 2 CPUs the gap is 20 ms; with systemd's 4194304, 2.6 s.
 * - A pid is allocated (alloc_pid) before its task is visible in /proc and to kcmp
 *   (attach_pid, later in copy_process); in between the creator may sleep on cgroup
 *   locks. A process allocated before the pass read L0 but still invisible when /proc
 *   was listed would be in no group and outside every later interval, so the pass
 *   lists /proc again at its end and starts over if any process became visible meanwhile
 *   with a pid outside the interval since L0. (One whose creation outlasts the whole
 *   pass is not seen; sharers_full does not see it either until it is visible.)
 * - /proc lists thread-group ids in increasing order, from any position: pid p sits
 *   at position p + TGID_OFFSET (FIRST_PROCESS_ENTRY 256 + 2 for "self" and
 *   "thread-self"), so lseek() there lists the pids from p on. Checked once against
 *   our own pid before it is used; without it the interval is taken from a full listing.
 * - Processes only: /proc lists thread-group ids, not threads, like sharers_full.
 */
#include "tracer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define TGID_OFFSET (256 + 2)
#define PASS_MIN_PID_MAX 32768
#define PASS_ALLOC_NS 5000ull
#define PASS_TRIES 4

struct linux_dirent64 {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

static long kcmp_vm(pid_t a, pid_t b) { return syscall(SYS_kcmp, a, b, KCMP_VM, 0, 0); }

/* A small number from a file under /proc/sys, read through a kept descriptor. */
static long sysctl_long(const char *path, int *fd) {
  if (*fd < 0) *fd = open(path, O_RDONLY | O_CLOEXEC);
  char buf[32];
  ssize_t n = *fd >= 0 ? pread(*fd, buf, sizeof buf - 1, 0) : -1;
  if (n <= 0) return -1;
  buf[n] = 0;
  return strtol(buf, NULL, 10);
}

static int last_pid_fd = -1, pid_max_fd = -1;
static long last_pid(void) { return sysctl_long("/proc/sys/kernel/ns_last_pid", &last_pid_fd); }
static long pid_max_now(void) { return sysctl_long("/proc/sys/kernel/pid_max", &pid_max_fd); }

/* ---- listing /proc ---- */

struct pids {
  pid_t *v;
  int n, cap;
};

static int pids_push(struct pids *p, pid_t x) {
  if (p->n == p->cap) {
    int cap = p->cap ? p->cap * 2 : 1024;
    pid_t *nv = realloc(p->v, (size_t)cap * sizeof *nv);
    if (!nv) return -1;
    p->v = nv;
    p->cap = cap;
  }
  p->v[p->n++] = x;
  return 0;
}

/* The thread-group ids in [lo, hi] (every one when lo is 1 and hi INT32_MAX), in
 * increasing order, from position lo + TGID_OFFSET when `seek`. -1 on failure. */
static int list_proc(pid_t lo, pid_t hi, bool seek, struct pids *out) {
  int fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  if (seek && lseek(fd, (off_t)lo + TGID_OFFSET, SEEK_SET) < 0) {
    close(fd);
    return -1;
  }
  char buf[16384];
  for (;;) {
    long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (n < 0) {
      int e = errno;
      close(fd);
      errno = e;
      return -1;
    }
    if (n == 0) break;
    for (long off = 0; off < n;) {
      struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
      off += d->d_reclen;
      if (d->d_name[0] < '1' || d->d_name[0] > '9') continue;
      long q = strtol(d->d_name, NULL, 10);
      if (q > hi) {
        if (seek) goto done; /* increasing from here on */
        continue;
      }
      if (q < lo) continue;
      if (pids_push(out, (pid_t)q) < 0) {
        close(fd);
        errno = ENOMEM;
        return -1;
      }
    }
  }
done:
  close(fd);
  return 0;
}

/* Can /proc be listed from a pid on (see the file comment)? Our own pid must come
 * first from its own position, and the next one after it. */
static int seek_state; /* 0 unknown, 1 yes, -1 no */
static bool proc_seek_ok(void) {
  if (seek_state) return seek_state > 0;
  seek_state = -1;
  pid_t me = getpid();
  struct pids a = {0}, b = {0};
  if (list_proc(me, INT32_MAX, true, &a) == 0 && a.n > 0 && a.v[0] == me && list_proc(me + 1, INT32_MAX, true, &b) == 0 &&
      (b.n == 0 || b.v[0] > me))
    seek_state = 1;
  free(a.v);
  free(b.v);
  return seek_state > 0;
}

/* Is /proc the one of our pid namespace (ns_last_pid and kcmp speak of ours)? */
static bool proc_is_ours(void) {
  char buf[32];
  ssize_t n = readlink("/proc/self", buf, sizeof buf - 1);
  if (n <= 0) return false;
  buf[n] = 0;
  return strtol(buf, NULL, 10) == getpid();
}

/* Is pid q in the cyclic interval (lo, hi] of pids allocated after lo, up to hi? */
static bool in_interval(long q, long lo, long hi) {
  if (lo == hi) return false;
  if (lo < hi) return q > lo && q <= hi;
  return q > lo || q <= hi; /* the cursor went past pid_max and began again low */
}

/* How long the cursor may go unobserved (see the file comment). */
uint64_t pass_gap_ns(long pid_max) {
  static long cpus; /* sysconf counts /sys/devices/system/cpu entries: ~50 us, so once */
  if (!cpus) cpus = sysconf(_SC_NPROCESSORS_CONF);
  if (cpus < 1) cpus = 1;
  return (uint64_t)(pid_max / 4) * PASS_ALLOC_NS / (uint64_t)cpus;
}

/* Fewer than a quarter of pid_max tasks (threads included) exist: /proc/loadavg's
 * "running/total". */
static bool few_tasks(long pid_max) {
  char buf[128];
  int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = 0;
  char *slash = strchr(buf, '/');
  return slash && strtol(slash + 1, NULL, 10) < pid_max / 4;
}

/* (x - base) mod m: how far the cursor moved from base to x. */
static long advance(long x, long base, long m) { return ((x - base) % m + m) % m; }

/* ---- sharers_full: today's check, every process ---- */

int sharers_full(pid_t pid, uint32_t *checked) {
  S.nsharers = 0;
  *checked = 0;
  DIR *d = opendir("/proc");
  if (!d) return fail_sys("opendir(/proc)", pid, errno, NULL);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    pid_t q = (pid_t)atoi(e->d_name);
    if (q == pid || q == getpid()) continue;
    long r = kcmp_vm(pid, q);
    (*checked)++;
    if (r == 0 && S.nsharers < MAX_SHARERS) S.sharers[S.nsharers++] = q;
    if (r < 0 && errno == ENOSYS) {
      closedir(d);
      return fail_sys("kcmp(KCMP_VM)", pid, ENOSYS,
                      "cannot tell which processes share the address space of pid %d", pid);
    }
  }
  closedir(d);
  return 0;
}

/* ---- the pass ---- */

/* The cursor watched through the pass, which may take longer than the gap: read every
 * WATCH_EVERY kcmp calls; `broken` when two readings were further apart than the gap or
 * the cursor moved back or too far (see the file comment). */
#define WATCH_EVERY 64
static struct {
  long l0, pid_max, seen_pid;
  uint64_t seen_ns, gap_ns;
  uint32_t count;
  bool broken;
} W;

static void watch_start(long l0, long pid_max, uint64_t seen_ns) {
  W.l0 = W.seen_pid = l0;
  W.pid_max = pid_max;
  W.seen_ns = seen_ns;
  W.gap_ns = pass_gap_ns(pid_max);
  W.count = 0;
  W.broken = false;
}

static void watch_now(void) {
  uint64_t before = now_ns();
  long l = last_pid();
  uint64_t after = now_ns();
  if (l < 0 || after - W.seen_ns > W.gap_ns || advance(l, W.l0, W.pid_max) < advance(W.seen_pid, W.l0, W.pid_max) ||
      advance(l, W.l0, W.pid_max) >= W.pid_max / 2)
    W.broken = true;
  W.seen_pid = l;
  W.seen_ns = before;
}

static void watch_tick(void) {
  if (++W.count % WATCH_EVERY == 0) watch_now();
}

/* Sorting by address space. A process that exits while sorted (ESRCH) or that we may
 * not compare (EPERM) is marked dead and sorts last; the caller drops the dead ones
 * and checks that what is left is sorted. */
struct sorter {
  pid_t *v, *tmp;
  bool *dead; /* by pid */
  uint32_t kcmps;
  bool odd;   /* kcmp answered something else than 0/1/2 */
};

static int cmp_vm(struct sorter *s, pid_t a, pid_t b) {
  if (s->dead[a] || s->dead[b]) return s->dead[a] == s->dead[b] ? (a > b) - (a < b) : s->dead[a] ? 1 : -1;
  long r = kcmp_vm(a, b);
  s->kcmps++;
  watch_tick();
  if (r == 0) return 0;
  if (r == 1) return -1;
  if (r == 2) return 1;
  if (r < 0 && (errno == ESRCH || errno == EPERM)) {
    /* which one: kcmp of a process with itself fails the same way */
    s->kcmps++;
    if (kcmp_vm(a, a) < 0) s->dead[a] = true;
    else s->dead[b] = true;
    return cmp_vm(s, a, b);
  }
  s->odd = true;
  return (a > b) - (a < b);
}

static void merge_sort(struct sorter *s, int lo, int hi) {
  if (hi - lo < 2) return;
  int mid = lo + (hi - lo) / 2;
  merge_sort(s, lo, mid);
  merge_sort(s, mid, hi);
  int i = lo, j = mid, k = lo;
  while (i < mid && j < hi) s->tmp[k++] = cmp_vm(s, s->v[j], s->v[i]) < 0 ? s->v[j++] : s->v[i++];
  while (i < mid) s->tmp[k++] = s->v[i++];
  while (j < hi) s->tmp[k++] = s->v[j++];
  memcpy(s->v + lo, s->tmp + lo, (size_t)(hi - lo) * sizeof *s->v);
}

/* Removes the process at i from the list (it exited, or may not be compared). */
static void drop_at(struct pids *l, int i) {
  memmove(l->v + i, l->v + i + 1, (size_t)(l->n - i - 1) * sizeof *l->v);
  l->n--;
}

/* Has the process exited (a zombie, whose mm is gone, or reaped)? */
static bool exited(pid_t q) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", q);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return true;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return true;
  buf[n] = 0;
  char *rp = strrchr(buf, ')');
  return !rp || rp[1] != ' ' || rp[2] == 'Z' || rp[2] == 'X';
}

/* One round over neighbours: same[i] = v[i] shares v[i - 1]'s mm. 1 clean (sorted, nobody
 * dropped), 0 not clean (someone dropped), -1 out of order. */
static int verify_round(struct pids *l, uint8_t *same, uint32_t *kcmps) {
  int clean = 1;
  if (l->n > 0) same[0] = 0;
  for (int i = 0; i + 1 < l->n;) {
    long r = kcmp_vm(l->v[i], l->v[i + 1]);
    (*kcmps)++;
    watch_tick();
    if (r == 0 || r == 1) {
      same[i + 1] = r == 0;
      i++;
    } else if (r == 2 && (exited(l->v[i]) || exited(l->v[i + 1]))) {
      /* an exit while sorted: its mm is gone (NULL), which moved it in the order; it
         shares nothing any more */
      drop_at(l, exited(l->v[i]) ? i : i + 1);
      clean = 0;
      if (i > 0) i--;
    } else if (r == 2) {
      return -1;
    } else if (r < 0 && (errno == ESRCH || errno == EPERM)) {
      (*kcmps)++;
      drop_at(l, kcmp_vm(l->v[i], l->v[i]) < 0 ? i : i + 1);
      clean = 0;
      if (i > 0) i--;
    } else {
      return -1;
    }
  }
  return clean;
}

static const char *retry_why = "";

/* One try of the pass: 1 done, 0 try again (something moved meanwhile), -1 failed. */
static int pass_once(struct vm_pass *p) {
  long pm = pid_max_now();
  uint64_t seen = now_ns();
  long l0 = last_pid();
  if (pm <= 0 || l0 < 0) return fail_sys("read(/proc/sys/kernel/ns_last_pid)", 0, errno, NULL);
  watch_start(l0, pm, seen);
  struct pids all = {0}, again = {0};
  if (list_proc(1, INT32_MAX, false, &all) < 0) return fail_sys("getdents64(/proc)", 0, errno, NULL);
  watch_now();
  int rc = -1;
  struct sorter s = {.v = all.v, .tmp = malloc((size_t)(all.n + 1) * sizeof(pid_t)), .dead = calloc((size_t)pm + 1, 1)};
  uint8_t *listed = calloc((size_t)pm / 8 + 1, 1);
  uint8_t *same = malloc((size_t)all.n + 1), *prev = malloc((size_t)all.n + 1);
  if (!s.tmp || !s.dead || !listed || !same || !prev) {
    fail("OUT_OF_MEMORY", 0, "out of memory");
    goto out;
  }
  int n = 0;
  for (int i = 0; i < all.n; i++)
    if (all.v[i] <= pm) all.v[n++] = all.v[i]; /* above a lowered pid_max: not grouped, so never a target of the pass */
  all.n = n;
  for (int i = 0; i < n; i++) listed[all.v[i] / 8] |= (uint8_t)(1u << (all.v[i] % 8));
  merge_sort(&s, 0, n);
  if (s.odd) {
    rc = fail_sys("kcmp(KCMP_VM)", 0, EINVAL, "kcmp(KCMP_VM) gave no order");
    goto out;
  }
  int m = 0;
  for (int i = 0; i < n; i++)
    if (!s.dead[all.v[i]]) all.v[m++] = all.v[i];
  all.n = m;
  /* The order checked until two rounds in a row find it sorted, drop nobody and see the
     same groups. A process's mm only ever changes away from its group (execve, exit), never
     into one; one that changed while the rounds compared it with its neighbours makes the
     next round differ or find two neighbours out of order, so a group can be neither split
     nor joined unnoticed. */
  int clean_rounds = 0;
  for (int round = 0; round < 8 && clean_rounds < 2; round++) {
    int r = verify_round(&all, same, &s.kcmps);
    if (r < 0) {
      retry_why = "two neighbours out of order (a process called execve or exited while sorted)";
      rc = 0;
      goto out;
    }
    if (r == 1 && clean_rounds == 1 && memcmp(same, prev, (size_t)all.n) != 0) r = 0;
    clean_rounds = r == 1 ? clean_rounds + 1 : 0;
    memcpy(prev, same, (size_t)all.n);
  }
  if (clean_rounds < 2) {
    retry_why = "no two clean rounds in a row (processes exiting meanwhile)";
    rc = 0;
    goto out;
  }
  /* Listed again: a process that became visible meanwhile with a pid allocated before
     l0 (its creation was under way at the first listing) would be in no group. */
  watch_now();
  long l1 = W.seen_pid;
  if (list_proc(1, INT32_MAX, false, &again) < 0) {
    rc = fail_sys("getdents64(/proc)", 0, errno, NULL);
    goto out;
  }
  watch_now();
  rc = W.broken ? 0 : 1; /* the cursor lost from sight: try again */
  if (W.broken) retry_why = "the pid cursor was not seen for longer than the gap (the tracer did not run)";
  for (int i = 0; i < again.n && rc == 1; i++) {
    pid_t q = again.v[i];
    bool was = q <= pm && (listed[q / 8] & (1u << (q % 8)));
    if (!was && !in_interval(q, l0, l1)) {
      retry_why = "a process created before the pass became visible during it";
      rc = 0;
    }
  }
  if (rc == 1) {
    p->last_pid = (int32_t)l0;
    p->pid_max = (uint32_t)pm;
    p->seen_ns = W.seen_ns;
    p->seen_pid = (int32_t)W.seen_pid;
    free(p->pids);
    free(p->same);
    p->pids = all.v;
    p->same = same;
    p->n = all.n;
    all.v = NULL;
    same = NULL;
  }
out:
  p->kcmps += s.kcmps;
  free(all.v);
  free(again.v);
  free(s.tmp);
  free(s.dead);
  free(listed);
  free(same);
  free(prev);
  return rc;
}

int vm_pass(struct vm_pass *p) {
  uint64_t t0 = now_ns();
  p->kcmps = 0;
  p->tries = 0;
  if (!proc_is_ours()) return fail("NO_PASS", 0, "/proc is not the one of the tracer's pid namespace");
  long pm = pid_max_now();
  if (pm < PASS_MIN_PID_MAX)
    return fail("NO_PASS", 0, "pid_max is %ld (below %d): the pid cursor may go around too fast", pm, PASS_MIN_PID_MAX);
  if (!few_tasks(pm)) return fail("NO_PASS", 0, "a quarter of pid_max (%ld) tasks exist: the pid cursor may go around too fast", pm);
  for (int i = 0; i < PASS_TRIES; i++) {
    p->tries++;
    int r = pass_once(p);
    if (r < 0) return -1;
    if (r == 1) {
      p->took_ns = now_ns() - t0;
      return 0;
    }
  }
  return fail("NO_PASS", 0, "no pass over /proc in %d tries: %s", PASS_TRIES, retry_why);
}

/* ---- the check of one target from a pass ---- */

int sharers_from_pass(pid_t pid, const struct wire_attach_pass *h, const int32_t *cand, struct pass_seen *seen) {
  seen->full = true;
  seen->stale = false;
  seen->checked = 0;
  uint64_t t0 = now_ns();
  long l1 = last_pid();
  uint64_t t1 = now_ns();
  long pm = pid_max_now();
  seen->seen_pid = (int32_t)l1;
  seen->seen_ns = t0;
  bool usable = l1 >= 0 && pm == (long)h->pid_max && pm >= PASS_MIN_PID_MAX && proc_is_ours() &&
                h->last_pid >= 0 && h->last_pid < pm && h->seen_ns <= t1 && t1 - h->seen_ns <= pass_gap_ns(pm) && few_tasks(pm) &&
                advance(l1, h->last_pid, pm) >= advance(h->seen_pid, h->last_pid, pm) &&
                advance(l1, h->last_pid, pm) < pm / 2;
  seen->stale = !usable;
  /* the target itself created after the pass: its group at the pass was another process's */
  if (usable && in_interval(pid, h->last_pid, l1)) usable = false;
  if (!usable) return sharers_full(pid, &seen->checked);
  seen->full = false;
  S.nsharers = 0;
  pid_t me = getpid();
  /* its group at the pass: still there, and not gone to a new mm by execve */
  for (uint32_t i = 0; i < h->ncand; i++) {
    pid_t q = cand[i];
    if (q <= 0 || q == pid || q == me) continue;
    long r = kcmp_vm(pid, q);
    seen->checked++;
    if (r == 0 && S.nsharers < MAX_SHARERS) S.sharers[S.nsharers++] = q;
    if (r < 0 && errno == ENOSYS)
      return fail_sys("kcmp(KCMP_VM)", pid, ENOSYS, "cannot tell which processes share the address space of pid %d", pid);
  }
  /* the processes created since: pids in (last_pid, l1] */
  struct pids fresh = {0};
  bool seek = proc_seek_ok();
  int rc = 0;
  long lo = h->last_pid;
  if (lo == l1) goto out;
  if (lo < l1) {
    rc = list_proc((pid_t)(lo + 1), (pid_t)l1, seek, &fresh);
  } else {
    rc = list_proc((pid_t)(lo + 1), INT32_MAX, seek, &fresh);
    if (rc == 0) rc = list_proc(1, (pid_t)l1, seek, &fresh);
  }
  if (rc < 0) {
    free(fresh.v);
    return fail_sys("getdents64(/proc)", pid, errno, NULL);
  }
  for (int i = 0; i < fresh.n; i++) {
    pid_t q = fresh.v[i];
    if (q == pid || q == me) continue;
    bool known = false;
    for (int k = 0; k < S.nsharers && !known; k++) known = S.sharers[k] == q;
    if (known) continue;
    long r = kcmp_vm(pid, q);
    seen->checked++;
    if (r == 0 && S.nsharers < MAX_SHARERS) S.sharers[S.nsharers++] = q;
    if (r < 0 && errno == ENOSYS) {
      free(fresh.v);
      return fail_sys("kcmp(KCMP_VM)", pid, ENOSYS, "cannot tell which processes share the address space of pid %d", pid);
    }
  }
out:
  free(fresh.v);
  return 0;
}
