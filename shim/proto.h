/*
 * The wire protocol between the addon (shim/addon.cc, in the patchc process) and
 * the tracer (shim/tracer.c, a helper process the addon starts).
 *
 * Why a second process: a ptrace tracer is a thread (every request for a tracee
 * must come from the thread that attached it), and patchc may die at any moment.
 * The tracer is single-threaded, owns every ptrace attachment, and notices the
 * death of patchc as EOF on its end of the socket: it then rolls back the open
 * transaction, resumes and detaches every thread, and exits. See shim/tracer.c.
 *
 * Framing: one request, then one reply, over a SOCK_STREAM socketpair (fd 3 in
 * the tracer). All integers are little-endian (x86-64 native), records are
 * naturally aligned C structs, byte strings follow their record.
 *
 *   request  | u32 len (whole message) | u32 op | payload ...
 *   reply    | u32 len (whole message) | i32 status (0 ok, -1 error) | payload ...
 *   error    | struct wire_error | message (UTF-8, NUL-terminated)
 *
 * Payloads per op are the structs below; "-> " names the reply.
 */
#ifndef PATCHC_SHIM_PROTO_H
#define PATCHC_SHIM_PROTO_H

#include <stdint.h>

#define WIRE_VERSION 1
#define WIRE_MAX_MESSAGE (1u << 30) /* 1 GiB: bounds every read of a length field */
#define WIRE_NREGS 27               /* struct user_regs_struct, x86-64 */

enum wire_op {
  OP_HELLO = 1,      /* -> wire_hello */
  OP_ATTACH,         /* wire_attach -> wire_attached + i32 tids[] + i32 sharers[] */
  OP_DETACH,         /* -> (empty) */
  OP_THREADS,        /* -> u32 n + wire_thread[n] */
  OP_STOP_WORLD,     /* wire_stop -> wire_stopped + wire_thread_state[n] + stacks */
  OP_RESUME_ALL,     /* -> wire_resumed */
  OP_PATCH_RESUME,   /* wire_patches + wire_patch[n] + (expect, bytes) per patch -> wire_resumed */
  OP_GET_REGS,       /* wire_tid -> u64 regs[27] */
  OP_SET_REGS,       /* wire_set_regs -> (empty) */
  OP_READ,           /* u32 n, u32 pad, wire_range[n] -> u64 got[n] + data (each range's len, in order) */
  OP_WRITE_DATA,     /* wire_write + bytes -> (empty)  (process_vm_writev) */
  OP_WRITE_TEXT,     /* wire_write + bytes -> (empty)  (/proc/PID/mem) */
  OP_SYSCALL,        /* wire_syscall + scratch bytes -> wire_syscall_result */
  OP_SYSCALL_SITE,   /* -> u64 address of the `syscall` instruction used for remote syscalls */
  OP_SECCOMP,        /* wire_tid -> wire_seccomp + filters */
  OP_WAIT_RETURN,    /* wire_wait -> wire_waited */
  OP_BEGIN,          /* -> (empty) */
  OP_COMMIT,         /* -> (empty) */
  OP_ROLLBACK,       /* -> u32 undone */
  OP_DEBUG_REGS,     /* wire_tid -> u64 dr[8] */
  OP_CALL,           /* wire_call -> wire_call_result */
  OP_STOP_PATCH,     /* wire_stop_patch + wire_span[nspans] + wire_patch[n] + (expect, bytes) per patch
                        -> wire_proof + (wire_resumed | held: OP_STOP_WORLD's reply) */
  OP_VM_PASS,        /* -> wire_vm_pass + i32 pids[n] + u8 same[n] (shim/sharers.c) */
  OP__COUNT
};

struct wire_req { uint32_t len; uint32_t op; };
struct wire_rsp { uint32_t len; int32_t status; };

struct wire_error {
  int32_t err_no;     /* errno of the failing syscall, 0 when no syscall failed */
  int32_t tid;        /* thread the failure concerns, 0 when none */
  char code[32];      /* stable name: an errno name (ESRCH) or a reason (SITE_MISMATCH) */
  char syscall[48];   /* "ptrace(PTRACE_INTERRUPT)", "process_vm_readv", "" */
  /* followed by the message */
};

struct wire_hello { uint32_t version; int32_t pid; };

