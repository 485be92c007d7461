// applyPatch / revertPatch / readStatus on real processes (issue 6, "Tests"): fixtures of
// test/fixtures/apply compiled here twice (without and with -DPATCHED), packages made
// with the real `patchc build`, targets read through a pipe.
//
// - consistency made visible: 8 threads of an -O2 program call roundtrip() (A), which
//   encodes with its version's key and tail-calls decode() (B); old A with new B is a
//   detectable wrong answer (a "mix"). Several applies and reverts during the run: no
//   mix, both versions observed; and with --consistency=entry mixes do appear, which
//   shows the detector can fail.
// - PIE and non-PIE targets; a function in a shared library, applied by its build-id.
// - a patch calling libc (memcpy and strlen: IFUNCs the program never imported; snprintf
//   through its PLT slot), using the target's global, static local and TLS variable.
// - an LD_PRELOAD counting malloc: the patched code allocates through it.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { applyPatch, readStatus, revertPatch } from "../src/apply/index.js";
import type { ApplyReport } from "../src/apply/contract.js";
import { readPackageFile, type ReadPackage } from "../src/format/reader.js";
import { nodeCore } from "../src/node/core-file.js";
import { Scratch } from "./helpers/gcc.js";
import { LiveTarget, buildModule, buildPatch, compileProgram, expectUnchanged, readMemory, runtimeAddress, sleep, snapshot, stopAll, type BuiltModule } from "./helpers/apply.js";

const core = nodeCore();
const scratch = new Scratch();
const THREADS = 8;

let pair: BuiltModule, pairNoPie: BuiltModule, lib: BuiltModule, libc: BuiltModule, alloc: BuiltModule;
let libmain: string, countmalloc: string;
const pkgs: Record<string, ReadPackage> = {};

beforeAll(async () => {
  pair = buildModule(scratch, { name: "pair", sources: ["pair.c"] });
  pairNoPie = buildModule(scratch, { name: "pair", dir: "pair-nopie", sources: ["pair.c"], cflags: ["-fno-pie"], ldflags: ["-no-pie"] });
  lib = buildModule(scratch, { name: "libfix.so", dir: "lib", sources: ["libfix.c"], cflags: ["-fPIC"], ldflags: ["-shared"] });
  libmain = compileProgram(scratch, "libmain.c", "lib/libmain", [], [`-L${scratch.path("lib")}`, "-lfix", `-Wl,-rpath,${scratch.path("lib")}`]);
  libc = buildModule(scratch, { name: "libc", sources: ["libc.c"] });
  alloc = buildModule(scratch, { name: "alloc", sources: ["alloc.c"] });
  countmalloc = compileProgram(scratch, "countmalloc.c", "alloc/countmalloc.so", ["-fPIC", "-shared"]);
  for (const [id, m] of [
    ["pair-1", pair],
    ["pair-nopie-1", pairNoPie],
    ["lib-1", lib],
    ["libc-1", libc],
    ["alloc-1", alloc],
  ] as const) {
    pkgs[id] = readPackageFile(core, await buildPatch(m, id));
  }
});
afterEach(stopAll);
afterAll(async () => {
  await stopAll();
  scratch.remove();
});

/** No mapping of the process is writable and executable at once. */
function expectNoWX(pid: number): void {
  const wx = execFileSync("cat", [`/proc/${pid}/maps`], { encoding: "utf8" })
    .split("\n")
    .filter((l) => /^\S+ (.w.x|rwx)/.test(l));
  expect(wx, `process ${pid} has writable+executable mappings`).toEqual([]);
}

/** Each redirected entry holds `jmp rel32` to the function's new code. */
function expectJumps(pid: number, r: ApplyReport): void {
  for (const f of r.functions) {
    const b = readMemory(pid, f.site, 5);
    expect(b[0], `${f.name}: jmp rel32 at 0x${f.site.toString(16)}`).toBe(0xe9);
    expect(f.site + 5n + BigInt(b.readInt32LE(1)), `${f.name}: the jump's destination`).toBe(f.newAddr);
  }
}

