/*
 * Transactions of the tracer: a journal of every change made to the target
 * between OP_BEGIN and OP_COMMIT, undone newest first by a rollback (OP_ROLLBACK,
 * or EOF on the socket when patchc dies).
 *
 * What is journaled and how it is undone:
 *
 *   J_MMAP      remote mmap           munmap (a later munmap in the same
 *                                     transaction trims the entry)
 *   J_FD        remote memfd_create   close (a later close drops the entry)
 *   J_MPROTECT  remote mprotect       mprotect back to each old protection
 *                                     (read from /proc/PID/maps before)
 *   J_WRITE     write to memory       the old bytes written back (not recorded
 *               not mapped by us      for memory the transaction mapped: that
 *                                     is unmapped anyway)
 *   J_REGS      register write        the old registers
 *
 * A rollback is exact only if nothing of the target ran through a change it
 * undoes. So inside a transaction the world may not be resumed while the journal
 * holds a "live" change (J_WRITE, J_MPROTECT, J_REGS: changes to what the target
 * already had), and changes that cannot be undone exactly are refused (MAP_FIXED
 * over existing memory, munmap or close of what the target had, other syscalls).
 * patch_resume() (write the jumps, resume) is the commit point of a transaction:
 * it commits before it resumes, in one request, so patchc dying never leaves
 * half of it. Hence the target is left fully old (rolled back) or fully new.
 */
#include "tracer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

enum { J_WRITE, J_MMAP, J_FD, J_MPROTECT, J_REGS };

struct jentry {
  int kind;
  uint64_t addr, len;
  int prot;
  int fd;
  pid_t tid;
  uint8_t *old;
  struct user_regs_struct regs;
};

static struct jentry *J;
static int nj, capj;
static bool active;

/* mprotect's old protections, read before the call, journaled after it */
static struct { uint64_t lo, hi; int prot; } *stash;
static int nstash;

bool txn_active(void) { return active; }

static struct jentry *push(int kind) {
  if (nj == capj) {
    int cap = capj ? capj * 2 : 32;
    struct jentry *nv = realloc(J, (size_t)cap * sizeof *nv);
    if (!nv) return NULL;
    J = nv;
    capj = cap;
  }
  struct jentry *e = &J[nj++];
  memset(e, 0, sizeof *e);
  e->kind = kind;
  return e;
}

static void drop(int i) {
  free(J[i].old);
  memmove(&J[i], &J[i + 1], (size_t)(nj - i - 1) * sizeof *J);
  nj--;
}

void txn_reset(void) {
  for (int i = 0; i < nj; i++) free(J[i].old);
  nj = 0;
  active = false;
  free(stash);
  stash = NULL;
  nstash = 0;
}

int txn_begin(void) {
  if (active) return fail("TXN_OPEN", 0, "a transaction is already open");
  txn_reset();
  active = true;
  return 0;
}

void txn_commit(void) { txn_reset(); }

static uint64_t page_up(uint64_t v) { return (v + 4095) & ~4095ull; }

/* Is [addr, addr + len) inside memory this transaction mapped? */
static bool in_fresh_map(uint64_t addr, uint64_t len) {
  for (int i = 0; i < nj; i++)
    if (J[i].kind == J_MMAP && addr >= J[i].addr && addr + len <= J[i].addr + J[i].len && addr + len >= addr)
      return true;
  return false;
}

static struct jentry *fd_entry(uint64_t fd) {
  for (int i = 0; i < nj; i++)
    if (J[i].kind == J_FD && (uint64_t)J[i].fd == fd) return &J[i];
  return NULL;
}

bool txn_holds_live_changes(uint64_t *where) {
  if (!active) return false;
  for (int i = 0; i < nj; i++)
    if (J[i].kind == J_WRITE || J[i].kind == J_MPROTECT || J[i].kind == J_REGS) {
      *where = J[i].kind == J_REGS ? (uint64_t)J[i].tid : J[i].addr;
      return true;
    }
  return false;
}

