// The precise unwinder against gdb, on a fixture built with gcc -O2
// -fomit-frame-pointer whose threads stopped deep in chains through libc (qsort
// callbacks), signal handlers (one on a sigaltstack, one with a restorer that has
// no CFI) and the vDSO. Each thread dumped its registers and stack from a signal
// handler; gdb then attaches to the same stopped process and walks its frames.
// Every frame gdb finds on the stack (its inline and tail-call frames come from
// debug info, not from the stack) must be found by the unwinder, at the same pc,
// with signal frames where gdb has them.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { nodeCore } from "../src/node/core-file.js";
import { StackScan, type CfiRegistry, type StackSegment, type ThreadResult } from "../src/core/stack.js";
import { cleanup, gdbBacktraces, registryFor, runDeep, type DeepRun, type GdbFrame, type ThreadDump } from "./helpers/stack.js";

const hex = (v: bigint) => "0x" + v.toString(16);

interface Sym { name: string; lo: bigint; hi: bigint }

function symbols(exe: string, bias: bigint): Sym[] {
  const out = execFileSync("nm", ["-S", "--defined-only", exe], { encoding: "utf8" });
  const syms: Sym[] = [];
  for (const line of out.split("\n")) {
    const m = /^([0-9a-f]+) ([0-9a-f]+) [tT] (\S+)$/.exec(line);
    if (m) syms.push({ name: m[3], lo: BigInt("0x" + m[1]) + bias, hi: BigInt("0x" + m[1]) + BigInt("0x" + m[2]) + bias });
  }
  return syms;
}