/** The region named in the report shows in /proc/PID/maps: its code read+execute, never writable; a memfd's name on each part. */
function expectRegionMapped(pid: number, r: ApplyReport): void {
  const parts = execFileSync("cat", [`/proc/${pid}/maps`], { encoding: "utf8" })
    .split("\n")
    .map((l) => /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) .*$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null && BigInt(`0x${m[1]}`) >= r.region.base && BigInt(`0x${m[2]}`) <= r.region.base + r.region.size);
  expect(parts.length, `process ${pid}: no mapping in the region 0x${r.region.base.toString(16)}+0x${r.region.size.toString(16)}`).toBeGreaterThan(0);
  expect(parts.reduce((n, m) => n + (BigInt(`0x${m[2]}`) - BigInt(`0x${m[1]}`)), 0n)).toBe(r.region.size);
  expect(parts.some((m) => m[3] === "r-xp")).toBe(true);
  for (const m of parts) {
    expect(m[3]).not.toMatch(/w.*x|x.*w/);
    if (r.region.memfd) expect(m[0]).toContain(r.region.name);
  }
  for (const f of r.functions) expect(f.newAddr >= r.region.base && f.newAddr + f.newSize <= r.region.base + r.region.size, `${f.name}'s new code lies in the region`).toBe(true);
}

type Stats = { calls: number; mixes: number; v1: number; v2: number };
async function stats(t: LiveTarget): Promise<Stats> {
  const s = await t.ask("stats", "stats");
  return { calls: Number(s.calls), mixes: Number(s.mixes), v1: Number(s.v1), v2: Number(s.v2) };
}

