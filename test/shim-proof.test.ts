// The tracer's stop-scan-patch request (Tracer.stopCheckPatch, shim/proof.c) on the shim's
// own target (test/fixtures/shim/target.c): a stop it proves is patched and resumed in
// the same request; one it cannot prove is held for the caller, nothing written; and
// on many stops of threads calling version() and slow() all the time, it never proves
// a stop that the precise check (src/apply/safety.ts) refuses.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseMaps } from "../src/apply/maps.js";
import { ProcessUnwind } from "../src/apply/safety.js";
import { nodeCore } from "../src/node/core-file.js";
import { TS, mergeSpans } from "../src/shim/index.js";
import { perTest, rejects } from "./helpers/shim.js";

const core = nodeCore();
const { tracer, target } = perTest({ core });

const OLD = Uint8Array.of(0xb8, 0x01, 0x00, 0x00, 0x00); // mov eax, 1 (version's first bytes)
const NEW = Uint8Array.of(0xb8, 0x02, 0x00, 0x00, 0x00); // mov eax, 2

function execMapping(pid: number, test: (path: string) => boolean): { lo: bigint; hi: bigint } {
  const m = parseMaps(readFileSync(`/proc/${pid}/maps`, "utf8"), "maps").find((x) => x.exec && test(x.path));
  if (!m) throw new Error(`no such executable mapping in ${pid}`);
  return { lo: m.start, hi: m.end };
}

function states(pid: number): string[] {
  return [...readFileSync(`/proc/${pid}/task/${pid}/stat`, "utf8").matchAll(/\) (\S) /g)].map((m) => m[1]);
}

