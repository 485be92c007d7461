// The seccomp evaluator of the core (assembly/seccomp) against the kernel: the same
// classic BPF filters are installed in real processes (test/fixtures/shim/
// seccomp_oracle.c) and checked and run by the core; what the kernel accepts, and
// what each call returns, must agree.
import { spawn } from "node:child_process";
import { beforeAll, describe, expect, it } from "vitest";
import type { Core } from "../src/core/instance.js";
import { CoreError } from "../src/core/instance.js";
import { SeccompAction, encodeSeccompData, seccompAction, seccompCheck, seccompEval } from "../src/core/seccomp.js";
import { nodeCore } from "../src/node/core-file.js";
import { compile } from "./helpers/shim.js";

type Insn = [code: number, jt: number, jf: number, k: number];

// opcodes (include/uapi/linux/bpf_common.h, filter.h)
const LD_W_ABS = 0x20, LD_W_LEN = 0x80, LDX_W_LEN = 0x81, LD_IMM = 0x00, LDX_IMM = 0x01;
const LD_MEM = 0x60, LDX_MEM = 0x61, ST = 0x02, STX = 0x03, TAX = 0x07, TXA = 0x87;
const ALU = 0x04, JMP = 0x05, RET_K = 0x06, RET_A = 0x16, X = 0x08;
const ADD = 0x00, SUB = 0x10, MUL = 0x20, DIV = 0x30, OR = 0x40, AND = 0x50, LSH = 0x60, RSH = 0x70, NEG = 0x80, MOD = 0x90, XOR = 0xa0;
const JA = 0x00, JEQ = 0x10, JGT = 0x20, JGE = 0x30, JSET = 0x40;
const ALLOW = 0x7fff0000;
const TEST_NRS = [39, 102, 110, 186]; // getpid, getuid, getppid, gettid: harmless whatever their arguments

function encode(p: Insn[]): Uint8Array {
  const b = new Uint8Array(p.length * 8);
  const v = new DataView(b.buffer);
  p.forEach(([c, jt, jf, k], i) => {
    v.setUint16(i * 8, c, true);
    v.setUint8(i * 8 + 2, jt);
    v.setUint8(i * 8 + 3, jf);
    v.setUint32(i * 8 + 4, k >>> 0, true);
  });
  return b;
}

