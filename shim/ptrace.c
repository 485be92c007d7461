/*
 * Process control for the tracer: attach, stop and resume every thread,
 * registers, memory, remote syscalls, seccomp filters, waits. Linux x86-64.
 *
 * The ptrace facts this file is built on (ptrace(2), kernel/ptrace.c,
 * kernel/signal.c, arch/x86/kernel/signal.c; https://man7.org/linux/man-pages/man2/ptrace.2.html):
 *
 * - PTRACE_SEIZE attaches without stopping; PTRACE_INTERRUPT then stops a
 *   thread wherever it is. Its stop is reported as PTRACE_EVENT_STOP
 *   (status >> 16) with WSTOPSIG SIGTRAP, or with the stop signal (SIGSTOP,
 *   SIGTSTP, SIGTTIN, SIGTTOU) when the process is stopped by job control
 *   (group-stop). A group-stopped tracee is resumed with PTRACE_LISTEN: it stays
 *   stopped for job control, and a later SIGCONT is reported to us.
 * - Interrupting a thread does not wait for it: we interrupt every thread, then
 *   collect their stops with waitpid(-1, __WALL). The threads stop in parallel.
 * - With PTRACE_O_TRACECLONE a thread created by a traced thread is traced from
 *   birth and starts with a PTRACE_EVENT_STOP; its creator reports
 *   PTRACE_EVENT_CLONE with the new tid (PTRACE_GETEVENTMSG). Threads exiting
 *   are reported by waitpid as WIFEXITED/WIFSIGNALED.
 * - "Any trap clears a pending STOP trap" (ptrace_stop): an interrupt may be
 *   answered by another stop (a signal, a clone event); an interrupt sent to an
 *   already stopped thread fires after it resumes. Stray PTRACE_EVENT_STOPs of
 *   threads we do not hold are simply continued.
 * - A signal-delivery-stop (status >> 16 == 0, WSTOPSIG = the signal) delivers
 *   the signal only if we resume with it. Signals of threads we do not hold are
 *   passed on at once; signals of held threads are kept (with their siginfo) and
 *   passed on when we resume them: PTRACE_SETSIGINFO + PTRACE_CONT(sig) from a
 *   signal-delivery-stop, tgkill() from other stops and for job-stopped threads
 *   (a handler must not run while job control holds the process).
 * - A thread stopped inside a blocking syscall has rax = -ERESTARTSYS (512),
 *   -ERESTARTNOINTR (513), -ERESTARTNOHAND (514) or -ERESTART_RESTARTBLOCK
 *   (516) and orig_rax = the syscall number; when it resumes without a handler
 *   to run, the kernel's restart logic (arch_do_signal_or_restart) moves rip
 *   back over the 2-byte `syscall` and restarts it (restart_syscall for the
 *   RESTARTBLOCK case, which resumes nanosleep/futex waits with the time left).
 *   The restart logic reads the registers as they are when the thread leaves
 *   its stop, so a remote syscall sets orig_rax = -1 for itself and restores
 *   every register, orig_rax and rax included, before the thread resumes.
 * - epoll_wait/epoll_pwait/epoll_pwait2 return -EINTR to user space after any
 *   stop, even without a signal handler (signal(7), "interruption by stop
 *   signals"). Before resuming such a thread from our own interrupt we change
 *   rax to -ERESTARTNOHAND: with no handler to run the kernel restarts the call,
 *   with a handler it turns it into EINTR exactly as it would have.
 * - A remote syscall runs at an existing `syscall` (0f 05) instruction of the
 *   target (the vDSO's, else any executable mapping) under PTRACE_SINGLESTEP:
 *   the step reports SIGTRAP at syscall exit, rip = site + 2. Nothing is written
 *   to the target's text, no int3 is ever used.
 * - A hardware breakpoint (DR0..DR3 + DR7 through PTRACE_POKEUSER) is per
 *   thread and outlives its tracer: it is armed only inside wait_return() and
 *   disarmed before that returns, EOF included. An execute breakpoint reports
 *   SIGTRAP with si_code TRAP_HWBKPT; the kernel sets RF so continuing does not
 *   trap again on the same instruction. (arch/x86/kernel/ptrace.c,
 *   kernel/events/hw_breakpoint.c, kernel/exit.c)
 *   - Each slot is a perf event of the thread (thread.ptrace_bps[i]); writing
 *     DR7 enables or disables the slots' events (ptrace_write_dr7), and only a
 *     write that succeeded is remembered in thread.ptrace_dr7, which is what
 *     PTRACE_PEEKUSER returns for DR7. DR0..3 read the slot's address, 0 when
 *     the slot has no event. So DR7 reading back 0 means every slot is off.
 *   - PTRACE_PEEKUSER/POKEUSER need the thread in a ptrace-stop
 *     (ptrace_check_attach): ESRCH otherwise, also once SIGKILL is pending.
 *   - A new thread gets no breakpoint: clone copies the task_struct and
 *     copy_thread() zeroes ptrace_bps, but not ptrace_dr7. A thread created while
 *     its creator had DR7 = 1 reads DR7 = 0x1 with DR0 = 0 and never traps
 *     (measured on 6.18): a copy without a breakpoint, cleared at its first stop.
 *   - A detach does not disarm (ptrace_disable() on x86 only clears
 *     single-step), nor does the tracer's exit (exit_ptrace() in exit_notify(),
 *     before the tracer is a zombie, unlinks every tracee under tasklist_lock).
 *     An armed thread left behind gets SIGTRAP (TRAP_HWBKPT) the next time it
 *     executes the address, with no tracer to take it: the default action kills
 *     the process. Hence DR7 is read back 0 before any thread is let go.
 *   - Only a thread's exit takes its breakpoints away (exit_thread ->
 *     flush_ptrace_hw_breakpoint): a thread that exited needs no disarming.
 *   - PTRACE_INTERRUPT of a thread in uninterruptible sleep (D) is pending until
 *     the thread returns towards user space, where get_signal() stops it before
 *     any user instruction runs: such a thread cannot reach a breakpoint before
 *     it stops for us. We wait for it (bounded) rather than let it go armed.
 * - process_vm_readv/writev need no stop and move many ranges in one call but
 *   fail with EFAULT on pages without the access (text is not writable);
 *   /proc/PID/mem reads and writes through page protections (FOLL_FORCE).
 */
#include "tracer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <elf.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PTRACE_EVENT_STOP
#define PTRACE_EVENT_STOP 128
#endif
#ifndef TRAP_HWBKPT
#define TRAP_HWBKPT 4
#endif
#define ERESTARTSYS 512
#define ERESTARTNOINTR 513
#define ERESTARTNOHAND 514
#define ERESTART_RESTARTBLOCK 516

#define SEIZE_OPTIONS (PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC)
#define DR_OFFSET(i) (offsetof(struct user, u_debugreg) + (i) * sizeof(long))
#define E_STOP_FAILED (-1) /* hw_disarm: the thread could not be stopped */

struct session S = {.memfd = -1};
extern int g_sigfd;

uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ */
/* Deadlines for blocking waits: ITIMER_REAL fires SIGALRM every 20 ms (sooner
 * for a nearer deadline); its handler is installed without SA_RESTART, so a
 * blocking waitpid() returns EINTR: the caller then checks its deadline and may
 * look around (threads that vanished). A tick that lands just before waitpid()
 * is entered only delays that by one period. */
#define TICK_US 20000

static void timer_arm(uint64_t deadline) {
  uint64_t now = now_ns();
  uint64_t d = deadline > now ? deadline - now : 1000;
  if (d > TICK_US * 1000ull) d = TICK_US * 1000ull;
  struct itimerval it = {
      .it_interval = {0, TICK_US},
      .it_value = {0, (suseconds_t)(d / 1000)},
  };
  if (it.it_value.tv_usec == 0) it.it_value.tv_usec = 1;
  setitimer(ITIMER_REAL, &it, NULL);
}

static void timer_disarm(void) {
  struct itimerval it = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &it, NULL);
}

#define WAIT_TIMEOUT 0
#define WAIT_TICK (-2)
#define WAIT_NONE (-1)

/* Next waitpid event of `which` (-1: any) with the timer armed by the caller:
 * the tid, WAIT_TICK on a timer tick before `deadline`, WAIT_TIMEOUT after it,
 * WAIT_NONE when nothing is traced any more. */
static pid_t wait_event(pid_t which, uint64_t deadline, int *status) {
  pid_t p = waitpid(which, status, __WALL);
  if (p > 0) return p;
  if (errno == EINTR) return now_ns() >= deadline ? WAIT_TIMEOUT : WAIT_TICK;
  return WAIT_NONE;
}

/* Does the task still exist (not reaped)? A thread can exit and be reaped
 * before its creator's PTRACE_EVENT_CLONE is read; such a ghost never stops. */
static bool task_exists(pid_t tgid, pid_t tid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task/%d", tgid, tid);
  return access(path, F_OK) == 0;
}

/* ------------------------------------------------------------------ */
/* The thread table. Entries are allocated one by one so pointers stay valid
 * across events; a thread that exits is marked dead and freed by
 * threads_compact() at the start of the next request. */

static struct thread **T;

struct thread *thread_find(pid_t tid) {
  if (tid <= 0 || tid > S.pid_max || !S.idx) return NULL;
  int i = S.idx[tid];
  return i > 0 && i <= S.n && T[i - 1]->tid == tid ? T[i - 1] : NULL;
}

static struct thread *thread_add(pid_t tid, pid_t tgid) {
  if (tid <= 0 || tid > S.pid_max) return NULL;
  if (S.n == S.cap) {
    int cap = S.cap ? S.cap * 2 : 64;
    struct thread **nt = realloc(T, (size_t)cap * sizeof *nt);
    if (!nt) return NULL;
    T = nt;
    S.cap = cap;
  }
  struct thread *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->tid = tid;
  t->tgid = tgid;
  T[S.n++] = t;
  S.idx[tid] = S.n;
  return t;
}

static void thread_dead(struct thread *t) {
  if (t->expect_stop) {
    t->expect_stop = false;
    S.nexpect--;
  }
  t->dead = true;
  t->stopped = false;
  if (S.idx[t->tid] && T[S.idx[t->tid] - 1] == t) S.idx[t->tid] = 0;
}