describe("Tracer.stopCheckPatch", () => {
  it("a stop with no stack word in the spans: patched and resumed in one request", async () => {
    const tg = await target(["--sleepers", "3", "--blocked"]);
    const t = tracer();
    await t.attach(tg.pid);
    const v = tg.ready.version;
    const span = { lo: v + 1n, hi: v + 16n };
    const r = await t.stopCheckPatch([span], [{ addr: v, expect: OLD, bytes: NEW }]);
    expect(r.proven).toBe(true);
    if (!r.proven) return;
    expect(r.resumed.pauseNs).toBeGreaterThan(0);
    expect(r.scanned).toBeGreaterThan(0);
    expect(await t.readMemory([{ addr: v, len: 5 }])).toEqual([NEW]);
    // resumed: the main thread answers, nobody is held (t: traced-stopped)
    expect((await tg.report()).violations).toBe(0);
    expect(states(tg.pid)).not.toContain("t");
    // and back, the same way
    const back = await t.stopCheckPatch([span], [{ addr: v, expect: NEW, bytes: OLD }]);
    expect(back.proven).toBe(true);
    expect(await t.readMemory([{ addr: v, len: 5 }])).toEqual([OLD]);
    const rep = await tg.report();
    expect(rep.messages).toEqual([]);
    expect(rep.violations).toBe(0);
  });

  it("a pc in a span: not proven, the world held with its stack windows, nothing written", async () => {
    const tg = await target(["--sleepers", "2"]);
    const t = tracer();
    const a = await t.attach(tg.pid);
    // every thread is in a libc syscall
    const libc = execMapping(tg.pid, (p) => /\/libc\.so/.test(p));
    const r = await t.stopCheckPatch([{ lo: libc.lo + 1n, hi: libc.hi }], [{ addr: tg.ready.version, expect: OLD, bytes: NEW }], { window: 1024 });
    expect(r.proven).toBe(false);
    if (r.proven) return;
    expect(r.reason).toBe(1);
    expect(a.tids).toContain(r.tid);
    expect(r.addr >= libc.lo && r.addr < libc.hi).toBe(true);
    expect(r.why).toBe(`a thread's pc is in a span: tid ${r.tid} (0x${r.addr.toString(16)})`);
    expect(r.world.threads.map((x) => x.tid).sort()).toEqual([...a.tids].sort());
    for (const th of r.world.threads) {
      expect(th.flags & TS.STOPPED).toBe(TS.STOPPED);
      expect(th.stack.length).toBe(1024);
    }
    expect(await t.readMemory([{ addr: tg.ready.version, len: 5 }])).toEqual([OLD]);
    await t.resumeAll();
    expect((await tg.report()).violations).toBe(0);
  });

  it("a return address in a span: not proven, naming the thread and where on its stack", async () => {
    const tg = await target(["--sleepers", "2"]);
    const t = tracer();
    await t.attach(tg.pid);
    // pcs in libc, return addresses into the executable on every sleeper's stack
    const exe = execMapping(tg.pid, (p) => p === readFileSync(`/proc/${tg.pid}/cmdline`, "utf8").split("\0")[0]);
    const r = await t.stopCheckPatch([{ lo: exe.lo + 1n, hi: exe.hi }], []);
    expect(r.proven).toBe(false);
    if (r.proven) return;
    expect(r.reason).toBe(2);
    const th = r.world.threads.find((x) => x.tid === r.tid)!;
    expect(r.where >= th.sp).toBe(true);
    const word = (await t.readMemory([{ addr: r.where, len: 8 }]))[0];
    expect(new DataView(word.buffer, word.byteOffset).getBigUint64(0, true)).toBe(r.addr);
    expect(r.addr > exe.lo && r.addr <= exe.hi).toBe(true);
    await t.resumeAll();
  });

  it("refuses spans that are not sorted and disjoint, before stopping anything", async () => {
    const tg = await target(["--sleepers", "1"]);
    const t = tracer();
    await t.attach(tg.pid);
    const native = (t as unknown as { native: { stopCheckPatch: (...a: unknown[]) => Promise<unknown> } }).native;
    const e = await native.stopCheckPatch(0, 1000, 1 << 20, BigUint64Array.of(0x2000n, 0x3000n, 0x2800n, 0x4000n), [], true, false).catch((x) => x);
    expect(e).toBeInstanceOf(Error);
    expect(String((e as Error).message)).toMatch(/span 1 \[0x2800, 0x4000\] is empty, unsorted or overlaps the one before/);
    expect(states(tg.pid)).not.toContain("t");
    // the wrapper sorts and merges
    expect(mergeSpans([{ lo: 0x2800n, hi: 0x4000n }, { lo: 0x2000n, hi: 0x3000n }, { lo: 0x4001n, hi: 0x4002n }, { lo: 9n, hi: 1n }])).toEqual([{ lo: 0x2000n, hi: 0x4002n }]);
    // a site that does not hold what is expected: nothing written, the world held (as patchAndResume)
    const v = tg.ready.version;
    const m = await rejects(t.stopCheckPatch([{ lo: v + 1n, hi: v + 16n }], [{ addr: v, expect: NEW, bytes: OLD }]));
    expect(m.code).toBe("SITE_MISMATCH");
    expect(await t.readMemory([{ addr: v, len: 5 }])).toEqual([OLD]);
    await t.resumeAll();
    expect((await tg.report()).violations).toBe(0);
  });

  it("over many stops of busy workers: never proves what the precise check refuses, and proves what has no frame in the spans", async () => {
    const tg = await target(["--workers", "3", "--sleepers", "2"]);
    const exe = readFileSync(`/proc/${tg.pid}/cmdline`, "utf8").split("\0")[0];
    const maps = parseMaps(readFileSync(`/proc/${tg.pid}/maps`, "utf8"), "maps");
    const pu = ProcessUnwind.prepare(core, { pid: tg.pid, maps });
    const t = tracer();
    await t.attach(tg.pid);
    // slow() spins 0.2 ms in a loop calling now(): workers are mostly inside it; version() is a leaf
    const size = (name: string) => BigInt("0x" + execFileSync("nm", ["-S", exe]).toString().split("\n").find((l) => l.endsWith(` ${name}`))!.split(" ")[1]);
    const slow = { lo: tg.ready.slow, hi: tg.ready.slow + size("slow"), name: "slow" };
    const version = { lo: tg.ready.version, hi: tg.ready.version + size("version"), name: "version" };
    const seen = { slow: { proven: 0, blocked: 0 }, version: { proven: 0, blocked: 0 } };
    try {
      for (let i = 0; i < 30; i++) {
        for (const [name, range] of [["slow", slow], ["version", version]] as const) {
          const r = await t.stopAndProve(pu.proofSpans([range], []), { window: 4096 });
          try {
            const v = await pu.check(t, r.world, [range], []);
            if (r.proven) expect(v.blockers, `stop ${i}, ${name}: proven by the scan, refused by the check`).toEqual([]);
            if (r.proven) seen[name].proven++;
            if (!v.safe) seen[name].blocked++;
          } finally {
            await t.resumeAll();
          }
        }
      }
    } finally {
      pu.close();
    }
    expect(seen.slow.blocked).toBeGreaterThan(0);
    expect(seen.version.proven).toBeGreaterThan(0);
    const rep = await tg.report();
    expect(rep.messages).toEqual([]);
    expect(rep.violations).toBe(0);
  });
});