int txn_before_write(uint64_t addr, size_t len) {
  if (!active || len == 0 || in_fresh_map(addr, len)) return 0;
  if (!S.world_stopped)
    return fail("TXN_LIVE_WRITE", 0,
                "writing 0x%llx (%zu bytes), memory this transaction did not map, needs the world stopped "
                "inside a transaction",
                (unsigned long long)addr, len);
  uint8_t *old = malloc(len);
  if (!old) return fail("OUT_OF_MEMORY", 0, "out of memory");
  if (read_text(addr, old, len) < 0) {
    free(old);
    return -1;
  }
  struct jentry *e = push(J_WRITE);
  if (!e) {
    free(old);
    return fail("OUT_OF_MEMORY", 0, "out of memory");
  }
  e->addr = addr;
  e->len = len;
  e->old = old;
  return 0;
}

int txn_before_regs(struct thread *t) {
  if (!active) return 0;
  if (get_regs(t) < 0) return -1;
  struct jentry *e = push(J_REGS);
  if (!e) return fail("OUT_OF_MEMORY", t->tid, "out of memory");
  e->tid = t->tid;
  e->regs = t->regs;
  return 0;
}

static int prot_of(const char *perms) {
  return (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
         (perms[2] == 'x' ? PROT_EXEC : 0);
}

/* Old protections of [lo, hi), from /proc/PID/maps, into the stash. */
static int stash_prots(uint64_t lo, uint64_t hi) {
  free(stash);
  stash = NULL;
  nstash = 0;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/maps", S.pid);
  FILE *f = fopen(path, "re");
  if (!f) return fail_sys("open(/proc/PID/maps)", S.pid, errno, NULL);
  char line[512];
  int cap = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long long a, b;
    char perms[8];
    if (sscanf(line, "%llx-%llx %7s", &a, &b, perms) != 3) continue;
    if (b <= lo || a >= hi) continue;
    if (nstash == cap) {
      cap = cap ? cap * 2 : 8;
      void *nv = realloc(stash, (size_t)cap * sizeof *stash);
      if (!nv) {
        fclose(f);
        return fail("OUT_OF_MEMORY", 0, "out of memory");
      }
      stash = nv;
    }
    stash[nstash].lo = a < lo ? lo : a;
    stash[nstash].hi = b > hi ? hi : b;
    stash[nstash].prot = prot_of(perms);
    nstash++;
  }
  fclose(f);
  return 0;
}

int txn_before_syscall(uint64_t nr, const uint64_t a[6]) {
  if (!active) return 0;
  switch (nr) {
  case SYS_mmap:
    if (a[3] & MAP_FIXED)
      return fail("TXN_NO_UNDO", 0,
                  "mmap with MAP_FIXED would replace memory a rollback cannot restore; use MAP_FIXED_NOREPLACE");
    return 0;
  case SYS_munmap:
    if (!in_fresh_map(a[0], page_up(a[1])))
      return fail("TXN_NO_UNDO", 0,
                  "munmap of 0x%llx (%llu bytes), memory this transaction did not map, cannot be undone",
                  (unsigned long long)a[0], (unsigned long long)a[1]);
    return 0;
  case SYS_mprotect:
    if (in_fresh_map(a[0], page_up(a[1]))) {
      nstash = 0;
      return 0;
    }
    return stash_prots(a[0], a[0] + page_up(a[1]));
  case SYS_memfd_create:
    return 0;
  case SYS_close:
  case SYS_ftruncate:
    if (!fd_entry(a[0]))
      return fail("TXN_NO_UNDO", 0, "%s of fd %llu, which this transaction did not create, cannot be undone",
                  nr == SYS_close ? "close" : "ftruncate", (unsigned long long)a[0]);
    return 0;
  default:
    return fail("TXN_NO_UNDO", 0,
                "syscall %llu has no undo known to a rollback: run it outside a transaction",
                (unsigned long long)nr);
  }
}

/* Removes [lo, hi) from the J_MMAP entries (munmap inside the transaction). */
static void trim_maps(uint64_t lo, uint64_t hi) {
  for (int i = 0; i < nj; i++) {
    struct jentry *e = &J[i];
    if (e->kind != J_MMAP) continue;
    uint64_t a = e->addr, b = e->addr + e->len;
    if (hi <= a || lo >= b) continue;
    if (lo <= a && hi >= b) {
      drop(i--);
    } else if (lo <= a) {
      e->addr = hi;
      e->len = b - hi;
    } else if (hi >= b) {
      e->len = lo - a;
    } else {
      e->len = lo - a;
      struct jentry *n = push(J_MMAP);
      if (n) {
        n->addr = hi;
        n->len = b - hi;
      }
    }
  }
}

