/*
 * The stack proof inside the pause (OP_STOP_PATCH, shim/proto.h).
 *
 * Why it is in the tracer: the precise check (src/apply/safety.ts, the core's
 * unwinder) runs in patchc, and handing it the stopped world and taking its answer
 * back costs a round trip between two processes (socket, two wakeups) that was the
 * largest single part of a short pause (~0.2 ms of ~0.6 ms). Most stops need no
 * precision: no stack word at all points into what is being replaced. The tracer
 * proves that much itself, with no policy of its own: patchc hands it "spans"
 * (closed intervals [lo, hi] of return addresses) and the tracer only answers
 * whether any word of any thread's live stack, or any thread's pc + 1 (a pc counts
 * as the return address just after it, so a function [lo, hi) is the span
 * [lo + 1, hi] for both), lies inside one. If none does, it is safe
 * by construction and the tracer patches and resumes at once; otherwise (or when it
 * cannot see a whole stack) it keeps the world stopped and replies with the world,
 * and patchc decides precisely, as it did before.
 *
 * Why the word scan is sound (x86-64, System V psABI 3.2.2 and 3.7):
 * - `call` pushes the return address at the new rsp, and rsp stays 8-byte aligned
 *   in code that follows the ABI (16-byte aligned at each call), so every return
 *   address of a thread's frames is an aligned word in [rsp, base of its stack).
 *   An rsp that is not 8-byte aligned is not proven (no claim is made).
 * - Where a thread's frames are: the main thread's (tid = tgid) in the mapping the
 *   kernel names [stack], from rsp to its end (the kernel grows it as one VMA, the
 *   environment and auxv at its top); any other thread's between rsp and its thread
 *   pointer (fs_base): glibc and musl put the thread's control block at the top of
 *   its stack mapping and its static TLS just below (x86-64 TLS variant II,
 *   TLS_TCB_AT_TP), and the stack starts below that. A thread elsewhere (rsp above
 *   fs_base, the main thread outside [stack]: a sigaltstack, a coroutine's or green
 *   thread's stack) is not proven, nor one whose span is unreadable (a gap) or
 *   longer than the caller allows: patchc's unwinding follows such stacks.
 * - A signal handler's frame holds the address of a sigreturn trampoline (the
 *   rt_sigframe's pretcode); the stack it interrupted may be elsewhere. patchc
 *   passes the trampolines it knows (CFI 'S' frames, `mov $15,%rax; syscall`) as
 *   spans, so a stack with a signal frame is never proven here. What neither rule
 *   sees: a handler whose restorer patchc does not know, running on an alternate
 *   stack carved out of the same thread's own stack above the frames it interrupted.
 * - The main thread's mapping is read in the pause (every thread of the address
 *   space is stopped, so it cannot change): PROCMAP_QUERY (Linux 6.11+) on an fd of
 *   /proc/PID/maps opened before the stop, else the text of /proc/PID/maps.
 *   Note: such an fd reads the mm the process had when it was opened (proc_mem_open
 *   takes the mm at open), so it is opened per request, never kept across an exec.
 * Coroutine stacks that are not running are invisible here as they are to any
 * scan (the issue says so for revert); the precise check does no better.
 */
#include "tracer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* include/uapi/linux/fs.h (Linux 6.11): not in the headers of older distributions */
#define PROCMAP_QUERY_IOCTL 0xC0686611u /* _IOWR('f', 17, struct procmap_query) */
#define PROCMAP_VMA_WRITABLE 0x02u
#define STACK_NAME "[stack]"
struct procmap_query {
  uint64_t size;
  uint64_t query_flags;
  uint64_t query_addr;
  uint64_t vma_start;
  uint64_t vma_end;
  uint64_t vma_flags;
  uint64_t vma_page_size;
  uint64_t vma_offset;
  uint64_t inode;
  uint32_t dev_major;
  uint32_t dev_minor;
  uint32_t vma_name_size;
  uint32_t build_id_size;
  uint64_t vma_name_addr;
  uint64_t build_id_addr;
};

/* The mappings, as the proof sees them: through the ioctl, or parsed from the text. */
struct vmas {
  int fd;            /* /proc/PID/maps, opened before the stop; -1 if it could not be */
  bool no_query;     /* the kernel has no PROCMAP_QUERY: use the text */
  int n, cap;
  uint64_t (*v)[4];  /* lo, hi, writable, named [stack]: from the text, sorted by lo */
};

static struct vmas V = {-1, false, 0, 0, NULL};

/* The stacks' copy: kept between requests and touched before the stop, so the
 * pause does not fault in fresh pages of the tracer's own memory (about 1 us each). */
static uint8_t *B;
static size_t Bcap;

