// bench/build (`npm run bench build`): the offline work of `patchc build` over the whole
// real program (docs/real-program.md: nginx, 119 objects per build), compilation
// excluded, beside one `objdump -dr` pass over the same objects as the reference.
//
// The objects come from the source-tree path itself (src/build/source-tree.ts), built
// once and kept in the test cache ($PATCHC_TEST_CACHE or /var/cache/patchc-test, under
// nginx/<version>/objects/): the first run builds nginx twice (minutes).
//
// Measured, in one run:
//   - time: the median of 5 in-process runs after a warm-up (the core compiled once,
//     as the CLI does);
//   - peak memory: the maximum RSS of a child process doing the work once, from
//     /usr/bin/time, beside the same child doing nothing but loading the core.
// Rows:
//   - objdump -dr over the patched build's objects (one process, all files): the reference;
//   - opening every object of both builds in the core (ELF validation, sections, symbols,
//     relocations), what the diff reads;
//   - the object diff over every pair (src/core/diff.ts): both objects opened in the core,
//     diffed, every record read out; its result is checked: the fix changes
//     ngx_http_script_regex_end_code and nothing else;
//   - the whole step after compilation, as `patchc build` runs it: the diff over every
//     pair (build-diff.ts, identical files skipped), the proof of identity against the
//     target, the assembly and the encoding of the package (make-package.ts, writer.ts).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { buildSourceTree } from "../../src/build/source-tree.js";
import { pairObjects, type ObjectPair } from "../../src/build/objects.js";
import { ElfReader, SymbolTableKind } from "../../src/core/elf.js";
import { CoreError, type Core } from "../../src/core/instance.js";
import { diffObjects, type DiffResult } from "../../src/core/diff.js";
import { nodeCore } from "../../src/node/core-file.js";
import { diffBuilds } from "../../src/build/build-diff.js";
import { makePackage } from "../../src/build/make-package.js";
import { encodePackage } from "../../src/format/writer.js";
import { NGINX_BINARY, NGINX_BUILD_COMMAND, NGINX_VERSION, realNginx } from "../../test/helpers/nginx.js";
import { printTable, timeMs, type Row } from "../table.js";

/** The two builds' objects, built once into the cache. */
async function nginxObjects(): Promise<ObjectPair[]> {
  const { tree, fix, cache } = realNginx();
  const dir = path.join(cache, "nginx", NGINX_VERSION, "objects");
  if (!fs.existsSync(path.join(dir, "complete"))) {
    console.log(`building nginx twice into ${dir} (once; minutes)`);
    fs.rmSync(dir, { recursive: true, force: true });
    await buildSourceTree({
      source: tree,
      diff: fix,
      buildCommand: NGINX_BUILD_COMMAND,
      debian: true,
      binary: NGINX_BINARY,
      output: dir,
      cache: path.join(cache, "builds"),
    });
    fs.writeFileSync(path.join(dir, "complete"), `${new Date().toISOString()}\n`);
  }
  return pairObjects(path.join(dir, "original"), path.join(dir, "patched")).pairs;
}

function objectsDir(): string {
  return path.join(process.env.PATCHC_TEST_CACHE ?? "/var/cache/patchc-test", "nginx", NGINX_VERSION, "objects");
}

/** diff + proof + assembly + encoding: the package bytes. */
function packageAll(core: Core, pairs: ObjectPair[]): Uint8Array {
  const made = makePackage(core, { target: path.join(objectsDir(), "target", "nginx"), patchId: "cve-2026-42945", pairs, diff: diffBuilds(core, pairs) });
  return encodePackage(made.package);
}

/** Opens one object in the core and reads what the diff reads. */
function load(core: Core, file: string, data: Uint8Array): number {
  const e = new ElfReader(core, data, file);
  try {
    let n = e.sections().length + e.symbols(SymbolTableKind.SYMTAB).length;
    for (const t of e.relaTables()) n += e.relas(t).length;
    return n;
  } finally {
    e.close();
  }
}

function loadAll(core: Core, files: Array<[string, Uint8Array]>): number {
  let n = 0;
  for (const [f, d] of files) n += load(core, f, d);
  return n;
}

type Loaded = { name: string; original?: Uint8Array; patched: Uint8Array };

/** The diff of every pair (a new object: nothing to diff, all of it is added); an object the diff refuses as a whole gives its error. */
function diffAll(core: Core, pairs: Loaded[]): Array<[string, DiffResult | CoreError]> {
  const out: Array<[string, DiffResult | CoreError]> = [];
  for (const p of pairs) {
    if (!p.original) continue;
    const a = new ElfReader(core, p.original, `original/${p.name}`);
    const b = new ElfReader(core, p.patched, `patched/${p.name}`);
    try {
      out.push([p.name, diffObjects(core, a, b)]);
    } catch (e) {
      if (!(e instanceof CoreError)) throw e;
      out.push([p.name, e]);
    } finally {
      a.close();
      b.close();
    }
  }
  return out;
}

