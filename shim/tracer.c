/*
 * patchc-tracer: the helper process that does every ptrace request of patchc.
 *
 * The addon starts it with one end of a socketpair as fd 3 and sends requests
 * (shim/proto.h); it answers each with one reply. Between requests it keeps the
 * target running as if it were not traced: stops of threads it does not hold
 * are answered at once (signals passed on, new threads let go).
 *
 * patchc may die at any moment (Ctrl-C, SIGKILL, out of memory). The tracer is
 * in a session of its own (no terminal signal reaches it) and sees the death as
 * EOF on fd 3, also while it waits for a thread to return. Then it rolls the open
 * transaction back (shim/journal.c), disarms any breakpoint, resumes and detaches
 * every thread, and exits: the target runs on, fully old or fully new. SIGTERM,
 * SIGINT and SIGHUP sent to the tracer itself end it the same way.
 *
 * It is single-threaded: every ptrace request comes from its one thread, the one
 * that attached the target.
 */
#include "tracer.h"

#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int g_ctl = 3;
int g_sigfd = -1;
const char *g_op = "tracer";

/* ------------------------------------------------------------------ */
/* Errors */

static struct wire_error E;
static char Emsg[2048];

void clear_error(void) {
  memset(&E, 0, sizeof E);
  Emsg[0] = 0;
}

void save_error(struct wire_error *e, char *msg, size_t cap) {
  *e = E;
  snprintf(msg, cap, "%s", Emsg);
}

void restore_error(const struct wire_error *e, const char *msg) {
  E = *e;
  snprintf(Emsg, sizeof Emsg, "%s", msg);
}

static void copy_str(char *dst, size_t cap, const char *src) {
  snprintf(dst, cap, "%s", src ? src : "");
}

int fail_sys(const char *sys, pid_t tid, int err, const char *fmt, ...) {
  char detail[1024] = "";
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
  }
  const char *name = strerrorname_np(err);
  E.err_no = err;
  E.tid = tid;
  copy_str(E.code, sizeof E.code, name ? name : "EUNKNOWN");
  copy_str(E.syscall, sizeof E.syscall, sys);
  snprintf(Emsg, sizeof Emsg, "%s: %s failed for tid %d: %s (%s)%s%s", g_op, sys, tid, E.code, strerror(err),
           detail[0] ? ": " : "", detail);
  return -1;
}

int fail(const char *code, pid_t tid, const char *fmt, ...) {
  char detail[1536];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  static const struct { const char *code; int err; } errs[] = {
      {"NO_SUCH_PROCESS", ESRCH}, {"ZOMBIE", ESRCH},   {"TARGET_EXITED", ESRCH}, {"THREAD_EXITED", ESRCH},
      {"NO_SUCH_THREAD", ESRCH},  {"ALREADY_TRACED", EPERM}, {"STOP_TIMEOUT", ETIMEDOUT},
      {"SYSCALL_TIMEOUT", ETIMEDOUT}, {"OUT_OF_MEMORY", ENOMEM},
  };
  E.err_no = 0;
  for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++)
    if (strcmp(errs[i].code, code) == 0) E.err_no = errs[i].err;
  E.tid = tid;
  copy_str(E.code, sizeof E.code, code);
  E.syscall[0] = 0;
  snprintf(Emsg, sizeof Emsg, "%s: %s", g_op, detail);
  return -1;
}

/* ------------------------------------------------------------------ */
/* Replies */

struct out {
  uint8_t *p;
  size_t len, cap;
};

static void *out_grow(struct out *o, size_t n) {
  if (o->len + n > o->cap) {
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + n) cap *= 2;
    uint8_t *np = realloc(o->p, cap);
    if (!np) return NULL;
    o->p = np;
    o->cap = cap;
  }
  void *r = o->p + o->len;
  o->len += n;
  return r;
}

static int out_put(struct out *o, const void *src, size_t n) {
  void *d = out_grow(o, n);
  if (!d) return fail("OUT_OF_MEMORY", 0, "out of memory for a reply of %zu bytes", o->len + n);
  memcpy(d, src, n);
  return 0;
}

static int write_full(int fd, const void *buf, size_t n) {
  const uint8_t *p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* 1: read, 0: EOF, -1: error */
static int read_full(int fd, void *buf, size_t n) {
  uint8_t *p = buf;
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r == 0) return 0;
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += r;
    n -= (size_t)r;
  }
  return 1;
}