describe("consistency made visible (8 threads, roundtrip() -> decode())", () => {
  it("PIE: 3 applies and reverts while the threads run: no mix, both versions observed, entries restored", async () => {
    const { t } = await LiveTarget.start(pair.path);
    await sleep(200);
    let s = await stats(t);
    expect(s.v1).toBeGreaterThan(0);
    expect(s.v2).toBe(0);
    const original = snapshot(t.pid);
    const sites = ["decode", "roundtrip"].map((n) => runtimeAddress(t.pid, pair.path, n));
    for (let round = 0; round < 3; round++) {
      const r = await applyPatch(t.pid, pkgs["pair-1"], { core, timeoutMs: 20000 });
      expect(r.patchId).toBe("pair-1");
      expect(r.consistency).toBe("function");
      expect(r.functions.map((f) => f.name).sort()).toEqual(["decode", "roundtrip"]);
      expect(r.functions.map((f) => f.site).sort()).toEqual([...sites].sort());
      expectJumps(t.pid, r);
      expectRegionMapped(t.pid, r);
      expectNoWX(t.pid);
      const applied = await stats(t);
      await sleep(150);
      s = await stats(t);
      expect(s.v2, `round ${round}: the new version is called`).toBeGreaterThan(applied.v2);
      // A call counts after it returns: at most one old call per thread was still to be counted.
      expect(s.v1 - applied.v1, `round ${round}: the old version is no longer called`).toBeLessThanOrEqual(THREADS);

      const rv = await revertPatch(t.pid, "pair-1", { core, timeoutMs: 20000 });
      expect(rv.reverted.map((x) => x.patchId)).toEqual(["pair-1"]);
      expect(rv.reverted[0].functions.sort()).toEqual(["decode", "roundtrip"]);
      const reverted = await stats(t);
      await sleep(150);
      s = await stats(t);
      expect(s.v1, `round ${round}: the old version is called again`).toBeGreaterThan(reverted.v1);
      expect(s.v2 - reverted.v2, `round ${round}: the new version is no longer called`).toBeLessThanOrEqual(THREADS);
      if (rv.reverted[0].freed) expectUnchanged(original); // entries restored, region gone
    }
    expect(s.mixes).toBe(0);
    expect(t.alive).toBe(true);
    expect(t.stderr).toBe("");
  });

  it("--consistency=entry lets threads inside roundtrip() switch to the new decode(): mixes appear (the detector works)", async () => {
    const { t } = await LiveTarget.start(pair.path);
    await sleep(100);
    let s = await stats(t);
    for (let round = 0; round < 12 && s.mixes === 0; round++) {
      const r = await applyPatch(t.pid, pkgs["pair-1"], { core, consistency: "entry", timeoutMs: 20000 });
      expect(r.consistency).toBe("entry");
      await sleep(30);
      await revertPatch(t.pid, "pair-1", { core, timeoutMs: 20000 });
      s = await stats(t);
    }
    expect(s.mixes, "no thread was ever caught between roundtrip()'s encoding and its call of decode()").toBeGreaterThan(0);
    expect(t.alive).toBe(true);
  });

  it("non-PIE: apply at the link-time addresses, status from the target, revert frees the region", async () => {
    const { t } = await LiveTarget.start(pairNoPie.path);
    await sleep(100);
    const before = snapshot(t.pid);
    const r = await applyPatch(t.pid, pkgs["pair-nopie-1"], { core, timeoutMs: 20000 });
    expect(r.module.bias).toBe(0n);
    expect(r.module.buildId).toBe(pkgs["pair-nopie-1"].model.target.buildId);
    for (const f of r.functions) expect(f.site).toBe(runtimeAddress(t.pid, pairNoPie.path, f.name));
    expectJumps(t.pid, r);
    // perf names the new code: "ADDR SIZE NAME" lines in the target's perf map
    const perfMap = `/proc/${t.pid}/root/tmp/perf-${t.pid}.map`;
    try {
      const lines = readFileSync(perfMap, "utf8").split("\n");
      for (const f of r.functions) expect(lines.some((l) => l.startsWith(`${f.newAddr.toString(16)} `) && l.includes(f.name)), `${perfMap}: ${f.name} at 0x${f.newAddr.toString(16)}`).toBe(true);
    } finally {
      rmSync(`/tmp/perf-${t.pid}.map`, { force: true });
    }
    const st = await readStatus(t.pid, { core });
    expect(st.patches.map((p) => [p.patchId, p.state, p.hash])).toEqual([["pair-nopie-1", "active", r.hash]]);
    expect(st.patches[0].functions.map((f) => [f.name, f.site, f.newAddr, f.current]).sort()).toEqual(r.functions.map((f) => [f.name, f.site, f.newAddr, true]).sort());
    const a = await stats(t);
    await sleep(150);
    const b = await stats(t);
    expect(b.v2).toBeGreaterThan(a.v2);
    const rv = await revertPatch(t.pid, "pair-nopie-1", { core, timeoutMs: 20000 });
    expect(rv.reverted[0].freed).toBe(true);
    expectUnchanged(before);
    expect((await readStatus(t.pid, { core })).patches).toEqual([]);
    const c = await stats(t);
    await sleep(150);
    const d = await stats(t);
    expect(d.v1).toBeGreaterThan(c.v1);
    expect(d.mixes).toBe(0);
  });
});