void threads_compact(void) {
  int j = 0;
  for (int i = 0; i < S.n; i++) {
    if (T[i]->dead) {
      if (S.idx[T[i]->tid] == i + 1) S.idx[T[i]->tid] = 0;
      free(T[i]->pending);
      free(T[i]);
      continue;
    }
    T[j] = T[i];
    S.idx[T[j]->tid] = j + 1;
    j++;
  }
  S.n = j;
  if (S.pid && S.n == 0) S.gone = true;
}

int thread_count(void) { return S.n; }
struct thread *thread_at(int i) { return T[i]; }

struct thread *any_stopped_thread(void) {
  struct thread *leader = thread_find(S.pid);
  if (leader && !leader->dead && leader->stopped) return leader;
  for (int i = 0; i < S.n; i++)
    if (!T[i]->dead && T[i]->stopped && !T[i]->sharer) return T[i];
  return NULL;
}

/* ------------------------------------------------------------------ */
/* /proc helpers */

static ssize_t read_small(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, cap - 1);
  int e = errno;
  close(fd);
  if (n < 0) {
    errno = e;
    return -1;
  }
  buf[n] = 0;
  return n;
}

/* Value of "Key:\t..." in a status file, or NULL. */
static const char *status_field(const char *status, const char *key) {
  size_t kl = strlen(key);
  for (const char *p = status; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
    if (strncmp(p, key, kl) == 0 && p[kl] == ':') {
      p += kl + 1;
      while (*p == ' ' || *p == '\t') p++;
      return p;
    }
  }
  return NULL;
}

static long status_long(const char *status, const char *key, long dflt) {
  const char *v = status_field(status, key);
  return v ? strtol(v, NULL, 10) : dflt;
}

/* State letter and wchan of a task, for messages. */
static void task_state(pid_t tgid, pid_t tid, char *state, char *wchan, size_t wcap) {
  char path[64], buf[1024];
  *state = '?';
  snprintf(path, sizeof path, "/proc/%d/task/%d/stat", tgid, tid);
  if (read_small(path, buf, sizeof buf) > 0) {
    char *rp = strrchr(buf, ')');
    if (rp && rp[1] == ' ') *state = rp[2];
  }
  snprintf(path, sizeof path, "/proc/%d/task/%d/wchan", tgid, tid);
  if (read_small(path, buf, sizeof buf) > 0 && wcap > 0) {
    size_t l = strlen(buf);
    if (l >= wcap) l = wcap - 1;
    memcpy(wchan, buf, l);
    wchan[l] = 0;
  } else {
    snprintf(wchan, wcap, "?");
  }
}

static int list_tasks(pid_t pid, pid_t **out, int *n) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", pid);
  DIR *d = opendir(path);
  if (!d) return -1;
  int cap = 64, k = 0;
  pid_t *v = malloc((size_t)cap * sizeof *v);
  struct dirent *e;
  while (v && (e = readdir(d))) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    if (k == cap) {
      cap *= 2;
      pid_t *nv = realloc(v, (size_t)cap * sizeof *v);
      if (!nv) {
        free(v);
        v = NULL;
        break;
      }
      v = nv;
    }
    v[k++] = (pid_t)atoi(e->d_name);
  }
  closedir(d);
  if (!v) {
    errno = ENOMEM;
    return -1;
  }
  *out = v;
  *n = k;
  return 0;
}

static pid_t tgid_of(pid_t tid) {
  char path[64], buf[2048];
  snprintf(path, sizeof path, "/proc/%d/status", tid);
  if (read_small(path, buf, sizeof buf) < 0) return S.pid;
  return (pid_t)status_long(buf, "Tgid", S.pid);
}

/* ------------------------------------------------------------------ */
/* Events */

static void push_pending(struct thread *t, int sig) {
  if (t->npending == t->cappending) {
    int cap = t->cappending ? t->cappending * 2 : 4;
    struct pending_signal *np = realloc(t->pending, (size_t)cap * sizeof *np);
    if (!np) { /* cannot keep it: send it again rather than lose it */
      syscall(SYS_tgkill, t->tgid, t->tid, sig);
      return;
    }
    t->pending = np;
    t->cappending = cap;
  }
  struct pending_signal *p = &t->pending[t->npending];
  memset(p, 0, sizeof *p);
  p->sig = sig;
  if (ptrace(PTRACE_GETSIGINFO, t->tid, 0, &p->info) < 0) {
    p->info.si_signo = sig;
    p->info.si_code = SI_USER;
  }
  p->from_stop = t->stop_seq;
  t->npending++;
}

/* Queues a held signal on its thread again: exactly (rt_tgsigqueueinfo) when the
 * kernel lets another process queue that siginfo (si_code < 0, not SI_TKILL),
 * else with tgkill (same signal, siginfo of a tgkill). */
static void requeue(struct thread *t, const struct pending_signal *p) {
  if (p->info.si_code < 0 && p->info.si_code != SI_TKILL) {
    siginfo_t info = p->info;
    if (syscall(SYS_rt_tgsigqueueinfo, t->tgid, t->tid, p->sig, &info) == 0) return;
  }
  syscall(SYS_tgkill, t->tgid, t->tid, p->sig);
}

/* Hands the held signals back to the kernel before the thread leaves its stop;
 * returns the one to inject with PTRACE_CONT/DETACH (0: none). The first is
 * injected from a signal-delivery-stop with its own siginfo; the others are
 * queued again and delivered after it, each through a signal-delivery-stop. A
 * job-stopped thread injects nothing (no handler may run while job control holds
 * the process): its signals stay queued until SIGCONT. */
static int release_pending(struct thread *t) {
  int inject = 0;
  bool can_inject = t->sigstop != 0 && !t->group_stop;
  for (int i = 0; i < t->npending; i++) {
    struct pending_signal *p = &t->pending[i];
    if (i == 0 && can_inject) {
      if (p->from_stop != t->stop_seq || p->sig != t->sigstop) ptrace(PTRACE_SETSIGINFO, t->tid, 0, &p->info);
      inject = p->sig;
    } else {
      requeue(t, p);
    }
  }
  t->npending = 0;
  return inject;
}

static void fix_epoll_eintr(struct thread *t, int sig);
static int hw_clear(struct thread *t, bool full);
static int hw_disarm(struct thread *t, uint64_t deadline);

/* A breakpoint was armed since attach: threads born from now on may carry a
 * copy of their creator's DR7 (hw_stale; see the file comment). */
static bool hw_session;

/* Is this SIGTRAP stop our hardware breakpoint? Records a hit when it is. */
static bool own_hw_trap(struct thread *t, int status) {
  if (!(t->hw_armed || t->hw_used) || (status >> 16) != 0 || WSTOPSIG(status) != SIGTRAP) return false;
  siginfo_t si;
  if (ptrace(PTRACE_GETSIGINFO, t->tid, 0, &si) < 0 || si.si_code != TRAP_HWBKPT) return false;
  struct user_regs_struct r;
  if (ptrace(PTRACE_GETREGS, t->tid, 0, &r) == 0 && r.rip == t->hw_addr &&
      (t->hw_sp == 0 || r.rsp > t->hw_sp)) {
    t->hw_hit = true;
    t->hw_rsp = r.rsp;
  }
  return true;
}

void on_event(pid_t tid, int status) {
  struct thread *t = thread_find(tid);
  if (WIFEXITED(status) || WIFSIGNALED(status)) {
    if (t) thread_dead(t);
    return;
  }
  if (!WIFSTOPPED(status)) return;
  if (!t && !S.pid) {
    /* a thread that did not stop for detach_all(), stopping now: let it go with
       the signal of a signal-delivery-stop, unless that is the trap of a
       breakpoint detach_all() could not disarm: then disarm it and drop it */
    int sig = WSTOPSIG(status), ev = (unsigned)status >> 16;
    siginfo_t si;
    if (ev != 0 || sig == (SIGTRAP | 0x80)) {
      sig = 0;
    } else if (sig == SIGTRAP && ptrace(PTRACE_GETSIGINFO, tid, 0, &si) == 0 && si.si_code == TRAP_HWBKPT) {
      ptrace(PTRACE_POKEUSER, tid, DR_OFFSET(7), 0);
      sig = 0;
    }
    ptrace(PTRACE_DETACH, tid, 0, sig);
    return;
  }
  if (!t) {
    /* auto-attached by PTRACE_O_TRACECLONE before its creator's event was seen */
    t = thread_add(tid, tgid_of(tid));
    if (!t) {
      ptrace(PTRACE_DETACH, tid, 0, 0);
      return;
    }
    struct thread *g = thread_find(t->tgid);
    t->sharer = g ? g->sharer : t->tgid != S.pid;
    t->hw_stale = hw_session;
  }
  if (t->expect_stop) {
    t->expect_stop = false;
    S.nexpect--;
  }
  t->stopped = true;
  t->listening = false;
  t->status = status;
  t->sigstop = 0;
  t->regs_valid = false;
  t->stop_seq++;
  /* born in a session that armed a breakpoint: its DR7 may be a copy of its
     creator's, without a breakpoint behind it (file comment); set it to 0 at its
     first stop so no one takes it for an armed one. Its DR0 is left alone (a
     write there would register an event). */
  if (t->hw_stale && hw_clear(t, false) == 0) t->hw_stale = false;
  int sig = WSTOPSIG(status);
  int ev = (unsigned)status >> 16;
  bool held = S.world_stopped || t->held;

  if (ev == PTRACE_EVENT_STOP) {
    t->group_stop = sig != SIGTRAP;
  } else if (ev == PTRACE_EVENT_CLONE) {
    unsigned long child = 0;
    if (ptrace(PTRACE_GETEVENTMSG, tid, 0, &child) == 0 && !thread_find((pid_t)child) &&
        task_exists(t->tgid, (pid_t)child)) {
      struct thread *c = thread_add((pid_t)child, t->tgid);
      if (c) {
        c->sharer = t->sharer;
        c->hw_stale = hw_session;
        c->expect_stop = true;
        S.nexpect++;
      }
    }
  } else if (ev == PTRACE_EVENT_EXEC) {
    S.execed = true;
  } else if (ev == 0 && sig != (SIGTRAP | 0x80)) {
    if (own_hw_trap(t, status)) {
      t->sigstop = SIGTRAP; /* resumed without it: the trap was ours */
    } else if (!held) {
      /* pass the signal on at once: the target never notices us */
      fix_epoll_eintr(t, sig);
      if (ptrace(PTRACE_CONT, tid, 0, sig) == 0) t->stopped = false;
      t->regs_valid = false;
      return;
    } else {
      t->sigstop = sig;
      push_pending(t, sig);
    }
  }
  if (!held) resume_thread(t);
}

