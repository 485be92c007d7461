// Tracer.call: a function called inside a live thread (how resolve asks an IFUNC resolver),
// the thread restored exactly. The fixture's thread sits in read(2) with a pattern in
// %xmm5 that it checks when the read returns: after calls that return, clobber registers
// (against the ABI), try a syscall, fault, spin past the timeout, the read must still get
// its data (no EINTR) with %xmm5 intact, and the registers read through ptrace must be
// what they were.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { Tracer, ShimError } from "../src/shim/index.js";
import { Scratch } from "./helpers/gcc.js";
import { rejected } from "./helpers/thrown.js";

const FIXTURE_C = `
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
long add3(long a, long b, long c) { return a * 100 + b * 10 + c; }
long do_getpid(void) { return syscall(SYS_getpid); }
void spin(void) { for (;;) __asm__ volatile(""); }
/* breaks the ABI on purpose: callee-saved and vector registers clobbered, not restored */
__asm__(".globl clobber\\n.type clobber,@function\\nclobber:\\n"
        "  xor %ebx, %ebx\\n  xor %ebp, %ebp\\n  xor %r12d, %r12d\\n  xor %r15d, %r15d\\n"
        "  pxor %xmm0, %xmm0\\n  pxor %xmm5, %xmm5\\n  mov $7, %eax\\n  ret\\n");
long clobber(void);
/* read(2) with a pattern in %xmm5 across the syscall: *kept says whether it survived */
static long read_keep(int fd, void *buf, long n, int *kept) {
  unsigned long pat = 0x1122334455667788ul, got;
  long ret;
  __asm__ volatile("movq %[p], %%xmm5\\n\\tmov $0, %%eax\\n\\tsyscall\\n\\tmovq %%xmm5, %[g]\\n"
                   : "=&a"(ret), [g] "=&r"(got)
                   : [p] "r"(pat), "D"((long)fd), "S"(buf), "d"(n)
                   : "rcx", "r11", "memory", "xmm5");
  *kept = got == pat;
  return ret;
}
int main(void) {
  printf("add3 %p\\nclobber %p\\ngetpid %p\\nspin %p\\nready\\n", (void *)add3, (void *)clobber, (void *)do_getpid, (void *)spin);
  fflush(stdout);
  for (;;) {
    char buf[64];
    int kept;
    long n = read_keep(0, buf, sizeof buf - 1, &kept);
    if (n <= 0) { printf("read %ld\\n", n); fflush(stdout); if (n == 0) return 0; continue; }
    buf[n] = 0;
    printf("got %ld %s xmm5 %s\\n", n, strtok(buf, "\\n"), kept ? "kept" : "LOST");
    fflush(stdout);
  }
}
`;

let scratch: Scratch;
let child: ChildProcess;
let tracer: Tracer;
const fn = new Map<string, bigint>();
let out = "";

async function line(match: RegExp): Promise<string> {
  for (let i = 0; i < 500; i++) {
    const m = match.exec(out);
    if (m) {
      out = out.slice(m.index + m[0].length);
      return m[0];
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no ${match} in ${JSON.stringify(out)}`);
}

beforeAll(async () => {
  scratch = new Scratch();
  const exe = scratch.gcc(FIXTURE_C, "call-fixture", ["-O2"]);
  child = spawn(exe, [], { stdio: ["pipe", "pipe", "inherit"] });
  child.stdout!.on("data", (d: Buffer) => void (out += d.toString()));
  const head = await line(/^[^]*ready\n/);
  // the fixture prints its functions' addresses first
  for (const l of head.split("\n")) {
    const [name, addr] = l.split(" ");
    if (addr) fn.set(name, BigInt(addr));
  }
});

afterAll(async () => {
  await tracer?.close().catch(() => undefined);
  child?.kill("SIGKILL");
  scratch?.remove();
});

describe("Tracer.call", () => {
  it("calls functions in a thread blocked in read(2) and leaves it exactly as it was", async () => {
    tracer = Tracer.open();
    await tracer.attach(child.pid!);
    const pid = child.pid!;
    const before = await tracer.getRegs(pid);
    expect(before.orig_rax).toBe(0n); // in read(2)

    expect(await tracer.call(pid, fn.get("add3")!, [1n, 2n, 3n])).toBe(123n);
    expect(await tracer.getRegs(pid)).toEqual(before);

    expect(await tracer.call(pid, fn.get("clobber")!)).toBe(7n);
    expect(await tracer.getRegs(pid)).toEqual(before);

    const refused = async (p: Promise<unknown>, code: string, msg: RegExp) => {
      const e = await rejected(ShimError, p);
      expect(e.code).toBe(code);
      expect(e.message).toMatch(msg);
      expect(await tracer.getRegs(pid)).toEqual(before);
    };
    await refused(tracer.call(pid, fn.get("getpid")!), "CALL_SYSCALL", /made syscall 39 .*skipped, and the call abandoned/);
    await refused(tracer.call(pid, 8n), "CALL_FAULT", /faulted .*signal 11 at rip 0x8/);
    await refused(tracer.call(pid, fn.get("spin")!, [], { timeoutMs: 200 }), "CALL_TIMEOUT", /did not return within 200 ms/);
    await tracer.begin();
    await refused(tracer.call(pid, fn.get("add3")!, [1n, 2n, 3n]), "TXN_NO_UNDO", /cannot be undone by a rollback/);
    await tracer.commit();

    // With the world stopped, too.
    await tracer.stopWorld();
    expect(await tracer.call(pid, fn.get("add3")!, [4n, 5n, 6n])).toBe(456n);
    await tracer.resumeAll();

    // The read goes on: no EINTR, the data arrives, %xmm5 survived every call.
    child.stdin!.write("hello\n");
    expect(await line(/got \d+ \S+ xmm5 \w+\n|read -?\d+\n/)).toBe("got 6 hello xmm5 kept\n");
  });
});

