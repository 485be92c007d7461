/*
 * The target of bench/shim: N threads that sleep (blocked in pthread_cond_wait,
 * like the idle workers of a server) or spin (busy), plus the main thread
 * blocked in read(0). It maps 1 MiB readable and executable for the write bench
 * and prints "ready <address of that region>".
 *
 *   target sleep|busy N
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static volatile int started;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void *sleeper(void *a) {
  (void)a;
  __atomic_add_fetch(&started, 1, __ATOMIC_RELAXED);
  pthread_mutex_lock(&mu);
  for (;;) pthread_cond_wait(&cv, &mu); /* never signalled */
  return NULL;
}

static void *spinner(void *a) {
  (void)a;
  __atomic_add_fetch(&started, 1, __ATOMIC_RELAXED);
  for (volatile unsigned long i = 0;; i++) {
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  int busy = strcmp(argv[1], "busy") == 0, n = atoi(argv[2]);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  for (int i = 0; i < n; i++) {
    pthread_t t;
    if (pthread_create(&t, &attr, busy ? spinner : sleeper, NULL)) return 3;
  }
  while (__atomic_load_n(&started, __ATOMIC_RELAXED) < n) usleep(1000);
  void *region = mmap(NULL, 1 << 20, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (region == MAP_FAILED) return 4;
  printf("ready %lx\n", (unsigned long)region);
  fflush(stdout);
  char c;
  while (read(0, &c, 1) > 0) {
  }
  return 0;
}
