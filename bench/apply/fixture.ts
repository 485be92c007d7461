// The fixture server of bench/apply, its patches and the C helpers, compiled at bench time.
//
// server.c (generated): 100 small functions f0..f99, called through a table by N worker
// threads that either sleep (each call followed by a 50 ms nanosleep: blocked in a
// syscall nearly all the time) or spin (a busy loop of some 30 microseconds between two
// calls, so a thread is inside an f only a few hundredths of a percent of the time and
// whole-function consistency rarely has to wait), plus the main thread blocked in read(0).
//
//   server sleep|busy N      prints "ready" once every worker runs
//
// Patch K (1, 10, 100) changes f0..f(K-1) (another constant); each package is made by
// the real `patchc build --orig old/server.o --patched newK/server.o --target server`.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { main as patchc } from "../../src/cli/main.js";

export const FUNCTIONS = 100;
const CFLAGS = ["-O2", "-g0", "-fPIE", "-ffunction-sections", "-fdata-sections", "-Wall"];

/** The server's source with f0..f(changed-1) in their fixed version. */
export function serverSource(changed: number): string {
  const fs: string[] = [];
  for (let i = 0; i < FUNCTIONS; i++) {
    const c = 1000 + i + (i < changed ? 7 : 0);
    fs.push(`__attribute__((noinline)) long f${i}(long x) { long s = x ^ ${i}; for (int i = 0; i < 3; i++) s = s * 31 + ${c}; return s ^ (s >> 7); }`);
  }
  return `#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

${fs.join("\n")}

long (*table[${FUNCTIONS}])(long) = { ${Array.from({ length: FUNCTIONS }, (_, i) => `f${i}`).join(", ")} };
volatile long sink;
static volatile int started;

static void *sleeper(void *a) {
  long k = (long)a, acc = 0;
  __atomic_add_fetch(&started, 1, __ATOMIC_RELAXED);
  for (;;) {
    acc += table[k++ % ${FUNCTIONS}](acc);
    sink = acc;
    struct timespec ts = { 0, 50 * 1000 * 1000 };
    nanosleep(&ts, NULL);
  }
  return NULL;
}

static void *spinner(void *a) {
  long k = (long)a, acc = 0;
  __atomic_add_fetch(&started, 1, __ATOMIC_RELAXED);
  for (;;) {
    for (volatile int j = 0; j < 20000; j++) {
    }
    acc += table[k++ % ${FUNCTIONS}](acc);
    sink = acc;
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
    if (pthread_create(&t, &attr, busy ? spinner : sleeper, (void *)(long)i)) return 3;
  }
  while (__atomic_load_n(&started, __ATOMIC_RELAXED) < n) usleep(1000);
  printf("ready\\n");
  fflush(stdout);
  char c;
  while (read(0, &c, 1) > 0) {
  }
  return 0;
}
`;
}

export interface Fixtures {
  dir: string;
  server: string;
  monitor: string;
  floor: string;
  /** package file per number of changed functions */
  packages: Map<number, string>;
}

function gcc(args: string[]): void {
  execFileSync("gcc", args, { stdio: ["ignore", "inherit", "inherit"] });
}

export async function buildFixtures(counts: number[]): Promise<Fixtures> {
  const dir = mkdtempSync(join(tmpdir(), "patchc-bench-apply-"));
  const monitor = join(dir, "pause-monitor.so");
  gcc(["-O2", "-Wall", "-shared", "-fPIC", "-o", monitor, "bench/apply/pause-monitor.c", "-lpthread"]);
  const floor = join(dir, "floor");
  gcc(["-O2", "-Wall", "-o", floor, "bench/apply/floor.c"]);
  mkdirSync(join(dir, "old"));
  writeFileSync(join(dir, "old/server.c"), serverSource(0));
  gcc([...CFLAGS, "-c", join(dir, "old/server.c"), "-o", join(dir, "old/server.o")]);
  const server = join(dir, "server");
  gcc(["-pie", "-Wl,--build-id", "-pthread", join(dir, "old/server.o"), "-o", server]);
  const packages = new Map<number, string>();
  for (const k of counts) {
    const d = join(dir, `new${k}`);
    mkdirSync(d);
    writeFileSync(join(d, "server.c"), serverSource(k));
    gcc([...CFLAGS, "-c", join(d, "server.c"), "-o", join(d, "server.o")]);
    const out = join(dir, `fix${k}.patch`);
    let err = "";
    const code = await patchc(["build", "--orig", join(dir, "old/server.o"), "--patched", join(d, "server.o"), "--target", server, "-o", out, "--id", `bench-${k}`], {
      out: () => {},
      err: (t) => void (err += t),
      isTTY: false,
    });
    if (code !== 0) throw new Error(`patchc build of the ${k}-function patch failed (${code}): ${err}`);
    packages.set(k, out);
  }
  return { dir, server, monitor, floor, packages };
}