static void send_reply(struct out *o, int status) {
  if (status < 0) {
    o->len = 0;
    struct wire_rsp h = {0, -1};
    out_put(o, &h, sizeof h);
    out_put(o, &E, sizeof E);
    out_put(o, Emsg, strlen(Emsg) + 1);
  }
  struct wire_rsp *h = (struct wire_rsp *)o->p;
  h->len = (uint32_t)o->len;
  h->status = status < 0 ? -1 : 0;
  write_full(g_ctl, o->p, o->len); /* EPIPE: patchc is gone; the next read sees EOF */
}

/* ------------------------------------------------------------------ */
/* Requests */

static const char *op_names[OP__COUNT] = {
    [OP_HELLO] = "hello",           [OP_ATTACH] = "attach",
    [OP_DETACH] = "detach",         [OP_THREADS] = "threads",
    [OP_STOP_WORLD] = "stopWorld",  [OP_RESUME_ALL] = "resumeAll",
    [OP_PATCH_RESUME] = "patchAndResume", [OP_GET_REGS] = "getRegs",
    [OP_SET_REGS] = "setRegs",      [OP_READ] = "readMemory",
    [OP_WRITE_DATA] = "writeData",  [OP_WRITE_TEXT] = "writeText",
    [OP_SYSCALL] = "syscall",       [OP_SYSCALL_SITE] = "syscallSite",
    [OP_SECCOMP] = "seccompFilters", [OP_WAIT_RETURN] = "waitReturn",
    [OP_BEGIN] = "begin",           [OP_COMMIT] = "commit",
    [OP_ROLLBACK] = "rollback",     [OP_DEBUG_REGS] = "debugRegs",
    [OP_CALL] = "call",             [OP_STOP_PATCH] = "stopCheckPatch",
    [OP_VM_PASS] = "vmPass",
};

static int need(size_t have, size_t want) {
  if (have < want) return fail("BAD_REQUEST", 0, "request of %zu bytes, %zu expected", have, want);
  return 0;
}

/* A traced thread stopped for the request: held already (world stopped), or
 * stopped now and released by unhold(). */
static struct thread *hold(pid_t tid, bool *here) {
  *here = false;
  struct thread *t = thread_find(tid);
  if (!t || t->dead) {
    fail("NO_SUCH_THREAD", tid, "tid %d is not a traced thread of pid %d", tid, S.pid);
    return NULL;
  }
  if (t->stopped && (S.world_stopped || t->held)) return t;
  if (stop_thread(t, 2000) < 0) return NULL;
  *here = true;
  return t;
}

static void unhold(struct thread *t, bool here) {
  if (here && t && !t->dead) release_thread(t);
}

static int refuse_live(const char *what) {
  uint64_t where;
  if (txn_holds_live_changes(&where))
    return fail("TXN_LIVE_CHANGES", 0,
                "%s would let the target run through uncommitted changes (at 0x%llx); commit or roll back first",
                what, (unsigned long long)where);
  return 0;
}

static uint32_t thread_flags(struct thread *t) {
  uint32_t f = 0;
  if (t->stopped) f |= TS_STOPPED;
  if (t->group_stop) f |= TS_GROUP_STOP;
  if (t->npending) f |= TS_PENDING_SIG;
  if (t->sharer) f |= TS_SHARER;
  if (t->regs_valid && (long long)t->regs.orig_rax >= 0) f |= TS_IN_SYSCALL;
  return f;
}

static void hexdump(char *dst, size_t cap, const uint8_t *p, size_t n) {
  size_t k = 0;
  dst[0] = 0;
  for (size_t i = 0; i < n && i < 16 && k + 4 < cap; i++) k += (size_t)snprintf(dst + k, cap - k, "%s%02x", i ? " " : "", p[i]);
  if (n > 16 && k + 5 < cap) snprintf(dst + k, cap - k, " ...");
}

/* With the world just stopped: every thread's registers (a thread killed while
 * stopped is marked dead). */
static int read_all_regs(void) {
  for (int i = 0; i < thread_count(); i++) {
    struct thread *t = thread_at(i);
    if (t->dead) continue;
    if (get_regs(t) < 0) {
      if (E.err_no == ESRCH) {
        t->dead = true; /* killed while stopped: its exit is reaped later */
        continue;
      }
      return -1;
    }
  }
  threads_compact();
  return 0;
}

/* OP_STOP_WORLD's reply for the stopped world: registers and `window` bytes of
 * stack per thread. t2: when reading them began. */