/* attach flags */
#define ATTACH_STOP_SHARERS 1u /* stop CLONE_VM sharers too (else refuse when there are any) */
#define ATTACH_PASS 2u         /* a wire_attach_pass and its i32 candidates[ncand] follow */
struct wire_attach { int32_t pid; uint32_t flags; };
/* The sharers from a pass (OP_VM_PASS) instead of every process: the target's group at
 * the pass (candidates) and the processes created since (shim/sharers.c). */
struct wire_attach_pass {
  int32_t last_pid;  /* the pass's */
  uint32_t pid_max;  /* the pass's */
  int32_t seen_pid;  /* the latest ns_last_pid the caller knows of (the pass's or a check's) */
  uint32_t ncand;
  uint64_t seen_ns;  /* CLOCK_MONOTONIC before it was read */
};
/* attached flags */
#define ATTACHED_JOB_STOPPED 1u /* the target was stopped by job control when we came */
#define ATTACHED_FULL_SCAN 2u   /* the sharers were found by comparing with every process */
#define ATTACHED_PASS_STALE 4u  /* ... because the pass could no longer be trusted (take a new one) */
struct wire_attached {
  int32_t pid; uint32_t nthreads; uint32_t nsharers; uint32_t flags;
  int32_t seen_pid;  /* ns_last_pid as the sharer check read it (-1: not read) */
  uint32_t checked;  /* kcmp calls of the sharer check */
  uint64_t seen_ns;  /* CLOCK_MONOTONIC before that read */
};
struct wire_vm_pass {
  int32_t last_pid; uint32_t pid_max; uint32_t n; uint32_t kcmps;
  uint64_t seen_ns;  /* when the cursor was last seen (at seen_pid), at the end of the pass */
  uint64_t took_ns; uint32_t tries;
  uint32_t gap_ns;   /* a check trusts the interval only while the cursor was seen at most this long before */
  int32_t seen_pid; uint32_t pad;
};

struct wire_tid { int32_t tid; uint32_t pad; };

/* thread state bits (wire_thread.state, wire_thread_state.flags) */
#define TS_STOPPED     1u  /* in a ptrace-stop we hold */
#define TS_GROUP_STOP  2u  /* stopped by job control (group-stop) */
#define TS_PENDING_SIG 4u  /* a signal arrived while stopped; it is re-delivered on resume */
#define TS_SHARER      8u  /* a thread of a CLONE_VM sharer, not of the target's thread group */
#define TS_IN_SYSCALL 16u  /* stopped inside a syscall (orig_rax >= 0) */
struct wire_thread { int32_t tid; uint32_t state; };

struct wire_stop { uint64_t window; uint32_t timeout_ms; uint32_t pad; };
struct wire_stopped {
  uint32_t nthreads;
  uint32_t pad;
  uint64_t window;       /* bytes reserved per thread in the stacks area */
  uint64_t interrupt_ns; /* sending every PTRACE_INTERRUPT */
  uint64_t wait_ns;      /* until the last thread reported its stop */
  uint64_t read_ns;      /* registers and stack windows */
  uint64_t total_ns;     /* first interrupt to reply (the pause so far) */
};
struct wire_thread_state {
  int32_t tid;
  uint32_t flags;
  int32_t pending_sig;
  uint32_t stack_len;     /* bytes of the window read from stack_addr (short at the end of a mapping) */
  uint64_t stack_addr;    /* = rsp */
  uint64_t regs[WIRE_NREGS];
};
/* then nthreads windows of `window` bytes each, in the same order */

struct wire_resumed {
  uint64_t pause_ns;  /* first interrupt of the stop to the last resume, measured in the tracer */
  uint64_t check_ns;  /* reading and comparing the sites */
  uint64_t write_ns;  /* writing the patches */
  uint64_t resume_ns; /* resuming every thread */
};

/* patch flags */
#define PATCH_COMMIT 1u /* commit the open transaction once written (always so inside one) */
struct wire_patches { uint32_t n; uint32_t flags; };
struct wire_patch { uint64_t addr; uint32_t len; uint32_t pad; };
/* then per patch: expect[len], bytes[len] */