static uint8_t *scan_buffer(size_t n) {
  if (n <= Bcap) return B;
  size_t cap = Bcap ? Bcap : 65536;
  while (cap < n) cap *= 2;
  uint8_t *nb = realloc(B, cap);
  if (!nb) return NULL;
  memset(nb + Bcap, 0, cap - Bcap);
  B = nb;
  Bcap = cap;
  return B;
}

void proof_open(uint64_t expect) {
  proof_close();
  scan_buffer(expect);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/maps", S.pid);
  V.fd = open(path, O_RDONLY | O_CLOEXEC);
}

void proof_close(void) {
  if (V.fd >= 0) close(V.fd);
  V.fd = -1;
  V.no_query = false;
  V.n = 0;
}

static int read_text_maps(void) {
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  if (!buf) return -1;
  if (lseek(V.fd, 0, SEEK_SET) < 0) {
    free(buf);
    return -1;
  }
  for (;;) {
    if (len + 4096 > cap) {
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        return -1;
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t r = read(V.fd, buf + len, cap - len - 1);
    if (r < 0) {
      free(buf);
      return -1;
    }
    if (r == 0) break;
    len += (size_t)r;
  }
  buf[len] = 0;
  V.n = 0;
  for (char *l = buf; l < buf + len;) {
    char *eol = strchr(l, '\n');
    if (!eol) eol = buf + len;
    unsigned long long lo, hi;
    char perms[8];
    int name = 0;
    if (sscanf(l, "%llx-%llx %7s %*s %*s %*s %n", &lo, &hi, perms, &name) == 3) {
      if (V.n == V.cap) {
        int nc = V.cap ? V.cap * 2 : 256;
        void *nv = realloc(V.v, (size_t)nc * sizeof *V.v);
        if (!nv) {
          free(buf);
          return -1;
        }
        V.v = nv;
        V.cap = nc;
      }
      V.v[V.n][0] = lo;
      V.v[V.n][1] = hi;
      V.v[V.n][2] = perms[1] == 'w';
      V.v[V.n][3] = name > 0 && (size_t)(eol - (l + name)) == strlen(STACK_NAME) && !memcmp(l + name, STACK_NAME, strlen(STACK_NAME));
      V.n++;
    }
    l = eol + 1;
  }
  free(buf);
  return 0;
}

/* The mapping holding addr: 1 found, 0 none, -1 the mappings could not be read.
 * *is_stack (when asked): the kernel names it [stack]. */
static int vma_at(uint64_t addr, uint64_t *lo, uint64_t *hi, bool *writable, bool *is_stack) {
  if (V.fd < 0) return -1;
  if (!V.no_query) {
    struct procmap_query q;
    char name[sizeof STACK_NAME + 1];
    memset(&q, 0, sizeof q);
    q.size = sizeof q;
    q.query_addr = addr;
    if (is_stack) {
      q.vma_name_addr = (uint64_t)(uintptr_t)name;
      q.vma_name_size = sizeof name;
    }
    int r = ioctl(V.fd, PROCMAP_QUERY_IOCTL, &q);
    bool named = is_stack != NULL;
    if (r < 0 && named && errno == ENAMETOOLONG) {
      /* a name longer than the buffer: not [stack]; the mapping without its name */
      named = false;
      q.vma_name_addr = 0;
      q.vma_name_size = 0;
      r = ioctl(V.fd, PROCMAP_QUERY_IOCTL, &q);
    }
    if (r == 0) {
      *lo = q.vma_start;
      *hi = q.vma_end;
      *writable = (q.vma_flags & PROCMAP_VMA_WRITABLE) != 0;
      if (is_stack) *is_stack = named && q.vma_name_size == sizeof STACK_NAME && !memcmp(name, STACK_NAME, sizeof STACK_NAME);
      return 1;
    }
    if (errno == ENOENT) return 0;
    if (errno != ENOTTY && errno != EINVAL) return -1;
    V.no_query = true;
    if (read_text_maps() < 0) return -1;
  }
  int a = 0, b = V.n;
  while (a < b) {
    int m = (a + b) / 2;
    if (V.v[m][1] <= addr) a = m + 1;
    else b = m;
  }
  if (a == V.n || V.v[a][0] > addr) return 0;
  *lo = V.v[a][0];
  *hi = V.v[a][1];
  *writable = V.v[a][2] != 0;
  if (is_stack) *is_stack = V.v[a][3] != 0;
  return 1;
}

/* Is v inside one of the n sorted, disjoint closed spans? */
static bool in_spans(const struct wire_span *s, uint32_t n, uint64_t v) {
  uint32_t a = 0, b = n;
  while (a < b) {
    uint32_t m = (a + b) / 2;
    if (s[m].hi < v) a = m + 1;
    else b = m;
  }
  return a < n && s[a].lo <= v;
}

static void unproven(struct wire_proof *p, uint32_t reason, pid_t tid, uint64_t addr, uint64_t where) {
  p->proven = 0;
  p->reason = reason;
  p->tid = tid;
  p->addr = addr;
  p->where = where;
}

int stack_proof(const struct wire_span *spans, uint32_t nspans, uint64_t max_scan, struct wire_proof *p) {
  uint64_t t0 = now_ns();
  memset(p, 0, sizeof *p);
  p->proven = 1;
  int n = thread_count();
  if (nspans == 0) goto done;
  uint64_t minv = spans[0].lo, maxv = spans[nspans - 1].hi;
  /* the pcs first: no memory to read */
  for (int i = 0; i < n; i++) {
    struct thread *t = thread_at(i);
    if (t->dead) continue;
    if (!t->regs_valid) {
      unproven(p, PROOF_NO_REGS, t->tid, 0, 0);
      goto done;
    }
    if (in_spans(spans, nspans, t->regs.rip + 1)) {
      unproven(p, PROOF_PC, t->tid, t->regs.rip, 0);
      goto done;
    }
  }
  /* each thread's live stack: rsp to the end of its writable mapping(s) */
  struct wire_range *r = calloc((size_t)(n ? n : 1), sizeof *r);
  pid_t *tids = calloc((size_t)(n ? n : 1), sizeof *tids);
  uint64_t *got = calloc((size_t)(n ? n : 1), sizeof *got);
  uint8_t *buf = NULL;
  int k = 0;
  uint64_t total = 0;
  if (!r || !tids || !got) {
    unproven(p, PROOF_NO_MEMORY, 0, 0, 0);
    goto out;
  }
  for (int i = 0; i < n; i++) {
    struct thread *t = thread_at(i);
    if (t->dead) continue;
    uint64_t sp = t->regs.rsp, top;
    if (sp & 7) {
      unproven(p, PROOF_UNALIGNED, t->tid, sp, 0);
      goto out;
    }
    if (t->tid == t->tgid) {
      /* the main thread: its frames lie in [stack], which the kernel keeps as one VMA */
      uint64_t lo;
      bool w, named_stack = false;
      int f = vma_at(sp, &lo, &top, &w, &named_stack);
      if (f < 0) {
        unproven(p, PROOF_NO_MAPS, t->tid, sp, 0);
        goto out;
      }
      if (f == 0 || !w) {
        unproven(p, PROOF_NO_STACK, t->tid, sp, 0);
        goto out;
      }
      if (!named_stack) {
        unproven(p, PROOF_OFF_STACK, t->tid, sp, 0);
        goto out;
      }
    } else {
      /* another thread: its frames lie below its thread pointer (the TCB at the top
         of its stack mapping, the static TLS just below it); a stack elsewhere
         leaves rsp above fs_base or the span unreadable or too long */
      top = t->regs.fs_base;
      if (top <= sp) {
        unproven(p, PROOF_OFF_STACK, t->tid, sp, 0);
        goto out;
      }
    }
    total += top - sp;
    if (top - sp > max_scan || total > max_scan) {
      unproven(p, PROOF_TOO_MUCH, t->tid, sp, total);
      goto out;
    }
    r[k].addr = sp;
    r[k].len = top - sp;
    tids[k] = t->tid;
    k++;
  }
  buf = scan_buffer(total);
  if (!buf) {
    unproven(p, PROOF_NO_MEMORY, 0, 0, 0);
    goto out;
  }
  if (read_ranges_plain(r, (uint32_t)k, buf, got) < 0) {
    unproven(p, PROOF_UNREADABLE, 0, 0, 0);
    clear_error();
    goto out;
  }
  p->scanned = total;
  uint64_t off = 0;
  for (int i = 0; i < k; i++) {
    if (got[i] != r[i].len) {
      unproven(p, PROOF_UNREADABLE, tids[i], r[i].addr + got[i], 0);
      goto out;
    }
    const uint8_t *b = buf + off;
    for (uint64_t j = 0; j + 8 <= r[i].len; j += 8) {
      uint64_t v;
      memcpy(&v, b + j, 8);
      if (v < minv || v > maxv) continue;
      if (in_spans(spans, nspans, v)) {
        unproven(p, PROOF_WORD, tids[i], v, r[i].addr + j);
        goto out;
      }
    }
    off += r[i].len;
  }
out:
  free(r);
  free(tids);
  free(got);
done:
  p->scan_ns = now_ns() - t0;
  return 0;
}