describe("a function in a shared library", () => {
  /** lib_answer's results, without lib_calls (the exported variable: apply-live-interpose.test.ts). */
  const call = async (t: LiveTarget, x: number) => {
    const { calls: _, ...rest } = await t.ask(`call ${x}`, "call");
    return rest;
  };

  it("is patched by the library's build-id; the executable and the library's other functions stay", async () => {
    const { t } = await LiveTarget.start(libmain);
    expect(await call(t, 5)).toEqual({ answer: "11", stable: "4", hits: "1" });
    const exeBefore = snapshot(t.pid);
    const r = await applyPatch(t.pid, pkgs["lib-1"], { core });
    expect(r.module.path).toMatch(/\/libfix\.so$/);
    expect(r.module.buildId).toBe(pkgs["lib-1"].model.target.buildId);
    expect(r.module.bias).toBeGreaterThan(0n);
    expect(r.functions.map((f) => [f.name, f.site])).toEqual([["lib_answer", runtimeAddress(t.pid, lib.path, "lib_answer")]]);
    expectJumps(t.pid, r);
    expectRegionMapped(t.pid, r);
    // Only lib_answer's entry changed in the text of every module.
    const now = snapshot(t.pid);
    const site = r.functions[0].site;
    for (const [k, b] of exeBefore.text) {
      const a = now.text.get(k)!;
      const lo = BigInt(`0x${k.split("-")[0]}`);
      if (site >= lo && site < lo + BigInt(b.length)) {
        const o = Number(site - lo);
        expect(Buffer.concat([a.subarray(0, o), a.subarray(o + 5)]).equals(Buffer.concat([b.subarray(0, o), b.subarray(o + 5)])), `${k} changed beyond lib_answer's entry`).toBe(true);
      } else {
        expect(a.equals(b), `${k} changed`).toBe(true);
      }
    }
    expect(await call(t, 5)).toEqual({ answer: "1010", stable: "4", hits: "2" });
    const rv = await revertPatch(t.pid, "lib-1", { core });
    expect(rv.reverted[0].freed).toBe(true);
    expectUnchanged(exeBefore);
    expect(await call(t, 6)).toEqual({ answer: "13", stable: "5", hits: "3" });
  });
});

describe("a patch calling libc and using the target's state", () => {
  it("memcpy/strlen (IFUNCs) and snprintf work; the global, the static local and each thread's TLS value continue", async () => {
    const refs = pkgs["libc-1"].model.references.map((x) => `${x.name}:${x.scope}:${x.bind}`).sort();
    // the build binds them as this test means: libc functions the program never imported, its PLT slot, module data
    expect(refs).toEqual(["calls.0:module:direct", "g_base:module:direct", "memcpy:dynamic:direct", "snprintf:dynamic:plt", "strlen:dynamic:direct", "t_calls:module:tls"]);
    const { t } = await LiveTarget.start(libc.path);
    const said = async (cmd: string) => {
      t.send(cmd);
      return t.line("said");
    };
    expect(await said("main alpha")).toBe(`v1 word=alpha calls=1 tls=1 base=1000`);
    expect(await said("main beta")).toBe(`v1 word=beta calls=2 tls=2 base=1000`);
    expect(await said("thread gamma")).toBe(`v1 word=gamma calls=3 tls=1 base=1000`);
    await applyPatch(t.pid, pkgs["libc-1"], { core });
    expect(await said("main delta")).toBe(`v2 word=atled len=5 calls=4 tls=3 base=1001`);
    expect(await said("thread epsilon")).toBe(`v2 word=nolispe len=7 calls=5 tls=2 base=1002`);
    const long = "x".repeat(100) + "y";
    expect(await said(`thread ${long}`)).toBe(`v2 word=${"y" + "x".repeat(100)} len=101 calls=6 tls=3 base=1003`);
    await revertPatch(t.pid, "libc-1", { core });
    expect(await said("main zeta")).toBe(`v1 word=zeta calls=7 tls=4 base=1003`);
    expect(t.stderr).toBe("");
  });
});

describe("a target with an LD_PRELOAD malloc", () => {
  it("the patched code allocates through the preloaded malloc (its counter rises)", async () => {
    expect(pkgs["alloc-1"].model.references.map((x) => `${x.name}:${x.scope}`).sort()).toEqual(["g_keep:module", "malloc:dynamic"]);
    const { t } = await LiveTarget.start(alloc.path, [], { LD_PRELOAD: countmalloc });
    expect(await t.ask("call 10", "call")).toEqual({ v: "1", sum: "285", allocs: "0" });
    await applyPatch(t.pid, pkgs["alloc-1"], { core });
    expect(await t.ask("call 10", "call")).toEqual({ v: "2", sum: "285", allocs: "1" });
    expect(await t.ask("call 1000", "call")).toEqual({ v: "2", sum: String([...Array(1000).keys()].reduce((a, i) => (a + i * i) | 0, 0)), allocs: "1" });
    await revertPatch(t.pid, "alloc-1", { core });
    expect(await t.ask("call 10", "call")).toEqual({ v: "1", sum: "285", allocs: "0" });
  });
});