static int put_world(struct out *o, uint64_t window, uint64_t int_ns, uint64_t wait_ns, uint64_t t2) {
  uint32_t n = (uint32_t)thread_count();
  struct wire_stopped h = {n, 0, window, int_ns, wait_ns, 0, 0};
  size_t hoff = o->len;
  if (out_put(o, &h, sizeof h) < 0) return -1;
  size_t roff = o->len;
  if (!out_grow(o, (size_t)n * sizeof(struct wire_thread_state))) return fail("OUT_OF_MEMORY", 0, "out of memory");
  size_t soff = o->len;
  if (!out_grow(o, (size_t)n * window)) return fail("OUT_OF_MEMORY", 0, "out of memory for %u stack windows", n);
  uint32_t *lens = calloc(n ? n : 1, sizeof *lens);
  if (!lens) return fail("OUT_OF_MEMORY", 0, "out of memory");
  if (window && read_stacks(window, o->p + soff, lens) < 0) {
    free(lens);
    return -1;
  }
  for (uint32_t i = 0; i < n; i++) {
    struct thread *t = thread_at((int)i);
    struct wire_thread_state s = {0};
    s.tid = t->tid;
    s.flags = thread_flags(t);
    s.pending_sig = t->npending ? t->pending[0].sig : 0;
    s.stack_len = lens[i];
    s.stack_addr = t->regs.rsp;
    memcpy(s.regs, &t->regs, sizeof s.regs);
    memcpy(o->p + roff + i * sizeof s, &s, sizeof s);
  }
  free(lens);
  uint64_t t3 = now_ns();
  h.read_ns = t3 - t2;
  h.total_ns = t3 - S.pause_start;
  memcpy(o->p + hoff, &h, sizeof h);
  return 0;
}

static int op_stop_world(const uint8_t *in, size_t inlen, struct out *o) {
  if (need(inlen, sizeof(struct wire_stop)) < 0 || check_usable() < 0) return -1;
  struct wire_stop q;
  memcpy(&q, in, sizeof q);
  if (q.window > (16u << 20)) return fail("BAD_ARGUMENT", 0, "stack window of %llu bytes is over 16 MiB", (unsigned long long)q.window);
  uint64_t int_ns, wait_ns;
  if (stop_world(q.timeout_ms ? q.timeout_ms : 2000, true, &int_ns, &wait_ns) < 0) return -1;
  uint64_t t2 = now_ns();
  if (read_all_regs() < 0) return -1;
  return put_world(o, q.window, int_ns, wait_ns, t2);
}

/* The patches of a request (OP_PATCH_RESUME's layout from `in + off`): n records,
 * then expect and bytes of each. Pointers into `in`. */
struct patch_set {
  uint32_t n;
  const struct wire_patch *p;
  const uint8_t **expect, **bytes;
  size_t maxlen;
};

static void patch_set_free(struct patch_set *ps) {
  free(ps->expect);
  free(ps->bytes);
  ps->expect = ps->bytes = NULL;
}

static int parse_patches(const uint8_t *in, size_t inlen, size_t off, uint32_t n, struct patch_set *ps) {
  memset(ps, 0, sizeof *ps);
  if (n > (1u << 20)) return fail("BAD_REQUEST", 0, "%u patches", n);
  if (need(inlen, off + (size_t)n * sizeof(struct wire_patch)) < 0) return -1;
  ps->n = n;
  ps->p = (const struct wire_patch *)(in + off);
  off += (size_t)n * sizeof(struct wire_patch);
  ps->expect = calloc(n ? n : 1, sizeof *ps->expect);
  ps->bytes = calloc(n ? n : 1, sizeof *ps->bytes);
  if (!ps->expect || !ps->bytes) {
    patch_set_free(ps);
    return fail("OUT_OF_MEMORY", 0, "out of memory");
  }
  for (uint32_t i = 0; i < n; i++) {
    if (need(inlen, off + 2 * (size_t)ps->p[i].len) < 0) {
      patch_set_free(ps);
      return -1;
    }
    ps->expect[i] = in + off;
    ps->bytes[i] = in + off + ps->p[i].len;
    off += 2 * (size_t)ps->p[i].len;
    if (ps->p[i].len > ps->maxlen) ps->maxlen = ps->p[i].len;
  }
  return 0;
}

/* With the world stopped: checks every site, writes every patch (all or none),
 * commits, resumes; replies wire_resumed. On failure the world stays stopped. */
