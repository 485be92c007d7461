// bench/core section "stack": the stack-scan analysis of the Wasm core beside the same
// algorithms and data layouts in C (bench/core/stack.c, gcc -O2, built here).
//
//   - precise unwinding, frames per second: the five threads of the deep.c fixture
//     (test/fixtures/stack: chains through qsort, two signal frames, a sigaltstack, a
//     restorer without CFI, the vDSO; 70 to 80 frames in all), captured once, unwound
//     ITERATIONS times per run over the CFI of every module the fixture had mapped
//     (.eh_frame_hdr tables). Wasm: one stack_scan_thread call per thread (precise mode,
//     no frame records), so the JS<->Wasm call is in the time, as it is in use.
//   - conservative scan, GB/s: one 64 MiB window made of the fixture's real stack
//     words, repeated, against ~300 forbidden ranges (functions of libc and the fixture),
//     in core.wasm (SIMD) and in core-portable.wasm (scalar).
// Both sides must agree on the frames unwound and on the words found, or the row says so.
// Times are CPU time (getrusage / CLOCK_PROCESS_CPUTIME_ID): on these shared 2-core
// machines wall time mostly measures the other processes. 11 rounds alternate C (the
// median of 3 runs in one process) and Wasm (one run, after warm-up runs); the figures
// are medians of the rounds, the ratio the median of the per-round ratios (Wasm / C).
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { coreWasmPath, nodeCore } from "../../src/node/core-file.js";
import { loadCoreSync } from "../../src/core/instance.js";
import { type Row } from "../table.js";
import { cleanup, loadedCfi, readElf, runDeep, type DeepRun, type ThreadDump } from "../../test/helpers/stack.js";

const ITERATIONS = 2000;
const RUNS = 11;
const SCAN_BYTES = 64 << 20;

interface Exports {
  memory: WebAssembly.Memory;
  alloc(n: number): number;
  free(p: number): void;
  cfi_registry_new(): number;
  cfi_registry_add(h: number, eh: number, ehLen: number, ehAddr: bigint, hdr: number, hdrLen: number, hdrAddr: bigint): number;
  cfi_registry_add_sigreturn(h: number, addr: bigint): number;
  stack_scan_new(reg: number): number;
  stack_scan_add_forbidden(h: number, lo: bigint, hi: bigint, id: number): number;
  stack_scan_thread(h: number, regs: number, segs: number, nsegs: number, flags: number, maxFrames: number, frames: number, cap: number, out: number): number;
}

interface Module { ehFrame: Uint8Array; ehAddr: bigint; hdr: Uint8Array; hdrAddr: bigint }
interface Range { lo: bigint; hi: bigint; id: number }

/** .eh_frame and .eh_frame_hdr of an image mapped at `base` (the vDSO), at runtime addresses. */
function imageCfi(image: Uint8Array, base: bigint): Module {
  const elf = readElf(image);
  const firstPage = elf.phdrs.filter((p) => p.type === 1).reduce((m, p) => (p.vaddr < m ? p.vaddr : m), 1n << 62n) & ~0xfffn;
  const sec = (n: string) => elf.sections.find((s) => s.name === n)!;
  const eh = sec(".eh_frame"), hdr = sec(".eh_frame_hdr");
  const bias = base - firstPage;
  return { ehFrame: image.slice(eh.offset, eh.offset + eh.size), ehAddr: eh.addr + bias, hdr: image.slice(hdr.offset, hdr.offset + hdr.size), hdrAddr: hdr.addr + bias };
}

function functionRanges(path: string, bias: bigint, dynamic: boolean, count: number, id0: number): Range[] {
  const out = execFileSync("nm", [...(dynamic ? ["-D"] : []), "-S", "--defined-only", path], { encoding: "utf8" });
  const r: Range[] = [];
  for (const line of out.split("\n")) {
    const m = /^([0-9a-f]+) ([0-9a-f]+) [tTiW] \S+$/.exec(line);
    if (m && BigInt("0x" + m[2]) > 0n) r.push({ lo: BigInt("0x" + m[1]) + bias, hi: BigInt("0x" + m[1]) + BigInt("0x" + m[2]) + bias, id: id0 + r.length });
  }
  // every k-th, to spread them over the text
  const step = Math.max(1, Math.floor(r.length / count));
  return r.filter((_, i) => i % step === 0).slice(0, count);
}