describe("precise unwinder vs gdb (deep.c fixture)", () => {
  let run: DeepRun;
  let gdb: Map<number, { frames: GdbFrame[]; stop: string }>;
  let reg: CfiRegistry;
  let scan: StackScan;
  let syms: Sym[];
  const sym = (n: string) => {
    const s = syms.find((x) => x.name === n || x.name.startsWith(n + "."));
    if (!s) throw new Error(`no symbol ${n}`);
    return s;
  };
  /** gdb's frames of the interrupted context: after the dump handler's signal frame, without inline/tail-call frames. */
  const expected = (tid: number) => {
    const g = gdb.get(tid);
    if (!g) throw new Error(`gdb shows no thread ${tid}`);
    const first = g.frames.findIndex((f) => f.type === "sigtramp");
    expect(first).toBeGreaterThan(0);
    return { frames: g.frames.slice(first + 1).filter((f) => f.type === "normal" || f.type === "sigtramp"), stop: g.stop };
  };
  const threadWith = (name: string): ThreadDump => {
    for (const t of run.threads) if (expected(t.tid).frames.some((f) => f.name === name || f.name.startsWith(name + "."))) return t;
    throw new Error(`no thread runs ${name}`);
  };

  beforeAll(async () => {
    run = await runDeep();
    gdb = gdbBacktraces(run.pid, run.dir);
    const r = registryFor(nodeCore(), run.maps, run.vdso);
    reg = r.reg;
    const exeBias = r.modules.get(run.maps.find((m) => m.path.endsWith("/deep"))!.path)!.bias;
    syms = symbols(run.exe, exeBias);
    // deep.c's own restorer has no CFI; a host finds it by name (or by its code).
    reg.addSigreturn(sym("__restore_rt").lo);
    scan = new StackScan(reg);
  });
  afterAll(() => {
    scan?.free();
    reg?.free();
    if (run) cleanup(run);
  });

  it("finds the same frames as gdb in every thread", () => {
    expect(run.threads.length).toBe(5);
    for (const t of run.threads) {
      const exp = expected(t.tid);
      expect(exp.stop).toBe("outermost");
      const res = scan.thread({ regs: t.regs, segments: t.segments }, { conservative: false, frames: 512 });
      const ours = res.frames.map((f) => `${hex(f.pc)}${f.signal ? " signal" : ""}`);
      const theirs = exp.frames.map((f) => `${hex(f.pc)}${f.type === "sigtramp" ? " signal" : ""}`);
      expect({ tid: t.tid, frames: ours }).toEqual({ tid: t.tid, frames: theirs });
      expect(res.status).toBe("clear");
      expect(res.mode).toBe("precise");
      expect(res.outermost).toBe(true);
      expect(res.fallback).toBeNull();
      expect(res.frameCount).toBe(ours.length);
    }
  });

  it("goes at least 8 frames deep through qsort and a signal handler on a sigaltstack", () => {
    const a = threadWith("cmp_a");
    const exp = expected(a.tid).frames;
    const names = exp.map((f) => f.name);
    const cmp = names.findIndex((n) => n === "cmp_a");
    const sig = names.findIndex((n, i) => i > cmp && n === "__restore_rt");
    expect(cmp).toBeGreaterThanOrEqual(3);
    expect(sig).toBeGreaterThanOrEqual(8);
    expect(names.slice(cmp, sig).some((n) => /qsort/.test(n))).toBe(true);
    // the frames inside the handler run on the alternate stack, the ones it interrupted on the thread's stack
    expect(a.segments.length).toBe(2);
    const res = scan.thread({ regs: a.regs, segments: a.segments }, { conservative: false, frames: 512 });
    const inAlt = (sp: bigint) => sp >= a.segments[0].mapLo && sp < a.segments[0].mapHi;
    expect(inAlt(res.frames[cmp].sp)).toBe(true);
    expect(inAlt(res.frames[sig + 1].sp)).toBe(false);
    expect(res.frames[sig + 1].exact).toBe(true);
  });

  it("unwinds through a sigreturn trampoline without CFI, and only when told of it", () => {
    const c = threadWith("on_rt");
    const exp = expected(c.tid).frames;
    const tramp = exp.findIndex((f) => f.type === "sigtramp");
    expect(tramp).toBeGreaterThan(0);
    expect(exp[tramp].pc).toBe(sym("__restore_rt").lo);
    // Without the declaration the unwinder cannot go past it (gdb knows the code).
    const r2 = registryFor(nodeCore(), run.maps, run.vdso);
    const s2 = new StackScan(r2.reg);
    const res = s2.thread({ regs: c.regs, segments: c.segments }, { conservative: false, frames: 64 });
    expect(res.status).toBe("failed");
    expect(res.frameCount).toBeLessThanOrEqual(tramp + 1);
    expect(res.fallback?.code).toBeGreaterThanOrEqual(520);
    s2.free();
    r2.reg.free();
  });

  it("asks for more stack instead of reading past the window, and ends with the same frames", () => {
    for (const t of run.threads) {
      const full = scan.thread({ regs: t.regs, segments: t.segments }, { conservative: false, frames: 512 });
      // Start with 256 bytes of each segment.
      const segs: StackSegment[] = t.segments.map((s) => ({ ...s, window: s.window.subarray(0, 256) }));
      let res: ThreadResult;
      let asks = 0;
      for (;;) {
        res = scan.thread({ regs: t.regs, segments: segs }, { conservative: false, frames: 512 });
        if (res.status !== "need-memory") break;
        asks++;
        expect(asks).toBeLessThan(200);
        expect(res.outside).toBe(false);
        const i = segs.findIndex((s) => res.needAddr >= s.mapLo && res.needAddr < s.mapHi);
        expect(i).toBeGreaterThanOrEqual(0);
        const s = segs[i];
        // the address wanted is not in the window yet
        expect(res.needAddr < s.windowAddr || res.needAddr + 8n > s.windowAddr + BigInt(s.window.length)).toBe(true);
        const want = Number(res.needAddr + 8n - s.windowAddr);
        segs[i] = { ...s, window: t.segments[i].window.subarray(0, Math.min(t.segments[i].window.length, want + 256)) };
      }
      expect(asks).toBeGreaterThan(0);
      expect(res.frames.map((f) => f.pc)).toEqual(full.frames.map((f) => f.pc));
      // and it needed far less than the whole stack
      const used = segs.reduce((n, s) => n + s.window.length, 0);
      const all = t.segments.reduce((n, s) => n + s.window.length, 0);
      expect(used).toBeLessThan(all);
    }
  });

  it("says when the unwind leaves the segments it was given (the stack under a sigaltstack)", () => {
    const a = threadWith("cmp_a");
    const res = scan.thread({ regs: a.regs, segments: [a.segments[0]] }, { conservative: false, frames: 512 });
    expect(res.status).toBe("need-memory");
    expect(res.outside).toBe(true);
    expect(res.needAddr >= a.segments[1].mapLo && res.needAddr < a.segments[1].mapHi).toBe(true);
    // With no more memory to give, precise fails and the conservative scan says so.
    const fb = scan.thread({ regs: a.regs, segments: [a.segments[0]] }, { noMore: true, frames: 512 });
    expect(fb.mode).toBe("conservative");
    expect(fb.fallback?.code).toBe(524);
    expect(fb.fallback?.message).toMatch(/outside the stack memory given/);
  });
});