static int patch_resume(const struct patch_set *ps, uint32_t flags, struct out *o) {
  const struct wire_patch *p = ps->p;
  uint64_t t0 = now_ns();
  uint8_t *cur = malloc(ps->maxlen ? ps->maxlen : 1);
  if (!cur) return fail("OUT_OF_MEMORY", 0, "out of memory");
  int rc = -1;
  /* every site is checked before anything is written */
  for (uint32_t i = 0; i < ps->n; i++) {
    if (read_text(p[i].addr, cur, p[i].len) < 0) goto out;
    if (memcmp(cur, ps->expect[i], p[i].len) != 0) {
      char have[80], want[80];
      hexdump(have, sizeof have, cur, p[i].len);
      hexdump(want, sizeof want, ps->expect[i], p[i].len);
      fail("SITE_MISMATCH", 0, "patch %u at 0x%llx: the site holds [%s], expected [%s]; nothing written", i,
           (unsigned long long)p[i].addr, have, want);
      goto out;
    }
  }
  uint64_t t1 = now_ns();
  for (uint32_t i = 0; i < ps->n; i++) {
    if (write_text(p[i].addr, ps->bytes[i], p[i].len) < 0) {
      struct wire_error saved;
      char msg[1024];
      save_error(&saved, msg, sizeof msg);
      for (uint32_t k = 0; k <= i; k++) write_text(p[k].addr, ps->expect[k], p[k].len);
      restore_error(&saved, msg);
      goto out;
    }
  }
  uint64_t t2 = now_ns();
  if (txn_active() || (flags & PATCH_COMMIT)) txn_commit();
  resume_all();
  uint64_t t3 = now_ns();
  struct wire_resumed r = {t3 - S.pause_start, t1 - t0, t2 - t1, t3 - t2};
  rc = out_put(o, &r, sizeof r);
out:
  free(cur);
  return rc;
}

static int op_patch_resume(const uint8_t *in, size_t inlen, struct out *o) {
  if (need(inlen, sizeof(struct wire_patches)) < 0 || check_usable() < 0) return -1;
  if (!S.world_stopped) return fail("NOT_STOPPED", 0, "patching needs the world stopped (stopWorld first)");
  struct wire_patches ph;
  memcpy(&ph, in, sizeof ph);
  struct patch_set ps;
  if (parse_patches(in, inlen, sizeof ph, ph.n, &ps) < 0) return -1;
  int rc = patch_resume(&ps, ph.flags, o);
  patch_set_free(&ps);
  return rc;
}

static int op_stop_patch(const uint8_t *in, size_t inlen, struct out *o) {
  if (need(inlen, sizeof(struct wire_stop_patch)) < 0 || check_usable() < 0) return -1;
  struct wire_stop_patch q;
  memcpy(&q, in, sizeof q);
  if (q.window > (16u << 20)) return fail("BAD_ARGUMENT", 0, "stack window of %llu bytes is over 16 MiB", (unsigned long long)q.window);
  if (q.nspans > (1u << 20)) return fail("BAD_REQUEST", 0, "%u spans", q.nspans);
  size_t off = sizeof q;
  if (need(inlen, off + (size_t)q.nspans * sizeof(struct wire_span)) < 0) return -1;
  struct wire_span *spans = malloc((size_t)(q.nspans ? q.nspans : 1) * sizeof *spans);
  if (!spans) return fail("OUT_OF_MEMORY", 0, "out of memory");
  memcpy(spans, in + off, (size_t)q.nspans * sizeof *spans);
  off += (size_t)q.nspans * sizeof *spans;
  for (uint32_t i = 0; i < q.nspans; i++) {
    if (spans[i].lo > spans[i].hi || (i > 0 && spans[i].lo <= spans[i - 1].hi)) {
      free(spans);
      return fail("BAD_ARGUMENT", 0, "span %u [0x%llx, 0x%llx] is empty, unsorted or overlaps the one before", i,
                  (unsigned long long)spans[i].lo, (unsigned long long)spans[i].hi);
    }
  }
  struct patch_set ps;
  if (parse_patches(in, inlen, off, q.npatches, &ps) < 0) {
    free(spans);
    return -1;
  }
  int rc = -1;
  /* before the stop: opening /proc/PID/maps and sizing the copy are not part of the pause */
  uint64_t expect = (uint64_t)thread_count() * 8192;
  proof_open(expect < q.max_scan ? expect : q.max_scan);
  uint64_t int_ns, wait_ns;
  if (stop_world(q.timeout_ms ? q.timeout_ms : 2000, true, &int_ns, &wait_ns) < 0) goto out;
  uint64_t t2 = now_ns();
  if (read_all_regs() < 0) goto out;
  struct wire_proof pr;
  stack_proof(spans, q.nspans, q.max_scan, &pr);
  pr.held = !pr.proven || (q.flags & STOP_PATCH_HOLD);
  if (out_put(o, &pr, sizeof pr) < 0) goto out;
  if (!pr.held) {
    rc = patch_resume(&ps, q.flags, o);
  } else {
    rc = put_world(o, q.window, int_ns, wait_ns, t2);
  }
out:
  proof_close();
  patch_set_free(&ps);
  free(spans);
  return rc;
}