/* Answers the events waiting (a bounded number, so a target creating threads
 * without pause cannot keep us from patchc's requests); true when more remain. */
bool drain_events(void) {
  int st;
  pid_t p;
  int budget = 256 + 2 * S.n;
  while (budget-- > 0) {
    if ((p = waitpid(-1, &st, __WALL | WNOHANG)) <= 0) return false;
    on_event(p, st);
  }
  return true;
}

/* Does the target ignore `sig` (SIG_IGN, or SIG_DFL with a default of ignore)? */
static bool sig_ignored(pid_t tgid, int sig) {
  char path[64], status[4096];
  snprintf(path, sizeof path, "/proc/%d/status", tgid);
  if (read_small(path, status, sizeof status) < 0) return false;
  const char *ign = status_field(status, "SigIgn"), *cgt = status_field(status, "SigCgt");
  uint64_t bit = 1ull << (sig - 1);
  if (ign && (strtoull(ign, NULL, 16) & bit)) return true;
  bool caught = cgt && (strtoull(cgt, NULL, 16) & bit);
  return !caught && (sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH || sig == SIGCONT);
}

/* epoll_wait and friends return -EINTR after any stop and after a signal that
 * ptrace made them see although the target ignores it (a traced thread is woken
 * by every signal). Before the thread leaves its stop with no handler to run
 * (sig 0, or a signal it ignores) rax becomes -ERESTARTNOHAND: the kernel then
 * restarts the call, as it does for read() or accept(). See the file comment. */
static void fix_epoll_eintr(struct thread *t, int sig) {
  struct user_regs_struct r;
  if (t->regs_valid)
    r = t->regs;
  else if (ptrace(PTRACE_GETREGS, t->tid, 0, &r) < 0)
    return;
  long nr = (long)r.orig_rax;
  if (!(nr == SYS_epoll_wait || nr == SYS_epoll_pwait || nr == 441 /* epoll_pwait2 */) || (long)r.rax != -EINTR)
    return;
  if (sig && !sig_ignored(t->tgid, sig)) return;
  r.rax = (unsigned long long)-ERESTARTNOHAND;
  if (ptrace(PTRACE_SETREGS, t->tid, 0, &r) == 0) {
    t->regs = r;
    t->regs_valid = true;
  }
}

int resume_thread(struct thread *t) {
  if (t->dead || !t->stopped) return 0;
  int inject = release_pending(t);
  fix_epoll_eintr(t, inject);

  long r;
  int ev = (unsigned)t->status >> 16;
  if (inject) {
    r = ptrace(PTRACE_CONT, t->tid, 0, inject);
  } else if (t->group_stop && ev == PTRACE_EVENT_STOP) {
    r = ptrace(PTRACE_LISTEN, t->tid, 0, 0);
    if (r == 0) t->listening = true;
  } else if (t->group_stop) {
    /* back into the group-stop without running user code: the interrupt trap
       fires before the thread can return to user space */
    ptrace(PTRACE_INTERRUPT, t->tid, 0, 0);
    r = ptrace(PTRACE_CONT, t->tid, 0, 0);
  } else {
    r = ptrace(PTRACE_CONT, t->tid, 0, 0);
  }
  (void)r; /* ESRCH: it died meanwhile; waitpid reports the exit */
  t->stopped = false;
  t->sigstop = 0;
  t->regs_valid = false;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Attach and detach */

int check_usable(void) {
  if (!S.pid) return fail("NOT_ATTACHED", 0, "not attached to any process");
  if (S.execed)
    return fail("TARGET_EXECED", S.pid, "pid %d called execve: its memory is not the one patched; detach", S.pid);
  if (S.gone || S.n == 0) return fail("TARGET_EXITED", S.pid, "pid %d has exited", S.pid);
  return 0;
}

/* Is the tracer `pid` on its way out: gone, a zombie, exiting (PF_EXITING), or
 * with a SIGKILL pending (a SIGKILL adds itself to every thread's pending set,
 * complete_signal(), before the thread runs again to exit)? Its tracees are all
 * let go in exit_notify() (exit_ptrace), before it is a zombie. */
static bool tracer_exiting(long pid) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  if (read_small(path, buf, sizeof buf) < 0) return true;
  char *rp = strrchr(buf, ')');
  char state = '?';
  unsigned flags = 0;
  if (!rp || sscanf(rp + 1, " %c %*d %*d %*d %*d %*d %u", &state, &flags) != 2) return false;
  if (state == 'Z' || state == 'X' || (flags & 0x4 /* PF_EXITING */)) return true;
  snprintf(path, sizeof path, "/proc/%ld/status", pid);
  if (read_small(path, buf, sizeof buf) < 0) return true;
  const char *pnd = status_field(buf, "SigPnd"), *shd = status_field(buf, "ShdPnd");
  uint64_t kill = 1ull << (SIGKILL - 1);
  return (pnd && (strtoull(pnd, NULL, 16) & kill)) || (shd && (strtoull(shd, NULL, 16) & kill));
}

#define SEIZE_RETRY_MS 1000

/* PTRACE_SEIZE of one task. As root, ptrace_attach() fails with EPERM when the
 * task has a tracer (task->ptrace) or has exited (exit_state: a zombie thread, or
 * EXIT_DEAD in the moment before release_task() takes it out of /proc). So after
 * an EPERM one read of its status file (state and TracerPid of one moment) says
 * why: gone or exited: skip it; traced by us (auto-attached as a new thread of a
 * seized one): ours; traced by a live process: ALREADY_TRACED. Traced by a
 * tracer that is exiting, or by no one any more (its tracer let go between our
 * seize and our read): seize again, for up to SEIZE_RETRY_MS. */
