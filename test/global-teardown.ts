// Runs once after the whole suite (vitest globalSetup's teardown): removes the perf maps
// (/tmp/perf-PID.map) that applies to test targets left behind once those targets are
// gone. Only a map written by patchc alone is removed: its process no longer exists,
// it changed during this run, and every line names patchc's code ("patchc:<id>:<fn>",
// src/apply/perf-map.ts); a map a JIT wrote, or one of a live process, is never touched.
import { readdirSync, readFileSync, statSync, unlinkSync, existsSync } from "node:fs";

const MAP_RE = /^perf-(\d+)\.map$/;
const LINE_RE = /^[0-9a-f]+ [0-9a-f]+ patchc:\S+/;

export function removeStalePerfMaps(dir: string, since: number): number {
  let removed = 0;
  for (const name of readdirSync(dir)) {
    const m = MAP_RE.exec(name);
    if (!m || existsSync(`/proc/${m[1]}`)) continue;
    const path = `${dir}/${name}`;
    try {
      if (statSync(path).mtimeMs < since) continue;
      const lines = readFileSync(path, "utf8").split("\n").filter((l) => l !== "");
      if (lines.length > 0 && lines.every((l) => LINE_RE.test(l))) {
        unlinkSync(path);
        removed++;
      }
    } catch {
      // gone meanwhile, or not ours to read: leave it
    }
  }
  return removed;
}

export default function setup(): () => void {
  const since = Date.now() - 1000;
  return () => {
    removeStalePerfMaps("/tmp", since);
  };
}
