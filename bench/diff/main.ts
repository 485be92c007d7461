// bench/diff: issue 5's speed figure for `patchc build` — the object diff over every
// object of a real program (Debian's tmux 3.3a, built twice by prepare.sh: without and
// with its own bug fix upstream-0f6227f46b), excluding compilation, beside one
// `objdump -dr` pass over the same objects as the reference. Also checks the result:
// the fix touches cmd_set_buffer_exec only.
//
// PATCHC_BENCH_DIR overrides the work directory (default: $TMPDIR/patchc-bench-diff).
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { printTable, type Row } from "../table.js";
import { nodeCore } from "../../src/node/core-file.js";
import { ElfReader } from "../../src/core/elf.js";
import { diffObjects, type DiffResult } from "../../src/core/diff.js";

const dir = process.env.PATCHC_BENCH_DIR ?? join(tmpdir(), "patchc-bench-diff");
const here = fileURLToPath(new URL(".", import.meta.url));
const prepare = [join(here, "prepare.sh"), join(here, "../../bench/diff/prepare.sh"), "bench/diff/prepare.sh"].find((p) => {
  try { return statSync(p).isFile(); } catch { return false; }
})!;
execFileSync("bash", [prepare, dir], { stdio: "inherit" });

function objects(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".o")) out.push(relative(root, p));
    }
  };
  walk(root);
  return out.sort();
}

const names = objects(join(dir, "orig"));
const files = names.map((n) => ({ name: n, a: readFileSync(join(dir, "orig", n)), b: readFileSync(join(dir, "patched", n)) }));
const bytes = files.reduce((s, f) => s + f.a.length + f.b.length, 0);
const core = nodeCore();

function diffAll(): DiffResult[] {
  const r: DiffResult[] = [];
  for (const f of files) {
    const a = new ElfReader(core, f.a, "orig/" + f.name);
    const b = new ElfReader(core, f.b, "patched/" + f.name);
    try {
      r.push(diffObjects(core, a, b));
    } finally {
      a.close();
      b.close();
    }
  }
  return r;
}

function ms(fn: () => void): number {
  const s = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - s) / 1e6;
}

// Result check.
const results = diffAll();
const changed: string[] = [];
let funcs = 0;
let refusals = 0;
results.forEach((d, i) => {
  funcs += d.functions.length;
  refusals += d.refusals.length;
  for (const f of d.functions) if (f.status !== "unchanged") changed.push(`${files[i].name}:${f.name} ${f.status}`);
});

// Timing: median of 5 runs after the warm-up above (each run: open both ELF inputs in the
// core, diff, read every record out).
const times: number[] = [];
for (let i = 0; i < 5; i++) times.push(ms(() => diffAll()));
times.sort((x, y) => x - y);
const diffMs = times[2];
const wasmMiB = (core.exports.memory.buffer.byteLength / 1048576).toFixed(1);
const rssMiB = (process.memoryUsage().rss / 1048576).toFixed(0);

// Reference: one objdump -dr pass over the patched objects.
const od: number[] = [];
for (let i = 0; i < 3; i++) {
  od.push(ms(() => {
    const r = spawnSync("objdump", ["-dr", ...names.map((n) => join(dir, "patched", n))], { stdio: ["ignore", "ignore", "ignore"] });
    if (r.status !== 0) throw new Error("objdump failed");
  }));
}
od.sort((x, y) => x - y);
const odMs = od[1];

console.log(`objects: ${names.length} pairs (${(bytes / 1048576).toFixed(1)} MiB), functions: ${funcs}, refusals: ${refusals}`);
console.log(`not unchanged:\n  ${changed.join("\n  ")}`);
const rows: Row[] = [
  {
    what: "object diff, whole program",
    input: `tmux 3.3a, ${names.length} object pairs, ${funcs} functions`,
    wasm: `${diffMs.toFixed(0)} ms`,
    native: `${odMs.toFixed(0)} ms (objdump -dr)`,
    ratio: diffMs / odMs,
    note: `peak: core memory ${wasmMiB} MiB, process RSS ${rssMiB} MiB`,
  },
];
printTable("diff", rows);
if (changed.join() !== "cmd-set-buffer.o:cmd_set_buffer_exec changed" || refusals !== 0) {
  console.error("bench/diff: unexpected result (the fix touches cmd_set_buffer_exec only)");
  process.exit(1);
}