class Out {
  parts: Uint8Array[] = [];
  u32(v: number) { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v, true); this.parts.push(b); }
  u64(v: bigint) { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true); this.parts.push(b); }
  bytes(b: Uint8Array) { this.parts.push(b); }
}

function input(modules: Module[], threads: ThreadDump[], restorer: bigint, ranges: Range[]): Uint8Array {
  const o = new Out();
  o.bytes(new TextEncoder().encode("PCSTKIN1"));
  o.u32(modules.length);
  for (const m of modules) { o.u64(m.ehAddr); o.u64(BigInt(m.ehFrame.length)); o.u64(m.hdrAddr); o.u64(BigInt(m.hdr.length)); o.bytes(m.ehFrame); o.bytes(m.hdr); }
  o.u32(threads.length);
  for (const t of threads) {
    o.bytes(t.regs);
    o.u32(t.segments.length);
    for (const s of t.segments) { o.u64(s.windowAddr); o.u64(BigInt(s.window.length)); o.u64(s.mapLo); o.u64(s.mapHi); o.bytes(s.window); }
  }
  o.u64(restorer);
  o.u32(ranges.length);
  for (const r of ranges) { o.u64(r.lo); o.u64(r.hi); o.u32(r.id); }
  const total = o.parts.reduce((n, p) => n + p.length, 0);
  const b = new Uint8Array(total);
  let at = 0;
  for (const p of o.parts) { b.set(p, at); at += p.length; }
  return b;
}

/** CPU time in ms of one run of fn. */
function cpuMs(fn: () => void): number {
  const c0 = process.cpuUsage();
  fn();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000;
}

const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];

/** RUNS rounds alternating the C program (returns its JSON) and the Wasm run. */
function rounds<T extends { ms: number }>(c: () => T, wasm: () => void): { c: T; cMs: number; wMs: number; ratio: number } {
  for (let i = 0; i < 5; i++) wasm(); // V8 tiers Wasm up as it runs
  const cs: number[] = [], ws: number[] = [], rs: number[] = [];
  let last!: T;
  for (let i = 0; i < RUNS; i++) {
    last = c();
    const w = cpuMs(wasm);
    cs.push(last.ms);
    ws.push(w);
    rs.push(w / last.ms);
  }
  return { c: last, cMs: median(cs), wMs: median(ws), ratio: median(rs) };
}

const cpuEnv = { ...process.env, STACK_CPU_TIME: "1" };

/** Places threads' registers and segments in core memory once; returns their pointers. */
function place(x: Exports, threads: ThreadDump[]): Array<{ regs: number; segs: number; n: number }> {
  return threads.map((t) => {
    const regs = x.alloc(216);
    new Uint8Array(x.memory.buffer).set(t.regs, regs);
    const segs = x.alloc(40 * t.segments.length);
    t.segments.forEach((s, i) => {
      const w = x.alloc(s.window.length);
      new Uint8Array(x.memory.buffer).set(s.window, w);
      const v = new DataView(x.memory.buffer);
      v.setBigUint64(segs + 40 * i, BigInt(w), true);
      v.setBigUint64(segs + 40 * i + 8, BigInt(s.window.length), true);
      v.setBigUint64(segs + 40 * i + 16, s.windowAddr, true);
      v.setBigUint64(segs + 40 * i + 24, s.mapLo, true);
      v.setBigUint64(segs + 40 * i + 32, s.mapHi, true);
    });
    return { regs, segs, n: t.segments.length };
  });
}