/** The filter-set layout of the core: count u32, pad u32, instructions; oldest first. */
function filterSet(progs: Insn[][]): Uint8Array {
  const parts = progs.map((p) => {
    const h = new Uint8Array(8);
    new DataView(h.buffer).setUint32(0, p.length, true);
    return [h, encode(p)];
  });
  const out = new Uint8Array(parts.flat().reduce((n, a) => n + a.length, 0));
  let o = 0;
  for (const a of parts.flat()) {
    out.set(a, o);
    o += a.length;
  }
  return out;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A random valid filter: only the test syscalls reach the body (the oracle must be
 * able to write and exit), the body computes over seccomp_data with every kind of
 * instruction and forward jump, and ends returning ERRNO | (A & 0x3ff) or ALLOW.
 * DIV by X may divide by zero: the filter then returns 0, KILL_THREAD.
 */
function randomFilter(rnd: () => number): Insn[] {
  const int = (n: number) => Math.floor(rnd() * n);
  const u32 = () => (rnd() < 0.3 ? int(16) : rnd() < 0.5 ? TEST_NRS[int(4)] : Math.floor(rnd() * 2 ** 32)) >>> 0;
  const prefix: Insn[] = [
    [LD_W_ABS, 0, 0, 0],
    [JMP | JEQ, 4, 0, 39],
    [JMP | JEQ, 3, 0, 102],
    [JMP | JEQ, 2, 0, 110],
    [JMP | JEQ, 1, 0, 186],
    [RET_K, 0, 0, ALLOW],
  ];
  const cells = [int(16), int(16), int(16)];
  const init: Insn[] = cells.flatMap((c): Insn[] => [[LD_IMM, 0, 0, u32()], [ST, 0, 0, c]]);
  init.push([LDX_IMM, 0, 0, u32()]);
  const n = 4 + int(40);
  const body: Array<Insn | "jump"> = [];
  for (let i = 0; i < n; i++) {
    const r = int(14);
    const ops = [ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, XOR];
    if (r < 3) body.push([LD_W_ABS, 0, 0, 4 * int(16)]);
    else if (r < 6) {
      const op = ops[int(ops.length)];
      const src = rnd() < 0.5 ? X : 0;
      let k = u32();
      if (src === 0 && op === DIV && k === 0) k = 3;
      if (src === 0 && (op === LSH || op === RSH)) k %= 32;
      body.push([ALU | op | src, 0, 0, src ? 0 : k]);
    } else if (r === 6) body.push([ALU | NEG, 0, 0, 0]);
    else if (r === 7) body.push([rnd() < 0.5 ? TAX : TXA, 0, 0, 0]);
    else if (r === 8) body.push([rnd() < 0.5 ? LD_MEM : LDX_MEM, 0, 0, cells[int(3)]]);
    else if (r === 9) body.push([rnd() < 0.5 ? ST : STX, 0, 0, cells[int(3)]]);
    else if (r === 10) body.push([rnd() < 0.5 ? LD_IMM : LDX_IMM, 0, 0, u32()]);
    else if (r === 11) body.push([rnd() < 0.5 ? LD_W_LEN : LDX_W_LEN, 0, 0, 0]);
    else body.push("jump");
  }
  const tail: Insn[] = [
    [ALU | AND, 0, 0, 0x3ff],
    [ALU | OR, 0, 0, 0x50000],
    [RET_A, 0, 0, 0],
    [RET_K, 0, 0, ALLOW],
  ];
  const start = prefix.length + init.length;
  const total = start + body.length + tail.length;
  const resolved: Insn[] = body.map((b, i): Insn => {
    if (b !== "jump") return b;
    const pc = start + i;
    const room = Math.min(255, total - pc - 2);
    const off = () => int(room + 1);
    if (rnd() < 0.15) return [JMP | JA, 0, 0, off()];
    const op = [JEQ, JGT, JGE, JSET][int(4)];
    const src = rnd() < 0.3 ? X : 0;
    return [JMP | op | src, off(), off(), src ? 0 : u32()];
  });
  return [...prefix, ...init, ...resolved, ...tail];
}

/** Programs the kernel refuses, with the reason the core must give. */
const invalid: Array<[string, Insn[], number]> = [
  ["MOD is not a seccomp instruction", [[LD_W_ABS, 0, 0, 0], [ALU | MOD, 0, 0, 3], [RET_A, 0, 0, 0]], 602],
  ["RET X", [[0x0e, 0, 0, 0]], 602],
  ["byte load", [[0x30, 0, 0, 0], [RET_A, 0, 0, 0]], 602],
  ["indirect load", [[0x40, 0, 0, 0], [RET_A, 0, 0, 0]], 602],
  ["misaligned load", [[LD_W_ABS, 0, 0, 6], [RET_A, 0, 0, 0]], 604],
  ["load past seccomp_data", [[LD_W_ABS, 0, 0, 64], [RET_A, 0, 0, 0]], 604],
  ["jump out", [[JMP | JA, 0, 0, 1], [RET_A, 0, 0, 0]], 603],
  ["conditional jump out", [[JMP | JEQ, 2, 0, 1], [RET_A, 0, 0, 0]], 603],
  ["uninitialized scratch", [[LD_MEM, 0, 0, 3], [RET_A, 0, 0, 0]], 605],
  ["scratch written on one path only", [[LD_W_ABS, 0, 0, 0], [JMP | JEQ, 1, 0, 1], [ST, 0, 0, 2], [LDX_MEM, 0, 0, 2], [RET_A, 0, 0, 0]], 605],
  ["scratch cell 16", [[ST, 0, 0, 16], [RET_A, 0, 0, 0]], 605],
  ["shift by 32", [[ALU | LSH, 0, 0, 32], [RET_A, 0, 0, 0]], 602],
  ["division by the constant 0", [[ALU | DIV, 0, 0, 0], [RET_A, 0, 0, 0]], 606],
  ["no return at the end", [[RET_A, 0, 0, 0], [LD_IMM, 0, 0, 0]], 607],
  ["unknown opcode", [[0xff, 0, 0, 0], [RET_A, 0, 0, 0]], 602],
  ["empty", [], 601],
];

/** Runs the oracle: the instruction_pointer its calls show (ASLR: one per run), and its answers. */
function runOracle(input: string): Promise<{ ip: bigint; lines: string[] }> {
  const bin = compile("seccomp_oracle");
  return new Promise((resolve, reject) => {
    const p = spawn(bin, [], { stdio: ["pipe", "pipe", "inherit"] });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.on("exit", (code) => {
      if (code !== 0) return reject(new Error(`oracle exited ${code}: ${out}`));
      const lines = out.trim().split("\n");
      resolve({ ip: BigInt("0x" + lines[0].slice(3)), lines: lines.slice(1) });
    });
    p.stdin.end(input);
  });
}

/** What the kernel does to a call whose filters return `ret`, as the oracle prints it. */
function expected(core: Core, ret: number, allowedResult: string): string {
  const action = seccompAction(core, ret);
  switch (action) {
    case SeccompAction.ALLOW:
    case SeccompAction.LOG:
      return allowedResult;
    case SeccompAction.ERRNO: {
      const data = Math.min(ret & 0xffff, 4095);
      return data === 0 ? "R 0 0" : `R -1 ${data}`;
    }
    case SeccompAction.TRACE:
    case SeccompAction.USER_NOTIF:
      return "R -1 38"; // no tracer asked for it, no listener: ENOSYS
    default:
      return "K 31"; // KILL_THREAD, KILL_PROCESS, TRAP: SIGSYS
  }
}

let core: Core;
beforeAll(() => {
  core = nodeCore();
});

describe("seccomp filter evaluation", () => {
  it("agrees with the kernel on which programs are valid", async () => {
    const rnd = mulberry32(7);
    const valid = Array.from({ length: 20 }, () => randomFilter(rnd));
    const big: Insn[] = [...Array.from({ length: 4096 }, (): Insn => [LD_IMM, 0, 0, 1]), [RET_A, 0, 0, 0]];
    const all: Array<[string, Insn[], number]> = [...invalid, ["4097 instructions", big, 601], ...valid.map((v, i): [string, Insn[], number] => [`random ${i}`, v, 0])];
    const { lines } = await runOracle(all.map(([, p]) => `F ${hex(encode(p))}\nE\n`).join(""));
    all.forEach(([name, p, code], i) => {
      const kernel = Number(lines[i].split(" ")[1]);
      let mine = 0;
      try {
        seccompCheck(core, filterSet([p]));
      } catch (e) {
        expect(e, name).toBeInstanceOf(CoreError);
        mine = (e as CoreError).code;
      }
      expect(kernel === 0, `${name}: kernel says ${kernel}`).toBe(code === 0);
      expect(mine, name).toBe(code);
    });
  });

  it("returns what the kernel does, for random filters and stacks of filters", async () => {
    const rnd = mulberry32(20260601);
    const cases: Array<{ set: Insn[][]; calls: Array<{ nr: number; args: bigint[] }> }> = [];
    const fixed: Insn[][] = [ALLOW, 0x50005, 0x50000, 0x51000, 0x30000, 0, 0x80000000, 0x7ff00000, 0x7fc00000, 0x7ffc0000, 0x12340000].map(
      (r): Insn[] => [[LD_W_ABS, 0, 0, 0], [JMP | JEQ, 1, 0, 39], [RET_K, 0, 0, ALLOW], [RET_K, 0, 0, r]],
    );
    for (const f of fixed) cases.push({ set: [f], calls: [{ nr: 39, args: [0n, 0n, 0n, 0n, 0n, 0n] }] });
    // division by X = 0 ends the program returning 0 (KILL_THREAD)
    cases.push({ set: [[[LD_W_ABS, 0, 0, 0], [JMP | JEQ, 1, 0, 39], [RET_K, 0, 0, ALLOW], [LDX_IMM, 0, 0, 0], [ALU | DIV | X, 0, 0, 0], [RET_K, 0, 0, ALLOW]]], calls: [{ nr: 39, args: [0n, 0n, 0n, 0n, 0n, 0n] }] });
    // precedence: the least permissive action wins, the newest filter among equals
    const ret = (r: number): Insn[] => [[LD_W_ABS, 0, 0, 0], [JMP | JEQ, 1, 0, 39], [RET_K, 0, 0, ALLOW], [RET_K, 0, 0, r]];
    for (const [a, b] of [[0x50005, 0x50007], [0x50007, 0x50005], [ALLOW, 0x50009], [0x50009, ALLOW], [0x30000, 0x50001], [0x7ff00000, 0x50002]])
      cases.push({ set: [ret(a), ret(b)], calls: [{ nr: 39, args: [0n, 0n, 0n, 0n, 0n, 0n] }] });
    for (let i = 0; i < 150; i++) {
      const nf = rnd() < 0.7 ? 1 : 2 + Math.floor(rnd() * 2);
      const set = Array.from({ length: nf }, () => randomFilter(rnd));
      const calls = Array.from({ length: 5 }, () => ({
        nr: TEST_NRS[Math.floor(rnd() * 4)],
        args: Array.from({ length: 6 }, () => (rnd() < 0.3 ? BigInt(Math.floor(rnd() * 16)) : (BigInt(Math.floor(rnd() * 2 ** 32)) << 32n) | BigInt(Math.floor(rnd() * 2 ** 32)))),
      }));
      cases.push({ set, calls });
    }
    const input = cases
      .map((c) => c.set.map((p) => `F ${hex(encode(p))}\n`).join("") + c.calls.map((x) => `C ${x.nr.toString(16)} ${x.args.map((a) => a.toString(16)).join(" ")}\n`).join("") + "E\n")
      .join("");
    const { ip, lines } = await runOracle(input);
    let li = 0;
    let compared = 0;
    const actions = new Map<number, number>();
    for (const c of cases) {
      for (const p of c.set) expect(lines[li++], "installs").toBe("I 0");
      const set = filterSet(c.set);
      for (const call of c.calls) {
        const got = lines[li++];
        const r = seccompEval(core, set, { nr: call.nr, ip, args: call.args });
        const a = seccompAction(core, r);
        actions.set(a, (actions.get(a) ?? 0) + 1);
        // an allowed call returns what the syscall does: the oracle's own ids
        const allowed = /^R \d+ 0$/.test(got) ? got : "R <id> 0";
        expect(got, `filters ${c.set.map((p) => hex(encode(p))).join(" | ")}; call ${call.nr} ${call.args.join(",")}; core returns 0x${(r >>> 0).toString(16)}`).toBe(expected(core, r, allowed));
        compared++;
      }
    }
    expect(compared).toBeGreaterThan(700);
    // the random filters reach allow, errno and kill
    expect(actions.get(SeccompAction.ALLOW)).toBeGreaterThan(10);
    expect(actions.get(SeccompAction.ERRNO)).toBeGreaterThan(100);
    expect(actions.get(SeccompAction.KILL_THREAD)).toBeGreaterThan(0);
  });

  it("never traps or reads outside its input, whatever the bytes", () => {
    const rnd = mulberry32(99);
    const e = core.exports as unknown as { seccomp_eval(a: number, b: number, c: number, d: number): bigint };
    const data = encodeSeccompData({ nr: 39, ip: 0x1234n, args: [] });
    for (let i = 0; i < 400; i++) {
      const len = Math.floor(rnd() * 200);
      const b = Uint8Array.from({ length: len }, () => Math.floor(rnd() * 256));
      if (len >= 8 && rnd() < 0.7) new DataView(b.buffer).setUint32(0, Math.floor(rnd() * ((len - 8) / 8 + 2)), true);
      for (const t of [b, b.subarray(0, Math.floor(len / 2))]) {
        const r = core.withBytes(t, (p, l) => core.withBytes(data, (dp, dl) => e.seccomp_eval(p, l, dp, dl)));
        if (r < 0n) expect(core.exports.core_error_code()).toBeGreaterThanOrEqual(600);
        else expect(r).toBeLessThan(2n ** 32n);
      }
    }
    const r = core.withBytes(filterSet([[[RET_K, 0, 0, ALLOW]]]), (p, l) => core.withBytes(data, (dp) => e.seccomp_eval(p, l, dp, 32)));
    expect(r).toBe(-1n);
    expect(core.exports.core_error_code()).toBe(608);
    expect(seccompEval(core, new Uint8Array(0), { nr: 1, ip: 0n, args: [] })).toBe(ALLOW);
  });
});