static int op_syscall(const uint8_t *in, size_t inlen, struct out *o) {
  uint64_t t0 = now_ns();
  if (need(inlen, sizeof(struct wire_syscall)) < 0 || check_usable() < 0) return -1;
  struct wire_syscall q;
  memcpy(&q, in, sizeof q);
  if (q.scratch_len > 4096) return fail("BAD_ARGUMENT", q.tid, "scratch of %llu bytes is over 4096", (unsigned long long)q.scratch_len);
  if (need(inlen, sizeof q + q.scratch_len) < 0) return -1;
  if (q.scratch_len && (q.scratch_arg < 0 || q.scratch_arg > 5)) return fail("BAD_ARGUMENT", q.tid, "scratch argument %d", q.scratch_arg);
  bool here;
  struct thread *t = hold(q.tid, &here);
  if (!t) return -1;
  int rc = -1;
  uint8_t *fbuf = NULL, old[4096 + 16];
  size_t flen;
  int mode;
  uint32_t nf;
  uint64_t fp;
  bool scratch_written = false;
  uint64_t scratch = 0;
  if (seccomp_state(t, &mode, &fbuf, &flen, &nf, &fp) < 0) goto done;
  free(fbuf);
  if (fp != q.seccomp_fingerprint) {
    fail("SECCOMP_UNCHECKED", t->tid,
         "tid %d is under seccomp mode %d with filters (fingerprint 0x%llx) other than the ones this call was "
         "checked against (0x%llx); check again",
         t->tid, mode, (unsigned long long)fp, (unsigned long long)q.seccomp_fingerprint);
    goto done;
  }
  if (txn_before_syscall(q.nr, q.args) < 0) goto done;
  if (q.scratch_len) {
    if (get_regs(t) < 0) goto done;
    /* below the red zone (128 bytes under rsp, psABI 3.2.2), 16-byte aligned */
    scratch = (t->regs.rsp - 128 - q.scratch_len) & ~15ull;
    if (read_text(scratch, old, q.scratch_len) < 0) goto done;
    if (write_text(scratch, in + sizeof q, q.scratch_len) < 0) goto done;
    scratch_written = true;
    q.args[q.scratch_arg] = scratch;
  }
  int64_t ret;
  if (remote_syscall(t, q.nr, q.args, &ret) < 0) goto done;
  txn_after_syscall(q.nr, q.args, ret);
  struct wire_syscall_result r = {ret, t->tid, (uint32_t)((now_ns() - t0) / 1000)};
  rc = out_put(o, &r, sizeof r);
done:
  if (scratch_written) {
    struct wire_error saved;
    char msg[1024];
    save_error(&saved, msg, sizeof msg);
    if (write_text(scratch, old, q.scratch_len) < 0 && rc == 0) {
      rc = -1;
    } else {
      restore_error(&saved, msg);
    }
  }
  unhold(t, here);
  return rc;
}

/* A function call in a thread (remote_call): refused inside a transaction, since what
 * the callee does to memory is nothing a rollback could undo. */
static int op_call(const uint8_t *in, size_t inlen, struct out *o) {
  uint64_t t0 = now_ns();
  if (need(inlen, sizeof(struct wire_call)) < 0 || check_usable() < 0) return -1;
  struct wire_call q;
  memcpy(&q, in, sizeof q);
  if (txn_active())
    return fail("TXN_NO_UNDO", q.tid, "a function call in the target cannot be undone by a rollback: call it outside a transaction");
  if (q.timeout_ms > 60000) return fail("BAD_ARGUMENT", q.tid, "call timeout of %u ms is over 60 s", q.timeout_ms);
  bool here;
  struct thread *t = hold(q.tid, &here);
  if (!t) return -1;
  uint64_t ret = 0;
  int rc = remote_call(t, q.addr, q.args, q.timeout_ms, &ret);
  if (rc == 0) {
    struct wire_call_result r = {ret, t->tid, (uint32_t)((now_ns() - t0) / 1000)};
    rc = out_put(o, &r, sizeof r);
  }
  unhold(t, here);
  return rc;
}

static void goodbye(void) __attribute__((noreturn));