static int seize_task(pid_t tgid, pid_t tid, bool sharer, bool *added) {
  *added = false;
  if (thread_find(tid)) return 0;
  char state, wchan[64];
  task_state(tgid, tid, &state, wchan, sizeof wchan);
  if (state == 'Z' || state == 'X') return 0; /* exited, waiting to be reaped */
  uint64_t deadline = 0;
  int tries = 0;
  while (ptrace(PTRACE_SEIZE, tid, 0, SEIZE_OPTIONS) < 0) {
    int e = errno;
    if (e == ESRCH) return 0; /* exited meanwhile */
    if (e != EPERM) return fail_sys("ptrace(PTRACE_SEIZE)", tid, e, NULL);
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/task/%d/status", tgid, tid);
    if (read_small(path, buf, sizeof buf) < 0) return 0; /* gone: it was exiting */
    const char *st = status_field(buf, "State");
    if (st && (*st == 'Z' || *st == 'X')) return 0;
    long tracer = status_long(buf, "TracerPid", 0);
    if (tracer == getpid()) {
      struct thread *t = thread_add(tid, tgid);
      if (!t) return fail("OUT_OF_MEMORY", tid, "out of memory");
      t->sharer = sharer;
      t->hw_stale = hw_session;
      t->expect_stop = true;
      S.nexpect++;
      *added = true;
      return 0;
    }
    if (tracer && !tracer_exiting(tracer))
      return fail("ALREADY_TRACED", tid, "tid %d is already traced by pid %ld", tid, tracer);
    uint64_t now = now_ns();
    if (!deadline) deadline = now + SEIZE_RETRY_MS * 1000000ull;
    if (now >= deadline)
      return fail_sys("ptrace(PTRACE_SEIZE)", tid, EPERM,
                      "tid %d (state %c) still refused after %d tries in %d ms, %s", tid, st ? *st : '?', tries + 1,
                      SEIZE_RETRY_MS, tracer ? "its tracer exiting" : "with no tracer");
    tries++;
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  struct thread *t = thread_add(tid, tgid);
  if (!t) {
    ptrace(PTRACE_DETACH, tid, 0, 0);
    return fail("OUT_OF_MEMORY", tid, "out of memory");
  }
  t->sharer = sharer;
  *added = true;
  return 0;
}

/* Seizes every task of `pid`, re-reading /proc/PID/task until a pass finds no
 * new one: threads created by a seized thread are traced from birth
 * (PTRACE_O_TRACECLONE), so a stable pass means the set is complete. */
static int seize_all(pid_t pid, bool sharer) {
  for (int pass = 0; pass < 10000; pass++) {
    drain_events();
    pid_t *tids;
    int n;
    if (list_tasks(pid, &tids, &n) < 0) {
      if (errno == ENOENT && pass > 0) return 0;
      return fail_sys("opendir(/proc/PID/task)", pid, errno, NULL);
    }
    bool changed = false;
    for (int i = 0; i < n; i++) {
      bool added;
      if (seize_task(pid, tids[i], sharer, &added) < 0) {
        free(tids);
        return -1;
      }
      changed |= added;
    }
    free(tids);
    if (!changed) return 0;
  }
  return fail("ATTACH_UNSTABLE", pid, "the thread list of pid %d did not settle", pid);
}

/* A thread of the target blocked in vfork() waits uninterruptibly for its child
 * to exec or exit: it cannot be stopped, so a target in that state is refused. */
static pid_t vfork_waiter(pid_t pid) {
  pid_t *tids;
  int n;
  if (list_tasks(pid, &tids, &n) < 0) return 0;
  pid_t found = 0;
  for (int i = 0; i < n && !found; i++) {
    char state, wchan[64];
    task_state(pid, tids[i], &state, wchan, sizeof wchan);
    if (state == 'D' && (strstr(wchan, "vfork") || strstr(wchan, "clone"))) found = tids[i];
  }
  free(tids);
  return found;
}

int attach(pid_t pid, uint32_t flags, const struct attach_pass *pass) {
  if (S.pid) return fail("ALREADY_ATTACHED", pid, "already attached to pid %d; detach first", S.pid);
  if (pid <= 0) return fail("BAD_ARGUMENT", pid, "pid %d is not a process id", pid);
  if (pid == getpid() || pid == getppid())
    return fail("SELF", pid, "pid %d is patchc or its tracer", pid);

  char path[64], status[4096];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  if (read_small(path, status, sizeof status) < 0) {
    if (errno == ENOENT || errno == ESRCH) {
      fail("NO_SUCH_PROCESS", pid, "pid %d does not exist", pid);
      return -1;
    }
    return fail_sys("open(/proc/PID/status)", pid, errno, NULL);
  }
  char name[64] = "?";
  const char *nm = status_field(status, "Name");
  if (nm) sscanf(nm, "%63[^\n]", name);
  long tgid = status_long(status, "Tgid", pid);
  if (tgid != pid)
    return fail("NOT_A_PROCESS", pid, "pid %d is a thread of process %ld; attach to %ld", pid, tgid, tgid);
  const char *state = status_field(status, "State");
  long tracer = status_long(status, "TracerPid", 0);
  if (state && (*state == 'Z' || *state == 'X')) {
    /* the leader may be a zombie while other threads live (pthread_exit in main) */
    pid_t *tids;
    int n, live = 0;
    if (list_tasks(pid, &tids, &n) == 0) {
      for (int i = 0; i < n; i++) {
        char st, wchan[64];
        task_state(pid, tids[i], &st, wchan, sizeof wchan);
        if (st != 'Z' && st != 'X') live++;
      }
      free(tids);
    }
    if (!live)
      return fail("ZOMBIE", pid, "pid %d (%s) is a zombie: it has exited and waits for its parent to reap it",
                  pid, name);
  }
  /* a tracer on its way out lets go of every tracee in exit_notify(): wait for it */
  for (uint64_t end = now_ns() + SEIZE_RETRY_MS * 1000000ull; tracer && tracer_exiting(tracer) && now_ns() < end;) {
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
    if (read_small(path, status, sizeof status) < 0) return fail("NO_SUCH_PROCESS", pid, "pid %d does not exist", pid);
    tracer = status_long(status, "TracerPid", 0);
  }
  if (tracer) {
    char tname[64] = "?", tpath[64], tstatus[2048];
    snprintf(tpath, sizeof tpath, "/proc/%ld/status", tracer);
    if (read_small(tpath, tstatus, sizeof tstatus) > 0 && status_field(tstatus, "Name"))
      sscanf(status_field(tstatus, "Name"), "%63[^\n]", tname);
    return fail("ALREADY_TRACED", pid, "pid %d (%s) is already traced by pid %ld (%s)", pid, name, tracer,
                tname);
  }
  /* The permission check of ptrace attach, without touching the target. */
  snprintf(path, sizeof path, "/proc/%d/mem", pid);
  int memfd = open(path, O_RDWR | O_CLOEXEC);
  if (memfd < 0) {
    int e = errno;
    if (e == EACCES || e == EPERM)
      return fail_sys("open(/proc/PID/mem)", pid, e,
                      "not permitted to trace pid %d (%s, uid %ld) as uid %d (needs the same uid or CAP_SYS_PTRACE)",
                      pid, name, status_long(status, "Uid", -1), (int)getuid());
    if (e == ENOENT) return fail("NO_SUCH_PROCESS", pid, "pid %d does not exist", pid);
    return fail_sys("open(/proc/PID/mem)", pid, e, NULL);
  }

  /* Processes other than the target that share its address space: shim/sharers.c */
  S.sharer_check = (struct pass_seen){.full = true, .seen_pid = -1};
  if ((pass ? sharers_from_pass(pid, &pass->h, pass->cand, &S.sharer_check)
            : sharers_full(pid, &S.sharer_check.checked)) < 0) {
    close(memfd);
    return -1;
  }
  if (S.nsharers > 0) {
    pid_t w = vfork_waiter(pid);
    char list[256] = "";
    for (int i = 0; i < S.nsharers && strlen(list) < 200; i++)
      snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", i ? ", " : "", S.sharers[i]);
    if (w) {
      close(memfd);
      return fail("SHARED_VM", w,
                  "pid %d shares its address space with pid %s: thread %d waits in vfork() for that child, "
                  "cannot be stopped until the child calls execve or exits; retry then",
                  pid, list, w);
    }
    if (!(flags & ATTACH_STOP_SHARERS)) {
      close(memfd);
      return fail("SHARED_VM", S.sharers[0],
                  "pid %d shares its address space (CLONE_VM) with pid %s; patching would change their code "
                  "too: refused (ask to stop the sharers as well)",
                  pid, list);
    }
  }

  S.pid = pid;
  S.memfd = memfd;
  S.execed = S.gone = false;
  S.syscall_site = 0;
  S.job_stopped = state && *state == 'T';
  if (seize_all(pid, false) < 0) goto failed;
  for (int i = 0; i < S.nsharers; i++)
    if (seize_all(S.sharers[i], true) < 0) goto failed;
  if (S.n == 0) {
    fail("NO_SUCH_PROCESS", pid, "pid %d has no live thread", pid);
    goto failed;
  }
  return 0;
failed:;
  struct wire_error saved;
  char msg[1024];
  save_error(&saved, msg, sizeof msg);
  detach_all();
  restore_error(&saved, msg);
  return -1;
}

/* Collects the stops still expected (S.nexpect) until `deadline`, the timer armed by
 * the caller; a thread that vanished meanwhile is dead, not awaited. True when none
 * is expected any more. */
static bool collect_expected(uint64_t deadline) {
  while (S.nexpect > 0) {
    int st;
    pid_t p = wait_event(-1, deadline, &st);
    if (p > 0) {
      on_event(p, st);
    } else if (p == WAIT_TICK || p == WAIT_TIMEOUT) {
      for (int i = 0; i < S.n; i++)
        if (!T[i]->dead && T[i]->expect_stop && !task_exists(T[i]->tgid, T[i]->tid)) thread_dead(T[i]);
      if (p == WAIT_TIMEOUT) break;
    } else {
      for (int i = 0; i < S.n; i++)
        if (!T[i]->dead && T[i]->expect_stop) thread_dead(T[i]); /* ECHILD: none is ours any more */
    }
  }
  return S.nexpect == 0;
}

/* Interrupts every thread not stopped and collects the stops until `timeout_ms`
 * passes; unlike stop_world(), a thread that does not stop is not a failure and
 * nothing is resumed. Every stop from now on is held (S.world_stopped). */
static void stop_for_detach(uint32_t timeout_ms) {
  drain_events();
  S.world_stopped = true;
  for (int i = 0; i < S.n; i++) {
    struct thread *t = T[i];
    if (t->dead || t->stopped) continue;
    if (ptrace(PTRACE_INTERRUPT, t->tid, 0, 0) < 0 && errno == ESRCH && !task_exists(t->tgid, t->tid)) {
      thread_dead(t);
      continue;
    }
    if (!t->expect_stop) {
      t->expect_stop = true;
      S.nexpect++;
    }
  }
  uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000u;
  if (S.nexpect > 0) timer_arm(deadline);
  collect_expected(deadline);
  timer_disarm();
  drain_events();
}

static void detach_thread(struct thread *t) {
  int sig = release_pending(t);
  fix_epoll_eintr(t, sig);
  ptrace(PTRACE_DETACH, t->tid, 0, sig);
  t->dead = true;
}

#define DETACH_STOP_MS 2000
#define DETACH_ARMED_MS 10000

/* Lets every thread go, each with its held signals and none with a breakpoint of
 * ours. Only a thread in a ptrace-stop can be detached (a LISTENing one is not),
 * so the world is stopped first (up to DETACH_STOP_MS).
 *
 * A thread whose breakpoint may still be armed (hw_armed: its wait could not
 * disarm it) is let go only once DR7 reads back 0. It is waited for up to
 * DETACH_ARMED_MS more, after every other stopped thread has been let go (the
 * target runs meanwhile): a thread that did not stop is in uninterruptible sleep
 * and stops before it can run into the address (file comment). One that still
 * has not stopped then is named on stderr: our exit detaches it armed.
 *
 * A thread without one that did not stop stays traced until our exit, when the
 * kernel detaches it (exit_ptrace): it carries nothing of ours. */
int detach_all(void) {
  if (!S.pid) return 0;
  if (!S.gone && S.n > 0) stop_for_detach(DETACH_STOP_MS);
  for (int i = 0; i < S.n; i++) {
    struct thread *t = T[i];
    if (t->dead || !t->stopped || t->hw_armed) continue;
    /* a thread that had a breakpoint: DR7 read 0 when its wait ended; cleared
       again and its queued trap dropped. A newborn's copy of DR7: cleared. */
    if (t->hw_used || t->hw_stale) hw_disarm(t, now_ns() + 100000000ull);
    if (t->dead || !t->stopped) continue;
    detach_thread(t);
  }
  uint64_t deadline = now_ns() + (uint64_t)DETACH_ARMED_MS * 1000000u;
  for (int i = 0; i < S.n; i++) {
    struct thread *t = T[i];
    if (t->dead || !t->hw_armed) continue;
    if (hw_disarm(t, deadline) == 0) {
      if (!t->dead && t->stopped) detach_thread(t);
      continue;
    }
    struct wire_error e;
    char msg[1024];
    save_error(&e, msg, sizeof msg);
    fprintf(stderr,
            "patchc-tracer: %s (waited %d s); detached with the breakpoint armed: the process dies of SIGTRAP if "
            "tid %d executes 0x%llx\n",
            msg, DETACH_ARMED_MS / 1000, t->tid, (unsigned long long)t->hw_addr);
    if (!t->dead && t->stopped) detach_thread(t); /* stopped, but DR7 would not clear */
  }
  /* threads that never stopped (stuck uninterruptibly) are detached by our exit,
     or, if we live on for another session, at their next stop (on_event) */
  threads_compact();
  for (int i = 0; i < S.n; i++) {
    ptrace(PTRACE_DETACH, T[i]->tid, 0, 0);
    T[i]->dead = true;
  }
  threads_compact();
  S.n = 0;
  hw_session = false;
  S.nexpect = 0;
  S.world_stopped = false;
  boost(false);
  if (S.memfd >= 0) close(S.memfd);
  S.memfd = -1;
  S.pid = 0;
  S.gone = S.execed = false;
  S.nsharers = 0;
  txn_reset();
  /* stops reported meanwhile: on_event() lets each such thread go */
  int st;
  pid_t p;
  while ((p = waitpid(-1, &st, __WALL | WNOHANG)) > 0) on_event(p, st);
  return 0;
}

/* ------------------------------------------------------------------ */
/* Stop and resume */

static int stop_timeout_error(uint32_t timeout_ms) {
  char list[512] = "";
  pid_t first = 0;
  int k = 0;
  for (int i = 0; i < S.n; i++) {
    struct thread *t = T[i];
    if (t->dead || !t->expect_stop) continue;
    if (!first) first = t->tid;
    if (k++ < 8) {
      char st, wchan[64];
      task_state(t->tgid, t->tid, &st, wchan, sizeof wchan);
      size_t l = strlen(list);
      snprintf(list + l, sizeof list - l, "%s%d (state %c, in %s)", l ? ", " : "", t->tid, st, wchan);
    }
  }
  return fail("STOP_TIMEOUT", first, "%d thread(s) did not stop within %u ms: %s", k, timeout_ms, list);
}

/* While the world is stopped the tracer runs SCHED_FIFO (lowest real-time
 * priority) when it may: every PTRACE_INTERRUPT and PTRACE_CONT wakes a thread, and
 * a woken thread of the target would otherwise preempt the tracer on its CPU, once
 * per thread. The threads then stop (and resume) on the other CPUs while the
 * tracer goes on. Without the privilege (CAP_SYS_NICE) it runs as it is. */
void boost(bool on) {
  static bool denied, boosted;
  if (denied || on == boosted) return;
  struct sched_param sp = {.sched_priority = on ? 1 : 0};
  if (sched_setscheduler(0, on ? SCHED_FIFO : SCHED_OTHER, &sp) == 0)
    boosted = on;
  else
    denied = true;
}

int stop_world(uint32_t timeout_ms, bool read_regs, uint64_t *interrupt_ns, uint64_t *wait_ns) {
  if (S.world_stopped) return fail("ALREADY_STOPPED", 0, "every thread is already stopped");
  drain_events();
  boost(true);
  uint64_t t0 = now_ns();
  S.pause_start = t0;
  S.world_stopped = true;
  for (int i = 0; i < S.n; i++) {
    struct thread *t = T[i];
    if (t->dead || t->stopped) continue;
    if (ptrace(PTRACE_INTERRUPT, t->tid, 0, 0) < 0 && errno != ESRCH) {
      int e = errno;
      resume_all();
      return fail_sys("ptrace(PTRACE_INTERRUPT)", t->tid, e, NULL);
    }
    if (!t->expect_stop) {
      t->expect_stop = true;
      S.nexpect++;
    }
  }
  uint64_t t1 = now_ns();
  int rc = 0;
  uint64_t deadline = t1 + (uint64_t)timeout_ms * 1000000u;
  if (S.nexpect > 0) timer_arm(deadline);
  /* Collect the stops thread by thread, in the order of the interrupts: a thread
     that stopped meanwhile is collected at once (waitpid of one tid costs the same
     whatever the number of threads; waitpid(-1) walks all of them), and with
     `read_regs` its registers are read while later threads are still stopping.
     Threads born meanwhile are appended to the table and collected in turn. */
  for (int i = 0; i < S.n && rc == 0; i++) {
    struct thread *t = T[i];
    while (!t->dead && t->expect_stop) {
      int st;
      pid_t p = wait_event(t->tid, deadline, &st);
      if (p > 0) {
        on_event(p, st);
      } else if (p == WAIT_TICK || p == WAIT_TIMEOUT) {
        if (!task_exists(t->tgid, t->tid)) thread_dead(t);
        if (p == WAIT_TIMEOUT && !t->dead) {
          rc = stop_timeout_error(timeout_ms);
          break;
        }
      } else {
        thread_dead(t); /* ECHILD: not ours any more */
      }
    }
    if (read_regs && !t->dead && t->stopped && !t->regs_valid &&
        ptrace(PTRACE_GETREGS, t->tid, 0, &t->regs) == 0)
      t->regs_valid = true;
  }
  /* anything still expected (a thread marked before the loop reached it again) */
  if (rc == 0 && !collect_expected(deadline)) rc = stop_timeout_error(timeout_ms);
  timer_disarm();
  *interrupt_ns = t1 - t0;
  *wait_ns = now_ns() - t1;
  if (rc < 0) {
    struct wire_error saved;
    char msg[1024];
    save_error(&saved, msg, sizeof msg);
    resume_all();
    restore_error(&saved, msg);
    return -1;
  }
  bool any = false;
  for (int i = 0; i < S.n; i++) any |= !T[i]->dead;
  if (!any) {
    S.world_stopped = false;
    boost(false);
    S.gone = true;
    return fail("TARGET_EXITED", S.pid, "pid %d exited", S.pid);
  }
  return 0;
}

int resume_all(void) {
  S.world_stopped = false;
  for (int i = 0; i < S.n; i++) {
    struct thread *t = T[i];
    if (!t->dead && t->stopped && !t->held) resume_thread(t);
  }
  boost(false);
  return 0;
}

/* Stops one thread (the world may keep running) and holds it. */
int stop_thread(struct thread *t, uint32_t timeout_ms) {
  t->held = true;
  if (t->stopped) return 0;
  if (ptrace(PTRACE_INTERRUPT, t->tid, 0, 0) < 0 && errno != ESRCH) {
    t->held = false;
    return fail_sys("ptrace(PTRACE_INTERRUPT)", t->tid, errno, NULL);
  }
  if (!t->expect_stop) {
    t->expect_stop = true;
    S.nexpect++;
  }
  uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000u;
  timer_arm(deadline);
  int rc = 0;
  while (!t->dead && !t->stopped) {
    int st;
    pid_t p = wait_event(t->tid, deadline, &st);
    if (p > 0) {
      on_event(p, st);
    } else if (p == WAIT_TICK) {
      if (!task_exists(t->tgid, t->tid)) thread_dead(t);
    } else if (p == WAIT_TIMEOUT) {
      char s, wchan[64];
      task_state(t->tgid, t->tid, &s, wchan, sizeof wchan);
      rc = fail("STOP_TIMEOUT", t->tid, "tid %d did not stop within %u ms (state %c, in %s)", t->tid,
                timeout_ms, s, wchan);
      break;
    } else {
      thread_dead(t);
    }
  }
  timer_disarm();
  if (rc < 0) {
    t->held = false;
    return -1;
  }
  if (t->dead) {
    t->held = false;
    return fail("THREAD_EXITED", t->tid, "tid %d exited", t->tid);
  }
  return 0;
}

void release_thread(struct thread *t) {
  t->held = false;
  if (!S.world_stopped && !t->dead) resume_thread(t);
}

/* ------------------------------------------------------------------ */
/* Registers */

int get_regs(struct thread *t) {
  if (t->regs_valid) return 0;
  if (ptrace(PTRACE_GETREGS, t->tid, 0, &t->regs) < 0)
    return fail_sys("ptrace(PTRACE_GETREGS)", t->tid, errno, NULL);
  t->regs_valid = true;
  return 0;
}

int set_regs(struct thread *t, const struct user_regs_struct *r) {
  if (ptrace(PTRACE_SETREGS, t->tid, 0, r) < 0) {
    t->regs_valid = false;
    return fail_sys("ptrace(PTRACE_SETREGS)", t->tid, errno, NULL);
  }
  t->regs = *r;
  t->regs_valid = true;
  return 0;
}

int debug_regs(struct thread *t, uint64_t dr[8]) {
  for (int i = 0; i < 8; i++) {
    if (i == 4 || i == 5) {
      dr[i] = 0; /* DR4/DR5 alias DR6/DR7 and are refused by the kernel */
      continue;
    }
    errno = 0;
    long v = ptrace(PTRACE_PEEKUSER, t->tid, DR_OFFSET(i), 0);
    if (v == -1 && errno) return fail_sys("ptrace(PTRACE_PEEKUSER)", t->tid, errno, "debug register %d", i);
    dr[i] = (uint64_t)v;
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* Memory */

int read_text(uint64_t addr, void *buf, size_t len) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = pread(S.memfd, (char *)buf + done, len - done, (off_t)(addr + done));
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      return fail_sys("pread(/proc/PID/mem)", S.pid, e, "reading %zu bytes at 0x%llx", len - done,
                      (unsigned long long)(addr + done));
    }
    done += (size_t)n;
  }
  return 0;
}

