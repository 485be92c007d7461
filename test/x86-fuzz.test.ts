// Fuzzing the x86 decoder (and the entry check over each input): random bytes, instruction-shaped bytes (prefixes, REX,
// escapes, VEX/EVEX/XOP headers, random fields), real libc code cut anywhere, and real
// code with bytes changed; each input placed to end at the last byte of linear memory
// and run in a worker under a watchdog (test/fuzz/x86-fuzz-worker.ts, which lists the
// properties checked). No case may trap, abort, hang, run slow, or read outside itself.
//
// Inputs that failed are kept in test/fuzz-regressions/x86.<name>.<kind>.bin and
// replayed first. FUZZ_SCALE=10 runs ten times the cases; FUZZ_SEED=n other ones.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { buildSync } from "esbuild";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readFile, readSections } from "./x86-objdump.js";
import { caseAt, type Case, type Done, type Failure, type WorkerInput } from "./fuzz/x86-fuzz-worker.js";

const ROOT = new URL("..", import.meta.url).pathname;
const REGRESSIONS = `${ROOT}test/fuzz-regressions`;
const SCALE = Number(process.env.FUZZ_SCALE ?? 1);
const RUN_SEED = Number(process.env.FUZZ_SEED ?? 0x86);
const CASES = Math.round(40000 * SCALE);
const SLOW_MS = 2_000; // a case takes well under a millisecond; the machine may be loaded
const HANG_MS = 20_000;
const LIBC = "/lib/x86_64-linux-gnu/libc.so.6";

const dir = mkdtempSync(join(tmpdir(), "patchc-x86-fuzz-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function readRegressions(): Case[] {
  let names: string[] = [];
  try {
    names = readdirSync(REGRESSIONS).filter((n) => n.startsWith("x86.") && n.endsWith(".bin")).sort();
  } catch {
    return [];
  }
  return names.map((name) => ({ name, what: "regression file", bytes: new Uint8Array(readFileSync(`${REGRESSIONS}/${name}`)) }));
}

async function runAll(input: Omit<WorkerInput, "start" | "progress">, workerFile: string) {
  const failures: Failure[] = [];
  const done: Done[] = [];
  let cases = 0;
  let start = 0;
  for (;;) {
    const progress = new SharedArrayBuffer(8);
    const p = new Int32Array(progress);
    const w = new Worker(workerFile, { workerData: { ...input, start, progress } satisfies WorkerInput });
    const hung = await new Promise<number | null>((resolve, reject) => {
      let last = -1;
      let since = Date.now();
      const timer = setInterval(() => {
        const n = Atomics.load(p, 1);
        if (n !== last) {
          last = n;
          since = Date.now();
        } else if (Date.now() - since > HANG_MS) {
          clearInterval(timer);
          const ordinal = Atomics.load(p, 0);
          void w.terminate().then(() => resolve(ordinal));
        }
      }, 100);
      w.on("message", (m: Failure | Done) => {
        if (m.type === "fail") failures.push(m);
        else {
          done.push(m);
          clearInterval(timer);
          void w.terminate().then(() => resolve(null));
        }
      });
      w.on("error", (e) => {
        clearInterval(timer);
        reject(e);
      });
    });
    cases += Atomics.load(p, 1);
    if (hung === null) break;
    const c = caseAt(input, hung)!;
    failures.push({ type: "fail", ordinal: hung, name: c.name, what: c.what, kind: "hang", message: `no progress for ${HANG_MS} ms`, bytes: c.bytes });
    cases++;
    start = hung + 1;
  }
  return { failures, done, cases };
}

describe("x86 decoder fuzz", () => {
  it("no input traps, aborts, hangs, reads outside itself or breaks a decoding property", async () => {
    const workerFile = join(dir, "x86-fuzz-worker.mjs");
    buildSync({ entryPoints: [`${ROOT}test/fuzz/x86-fuzz-worker.ts`], outfile: workerFile, bundle: true, platform: "node", format: "esm", logLevel: "warning" });
    const libc = readFile(LIBC);
    const text = readSections(LIBC).find((s) => s.name === ".text")!;
    const extras = readRegressions();
    const input = {
      wasm: new Uint8Array(readFileSync(`${ROOT}build/core.wasm`)),
      code: libc.slice(text.offset, text.offset + text.size),
      extras,
      count: CASES,
      runSeed: RUN_SEED,
      slowMs: SLOW_MS,
    };
    const { failures, done, cases } = await runAll(input, workerFile);
    const statuses: Record<number, number> = {};
    for (const d of done) for (const [c, n] of Object.entries(d.statuses)) statuses[Number(c)] = (statuses[Number(c)] ?? 0) + n;
    const decoded = done.reduce((n, d) => n + d.decoded, 0);
    const entry: Record<number, number> = {};
    for (const d of done) for (const [c, n] of Object.entries(d.entryStatuses)) entry[Number(c)] = (entry[Number(c)] ?? 0) + n;
    console.log(`x86 fuzz: ${cases} cases (${extras.length} regression files), ${decoded} instructions decoded; statuses ${JSON.stringify(statuses)}; entry checks ${JSON.stringify(entry)}; ${done.map((d) => d.ms.toFixed(0)).join("+")} ms`);
    let saved = 0;
    const report = failures.map((f) => {
      let where = `test/fuzz-regressions/${f.name}`;
      if (f.what !== "regression file" && saved++ < 20) {
        mkdirSync(REGRESSIONS, { recursive: true });
        const name = `x86.${f.name}.${f.kind}.bin`.replace(/[^A-Za-z0-9._-]/g, "_");
        writeFileSync(`${REGRESSIONS}/${name}`, f.bytes);
        where = `test/fuzz-regressions/${name}`;
      }
      return `${f.kind}: ${f.name} (${f.what}) -> ${where}\n  ${f.message.split("\n").slice(0, 4).join("\n  ")}`;
    });
    expect(report).toEqual([]);
    expect(cases).toBe(extras.length + CASES);
    expect(done.reduce((n, d) => n + d.memoryMoved, 0)).toBe(0);
    // every outcome occurs: decoded, truncated, unknown, ambiguous, too long
    for (const code of [0, 400, 401, 402, 403]) expect(statuses[code] ?? 0, `status ${code}`).toBeGreaterThan(0);
    for (const code of [0, 420, 421, 422]) expect(entry[code] ?? 0, `entry check status ${code}`).toBeGreaterThan(0);
  }, 300_000);
});