/*
 * Stop, prove, patch and resume in one request (shim/proof.c): stop the world; if no
 * thread's pc + 1 and no aligned word of any thread's live stack lies in any span, write
 * the patches as OP_PATCH_RESUME does (sites checked first) and resume; otherwise keep
 * the world stopped and reply as OP_STOP_WORLD (with `window` bytes per thread), for
 * the caller's precise check. Spans: closed intervals, sorted, disjoint.
 */
struct wire_stop_patch {
  uint64_t window;     /* the stack window of the reply when not proven */
  uint64_t max_scan;   /* bytes of stack the proof reads at most (all threads) */
  uint32_t timeout_ms;
  uint32_t nspans;
  uint32_t npatches;
  uint32_t flags;      /* PATCH_COMMIT, STOP_PATCH_HOLD */
};
#define STOP_PATCH_HOLD 2u /* prove only: write nothing, keep the world stopped, reply with it */
struct wire_span { uint64_t lo; uint64_t hi; };
/* why a stop was not proven (wire_proof.reason) */
#define PROOF_PC         1 /* a thread's pc + 1 is in a span (addr: the pc) */
#define PROOF_WORD       2 /* a stack word is in a span (addr, at stack address `where`) */
#define PROOF_NO_STACK   3 /* rsp (addr) is in no writable mapping */
#define PROOF_TOO_MUCH   4 /* the stacks are larger than max_scan */
#define PROOF_UNREADABLE 5 /* stack memory could not be read (from addr) */
#define PROOF_UNALIGNED  6 /* rsp (addr) is not 8-byte aligned */
#define PROOF_NO_MAPS    7 /* the mappings could not be read */
#define PROOF_NO_REGS    8 /* a thread's registers are unknown */
#define PROOF_NO_MEMORY  9 /* the tracer ran out of memory */
#define PROOF_OFF_STACK 10 /* rsp (addr) is not on the thread's own stack ([stack], or the mapping of its fs_base) */
struct wire_proof {
  uint32_t proven;   /* 1: no pc and no stack word in any span */
  uint32_t reason;   /* PROOF_* when not proven */
  int32_t tid;       /* the thread that could not be proven, 0 when none */
  uint32_t held;     /* 1: the world is held stopped and OP_STOP_WORLD's reply follows; 0: wire_resumed follows */
  uint64_t addr;     /* the value found, or the address concerned */
  uint64_t where;    /* PROOF_WORD: the stack address holding it */
  uint64_t scan_ns;  /* finding, reading and scanning the stacks */
  uint64_t scanned;  /* bytes of stack scanned */
};

struct wire_set_regs { int32_t tid; uint32_t pad; uint64_t regs[WIRE_NREGS]; };
struct wire_range { uint64_t addr; uint64_t len; };
struct wire_write { uint64_t addr; uint64_t len; };

struct wire_syscall {
  int32_t tid;            /* 0: any thread (the first stopped one, else the leader) */
  int32_t scratch_arg;    /* -1, or the argument (0..5) replaced by the address of the scratch bytes */
  uint64_t nr;
  uint64_t args[6];
  uint64_t seccomp_fingerprint; /* what the caller checked the call against (OP_SECCOMP) */
  uint64_t scratch_len;   /* bytes copied below the thread's red zone for the call */
};
struct wire_syscall_result { int64_t ret; int32_t tid; uint32_t tracer_us; /* time in the tracer */ };

struct wire_seccomp {
  int32_t mode;           /* 0 none, 1 strict, 2 filter */
  uint32_t nfilters;
  uint64_t fingerprint;   /* FNV-1a over mode and the filters; 0 when mode is 0 */
  /* then per filter, oldest first (PTRACE_SECCOMP_GET_FILTER index order):
     u32 count, u32 pad, struct sock_filter[count] (8 bytes each) */
};

/* A function call in a stopped thread (an IFUNC resolver): see remote_call() in ptrace.c. */
struct wire_call { int32_t tid; uint32_t timeout_ms; uint64_t addr; uint64_t args[6]; };
struct wire_call_result { uint64_t ret; int32_t tid; uint32_t tracer_us; };

struct wire_wait { int32_t tid; uint32_t timeout_ms; uint64_t addr; uint64_t sp; };
struct wire_waited { uint32_t hit; uint32_t pad; uint64_t elapsed_ns; uint64_t rsp; };

#endif