int write_text(uint64_t addr, const void *buf, size_t len) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = pwrite(S.memfd, (const char *)buf + done, len - done, (off_t)(addr + done));
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      return fail_sys("pwrite(/proc/PID/mem)", S.pid, e, "writing %zu bytes at 0x%llx%s", len - done,
                      (unsigned long long)(addr + done),
                      e == EIO ? " (unmapped, or a read-only shared mapping: /proc/PID/mem writes through "
                                 "protections only into private mappings)"
                               : "");
    }
    done += (size_t)n;
  }
  return 0;
}

int write_data(uint64_t addr, const void *buf, size_t len) {
  size_t done = 0;
  while (done < len) {
    struct iovec l = {(char *)buf + done, len - done};
    struct iovec r = {(void *)(uintptr_t)(addr + done), len - done};
    ssize_t n = process_vm_writev(S.pid, &l, 1, &r, 1, 0);
    if (n <= 0) {
      int e = n < 0 ? errno : EFAULT;
      return fail_sys("process_vm_writev", S.pid, e, "writing %zu bytes at 0x%llx", len - done,
                      (unsigned long long)(addr + done));
    }
    done += (size_t)n;
  }
  return 0;
}

/* Reads n ranges with as few process_vm_readv calls as possible (IOV_MAX ranges
 * per call). A call stops at the first range it cannot read; that range is read
 * again through /proc/PID/mem (which returns what it could: the part before an
 * unmapped page, or pages without read permission) when `fallback`, and the next
 * call starts after it. got[i] is the number of bytes of range i read. */