function registry(x: Exports, modules: Module[], restorer: bigint): number {
  const reg = x.cfi_registry_new();
  for (const m of modules) {
    const e = x.alloc(m.ehFrame.length), h = x.alloc(m.hdr.length);
    new Uint8Array(x.memory.buffer).set(m.ehFrame, e);
    new Uint8Array(x.memory.buffer).set(m.hdr, h);
    if (!x.cfi_registry_add(reg, e, m.ehFrame.length, m.ehAddr, h, m.hdr.length, m.hdrAddr)) throw new Error("cfi_registry_add failed");
    x.free(h);
  }
  if (restorer) x.cfi_registry_add_sigreturn(reg, restorer);
  return reg;
}

export async function run(): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), "patchc-bench-stack-"));
  mkdirSync(join("build", "bench"), { recursive: true });
  const exe = join("build", "bench", "stack-c");
  execFileSync("gcc", ["-O2", "-o", exe, join("bench", "core", "stack.c")], { stdio: "inherit" });
  let deep: DeepRun | undefined;
  try {
    deep = await runDeep();
    deep.kill();
    const loaded = loadedCfi(deep.maps);
    const modules: Module[] = loaded.map((m) => ({ ehFrame: m.ehFrame, ehAddr: m.ehAddr, hdr: m.hdr!, hdrAddr: m.hdrAddr }));
    if (deep.vdso) modules.push(imageCfi(deep.vdso.image, deep.vdso.base));
    const exeMod = loaded.find((m) => m.path.endsWith("/deep"))!;
    const rest = /^([0-9a-f]+) t __restore_rt$/m.exec(execFileSync("nm", [deep.exe], { encoding: "utf8" }));
    const restorer = rest ? BigInt("0x" + rest[1]) + exeMod.bias : 0n;

    // ---- unwinding
    const unwindIn = join(dir, "unwind.bin");
    writeFileSync(unwindIn, input(modules, deep.threads, restorer, []));
    const core = nodeCore();
    const x = core.exports as unknown as Exports;
    const reg = registry(x, modules, restorer);
    const scan = x.stack_scan_new(reg);
    const placed = place(x, deep.threads);
    const out = x.alloc(96);
    let frames = 0;
    const unwind = rounds(
      () => JSON.parse(execFileSync(exe, ["unwind", unwindIn, String(ITERATIONS), "3"], { encoding: "utf8", env: cpuEnv })) as { ms: number; frames: number },
      () => {
      frames = 0;
      const u32 = new Uint32Array(x.memory.buffer); // memory does not grow while unwinding
      for (let it = 0; it < ITERATIONS; it++) {
        for (const t of placed) {
          x.stack_scan_thread(scan, t.regs, t.segs, t.n, 1, 65536, 0, 0, out);
          frames += u32[(out + 8) >> 2];
        }
      }
    });
    const cU = unwind.c;
    const perThread = deep.threads.map((_, i) => {
      x.stack_scan_thread(scan, placed[i].regs, placed[i].segs, placed[i].n, 1, 65536, 0, 0, out);
      const v = new DataView(x.memory.buffer);
      return `${v.getUint32(out + 8, true)}${v.getUint32(out, true) === 0 ? "" : "!"}`;
    });

    // ---- conservative scan: the fixture's stack words, repeated to 64 MiB
    const words: Uint8Array[] = deep.threads.flatMap((t) => t.segments.map((s) => s.window));
    const big = new Uint8Array(SCAN_BYTES);
    for (let at = 0, i = 0; at < SCAN_BYTES; i++) {
      const w = words[i % words.length];
      const n = Math.min(w.length & ~7, SCAN_BYTES - at);
      big.set(w.subarray(0, n), at);
      at += n;
    }
    const libc = loaded.find((m) => m.path.includes("libc.so"))!;
    const ranges = [...functionRanges(libc.path, libc.bias, true, 250, 0), ...functionRanges(deep.exe, exeMod.bias, false, 50, 1000)];
    const base = 0x7f0000000000n;
    const regsScan = new Uint8Array(216);
    new DataView(regsScan.buffer).setBigUint64(152, base, true); // rsp
    const scanIn = join(dir, "scan.bin");
    const seg = { window: big, windowAddr: base, mapLo: base, mapHi: base + BigInt(SCAN_BYTES) };
    writeFileSync(scanIn, input([], [{ tid: 0, regs: regsScan, segments: [seg] }], 0n, ranges));
    const s2 = x.stack_scan_new(reg);
    for (const r of ranges) x.stack_scan_add_forbidden(s2, r.lo, r.hi, r.id);
    const [sp] = place(x, [{ tid: 0, regs: regsScan, segments: [seg] }]);
    const scanR = rounds(
      () => JSON.parse(execFileSync(exe, ["scan", scanIn, "3"], { encoding: "utf8", env: cpuEnv })) as { ms: number; bytes: number; hits: number; range: number; slot: string },
      () => x.stack_scan_thread(s2, sp.regs, sp.segs, 1, 2 | 4, 0, 0, 0, out),
    );
    const cS = scanR.c;
    // the same scan in the portable build (no SIMD: what a host without it runs)
    const pcore = loadCoreSync(new WebAssembly.Module(readFileSync(coreWasmPath().replace(/core\.wasm$/, "core-portable.wasm"))));
    const px = pcore.exports as unknown as Exports;
    const ps = px.stack_scan_new(px.cfi_registry_new());
    for (const r of ranges) px.stack_scan_add_forbidden(ps, r.lo, r.hi, r.id);
    const [pp] = place(px, [{ tid: 0, regs: regsScan, segments: [seg] }]);
    const pout = px.alloc(96);
    const portR = rounds(
      () => JSON.parse(execFileSync(exe, ["scan", scanIn, "3"], { encoding: "utf8", env: cpuEnv })) as { ms: number; hits: number },
      () => px.stack_scan_thread(ps, pp.regs, pp.segs, 1, 2 | 4, 0, 0, 0, pout),
    );
    const portHits = new DataView(px.memory.buffer).getUint32(pout + 32, true);
    const v = new DataView(x.memory.buffer);
    const wHits = v.getUint32(out + 32, true), wRange = v.getInt32(out + 20, true), wSlot = v.getBigUint64(out + 72, true);

    const gbs = (ms: number) => `${(SCAN_BYTES / 1e9 / (ms / 1e3)).toFixed(2)} GB/s`;
    const fps = (ms: number, n: number) => `${(n / (ms / 1e3) / 1e6).toFixed(2)} M frames/s`;
    const scanAgree = wHits === cS.hits && wRange === cS.range && wSlot === BigInt(cS.slot);
    return [
      {
        what: "precise unwind (CFI)",
        input: `deep.c: ${deep.threads.length} threads, ${perThread.join("+")} frames, x${ITERATIONS}`,
        wasm: fps(unwind.wMs, frames),
        native: fps(unwind.cMs, cU.frames),
        ratio: unwind.ratio,
        note: frames === cU.frames ? "CPU time" : `FRAMES DIFFER (wasm ${frames}, C ${cU.frames})`,
      },
      {
        what: "conservative scan",
        input: `64 MiB of real stack words, ${ranges.length} ranges`,
        wasm: gbs(scanR.wMs),
        native: gbs(scanR.cMs),
        ratio: scanR.ratio,
        note: scanAgree ? `${wHits} words found; CPU time` : `ANSWERS DIFFER (wasm ${wHits}/${wRange}/${wSlot}, C ${cS.hits}/${cS.range}/${cS.slot})`,
      },
      {
        what: "conservative scan, portable build (no SIMD)",
        input: "the same",
        wasm: gbs(portR.wMs),
        native: gbs(portR.cMs),
        ratio: portR.ratio,
        note: portHits === cS.hits ? "CPU time" : `ANSWERS DIFFER (wasm ${portHits}, C ${cS.hits})`,
      },
    ];
  } finally {
    if (deep) cleanup(deep);
    rmSync(dir, { recursive: true, force: true });
  }
}