static int dispatch(uint32_t op, const uint8_t *in, size_t inlen, struct out *o) {
  switch (op) {
  case OP_HELLO: {
    struct wire_hello h = {WIRE_VERSION, getpid()};
    return out_put(o, &h, sizeof h);
  }
  case OP_ATTACH: {
    if (need(inlen, sizeof(struct wire_attach)) < 0) return -1;
    struct wire_attach q;
    memcpy(&q, in, sizeof q);
    struct attach_pass pass;
    if (q.flags & ATTACH_PASS) {
      size_t at = sizeof q;
      if (need(inlen, at + sizeof pass.h) < 0) return -1;
      memcpy(&pass.h, in + at, sizeof pass.h);
      if (pass.h.ncand > (1u << 22) || need(inlen, at + sizeof pass.h + 4ull * pass.h.ncand) < 0)
        return fail("BAD_REQUEST", 0, "%u candidates", pass.h.ncand);
      pass.cand = (const int32_t *)(in + at + sizeof pass.h);
    }
    if (attach(q.pid, q.flags, q.flags & ATTACH_PASS ? &pass : NULL) < 0) return -1;
    drain_events();
    threads_compact();
    struct wire_attached a = {S.pid, (uint32_t)thread_count(), (uint32_t)S.nsharers,
                              (S.job_stopped ? ATTACHED_JOB_STOPPED : 0) | (S.sharer_check.full ? ATTACHED_FULL_SCAN : 0) |
                                  (S.sharer_check.stale ? ATTACHED_PASS_STALE : 0),
                              S.sharer_check.seen_pid, S.sharer_check.checked, S.sharer_check.seen_ns};
    if (out_put(o, &a, sizeof a) < 0) return -1;
    for (int i = 0; i < thread_count(); i++)
      if (out_put(o, &thread_at(i)->tid, 4) < 0) return -1;
    return out_put(o, S.sharers, (size_t)S.nsharers * 4);
  }
  case OP_VM_PASS: {
    static struct vm_pass pass;
    if (vm_pass(&pass) < 0) return -1;
    struct wire_vm_pass r = {pass.last_pid, pass.pid_max, (uint32_t)pass.n, pass.kcmps, pass.seen_ns, pass.took_ns, pass.tries,
                            (uint32_t)(pass_gap_ns(pass.pid_max) > UINT32_MAX ? UINT32_MAX : pass_gap_ns(pass.pid_max)),
                            pass.seen_pid, 0};
    if (out_put(o, &r, sizeof r) < 0 || out_put(o, pass.pids, (size_t)pass.n * 4) < 0) return -1;
    return out_put(o, pass.same, (size_t)pass.n);
  }
  case OP_DETACH: {
    uint32_t u;
    int rc = 0;
    struct wire_error saved;
    char msg[1024];
    if (txn_active() && txn_rollback(&u) < 0) {
      rc = -1;
      save_error(&saved, msg, sizeof msg);
    }
    detach_all();
    if (rc < 0) restore_error(&saved, msg);
    return rc;
  }
  case OP_THREADS: {
    if (!S.pid) return fail("NOT_ATTACHED", 0, "not attached to any process");
    drain_events();
    threads_compact();
    uint32_t n = (uint32_t)thread_count();
    if (out_put(o, &n, 4) < 0) return -1;
    for (uint32_t i = 0; i < n; i++) {
      struct wire_thread w = {thread_at((int)i)->tid, thread_flags(thread_at((int)i))};
      if (out_put(o, &w, sizeof w) < 0) return -1;
    }
    return 0;
  }
  case OP_STOP_WORLD:
    return op_stop_world(in, inlen, o);
  case OP_RESUME_ALL: {
    if (check_usable() < 0) return -1;
    if (!S.world_stopped) return fail("NOT_STOPPED", 0, "the world is not stopped");
    if (refuse_live("resuming") < 0) return -1;
    uint64_t t0 = now_ns();
    resume_all();
    uint64_t t1 = now_ns();
    struct wire_resumed r = {t1 - S.pause_start, 0, 0, t1 - t0};
    return out_put(o, &r, sizeof r);
  }
  case OP_PATCH_RESUME:
    return op_patch_resume(in, inlen, o);
  case OP_CALL:
    return op_call(in, inlen, o);
  case OP_STOP_PATCH:
    return op_stop_patch(in, inlen, o);
  case OP_GET_REGS:
  case OP_DEBUG_REGS: {
    if (need(inlen, sizeof(struct wire_tid)) < 0 || check_usable() < 0) return -1;
    struct wire_tid q;
    memcpy(&q, in, sizeof q);
    bool here;
    struct thread *t = hold(q.tid, &here);
    if (!t) return -1;
    int rc;
    if (op == OP_GET_REGS) {
      rc = get_regs(t);
      if (rc == 0) rc = out_put(o, &t->regs, sizeof t->regs);
    } else {
      uint64_t dr[8];
      rc = debug_regs(t, dr);
      if (rc == 0) rc = out_put(o, dr, sizeof dr);
    }
    unhold(t, here);
    return rc;
  }
  case OP_SET_REGS: {
    if (need(inlen, sizeof(struct wire_set_regs)) < 0 || check_usable() < 0) return -1;
    struct wire_set_regs q;
    memcpy(&q, in, sizeof q);
    struct thread *t = thread_find(q.tid);
    if (!t || t->dead) return fail("NO_SUCH_THREAD", q.tid, "tid %d is not a traced thread of pid %d", q.tid, S.pid);
    if (!t->stopped || !(S.world_stopped || t->held))
      return fail("NOT_STOPPED", q.tid, "tid %d is not stopped (stopWorld first)", q.tid);
    if (txn_before_regs(t) < 0) return -1;
    struct user_regs_struct r;
    memcpy(&r, q.regs, sizeof r);
    return set_regs(t, &r);
  }
  case OP_READ: {
    if (need(inlen, 8) < 0 || check_usable() < 0) return -1;
    uint32_t n;
    memcpy(&n, in, 4);
    if (n > (1u << 20) || need(inlen, 8 + (size_t)n * sizeof(struct wire_range)) < 0)
      return fail("BAD_REQUEST", 0, "%u ranges", n);
    const struct wire_range *r = (const struct wire_range *)(in + 8);
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
      total += r[i].len;
      if (r[i].len > WIRE_MAX_MESSAGE || total > WIRE_MAX_MESSAGE / 2)
        return fail("BAD_ARGUMENT", 0, "reading more than %u bytes in one request", WIRE_MAX_MESSAGE / 2);
    }
    size_t goff = o->len;
    if (!out_grow(o, (size_t)n * 8 + total)) return fail("OUT_OF_MEMORY", 0, "out of memory");
    uint64_t *got = calloc(n ? n : 1, 8);
    if (!got) return fail("OUT_OF_MEMORY", 0, "out of memory");
    int rc = read_ranges(r, n, o->p + goff + (size_t)n * 8, got);
    memcpy(o->p + goff, got, (size_t)n * 8);
    free(got);
    return rc;
  }
  case OP_WRITE_DATA:
  case OP_WRITE_TEXT: {
    if (need(inlen, sizeof(struct wire_write)) < 0 || check_usable() < 0) return -1;
    struct wire_write q;
    memcpy(&q, in, sizeof q);
    if (need(inlen, sizeof q + q.len) < 0) return -1;
    if (txn_before_write(q.addr, q.len) < 0) return -1;
    return op == OP_WRITE_DATA ? write_data(q.addr, in + sizeof q, q.len) : write_text(q.addr, in + sizeof q, q.len);
  }
  case OP_SYSCALL:
    return op_syscall(in, inlen, o);
  case OP_SYSCALL_SITE: {
    if (check_usable() < 0 || find_syscall_site() < 0) return -1;
    return out_put(o, &S.syscall_site, 8);
  }
  case OP_SECCOMP: {
    if (need(inlen, sizeof(struct wire_tid)) < 0 || check_usable() < 0) return -1;
    struct wire_tid q;
    memcpy(&q, in, sizeof q);
    bool here;
    struct thread *t = hold(q.tid, &here);
    if (!t) return -1;
    int mode;
    uint8_t *f = NULL;
    size_t flen;
    uint32_t nf;
    uint64_t fp;
    int rc = seccomp_state(t, &mode, &f, &flen, &nf, &fp);
    unhold(t, here);
    if (rc < 0) return -1;
    struct wire_seccomp h = {mode, nf, fp};
    rc = out_put(o, &h, sizeof h);
    if (rc == 0 && flen) rc = out_put(o, f, flen);
    free(f);
    return rc;
  }
  case OP_WAIT_RETURN: {
    if (need(inlen, sizeof(struct wire_wait)) < 0 || check_usable() < 0) return -1;
    struct wire_wait q;
    memcpy(&q, in, sizeof q);
    struct thread *t = thread_find(q.tid);
    if (!t || t->dead) return fail("NO_SUCH_THREAD", q.tid, "tid %d is not a traced thread of pid %d", q.tid, S.pid);
    if (refuse_live("waiting (the world runs meanwhile)") < 0) return -1;
    bool hit, eof;
    uint64_t elapsed, rsp;
    int rc = wait_return(t, q.addr, q.sp, q.timeout_ms, &hit, &elapsed, &rsp, &eof);
    if (eof) goodbye();
    if (rc < 0) return -1;
    struct wire_waited w = {hit, 0, elapsed, rsp};
    return out_put(o, &w, sizeof w);
  }
  case OP_BEGIN:
    if (check_usable() < 0) return -1;
    return txn_begin();
  case OP_COMMIT:
    txn_commit();
    return 0;
  case OP_ROLLBACK: {
    uint32_t u;
    int rc = txn_rollback(&u);
    if (rc < 0) return -1;
    return out_put(o, &u, 4);
  }
  default:
    return fail("BAD_REQUEST", 0, "unknown operation %u", op);
  }
}

