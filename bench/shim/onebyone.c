/*
 * The reference of bench/shim: plain one-by-one ptrace, the way a debugger or a
 * simple live patcher does it, from one thread, measured in the same run as the
 * shim on the same target.
 *
 *   onebyone stop <pid> <rounds> [budget ms]
 *                                       per round: for each thread PTRACE_INTERRUPT,
 *                                       waitpid, PTRACE_GETREGS; then PTRACE_CONT each.
 *                                       A round over the budget is cut short: the
 *                                       line is then "partial <threads stopped> <ns>"
 *   onebyone mmap <pid> <site> <rounds> remote mmap in the stopped main thread: save
 *                                       registers, set them, PTRACE_SINGLESTEP over the
 *                                       `syscall` at <site>, read the result, restore
 *   onebyone write <pid> <addr> <bytes> PTRACE_POKEDATA, 8 bytes at a time, into the
 *                                       stopped main thread
 *
 * Prints one line: "ns <sample> <sample> ..." (nanoseconds per round or operation).
 * With ONEBYONE_FIFO=1 in the environment it runs SCHED_FIFO (priority 1), as the
 * shim's tracer does while the world is stopped: the same priority, one by one.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <sched.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pid_t tids[8192];
static int n;

static uint64_t now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int has(pid_t t) {
  for (int i = 0; i < n; i++)
    if (tids[i] == t) return 1;
  return 0;
}

/* seize every thread; the bench's targets create no threads once ready */
static void seize(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", pid);
  for (int changed = 1; changed;) {
    changed = 0;
    DIR *d = opendir(path);
    if (!d) exit(2);
    struct dirent *e;
    while ((e = readdir(d))) {
      pid_t t = atoi(e->d_name);
      if (t <= 0 || has(t)) continue;
      if (ptrace(PTRACE_SEIZE, t, 0, 0) == 0) {
        tids[n++] = t;
        changed = 1;
      }
    }
    closedir(d);
  }
}

static void stop1(pid_t t) {
  int st;
  ptrace(PTRACE_INTERRUPT, t, 0, 0);
  while (waitpid(t, &st, __WALL) < 0 && errno == EINTR) {
  }
}

static void report(uint64_t *v, int k) {
  printf("ns");
  for (int i = 0; i < k; i++) printf(" %llu", (unsigned long long)v[i]);
  printf("\n");
}

/* The kernel detaches every tracee when its tracer exits (running ones simply run
   on): faster than stopping each again to PTRACE_DETACH it, which for busy threads
   would take as long as a round. */
static void detach_all(void) {}

int main(int argc, char **argv) {
  if (argc < 4) return 2;
  if (getenv("ONEBYONE_FIFO")) {
    struct sched_param sp = {.sched_priority = 1};
    if (sched_setscheduler(0, SCHED_FIFO, &sp)) perror("onebyone: SCHED_FIFO");
  }
  pid_t pid = atoi(argv[2]);
  seize(pid);
  static uint64_t v[4096];
  if (strcmp(argv[1], "stop") == 0) {
    int rounds = atoi(argv[3]);
    uint64_t budget = argc > 4 ? strtoull(argv[4], NULL, 10) * 1000000ull : ~0ull;
    for (int r = 0; r < rounds; r++) {
      struct user_regs_struct regs;
      uint64_t t0 = now();
      int i;
      for (i = 0; i < n && now() - t0 < budget; i++) {
        stop1(tids[i]);
        ptrace(PTRACE_GETREGS, tids[i], 0, &regs);
      }
      for (int k = 0; k < i; k++) ptrace(PTRACE_CONT, tids[k], 0, 0);
      v[r] = now() - t0;
      if (i < n) {
        printf("partial %d %llu\n", i, (unsigned long long)v[r]);
        detach_all();
        return 0;
      }
      usleep(5000);
    }
    report(v, rounds);
  } else if (strcmp(argv[1], "mmap") == 0) {
    unsigned long site = strtoul(argv[3], NULL, 16);
    int rounds = atoi(argv[4]);
    stop1(pid);
    for (int r = 0; r < rounds; r++) {
      struct user_regs_struct saved, x;
      int st;
      uint64_t t0 = now();
      ptrace(PTRACE_GETREGS, pid, 0, &saved);
      x = saved;
      x.rax = 9, x.orig_rax = (unsigned long long)-1, x.rip = site;
      x.rdi = 0, x.rsi = 4096, x.rdx = 5, x.r10 = 0x22, x.r8 = (unsigned long long)-1, x.r9 = 0;
      ptrace(PTRACE_SETREGS, pid, 0, &x);
      ptrace(PTRACE_SINGLESTEP, pid, 0, 0);
      waitpid(pid, &st, __WALL);
      ptrace(PTRACE_GETREGS, pid, 0, &x);
      unsigned long addr = x.rax;
      ptrace(PTRACE_SETREGS, pid, 0, &saved);
      v[r] = now() - t0;
      /* munmap it again (not timed) */
      x = saved;
      x.rax = 11, x.orig_rax = (unsigned long long)-1, x.rip = site, x.rdi = addr, x.rsi = 4096;
      ptrace(PTRACE_SETREGS, pid, 0, &x);
      ptrace(PTRACE_SINGLESTEP, pid, 0, 0);
      waitpid(pid, &st, __WALL);
      ptrace(PTRACE_SETREGS, pid, 0, &saved);
      if ((long)addr < 0 && (long)addr > -4096) {
        fprintf(stderr, "onebyone: remote mmap failed: %ld\n", (long)addr);
        return 3;
      }
    }
    ptrace(PTRACE_CONT, pid, 0, 0);
    report(v, rounds);
  } else if (strcmp(argv[1], "write") == 0) {
    unsigned long addr = strtoul(argv[3], NULL, 16);
    unsigned long bytes = strtoul(argv[4], NULL, 10);
    stop1(pid);
    for (int r = 0; r < 3; r++) {
      uint64_t t0 = now();
      for (unsigned long o = 0; o < bytes; o += 8)
        if (ptrace(PTRACE_POKEDATA, pid, addr + o, (void *)(o * 0x9e3779b97f4a7c15ul)) < 0) {
          perror("onebyone: PTRACE_POKEDATA");
          return 3;
        }
      v[r] = now() - t0;
    }
    ptrace(PTRACE_CONT, pid, 0, 0);
    report(v, 3);
  }
  detach_all();
  return 0;
}
