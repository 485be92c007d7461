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
struct wire_attach { int32_t pid; uint32_t flags; };
/* attached flags */
#define ATTACHED_JOB_STOPPED 1u /* the target was stopped by job control when we came */
struct wire_attached { int32_t pid; uint32_t nthreads; uint32_t nsharers; uint32_t flags; };

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
