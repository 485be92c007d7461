// Fuzzing the CFI parser, the row interpreter, the expression evaluator and the
// unwinder with random and structured bytes: random bytes, libc's .eh_frame with
// bytes changed, synthetic .eh_frame (all CIE versions and augmentations, 64-bit
// lengths, every call frame instruction and DWARF operation with random operands,
// loops in expressions), random .eh_frame_hdr tables, a damaged vDSO image; then
// unwinding from random registers over random stack windows.
//
// Every input ends at the end of linear memory, so a read past it traps; a case
// that runs longer than the time limit is a hang. The worker thread running the
// cases is terminated on a hang and the case reported.
import { describe, expect, it } from "vitest";
import { Worker } from "node:worker_threads";
import { execFileSync } from "node:child_process";
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { coreWasmPath } from "../src/node/core-file.js";
import { cleanup, fileCfi, loadedCfi, parseMaps, runDeep, type DeepRun } from "./helpers/stack.js";
import { afterAll, beforeAll } from "vitest";

// No progress for this long: a hang (a case takes microseconds; a loaded machine can
// keep the worker off the CPU for seconds, as the ELF fuzz also allows).
const CASE_LIMIT_MS = 20_000;

function vdsoImage(): { image: Uint8Array; base: bigint } | null {
  const v = parseMaps(readFileSync("/proc/self/maps", "utf8")).find((m) => m.path === "[vdso]");
  if (!v) return null;
  const image = new Uint8Array(Number(v.hi - v.lo));
  const fd = openSync("/proc/self/mem", "r");
  readSync(fd, image, 0, image.length, Number(v.lo));
  closeSync(fd);
  return { image, base: v.lo };
}

interface FuzzResult {
  codes: Record<string, number>; // add's outcome: 0 or the refusal's code
  verifyCodes: Record<string, number>;
  scans: Record<string, number>; // stack_scan_thread outcomes
  failures: unknown[];
  added: number;
}

function fuzz(wasm: string, seed: number, cases: number, real: unknown): Promise<FuzzResult> {
  const libc = fileCfi("/lib/x86_64-linux-gnu/libc.so.6")!;
  const vdso = vdsoImage();
  const progress = new SharedArrayBuffer(8);
  const prog = new Int32Array(progress);
  const worker = new Worker(fileURLToPath(new URL("./helpers/stack-fuzz-worker.mjs", import.meta.url)), {
    workerData: {
      wasm, seed, cases, progress,
      ehFrame: libc.ehFrame, ehAddr: libc.ehAddr, hdr: libc.hdr, hdrAddr: libc.hdrAddr,
      vdso: vdso?.image, vdsoBase: vdso?.base, real,
    },
  });
  return new Promise((resolve, reject) => {
    let last = -1;
    let since = Date.now();
    const timer = setInterval(() => {
      const cur = Atomics.load(prog, 0);
      if (Atomics.load(prog, 1) === 1) return;
      if (cur !== last) { last = cur; since = Date.now(); return; }
      if (Date.now() - since > CASE_LIMIT_MS) {
        clearInterval(timer);
        void worker.terminate();
        reject(new Error(`fuzz case ${cur} (seed ${seed}) ran longer than ${CASE_LIMIT_MS} ms: a hang`));
      }
    }, 50);
    worker.on("message", (m) => { clearInterval(timer); void worker.terminate(); resolve(m); });
    worker.on("error", (e) => { clearInterval(timer); reject(e); });
  });
}

describe("CFI parser and unwinder fuzz (inputs end at the end of linear memory)", () => {
  let run: DeepRun;
  let real: unknown;
  beforeAll(async () => {
    run = await runDeep();
    const restorer = /^([0-9a-f]+) t __restore_rt$/m.exec(execFileSync("nm", [run.exe], { encoding: "utf8" }));
    const exe = loadedCfi(run.maps).find((m) => m.path.endsWith("/deep"))!;
    real = {
      modules: loadedCfi(run.maps).map(({ ehFrame, ehAddr, hdr, hdrAddr }) => ({ ehFrame, ehAddr, hdr, hdrAddr })),
      vdso: run.vdso,
      threads: run.threads,
      restorer: restorer ? BigInt("0x" + restorer[1]) + exe.bias : undefined,
    };
    run.kill();
  });
  afterAll(() => { if (run) cleanup(run); });

  for (const build of ["core.wasm", "core-portable.wasm"]) {
    it(`${build}: no trap, no hang, every refusal named`, async () => {
      const wasm = coreWasmPath().replace(/core\.wasm$/, build);
      const seed = Number(process.env.PATCHC_FUZZ_SEED ?? 20261127);
      const cases = Number(process.env.PATCHC_FUZZ_CASES ?? 6000);
      const r = await fuzz(wasm, seed, cases, real);
      expect(r.failures).toEqual([]);
      // The generators reach both outcomes, and many distinct refusals.
      expect(r.added).toBeGreaterThan(cases / 10);
      const codes = Object.keys(r.codes).map(Number).filter((c) => c !== 0);
      expect(codes.every((c) => c >= 500 && c < 520)).toBe(true);
      expect(codes.length).toBeGreaterThanOrEqual(8);
      // programs that run to their end, and programs refused for a bad instruction
      expect(r.verifyCodes["0"]).toBeGreaterThan(0);
      expect(r.verifyCodes["507"]).toBeGreaterThan(0);
      // damaged real stacks still unwind deep, and also fail in every way
      const scans = Object.entries(r.scans);
      const count = (re: RegExp) => scans.filter(([k]) => re.test(k)).reduce((n, [, c]) => n + c, 0);
      expect(count(/^real status [01] mode 1 .*frames>8/)).toBeGreaterThan(0);
      expect(count(/^real status 2 /)).toBeGreaterThan(0);
      expect(count(/^real status [013] .*fallback 52[0-5]/)).toBeGreaterThan(0);
    });
  }
});