static int read_many(const struct wire_range *r, uint32_t n, uint8_t *out, const uint64_t *offs,
                     uint64_t *got, bool fallback) {
  enum { BATCH = 1024 };
  struct iovec lv[BATCH], rv[BATCH];
  uint32_t i = 0;
  while (i < n) {
    uint32_t k = 0;
    while (i + k < n && k < BATCH) {
      if (r[i + k].len == 0) {
        if (k == 0) {
          got[i] = 0;
          i++;
          continue;
        }
        break;
      }
      lv[k].iov_base = out + offs[i + k];
      lv[k].iov_len = r[i + k].len;
      rv[k].iov_base = (void *)(uintptr_t)r[i + k].addr;
      rv[k].iov_len = r[i + k].len;
      k++;
    }
    if (k == 0) continue;
    ssize_t m = process_vm_readv(S.pid, lv, k, rv, k, 0);
    uint64_t left = m > 0 ? (uint64_t)m : 0;
    uint32_t j = 0;
    while (j < k && left >= r[i + j].len) {
      got[i + j] = r[i + j].len;
      left -= r[i + j].len;
      j++;
    }
    if (j == k) {
      i += k;
      continue;
    }
    if (m < 0 && errno != EFAULT && errno != ENOMEM && errno != EIO)
      return fail_sys("process_vm_readv", S.pid, errno, "reading %u ranges", k);
    /* range i + j failed after `left` bytes */
    uint64_t g = left;
    if (fallback || g == 0) {
      const struct wire_range *x = &r[i + j];
      while (g < x->len) {
        ssize_t q = pread(S.memfd, out + offs[i + j] + g, x->len - g, (off_t)(x->addr + g));
        if (q <= 0) break;
        g += (uint64_t)q;
      }
    }
    got[i + j] = g;
    i += j + 1;
  }
  return 0;
}

/* read_many over ranges packed one after the other into out. */
static int read_packed(const struct wire_range *r, uint32_t n, uint8_t *out, uint64_t *got, bool fallback) {
  uint64_t *offs = malloc((size_t)(n ? n : 1) * sizeof *offs);
  if (!offs) return fail("OUT_OF_MEMORY", 0, "out of memory");
  uint64_t o = 0;
  for (uint32_t i = 0; i < n; i++) {
    offs[i] = o;
    o += r[i].len;
  }
  int rc = read_many(r, n, out, offs, got, fallback);
  free(offs);
  return rc;
}

int read_ranges(const struct wire_range *r, uint32_t n, uint8_t *out, uint64_t *got) {
  return read_packed(r, n, out, got, true);
}

/* The same through process_vm_readv alone: a range stops at the first page the
 * target itself could not read (an unmapped gap, a PROT_NONE guard page). */
int read_ranges_plain(const struct wire_range *r, uint32_t n, uint8_t *out, uint64_t *got) {
  return read_packed(r, n, out, got, false);
}

/* The stack window [rsp, rsp + window) of every live thread, in table order,
 * into out[i * window]; lens[i] bytes of it were read. Registers must be valid. */
int read_stacks(uint64_t window, uint8_t *out, uint32_t *lens) {
  int n = 0;
  for (int i = 0; i < S.n; i++) n += !T[i]->dead;
  struct wire_range *r = calloc((size_t)(n ? n : 1), sizeof *r);
  uint64_t *offs = calloc((size_t)(n ? n : 1), sizeof *offs);
  uint64_t *got = calloc((size_t)(n ? n : 1), sizeof *got);
  if (!r || !offs || !got) {
    free(r);
    free(offs);
    free(got);
    return fail("OUT_OF_MEMORY", 0, "out of memory");
  }
  int k = 0;
  for (int i = 0; i < S.n; i++) {
    if (T[i]->dead) continue;
    r[k].addr = T[i]->regs.rsp;
    r[k].len = window;
    offs[k] = (uint64_t)k * window;
    k++;
  }
  int rc = read_many(r, (uint32_t)k, out, offs, got, false);
  for (int i = 0; i < k; i++) lens[i] = (uint32_t)got[i];
  free(r);
  free(offs);
  free(got);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Remote syscalls */

/* An executable `syscall` (0f 05) of the target: the vDSO's first (it is in
 * every process), else the first executable mapping that has one. */
int find_syscall_site(void) {
  if (S.syscall_site) return 0;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/maps", S.pid);
  FILE *f = fopen(path, "re");
  if (!f) return fail_sys("open(/proc/PID/maps)", S.pid, errno, NULL);
  struct { uint64_t lo, hi; } cand[256];
  int nc = 0;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    unsigned long long lo, hi;
    char perms[8];
    if (sscanf(line, "%llx-%llx %7s", &lo, &hi, perms) != 3 || perms[2] != 'x') continue;
    if (strstr(line, "[vsyscall]")) continue;
    if (strstr(line, "[vdso]") && nc > 0) {
      cand[nc] = cand[0];
      cand[0].lo = lo, cand[0].hi = hi;
      nc++;
    } else if (nc < 256) {
      cand[nc].lo = lo, cand[nc].hi = hi;
      nc++;
    }
    if (nc == 256) break;
  }
  fclose(f);
  static uint8_t buf[65536 + 1];
  for (int c = 0; c < nc; c++) {
    uint64_t lo = cand[c].lo, hi = cand[c].hi;
    if (hi - lo > (64u << 20)) hi = lo + (64u << 20);
    for (uint64_t a = lo; a < hi; a += 65536) {
      size_t len = hi - a < 65536 ? (size_t)(hi - a) : 65536;
      ssize_t n = pread(S.memfd, buf, len + (a + len < hi ? 1 : 0), (off_t)a);
      if (n < 2) break;
      for (ssize_t i = 0; i + 1 < n; i++)
        if (buf[i] == 0x0f && buf[i + 1] == 0x05) {
          S.syscall_site = a + (uint64_t)i;
          return 0;
        }
    }
  }
  return fail("NO_SYSCALL_SITE", S.pid, "no `syscall` instruction found in any executable mapping of pid %d",
              S.pid);
}

/* Runs one syscall in a stopped (held) thread and restores it exactly: every
 * register as it was, its pending signals kept for re-delivery. */
/* A remote syscall or call that overran its time: interrupt the thread (a blocking call
 * returns -EINTR or a restart code) and take its stop within 1 s, so the caller can
 * restore its registers; a thread that does not stop stays marked running. */
static void interrupt_overrun(struct thread *t) {
  ptrace(PTRACE_INTERRUPT, t->tid, 0, 0);
  uint64_t deadline = now_ns() + 1000000000ull;
  timer_arm(deadline);
  int st;
  pid_t p;
  while ((p = wait_event(t->tid, deadline, &st)) == WAIT_TICK) {
  }
  if (p > 0 && WIFSTOPPED(st)) {
    t->stopped = true;
    t->status = st;
    t->stop_seq++;
    t->sigstop = ((unsigned)st >> 16) == 0 ? WSTOPSIG(st) : 0;
  }
}

int remote_syscall(struct thread *t, uint64_t nr, const uint64_t a[6], int64_t *ret) {
  if (find_syscall_site() < 0) return -1;
  if (get_regs(t) < 0) return -1;
  struct user_regs_struct saved = t->regs, r = saved;
  r.rax = nr;
  r.orig_rax = (unsigned long long)-1; /* not in a syscall: no restart logic on the way out */
  r.rdi = a[0];
  r.rsi = a[1];
  r.rdx = a[2];
  r.r10 = a[3];
  r.r8 = a[4];
  r.r9 = a[5];
  r.rip = S.syscall_site;
  r.eflags &= ~(1ull << 8); /* TF: the kernel sets it for the step */
  if (set_regs(t, &r) < 0) return -1;

  int rc = 0;
  uint64_t deadline = now_ns() + 5000000000ull;
  timer_arm(deadline);
  for (int step = 0;; step++) {
    if (ptrace(PTRACE_SINGLESTEP, t->tid, 0, 0) < 0) {
      rc = fail_sys("ptrace(PTRACE_SINGLESTEP)", t->tid, errno, NULL);
      break;
    }
    t->stopped = false;
    int st;
    pid_t p;
    while ((p = wait_event(t->tid, deadline, &st)) == WAIT_TICK) {
    }
    if (p == WAIT_TIMEOUT) {
      /* the call blocks: interrupt it, it returns -EINTR or a restart code */
      interrupt_overrun(t);
      rc = fail("SYSCALL_TIMEOUT", t->tid, "remote syscall %llu did not return within 5 s in tid %d",
                (unsigned long long)nr, t->tid);
      break;
    }
    if (p < 0 || WIFEXITED(st) || WIFSIGNALED(st)) {
      thread_dead(t);
      timer_disarm();
      return fail("THREAD_EXITED", t->tid, "tid %d exited during remote syscall %llu", t->tid,
                  (unsigned long long)nr);
    }
    t->stopped = true;
    t->status = st;
    t->stop_seq++;
    int sig = WSTOPSIG(st), ev = (unsigned)st >> 16;
    t->sigstop = ev == 0 ? sig : 0;
    if (ev == 0 && sig == SIGTRAP) {
      struct user_regs_struct after;
      if (ptrace(PTRACE_GETREGS, t->tid, 0, &after) < 0) {
        rc = fail_sys("ptrace(PTRACE_GETREGS)", t->tid, errno, NULL);
        break;
      }
      if (after.rip == S.syscall_site + 2) {
        *ret = (int64_t)after.rax;
        break;
      }
      /* a SIGTRAP of the target's own, before our instruction ran: keep it */
      push_pending(t, sig);
    } else if (ev == 0 && sig != (SIGTRAP | 0x80)) {
      push_pending(t, sig); /* a signal dequeued before the step: re-delivered later */
    } else if (ev == PTRACE_EVENT_EXEC) {
      S.execed = true;
    }
    if (step > 64) {
      rc = fail("SYSCALL_STEP", t->tid, "tid %d did not reach the syscall instruction", t->tid);
      break;
    }
  }
  timer_disarm();
  /* restore exactly, whatever happened */
  if (ptrace(PTRACE_SETREGS, t->tid, 0, &saved) < 0 && rc == 0)
    rc = fail_sys("ptrace(PTRACE_SETREGS)", t->tid, errno, "restoring the registers after syscall %llu",
                  (unsigned long long)nr);
  t->regs = saved;
  t->regs_valid = true;
  return rc;
}