void txn_after_syscall(uint64_t nr, const uint64_t a[6], int64_t ret) {
  if (!active) return;
  if (ret < 0 && ret > -4096) return; /* failed: nothing changed */
  switch (nr) {
  case SYS_mmap: {
    struct jentry *e = push(J_MMAP);
    if (e) {
      e->addr = (uint64_t)ret;
      e->len = page_up(a[1]);
    }
    break;
  }
  case SYS_munmap:
    trim_maps(a[0], a[0] + page_up(a[1]));
    break;
  case SYS_mprotect:
    for (int i = 0; i < nstash; i++) {
      struct jentry *e = push(J_MPROTECT);
      if (!e) break;
      e->addr = stash[i].lo;
      e->len = stash[i].hi - stash[i].lo;
      e->prot = stash[i].prot;
    }
    nstash = 0;
    break;
  case SYS_memfd_create: {
    struct jentry *e = push(J_FD);
    if (e) e->fd = (int)ret;
    break;
  }
  case SYS_close:
    for (int i = 0; i < nj; i++)
      if (J[i].kind == J_FD && (uint64_t)J[i].fd == a[0]) {
        drop(i);
        break;
      }
    break;
  }
}

/* Undoes the journal newest first. The world is stopped for it (and resumed
 * after when it was running); the remote syscalls of the undo run in the first
 * stopped thread. Every entry is tried; the first failure is reported. */
int txn_rollback(uint32_t *undone) {
  *undone = 0;
  if (!active) return 0;
  if (S.execed) { txn_reset(); return 0; } /* execve replaced the memory: nothing to undo, and no remote syscall may run (the syscall site is the old program's) */
  if (nj == 0) {
    txn_reset();
    return 0;
  }
  int rc = 0;
  struct wire_error first;
  char first_msg[1024];
  bool have_first = false;
  bool stopped_here = false;
  if (!S.world_stopped && check_usable() == 0) {
    uint64_t a, b;
    if (stop_world(2000, false, &a, &b) == 0) stopped_here = true;
  }
  struct thread *t = any_stopped_thread();
  for (int i = nj - 1; i >= 0; i--) {
    struct jentry *e = &J[i];
    int r = 0;
    int64_t ret = 0;
    uint64_t args[6] = {0};
    switch (e->kind) {
    case J_WRITE:
      r = write_text(e->addr, e->old, e->len);
      break;
    case J_REGS: {
      struct thread *x = thread_find(e->tid);
      if (x && !x->dead && x->stopped) r = set_regs(x, &e->regs);
      break;
    }
    case J_MPROTECT:
    case J_FD:
    case J_MMAP:
      if (!t) {
        r = fail("ROLLBACK_NO_THREAD", S.pid, "no stopped thread to run the undo syscalls in");
        break;
      }
      if (e->kind == J_MPROTECT) {
        args[0] = e->addr, args[1] = e->len, args[2] = (uint64_t)e->prot;
        r = remote_syscall(t, SYS_mprotect, args, &ret);
      } else if (e->kind == J_FD) {
        args[0] = (uint64_t)e->fd;
        r = remote_syscall(t, SYS_close, args, &ret);
      } else {
        args[0] = e->addr, args[1] = e->len;
        r = remote_syscall(t, SYS_munmap, args, &ret);
      }
      if (r == 0 && ret < 0 && ret > -4096)
        r = fail_sys(e->kind == J_MPROTECT ? "mprotect (remote)" : e->kind == J_FD ? "close (remote)" : "munmap (remote)",
                     t->tid, (int)-ret, "undoing a journal entry at 0x%llx", (unsigned long long)e->addr);
      break;
    }
    if (r < 0) {
      rc = -1;
      if (!have_first) {
        save_error(&first, first_msg, sizeof first_msg);
        have_first = true;
      }
    } else {
      (*undone)++;
    }
  }
  txn_reset();
  if (stopped_here) resume_all();
  if (have_first) restore_error(&first, first_msg);
  return rc;
}
