/*
 * Internal interface of the tracer process (shim/tracer.c, shim/ptrace.c,
 * shim/journal.c). One tracer serves one patchc session and traces at most one
 * target process (plus the processes that share its address space, when asked).
 * It is single-threaded: every ptrace request comes from its one thread.
 */
#ifndef PATCHC_SHIM_TRACER_H
#define PATCHC_SHIM_TRACER_H

#define _GNU_SOURCE
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#include "proto.h"

#define MAX_SHARERS 64

struct pending_signal {
  int sig;
  uint32_t from_stop; /* stop_seq of the stop that dequeued it */
  siginfo_t info;
};

/*
 * A traced task. Its life as the tracer sees it:
 *
 *   running --interrupt/event--> stopped (status = waitpid status of the stop)
 *   stopped --resume--> running, or listening (group-stopped: PTRACE_LISTEN)
 *   any --exit reported by waitpid--> removed from the table
 *
 * `held`: we keep it stopped (a stop-the-world, a remote syscall, a wait);
 * events of a thread not held are answered at once (signals re-injected,
 * event stops continued), so the target runs as if we were not there.
 */
struct thread {
  pid_t tid;
  pid_t tgid;
  bool stopped;      /* in a ptrace-stop reported to us and not resumed since */
  bool listening;    /* resumed with PTRACE_LISTEN: still stopped by job control */
  bool expect_stop;  /* interrupted (or newly cloned) and its stop not reported yet */
  bool held;         /* keep stopped although the world is running */
  bool group_stop;   /* its last PTRACE_EVENT_STOP said the process is job-control stopped */
  bool sharer;       /* a task of a CLONE_VM sharer process */
  bool dead;         /* exited; freed by threads_compact() */
  int status;        /* waitpid status of the current stop */
  int sigstop;       /* signal of the current signal-delivery-stop, 0 for other stops */
  uint32_t stop_seq; /* counts its stops */
  int npending, cappending;
  struct pending_signal *pending; /* signals dequeued while we hold it, oldest first */
  bool hw_armed, hw_hit; /* wait_return's breakpoint */
  bool hw_used;          /* it had one: a TRAP_HWBKPT SIGTRAP of this thread is ours */
  bool hw_stale;         /* born in a session that armed one: may read its creator's DR7 (ptrace.c) */
  uint64_t hw_addr, hw_sp, hw_rsp;
  bool regs_valid;
  struct user_regs_struct regs;
};

/* How attach() found the sharers (sharers.c). */
struct pass_seen {
  bool full;         /* compared with every process */
  bool stale;        /* because the pass could no longer be trusted */
  uint32_t checked;  /* kcmp calls */
  int32_t seen_pid;  /* ns_last_pid now */
  uint64_t seen_ns;  /* CLOCK_MONOTONIC before that read */
};

struct session {
  pid_t pid;                 /* target thread-group id, 0 when not attached */
  int memfd;                 /* /proc/PID/mem, O_RDWR */
  struct thread *t;          /* the table: t[0..n) */
  int n, cap;
  int *idx;                  /* tid -> index + 1 in t (0: not traced); size pid_max + 1 */
  int pid_max;
  int nexpect;               /* threads with expect_stop */
  bool world_stopped;        /* every thread held (stop-the-world in progress) */
  uint64_t pause_start;      /* CLOCK_MONOTONIC ns of the first interrupt of the stop */
  bool execed;               /* the target called execve: its memory is not the one we knew */
  bool gone;                 /* every thread has exited */
  uint64_t syscall_site;     /* address of a `syscall` instruction in the target, 0 unknown */
  int nsharers;
  pid_t sharers[MAX_SHARERS];
  bool job_stopped;          /* stopped by job control when attached */
  struct pass_seen sharer_check; /* how attach found the sharers */
};

extern struct session S;
extern const char *g_op;     /* name of the operation being served, for messages */
extern int g_ctl;            /* the socket to patchc */

/* ---- errors (tracer.c) ----
 * Every failure names the operation, the syscall, errno and the thread:
 *   "stopWorld: ptrace(PTRACE_INTERRUPT) failed for tid 1234: ESRCH (No such process)"
 * fail_sys() formats from errno, fail() from a reason code; both return -1. */