/* ------------------------------------------------------------------ */
/* Remote function calls */

/* Calls the function at `addr` in a stopped (held) thread with up to 6 integer
 * arguments (psABI 3.2.3: rdi, rsi, rdx, rcx, r8, r9) and returns its rax; made
 * for an IFUNC resolver, a short pure function. The thread is restored exactly:
 * every general register (orig_rax and rax included, so a blocking syscall it
 * was in restarts as after a remote syscall), and its x87/SSE/AVX state
 * (PTRACE_GETREGSET NT_X86_XSTATE), which the callee may use.
 *
 *   rsp = (rsp - 128 (red zone) - 8) & ~15, then the return address 0 is pushed:
 *   at entry (rsp + 8) % 16 == 0 as the psABI wants. The callee's `ret` jumps to
 *   0 and faults: the SIGSEGV signal-delivery-stop with rip == 0 ends the call;
 *   the signal is not delivered (we restore the registers and resume without it).
 *
 * Nothing is written to the target's text and no syscall is made for us: the
 * call runs under PTRACE_SYSCALL (with PTRACE_O_TRACESYSGOOD for the call only),
 * and a syscall the callee tries is skipped (orig_rax = -1, it returns -ENOSYS)
 * and ends the call with an error, so seccomp filters never see anything of ours.
 * A fault in the callee (SIGSEGV elsewhere, SIGBUS, SIGILL, SIGFPE, SIGTRAP)
 * ends it with an error; other signals are held for re-delivery as usual.
 * Only the stack below the red zone is written (as a signal handler would). */
int remote_call(struct thread *t, uint64_t addr, const uint64_t a[6], uint32_t timeout_ms, uint64_t *ret) {
  if (t->group_stop)
    return fail("JOB_STOPPED", t->tid, "tid %d is stopped by job control: no function can run in it", t->tid);
  if (get_regs(t) < 0) return -1;
  static uint8_t xsave[16384] __attribute__((aligned(64)));
  struct iovec xv = {xsave, sizeof xsave};
  bool have_x = ptrace(PTRACE_GETREGSET, t->tid, (void *)NT_X86_XSTATE, &xv) == 0;
  size_t xlen = xv.iov_len;
  struct user_regs_struct saved = t->regs, r = saved;
  uint64_t sp = ((saved.rsp - 128 - 8) & ~15ull) - 8;
  uint64_t zero = 0;
  if (write_data(sp, &zero, 8) < 0 && write_text(sp, &zero, 8) < 0) return -1;
  r.rip = addr;
  r.rsp = sp;
  r.rdi = a[0], r.rsi = a[1], r.rdx = a[2], r.rcx = a[3], r.r8 = a[4], r.r9 = a[5];
  r.rax = 0;
  r.orig_rax = (unsigned long long)-1;      /* not in a syscall: no restart logic on the way */
  r.eflags &= ~((1ull << 8) | (1ull << 10)); /* TF off; DF clear at a call (psABI 3.2.1) */
  if (set_regs(t, &r) < 0) return -1;
  ptrace(PTRACE_SETOPTIONS, t->tid, 0, SEIZE_OPTIONS | PTRACE_O_TRACESYSGOOD);

  int rc = 0;
  long skipped = -1;
  bool in_skip = false;
  uint64_t deadline = now_ns() + (uint64_t)(timeout_ms ? timeout_ms : 1000) * 1000000ull;
  timer_arm(deadline);
  for (;;) {
    if (ptrace(PTRACE_SYSCALL, t->tid, 0, 0) < 0) {
      rc = fail_sys("ptrace(PTRACE_SYSCALL)", t->tid, errno, NULL);
      break;
    }
    t->stopped = false;
    int st;
    pid_t p;
    while ((p = wait_event(t->tid, deadline, &st)) == WAIT_TICK) {
    }
    if (p == WAIT_TIMEOUT) {
      interrupt_overrun(t);
      rc = fail("CALL_TIMEOUT", t->tid, "the function at 0x%llx did not return within %u ms in tid %d",
                (unsigned long long)addr, timeout_ms, t->tid);
      break;
    }
    if (p < 0 || WIFEXITED(st) || WIFSIGNALED(st)) {
      thread_dead(t);
      timer_disarm();
      return fail("THREAD_EXITED", t->tid, "tid %d exited during the call of 0x%llx", t->tid, (unsigned long long)addr);
    }
    t->stopped = true;
    t->status = st;
    t->stop_seq++;
    int sig = WSTOPSIG(st), ev = (unsigned)st >> 16;
    t->sigstop = ev == 0 && sig != (SIGTRAP | 0x80) ? sig : 0;
    struct user_regs_struct now;
    if (ptrace(PTRACE_GETREGS, t->tid, 0, &now) < 0) {
      rc = fail_sys("ptrace(PTRACE_GETREGS)", t->tid, errno, NULL);
      break;
    }
    if (ev == 0 && sig == (SIGTRAP | 0x80)) {
      if (!in_skip) { /* syscall entry: skip it, then end the call at its exit */
        skipped = (long)now.orig_rax;
        now.orig_rax = (unsigned long long)-1;
        ptrace(PTRACE_SETREGS, t->tid, 0, &now);
        in_skip = true;
      } else { /* syscall exit: return to the faulting address */
        now.rip = 0;
        ptrace(PTRACE_SETREGS, t->tid, 0, &now);
        in_skip = false;
      }
      continue;
    }
    if (ev == PTRACE_EVENT_EXEC) S.execed = true;
    if (ev != 0) continue; /* an event stop (clone, interrupt): go on */
    if (sig == SIGSEGV && now.rip == 0 && (skipped >= 0 || now.rsp == sp + 8)) {
      if (skipped >= 0)
        rc = fail("CALL_SYSCALL", t->tid, "the function at 0x%llx made syscall %ld in tid %d: skipped, and the call abandoned",
                  (unsigned long long)addr, skipped, t->tid);
      else
        *ret = now.rax;
      break;
    }
    if (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGTRAP) {
      rc = fail("CALL_FAULT", t->tid, "the function at 0x%llx faulted in tid %d: signal %d at rip 0x%llx", (unsigned long long)addr,
                t->tid, sig, (unsigned long long)now.rip);
      break;
    }
    push_pending(t, sig); /* the target's own signal: re-delivered when the thread resumes */
  }
  timer_disarm();
  ptrace(PTRACE_SETOPTIONS, t->tid, 0, SEIZE_OPTIONS);
  /* restore exactly, whatever happened */
  if (have_x) {
    struct iovec rv = {xsave, xlen};
    if (ptrace(PTRACE_SETREGSET, t->tid, (void *)NT_X86_XSTATE, &rv) < 0 && rc == 0)
      rc = fail_sys("ptrace(PTRACE_SETREGSET)", t->tid, errno, "restoring the extended state after a call");
  }
  if (ptrace(PTRACE_SETREGS, t->tid, 0, &saved) < 0 && rc == 0)
    rc = fail_sys("ptrace(PTRACE_SETREGS)", t->tid, errno, "restoring the registers after a call");
  t->regs = saved;
  t->regs_valid = true;
  return rc;
}

/* ------------------------------------------------------------------ */
/* seccomp */