/* patchc is gone (EOF), or we were asked to end: leave the target as we found it. */
static void goodbye(void) {
  g_op = "exit";
  if (S.pid) {
    threads_compact();
    uint32_t u;
    if (txn_active() && txn_rollback(&u) < 0) fprintf(stderr, "patchc-tracer: %s\n", Emsg);
    detach_all();
  }
  _exit(0);
}

static void on_alarm(int sig) { (void)sig; }

/* A bug of ours: say so (the kernel detaches every tracee when we die). */
static void on_crash(int sig) {
  char msg[96];
  int n = snprintf(msg, sizeof msg, "patchc-tracer: crashed with signal %d in %s\n", sig, g_op);
  if (write(2, msg, (size_t)n) < 0) _exit(70);
  void *bt[32];
  int k = backtrace(bt, 32);
  backtrace_symbols_fd(bt, k, 2);
  signal(sig, SIG_DFL);
  raise(sig);
}

static int setup(void) {
  /* fds 0-2 must be open: a file opened later must never land on 2 (stderr) */
  for (int fd = 0; fd < 3; fd++)
    if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0) return -1;
  /* nothing inherited but the socket: a pipe we kept open would delay its EOF */
  if (syscall(SYS_close_range, 4, ~0u, 0) < 0)
    for (int fd = 4; fd < 1024; fd++) close(fd);
  struct stat st;
  if (fstat(g_ctl, &st) < 0 || !S_ISSOCK(st.st_mode)) {
    fprintf(stderr, "patchc-tracer: fd 3 is not a socket; this program is started by patchc's addon\n");
    return -1;
  }
  fcntl(g_ctl, F_SETFD, FD_CLOEXEC);
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm; /* no SA_RESTART: a blocking waitpid returns EINTR */
  sigaction(SIGALRM, &sa, NULL);
  signal(SIGSEGV, on_crash);
  signal(SIGBUS, on_crash);
  signal(SIGABRT, on_crash);
  signal(SIGFPE, on_crash);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGQUIT);
  sigprocmask(SIG_BLOCK, &set, NULL);
  g_sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (g_sigfd < 0) {
    perror("patchc-tracer: signalfd");
    return -1;
  }
  char buf[32];
  int fd = open("/proc/sys/kernel/pid_max", O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
  if (fd >= 0) close(fd);
  S.pid_max = n > 0 ? (buf[n] = 0, atoi(buf)) : 4194304;
  if (S.pid_max <= 0) S.pid_max = 4194304;
  S.idx = calloc((size_t)S.pid_max + 1, sizeof *S.idx);
  if (!S.idx) {
    perror("patchc-tracer: calloc");
    return -1;
  }
  return 0;
}