int fail_sys(const char *syscall, pid_t tid, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int fail(const char *code, pid_t tid, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void clear_error(void);
void save_error(struct wire_error *e, char *msg, size_t cap);
void restore_error(const struct wire_error *e, const char *msg);

uint64_t now_ns(void);

/* ---- process control (ptrace.c) ---- */
struct thread *thread_find(pid_t tid);
int thread_count(void);
struct thread *thread_at(int i);
void threads_compact(void);
/* `pass`: find the sharers from a pass (sharers.c) instead of every process; NULL for that */
struct attach_pass {
  struct wire_attach_pass h;
  const int32_t *cand; /* h.ncand processes of the target's group at the pass */
};
int attach(pid_t pid, uint32_t flags, const struct attach_pass *pass);
int detach_all(void);
bool drain_events(void);
void on_event(pid_t tid, int status);
int stop_world(uint32_t timeout_ms, bool read_regs, uint64_t *interrupt_ns, uint64_t *wait_ns);
int resume_all(void);
void boost(bool on);
int resume_thread(struct thread *t);
int stop_thread(struct thread *t, uint32_t timeout_ms);
void release_thread(struct thread *t);
int get_regs(struct thread *t);
int set_regs(struct thread *t, const struct user_regs_struct *r);
int read_stacks(uint64_t window, uint8_t *out, uint32_t *lens);
int read_ranges(const struct wire_range *r, uint32_t n, uint8_t *out, uint64_t *got);
int read_ranges_plain(const struct wire_range *r, uint32_t n, uint8_t *out, uint64_t *got);
int read_text(uint64_t addr, void *buf, size_t len);
int write_data(uint64_t addr, const void *buf, size_t len);
int write_text(uint64_t addr, const void *buf, size_t len);
int find_syscall_site(void);
int remote_syscall(struct thread *t, uint64_t nr, const uint64_t args[6], int64_t *ret);
int remote_call(struct thread *t, uint64_t addr, const uint64_t args[6], uint32_t timeout_ms, uint64_t *ret);
int seccomp_state(struct thread *t, int *mode, uint8_t **filters, size_t *len, uint32_t *nfilters,
                  uint64_t *fingerprint);
int wait_return(struct thread *t, uint64_t addr, uint64_t sp, uint32_t timeout_ms, bool *hit,
                uint64_t *elapsed, uint64_t *rsp, bool *eof);
int debug_regs(struct thread *t, uint64_t dr[8]);
struct thread *any_stopped_thread(void);
int check_usable(void);

/* ---- sharers of the address space (sharers.c) ----
 * sharers_full() fills S.sharers by comparing the target with every process;
 * vm_pass() groups every process by address space, once for many attaches;
 * sharers_from_pass() fills S.sharers from such a pass and the processes created since
 * (or as sharers_full when the pass cannot be trusted: seen->full). */
struct vm_pass {
  int32_t last_pid;  /* ns_last_pid read before /proc was listed */
  uint32_t pid_max;
  int32_t seen_pid;  /* ns_last_pid at the end of the pass */
  uint64_t seen_ns;  /* CLOCK_MONOTONIC before that read */
  uint64_t took_ns;
  uint32_t kcmps, tries;
  int n;             /* processes grouped, sorted by address space: */
  pid_t *pids;
  uint8_t *same;     /* same[i]: pids[i] shares pids[i - 1]'s */
};
int sharers_full(pid_t pid, uint32_t *checked);
uint64_t pass_gap_ns(long pid_max);
int vm_pass(struct vm_pass *p);
int sharers_from_pass(pid_t pid, const struct wire_attach_pass *h, const int32_t *cand, struct pass_seen *seen);

/* ---- the stack proof of OP_STOP_PATCH (proof.c) ----
 * proof_open() before the stop (opens /proc/PID/maps, readies a copy of about
 * expect_bytes of stack), stack_proof() with the world
 * stopped and registers read, proof_close() after. */
void proof_open(uint64_t expect_bytes);
void proof_close(void);
int stack_proof(const struct wire_span *spans, uint32_t nspans, uint64_t max_scan, struct wire_proof *p);

/* ---- transactions (journal.c) ----
 * Between OP_BEGIN and OP_COMMIT every change to the target is journaled; a
 * rollback (OP_ROLLBACK, or EOF from patchc) undoes them newest first. Changes a
 * rollback could not undo exactly are refused inside a transaction. */
bool txn_active(void);
int txn_begin(void);
void txn_commit(void);
int txn_rollback(uint32_t *undone);
bool txn_holds_live_changes(uint64_t *where);
int txn_before_write(uint64_t addr, size_t len);
int txn_before_regs(struct thread *t);
int txn_before_syscall(uint64_t nr, const uint64_t args[6]);
void txn_after_syscall(uint64_t nr, const uint64_t args[6], int64_t ret);
void txn_reset(void);

#endif
