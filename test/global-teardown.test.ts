// The suite's teardown removes only perf maps patchc alone wrote for processes that are gone.
import { describe, expect, it } from "vitest";
import { mkdtempSync, writeFileSync, existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { removeStalePerfMaps } from "./global-teardown.js";

describe("removeStalePerfMaps", () => {
  it("removes a dead process's patchc-only map, keeps a live process's, a JIT's and an old one", () => {
    const dir = mkdtempSync(join(tmpdir(), "perfmaps-"));
    const since = Date.now() - 1000;
    const dead = 4194304 + 7; // above pid_max's largest default: no such process
    const ours = "7f2a3c001040 5a patchc:fix-1:parse\n7f2a3c0010a0 10 patchc:fix-1:helper\n";
    writeFileSync(join(dir, `perf-${dead}.map`), ours);
    writeFileSync(join(dir, `perf-${process.pid}.map`), ours);
    writeFileSync(join(dir, `perf-${dead + 1}.map`), ours + "7f2a3c002000 40 LazyCompile:*foo\n");
    writeFileSync(join(dir, `perf-${dead + 2}.map`), "");
    writeFileSync(join(dir, "notes.txt"), ours);
    expect(removeStalePerfMaps(dir, since)).toBe(1);
    expect(existsSync(join(dir, `perf-${dead}.map`))).toBe(false);
    expect(readdirSync(dir).sort()).toEqual([`perf-${dead + 1}.map`, `perf-${dead + 2}.map`, `perf-${process.pid}.map`, "notes.txt"].sort());
    // a map older than the run is never touched
    writeFileSync(join(dir, `perf-${dead}.map`), ours);
    expect(removeStalePerfMaps(dir, Date.now() + 60_000)).toBe(0);
  });
});