describe("forbidden ranges and entry windows on the fixture's threads", () => {
  let run: DeepRun;
  let reg: CfiRegistry;
  let syms: Sym[];
  const sym = (n: string) => syms.find((x) => x.name === n || x.name.startsWith(n + "."))!;

  beforeAll(async () => {
    run = await runDeep();
    const r = registryFor(nodeCore(), run.maps, run.vdso);
    reg = r.reg;
    syms = symbols(run.exe, r.modules.get(run.maps.find((m) => m.path.endsWith("/deep"))!.path)!.bias);
    reg.addSigreturn(sym("__restore_rt").lo);
  });
  afterAll(() => {
    reg?.free();
    if (run) cleanup(run);
  });

  const inSym = (s: Sym, pc: bigint, exact: boolean) => (exact ? pc : pc - 1n) >= s.lo && (exact ? pc : pc - 1n) < s.hi;
  const threadIn = (s: Sym) => {
    const plain = new StackScan(reg);
    try {
      for (const t of run.threads) {
        const r = plain.thread({ regs: t.regs, segments: t.segments }, { conservative: false, frames: 512 });
        if (r.frames.some((f) => inSym(s, f.pc, f.exact))) return { t, frames: r.frames };
      }
    } finally {
      plain.free();
    }
    throw new Error(`no thread in ${s.name}`);
  };

  it("reports the outermost forbidden frame, its return address and stack pointer", () => {
    const c1 = sym("c1"), b1 = sym("b1"), c3 = sym("c3");
    const { t, frames } = threadIn(c1);
    const s = new StackScan(reg);
    s.addForbidden(c1.lo, c1.hi, 11);
    s.addForbidden(b1.lo, b1.hi, 22);
    s.addForbidden(c3.lo, c3.hi, 33);
    const res = s.thread({ regs: t.regs, segments: t.segments }, { frames: 512 });
    const d = frames.findIndex((f) => inSym(b1, f.pc, f.exact));
    expect(d).toBeGreaterThan(0);
    expect(res.status).toBe("forbidden");
    expect(res.mode).toBe("precise");
    expect(res.hits).toBe(3);
    expect(res.depth).toBe(d);
    expect(res.rangeId).toBe(22);
    expect(res.pc).toBe(frames[d].pc);
    expect(res.returnAddr).toBe(frames[d + 1].pc);
    expect(res.returnSp).toBe(frames[d].cfa);
    expect(res.slotAddr).toBe(frames[d].cfa - 8n);
    expect(res.frames[0].forbidden).toBe(33);
    s.free();
  });

  it("reports a pc strictly inside an entry window, not one at its start", () => {
    const c3 = sym("c3");
    const { t, frames } = threadIn(c3);
    const pc = frames[0].pc;
    const s = new StackScan(reg);
    s.addWindow(pc - 1n, pc + 4n, 7);
    const res = s.thread({ regs: t.regs, segments: t.segments }, { frames: 8 });
    expect(res.status).toBe("forbidden");
    expect(res.windowId).toBe(7);
    expect(res.windowDepth).toBe(0);
    expect(res.frames[0].inWindow).toBe(true);
    s.free();
    const s2 = new StackScan(reg);
    s2.addWindow(pc, pc + 5n, 8);
    expect(s2.thread({ regs: t.regs, segments: t.segments }).status).toBe("clear");
    s2.free();
  });

  it("conservative mode finds the same function in the stack words, and says it was used", () => {
    const c1 = sym("c1");
    const { t, frames } = threadIn(c1);
    const d = frames.findIndex((f) => inSym(c1, f.pc, f.exact));
    const s = new StackScan(reg);
    s.addForbidden(c1.lo, c1.hi, 5);
    const res = s.thread({ regs: t.regs, segments: t.segments }, { precise: false });
    expect(res.mode).toBe("conservative");
    expect(res.status).toBe("forbidden");
    expect(res.rangeId).toBe(5);
    expect(res.pc - 1n >= c1.lo && res.pc - 1n < c1.hi).toBe(true);
    // the return address into c1 is in its callee's frame, at CFA-8
    expect(res.slotAddr >= frames[d - 1].cfa - 8n).toBe(true);
    const words = t.segments.reduce((n, sg, i) => n + (sg.mapHi - (i === 0 ? sg.windowAddr : sg.windowAddr)) / 8n, 0n);
    expect(res.wordsScanned).toBe(words);
    // A window that stops short of the mapping's top: the scan asks for the rest.
    const short = t.segments.map((sg) => ({ ...sg, window: sg.window.subarray(0, 1024) }));
    const need = s.thread({ regs: t.regs, segments: short }, { precise: false });
    expect(need.status).toBe("need-memory");
    expect(need.needAddr).toBe(short[0].windowAddr + 1024n);
    const inc = s.thread({ regs: t.regs, segments: short }, { precise: false, noMore: true });
    expect(inc.incomplete).toBe(true);
    s.free();
  });

  it("a thread outside every range is clear in both modes", () => {
    const v3 = sym("v3");
    const { t } = threadIn(v3);
    const s = new StackScan(reg);
    const c1 = sym("c1");
    s.addForbidden(c1.lo, c1.hi, 1);
    expect(s.thread({ regs: t.regs, segments: t.segments }).status).toBe("clear");
    expect(s.thread({ regs: t.regs, segments: t.segments }, { precise: false }).status).toBe("clear");
    s.free();
  });
});