int main(void) {
  if (setup() < 0) return 2;
  struct out o = {0};
  uint8_t *in = NULL;
  size_t incap = 0;
  bool more = false; /* events left undrained: poll without sleeping */
  for (;;) {
    g_op = "tracer";
    struct pollfd pf[2] = {{g_ctl, POLLIN, 0}, {g_sigfd, POLLIN, 0}};
    if (more) {
      more = drain_events();
      threads_compact();
    }
    if (poll(pf, 2, more ? 0 : -1) < 0) {
      if (errno == EINTR) continue;
      goodbye();
    }
    if (pf[1].revents & POLLIN) {
      struct signalfd_siginfo si[16];
      ssize_t n = read(g_sigfd, si, sizeof si);
      bool term = false;
      for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof si[0]; i++)
        if (si[i].ssi_signo != SIGCHLD) term = true;
      more = drain_events();
      threads_compact();
      if (term) goodbye();
    }
    if (!(pf[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    struct wire_req h;
    if (read_full(g_ctl, &h, sizeof h) <= 0) goodbye();
    if (h.len < sizeof h || h.len > WIRE_MAX_MESSAGE) goodbye(); /* not our client */
    size_t inlen = h.len - sizeof h;
    if (inlen > incap) {
      free(in);
      incap = inlen;
      in = malloc(incap);
      if (!in) goodbye();
    }
    if (inlen && read_full(g_ctl, in, inlen) <= 0) goodbye();
    clear_error();
    g_op = h.op < OP__COUNT && op_names[h.op] ? op_names[h.op] : "unknown";
    threads_compact();
    o.len = 0;
    struct wire_rsp rh = {0, 0};
    out_put(&o, &rh, sizeof rh);
    int rc = dispatch(h.op, in, inlen, &o);
    send_reply(&o, rc);
    if (o.cap > (64u << 20)) { /* do not keep a huge reply buffer */
      free(o.p);
      o.p = NULL;
      o.len = o.cap = 0;
    }
  }
}