static uint64_t fnv1a64(uint64_t h, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

/* The seccomp mode and filters of a stopped thread, oldest filter first, as in
 * wire_seccomp; the fingerprint identifies them (0 when there is none). */
int seccomp_state(struct thread *t, int *mode, uint8_t **filters, size_t *len, uint32_t *nfilters,
                  uint64_t *fingerprint) {
  char path[64], status[4096];
  snprintf(path, sizeof path, "/proc/%d/task/%d/status", t->tgid, t->tid);
  if (read_small(path, status, sizeof status) < 0)
    return fail_sys("open(/proc/PID/task/TID/status)", t->tid, errno, NULL);
  *mode = (int)status_long(status, "Seccomp", 0);
  *filters = NULL;
  *len = 0;
  *nfilters = 0;
  *fingerprint = 0;
  if (*mode == 0) return 0;
  uint64_t h = fnv1a64(1469598103934665603ull, mode, sizeof *mode);
  if (*mode != 2) {
    *fingerprint = h;
    return 0;
  }
  size_t cap = 4096, used = 0;
  uint8_t *buf = malloc(cap);
  if (!buf) return fail("OUT_OF_MEMORY", t->tid, "out of memory");
  for (unsigned long i = 0; i < 4096; i++) {
    long cnt = ptrace(PTRACE_SECCOMP_GET_FILTER, t->tid, i, NULL);
    if (cnt < 0) {
      if (errno == ENOENT) break;
      int e = errno;
      free(buf);
      if (e == EACCES || e == EPERM)
        return fail_sys("ptrace(PTRACE_SECCOMP_GET_FILTER)", t->tid, e,
                        "tid %d is under a seccomp filter and reading it needs CAP_SYS_ADMIN", t->tid);
      return fail_sys("ptrace(PTRACE_SECCOMP_GET_FILTER)", t->tid, e, "filter %lu", i);
    }
    size_t need = used + 8 + (size_t)cnt * 8;
    if (need > cap) {
      while (cap < need) cap *= 2;
      uint8_t *nb = realloc(buf, cap);
      if (!nb) {
        free(buf);
        return fail("OUT_OF_MEMORY", t->tid, "out of memory");
      }
      buf = nb;
    }
    uint32_t c32 = (uint32_t)cnt, pad = 0;
    memcpy(buf + used, &c32, 4);
    memcpy(buf + used + 4, &pad, 4);
    if (ptrace(PTRACE_SECCOMP_GET_FILTER, t->tid, i, buf + used + 8) != cnt) {
      int e = errno;
      free(buf);
      return fail_sys("ptrace(PTRACE_SECCOMP_GET_FILTER)", t->tid, e, "filter %lu", i);
    }
    used = need;
    (*nfilters)++;
  }
  *fingerprint = fnv1a64(h, buf, used) | 1;
  *filters = buf;
  *len = used;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Waiting for a return */

/* A breakpoint hit just before an interrupt stopped the thread leaves its SIGTRAP
 * (TRAP_HWBKPT) queued behind the interrupt's stop: disarming then is not enough,
 * the thread would take the signal once we let go and die of it. Let the thread
 * dequeue it under our eyes (synchronous signals are dequeued first) and drop it
 * (own_hw_trap recognises it). The thread is stopped and held. */
static bool hw_trap_queued(struct thread *t) {
  siginfo_t si[16];
  struct __ptrace_peeksiginfo_args a = {.off = 0, .flags = 0, .nr = 16};
  long n = ptrace(PTRACE_PEEKSIGINFO, t->tid, &a, si);
  for (long i = 0; i < n; i++)
    if (si[i].si_signo == SIGTRAP && si[i].si_code == TRAP_HWBKPT) return true;
  return false;
}

static void drop_queued_hw_trap(struct thread *t) {
  for (int k = 0; k < 4 && !t->dead && t->stopped && hw_trap_queued(t); k++) {
    if (ptrace(PTRACE_CONT, t->tid, 0, 0) < 0) return;
    t->stopped = false;
    uint64_t deadline = now_ns() + 1000000000ull;
    timer_arm(deadline);
    while (!t->dead && !t->stopped) {
      int st;
      pid_t p = wait_event(t->tid, deadline, &st);
      if (p > 0) on_event(p, st);
      else if (p == WAIT_TIMEOUT || p == WAIT_NONE) break;
    }
    timer_disarm();
  }
}

/* DR7 as PTRACE_PEEKUSER reads it (thread.ptrace_dr7); -1 with errno on failure. */
static int peek_dr7(struct thread *t, uint64_t *dr7) {
  errno = 0;
  long v = ptrace(PTRACE_PEEKUSER, t->tid, DR_OFFSET(7), 0);
  if (v == -1 && errno) return -1;
  *dr7 = (uint64_t)v;
  return 0;
}

/* Turns every slot off (DR7 = 0) and reads DR7 back: 0 when it reads 0, else -1
 * with errno (EIO when the write "succeeded" but DR7 still reads non-zero). With
 * `full`, DR0 and DR6 are cleared too (not needed for safety once DR7 is 0: they
 * only keep the next reader from seeing our address and hit; DR0 is written only
 * for a thread that had a breakpoint, since writing DR0 of a slot without an
 * event registers a new, disabled one). The thread is in a ptrace-stop. */
static int hw_clear(struct thread *t, bool full) {
  if (ptrace(PTRACE_POKEUSER, t->tid, DR_OFFSET(7), 0) < 0) return -1;
  uint64_t dr7;
  if (peek_dr7(t, &dr7) < 0) return -1;
  if (dr7 != 0) {
    errno = EIO;
    return -1;
  }
  if (full) {
    ptrace(PTRACE_POKEUSER, t->tid, DR_OFFSET(0), 0);
    ptrace(PTRACE_POKEUSER, t->tid, DR_OFFSET(6), 0);
  }
  return 0;
}

/* Disarms t's breakpoint for sure: DR7 = 0 read back 0, then a TRAP_HWBKPT
 * SIGTRAP still queued is dropped. The thread must be in a ptrace-stop for
 * that: one we believed stopped but is not (ESRCH: woken by a SIGKILL, or our
 * bookkeeping is wrong) is interrupted and waited for again, until `deadline`.
 * 0 when disarmed, or when the thread exited (its breakpoints went with it);
 * -1 (DISARM_FAILED) when it could not be stopped or DR7 would not read 0 by
 * then: hw_armed stays set so detach_all() tries again. The thread is left
 * stopped and held (unless it exited or could not be stopped): a held thread is
 * not resumed by resume_all(), so one whose DR7 would not clear stays stopped,
 * where it cannot run into the address, until detach_all(). */
static int hw_disarm(struct thread *t, uint64_t deadline) {
  int e = 0;
  for (;;) {
    if (t->dead) break;
    if (!t->stopped) {
      uint64_t now = now_ns();
      uint32_t ms = deadline > now ? (uint32_t)((deadline - now + 999999) / 1000000) : 1;
      if (stop_thread(t, ms) < 0) {
        e = E_STOP_FAILED;
        if (t->dead || now_ns() >= deadline) break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        continue;
      }
    }
    if (hw_clear(t, t->hw_used) == 0) {
      t->hw_armed = false;
      t->hw_stale = false;
      drop_queued_hw_trap(t);
      return 0;
    }
    e = errno;
    if (e == ESRCH) {
      /* not in a ptrace-stop after all: gone, or to be stopped again */
      if (!task_exists(t->tgid, t->tid)) {
        thread_dead(t);
        break;
      }
      t->stopped = false;
    }
    if (now_ns() >= deadline) break;
    if (e != ESRCH) {
      struct timespec ts = {0, 10 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
  }
  if (t->dead) {
    t->hw_armed = false;
    t->hw_stale = false;
    return 0;
  }
  char st, wchan[64];
  task_state(t->tgid, t->tid, &st, wchan, sizeof wchan);
  if (e == E_STOP_FAILED)
    return fail("DISARM_FAILED", t->tid,
                "could not stop tid %d (state %c, in %s) to disarm its breakpoint at 0x%llx", t->tid, st, wchan,
                (unsigned long long)t->hw_addr);
  return fail("DISARM_FAILED", t->tid, "could not clear DR7 of tid %d (state %c, in %s): %s", t->tid, st, wchan,
              strerrorname_np(e) ? strerrorname_np(e) : "?");
}

static int hw_set(struct thread *t, uint64_t addr) {
  if (ptrace(PTRACE_POKEUSER, t->tid, DR_OFFSET(0), addr) < 0)
    return fail_sys("ptrace(PTRACE_POKEUSER)", t->tid, errno, "DR0 = 0x%llx", (unsigned long long)addr);
  /* DR7: L0 (bit 0) enabled, R/W0 = 00 (execute), LEN0 = 00 (1 byte) */
  if (ptrace(PTRACE_POKEUSER, t->tid, DR_OFFSET(7), 1) < 0) {
    int e = errno;
    ptrace(PTRACE_POKEUSER, t->tid, DR_OFFSET(0), 0);
    return fail_sys("ptrace(PTRACE_POKEUSER)", t->tid, e, "DR7");
  }
  return 0;
}

/* Arms an execute breakpoint at `addr` in thread t (stopped with the rest of the
 * world), resumes the world and waits until t executes `addr` with rsp > sp (its
 * frame has returned; sp 0: any), the timeout passes, or patchc goes away (EOF).
 * The breakpoint is disarmed before this returns in every case; the world is left
 * running. */
int wait_return(struct thread *t, uint64_t addr, uint64_t sp, uint32_t timeout_ms, bool *hit,
                uint64_t *elapsed, uint64_t *rsp, bool *eof) {
  *hit = false;
  *eof = false;
  *rsp = 0;
  if (!S.world_stopped || !t->stopped)
    return fail("NOT_STOPPED", t->tid, "waiting for a return needs the world stopped (stopWorld first)");
  uint64_t dr7;
  if (peek_dr7(t, &dr7) < 0) return fail_sys("ptrace(PTRACE_PEEKUSER)", t->tid, errno, "DR7");
  if (dr7 & 0xff) {
    uint64_t dr[8];
    if (debug_regs(t, dr) < 0) memset(dr, 0, sizeof dr);
    return fail("DEBUG_REGS_BUSY", t->tid,
                "tid %d already has a hardware breakpoint armed (DR7 = 0x%llx; DR0..3 = 0x%llx 0x%llx 0x%llx 0x%llx)",
                t->tid, (unsigned long long)dr7, (unsigned long long)dr[0], (unsigned long long)dr[1],
                (unsigned long long)dr[2], (unsigned long long)dr[3]);
  }
  hw_session = true;
  if (hw_set(t, addr) < 0) return -1;
  t->hw_armed = true;
  t->hw_used = true;
  t->hw_hit = false;
  t->hw_addr = addr;
  t->hw_sp = sp;
  pid_t tid = t->tid;
  uint64_t start = now_ns();
  resume_all();

  uint64_t deadline = start + (uint64_t)timeout_ms * 1000000u;
  bool watch_ctl = true, more = false;
  while (!t->dead && !t->hw_hit) {
    uint64_t now = now_ns();
    if (now >= deadline) break;
    int ms = more ? 0 : (int)((deadline - now + 999999) / 1000000);
    if (more) more = drain_events();
    struct pollfd pf[2] = {{g_sigfd, POLLIN, 0}, {watch_ctl ? g_ctl : -1, POLLIN, 0}};
    int r = poll(pf, 2, ms);
    if (r < 0 && errno != EINTR) break;
    if (pf[0].revents & POLLIN) {
      struct signalfd_siginfo si[16];
      bool term = false;
      ssize_t n = read(g_sigfd, si, sizeof si);
      for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof si[0]; i++)
        if (si[i].ssi_signo != SIGCHLD) term = true;
      more = drain_events();
      if (term) {
        *eof = true;
        break;
      }
    }
    if (pf[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      char c;
      ssize_t n = recv(g_ctl, &c, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        *eof = true;
        break;
      }
      watch_ctl = false; /* a request while waiting: served after the wait */
    }
  }
  *elapsed = now_ns() - start;
  /* It returned, then exited (both events drained in one go): the hit counts. The
     entry of a dead thread stays valid until threads_compact(), at the next request. */
  if (t->dead) {
    *hit = t->hw_hit;
    *rsp = t->hw_rsp;
    return 0;
  }
  t = thread_find(tid);
  if (!t || t->dead) return 0; /* exited: its breakpoint went with it */
  /* disarm: the thread must be stopped for PTRACE_POKEUSER. One that does not
     stop at once (uninterruptible sleep) cannot run into the breakpoint before
     it stops (see the file comment): wait for it, up to 12 s */
  if (hw_disarm(t, now_ns() + 12000000000ull) < 0) return -1;
  *hit = t->hw_hit;
  *rsp = t->hw_hit ? t->hw_rsp : 0;
  release_thread(t);
  return 0;
}
