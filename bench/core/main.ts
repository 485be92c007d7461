// bench/core: the Wasm core beside a C -O2 implementation of the same algorithm and
// data layout, measured in the same run and reported as ratios (these machines are
// noisy; absolute numbers are for orientation only).
//
// Each area adds a section: a module in this folder exporting `run(): Promise<Row[]>`.
import { printTable, type Row } from "../table.js";

const sections: Array<[string, () => Promise<{ run(): Promise<Row[]> }>]> = [
  ["elf", () => import("./elf.js")],
  ["symbols", () => import("./symbols.js")],
  ["reloc", () => import("./reloc.js")],
  ["stack", () => import("./stack.js")],
  ["x86", () => import("./x86.js")],
];

const only = process.env.BENCH_ONLY?.split(",");
const rows: Row[] = [];
for (const [name, load] of sections) {
  if (only && !only.includes(name)) continue;
  rows.push(...(await (await load()).run()));
}
printTable("core", rows);
