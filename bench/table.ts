// Result rows of the benchmarks, printed as a Markdown table (pasted into the README).

export interface Row {
  what: string; // the operation measured
  input: string; // on what
  wasm?: string; // patchc's figure, with its unit
  native?: string; // the reference's figure (C -O2, plain ptrace, ...), with its unit
  ratio?: number; // patchc time / reference time (lower is better; < 1: faster)
  note?: string;
}

export function printTable(title: string, rows: Row[]): void {
  console.log(`\n### ${title}\n`);
  console.log("| operation | input | patchc | reference | ratio | note |");
  console.log("|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(`| ${r.what} | ${r.input} | ${r.wasm ?? ""} | ${r.native ?? ""} | ${r.ratio === undefined ? "" : r.ratio.toFixed(2) + "x"} | ${r.note ?? ""} |`);
  }
}

/** Median wall time in ms of `fn` over `runs` runs, after one warm-up. */
export function timeMs(fn: () => void, runs = 5): number {
  fn();
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const s = process.hrtime.bigint();
    fn();
    t.push(Number(process.hrtime.bigint() - s) / 1e6);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)];
}