function objdump(files: string[]): void {
  const r = spawnSync("objdump", ["-dr", ...files], { stdio: ["ignore", "ignore", "pipe"], maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`objdump -dr failed: ${r.stderr}`);
}

/** Max RSS (KiB) and wall time (s) of a command, from /usr/bin/time. */
function measured(cmd: string, args: string[]): { rssKiB: number; seconds: number } {
  const r = spawnSync("/usr/bin/time", ["-f", "patchc-time %e %M", cmd, ...args], { encoding: "utf8", stdio: ["ignore", "ignore", "pipe"], maxBuffer: 1 << 30 });
  const m = /patchc-time ([\d.]+) (\d+)/.exec(r.stderr ?? "");
  if (r.status !== 0 || !m) throw new Error(`${cmd} failed: ${r.stderr}`);
  return { seconds: Number(m[1]), rssKiB: Number(m[2]) };
}

const mib = (kib: number) => `${(kib / 1024).toFixed(1)} MiB`;

function read(pairs: ObjectPair[]): Loaded[] {
  return pairs.map((p) => ({ name: p.name, original: p.original ? fs.readFileSync(p.original) : undefined, patched: fs.readFileSync(p.patched) }));
}

async function child(what: string): Promise<void> {
  const core = nodeCore();
  const pairs = await nginxObjects();
  const files = pairs.flatMap((p) => [p.original, p.patched]).filter((f): f is string => f !== undefined);
  if (what === "load") loadAll(core, files.map((f) => [f, fs.readFileSync(f)]));
  if (what === "diff") diffAll(core, read(pairs));
  if (what === "package") packageAll(core, pairs);
}

async function parent(): Promise<void> {
  const pairs = await nginxObjects();
  const patched = pairs.map((p) => p.patched);
  const all = pairs.flatMap((p) => [p.original, p.patched]).filter((f): f is string => f !== undefined);
  const bytes = all.reduce((n, f) => n + fs.statSync(f).size, 0);
  const core = nodeCore();
  const data: Array<[string, Uint8Array]> = all.map((f) => [f, fs.readFileSync(f)]);

  const objdumpMs = timeMs(() => objdump(patched), 3);
  const objdumpMem = measured("objdump", ["-dr", ...patched]);
  const loadMs = timeMs(() => void loadAll(core, data), 5);
  const loadedPairs = read(pairs);
  const results = diffAll(core, loadedPairs);
  const diffMs = timeMs(() => void diffAll(core, loadedPairs), 5);
  const self = process.argv[1];
  const idle = measured(process.execPath, [self, "--child", "idle"]);
  const loaded = measured(process.execPath, [self, "--child", "load"]);
  const diffed = measured(process.execPath, [self, "--child", "diff"]);
  const pkgBytes = packageAll(core, pairs);
  const packageMs = timeMs(() => void packageAll(core, pairs), 5);
  const packaged = measured(process.execPath, [self, "--child", "package"]);

  // The result: what the fix changes, and nothing refused.
  let functions = 0;
  const changed: string[] = [];
  const refusals: string[] = [];
  for (const [name, d] of results) {
    if (d instanceof CoreError) {
      refusals.push(`${name} refused: ${d.message}`);
      continue;
    }
    functions += d.functions.length;
    for (const f of d.functions) if (f.status !== "unchanged") changed.push(`${name}: ${f.name} ${f.status}`);
    for (const x of d.refusals) refusals.push(`${name}: ${x.message}`);
  }
  console.log(`diff: ${results.length} pairs, ${functions} functions; not unchanged: ${changed.join("; ") || "none"}; refusals: ${refusals.join("; ") || "none"}`);
  const expected = "objs/src/http/ngx_http_script.o: ngx_http_script_regex_end_code changed";

  const input = `nginx, ${pairs.length} objects`;
  const rows: Row[] = [
    { what: "objdump -dr (reference)", input: `${input} (patched build), ${mib(patched.reduce((n, f) => n + fs.statSync(f).size, 0) / 1024)}`, native: `${objdumpMs.toFixed(0)} ms`, note: `max RSS ${mib(objdumpMem.rssKiB)}` },
    {
      what: "open + sections + symbols + relocations",
      input: `${input} x 2 builds, ${mib(bytes / 1024)}`,
      wasm: `${loadMs.toFixed(0)} ms`,
      native: `${objdumpMs.toFixed(0)} ms`,
      ratio: loadMs / objdumpMs,
      note: `max RSS ${mib(loaded.rssKiB)} (Node + core alone: ${mib(idle.rssKiB)})`,
    },
    {
      what: "object diff, whole program",
      input: `${input} x 2 builds, ${functions} functions`,
      wasm: `${diffMs.toFixed(0)} ms`,
      native: `${objdumpMs.toFixed(0)} ms`,
      ratio: diffMs / objdumpMs,
      note: `max RSS ${mib(diffed.rssKiB)} (Node + core alone: ${mib(idle.rssKiB)}); core memory ${mib(core.exports.memory.buffer.byteLength / 1024)}${refusals.length ? `; ${refusals.length} refused (see above)` : ""}`,
    },
    {
      what: "diff + proof + package, as patchc build",
      input: `${input} x 2 builds, target nginx`,
      wasm: `${packageMs.toFixed(0)} ms`,
      native: `${objdumpMs.toFixed(0)} ms`,
      ratio: packageMs / objdumpMs,
      note: `max RSS ${mib(packaged.rssKiB)}; a ${pkgBytes.length}-byte package (identical objects are not diffed)`,
    },
  ];
  printTable("build", rows);
  if (changed.join("; ") !== expected || refusals.length) {
    console.error(`bench/build: unexpected diff result; expected only "${expected}"`);
    process.exitCode = 1;
  }
}

const i = process.argv.indexOf("--child");
if (i >= 0) await child(process.argv[i + 1]);
else await parent();
