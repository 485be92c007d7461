// The one-command path of `patchc build`: from a source tree, a unified diff and the
// build command to the two sets of objects the object diff compares, and the binary
// of the original build (the target the package is for).
//
// What makes the two builds comparable, and why:
//
// - The same build path. The compiler writes the directory it ran in into the
//   objects: __FILE__ strings (assert, logging macros) land in .rodata.str*, and the
//   DWARF names the compilation directory and the sources. Two trees built in two
//   places differ in every object. So the original is built in one fixed scratch
//   directory, its objects are saved, the directory is reset to a fresh copy of the
//   source, the diff is applied, and the patched tree is built in the very same place.
//   The copy keeps the files' times, so a build system sees the same tree both times.
// - The same flags, chosen here and given to the build command in the environment
//   (CFLAGS, CXXFLAGS, CPPFLAGS, LDFLAGS, which make, autoconf and most build systems
//   read; a build that takes flags otherwise, like nginx's configure --with-cc-opt,
//   passes "$CFLAGS" on in the command): `-ffunction-sections -fdata-sections` always,
//   so each function and each global is a section of its own that the diff compares
//   and the package carries alone; with `debian`, the distribution's flags from
//   dpkg-buildflags(1), run in the build directory because its -ffile-prefix-map
//   names that directory. gcc's `-flive-patching=inline-clone` (only inlining and
//   cloning, which the diff follows) is recommended through `extraCflags` where the
//   user controls how the running program is built: the flags must be the ones the
//   running binary was built with, or the proof of identity refuses the package.
// - The same time: SOURCE_DATE_EPOCH (https://reproducible-builds.org/specs/source-date-epoch/)
//   is set, unless the caller's environment has it, to the newest modification time
//   in the source tree, so __DATE__ and __TIME__ (which gcc takes from it) are equal.
// - A full build both times, never an incremental one: a build system's dependency
//   tracking may miss a change (a header it does not know of), and an object left over
//   from the first build would then pass for the second. A source tree that already
//   holds objects is refused for the same reason.
//
// Output (the `output` directory, which must be absent or empty):
//
//   output/original/<rel>.o   objects of the original build whose path the patched build has too
//   output/patched/<rel>.o    every object of the patched build
//   output/target/<name>      the linked binary of the original build (`binary`), the --target
//   output/patched-binary/<name>  the same binary from the patched build, for reference
//
// Objects are matched by their path relative to the build directory. An object of
// the original build that the patched build no longer makes is reported (`removed`),
// not copied: the diff cannot replace code that has no new version.
//
// Scratch (`scratch`, by default $TMPDIR/patchc-build-<name of the source>):
//
//   scratch/.patchc           our marker: the pid of the patchc using it (a lock)
//   scratch/<name>/           the build directory, the same for both builds
//
// It is created for the run and removed at its end, on success or failure. An existing
// scratch without our marker is never touched; one whose owner died is taken over.
//
// With `cache`, the original build's objects and binary are kept in
// cache/original-<key>/, key = sha256 of the source tree's content, the command, the
// flags, the build directory and the compiler's version: a second run with the same
// original skips that build (the patched one is always built).
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { BuildError, type CommandFailure } from "./errors.js";

export interface SourceBuildOptions {
  /** The source tree (not modified: it is copied). */
  source: string;
  /** A unified diff (patch -p<strip> from the top of the tree). */
  diff: string;
  /** Run with `sh -c` in the build directory, twice. */
  buildCommand: string;
  /** Where the objects and the binary go: absent or empty. */
  output: string;
  /** Path of the linked binary, relative to the build directory (e.g. objs/nginx). */
  binary?: string;
  /** Take CFLAGS, CXXFLAGS, CPPFLAGS, LDFLAGS from dpkg-buildflags. */
  debian?: boolean;
  /** Added to CFLAGS and CXXFLAGS after the others (e.g. -flive-patching=inline-clone). */
  extraCflags?: string[];
  /** patch -p level; 1 by default (diff -u a/... b/..., git diff, quilt patches). */
  strip?: number;
  /** Scratch root (see above). */
  scratch?: string;
  /** Keep the scratch directory after the run (for looking at a failed build). */
  keepScratch?: boolean;
  /** Directory caching the original build, keyed by the source's content. */
  cache?: string;
  /** Environment the builds start from (process.env by default). */
  env?: NodeJS.ProcessEnv;
  /** Progress: one line per step; with `verbose`, the builds' output too. */
  log?: (line: string) => void;
  verbose?: boolean;
}

export interface BuildFlags {
  CFLAGS: string;
  CXXFLAGS: string;
  CPPFLAGS: string;
  LDFLAGS: string;
  SOURCE_DATE_EPOCH: string;
}

export interface SourceBuildResult {
  /** Directories of objects, matched by relative path. */
  original: string;
  patched: string;
  /** Relative paths in both directories. */
  objects: string[];
  /** Relative paths only the patched build made (in `patched` only). */
  added: string[];
  /** Relative paths only the original build made (copied nowhere). */
  removed: string[];
  /** The original build's binary (output/target/<name>), when `binary` was given. */
  target?: string;
  patchedBinary?: string;
  /** The build directory both builds ran in (gone after the run unless keepScratch). */
  buildDir: string;
  flags: BuildFlags;
  /** The original build came from the cache. */
  cached: boolean;
  /** Wall time of each build in ms (0 for a cached one). */
  millis: { original: number; patched: number };
}

/** Flags every build for patchc gets (see the top of this file). */
export const SECTION_FLAGS = ["-ffunction-sections", "-fdata-sections"];
/** Recommended where the user builds the running program too. */
export const LIVE_PATCHING_FLAG = "-flive-patching=inline-clone";

const TAIL_LINES = 25;
const TAIL_BYTES = 64 * 1024;

export async function buildSourceTree(opts: SourceBuildOptions): Promise<SourceBuildResult> {
  const log = opts.log ?? (() => {});
  const source = path.resolve(opts.source);
  const diff = path.resolve(opts.diff);
  const output = path.resolve(opts.output);
  const strip = opts.strip ?? 1;
  if (!Number.isInteger(strip) || strip < 0) throw new BuildError("options", `strip level ${strip} is not a count`);
  if (opts.binary !== undefined && (path.isAbsolute(opts.binary) || opts.binary.split(/[\\/]/).includes(".."))) {
    throw new BuildError("options", `binary ${opts.binary}: give its path relative to the top of the build directory`);
  }
  checkDirectory("source", source);
  if (!isFile(diff)) throw new BuildError("options", `diff ${diff}: not a file`);
  const name = path.basename(source);
  const scratch = path.resolve(opts.scratch ?? path.join(os.tmpdir(), `patchc-build-${name}`));
  const buildDir = path.join(scratch, name);
  for (const [what, dir] of [["output", output], ["scratch", scratch]] as const) {
    if (inside(dir, source)) throw new BuildError("options", `${what} ${dir} is inside the source tree ${source}`);
    if (inside(source, dir)) throw new BuildError("options", `the source tree ${source} is inside the ${what} ${dir}`);
  }
  if (inside(output, scratch) || inside(scratch, output)) throw new BuildError("options", `output ${output} and scratch ${scratch} overlap`);
  prepareOutput(output);

  const tree = scanSource(source);
  if (tree.objects.length > 0) {
    throw new BuildError(
      "check source",
      `${source} already holds ${tree.objects.length} object file(s) (${tree.objects.slice(0, 3).join(", ")}${tree.objects.length > 3 ? ", ..." : ""}): ` +
        "give a clean tree (make clean, git clean -xdf) so both builds compile everything with the same flags",
    );
  }

  const created = [path.join(output, "original"), path.join(output, "patched"), path.join(output, "target"), path.join(output, "patched-binary")];
  let lock: ScratchLock | undefined;
  let ok = false;
  try {
    lock = takeScratch(scratch);
    const baseEnv = opts.env ?? process.env;
    const run = (step: string, command: string, args: string[] | null, env: NodeJS.ProcessEnv) =>
      runCommand(step, command, args, buildDir, env, opts.verbose ? log : undefined);

    // The fresh copy, the diff checked against it before anything is built.
    log(`copy ${source} -> ${buildDir}`);
    copyTree(source, buildDir);
    await run("check diff", "patch", ["--dry-run", ...patchArgs(strip, diff)], baseEnv);

    const flags = await buildFlags(opts, buildDir, baseEnv, tree.newestMtime);
    const env: NodeJS.ProcessEnv = { ...baseEnv, ...flags, LC_ALL: "C", TZ: "UTC" };
    log(`flags: CFLAGS=${flags.CFLAGS}`);

    // The original build, or its cached objects.
    const cacheKey = opts.cache ? await originalKey(opts, tree.hash, flags, buildDir, env) : undefined;
    const cacheDir = opts.cache && cacheKey ? path.join(path.resolve(opts.cache), `original-${cacheKey}`) : undefined;
    const original = path.join(output, "original");
    let originalObjects: string[];
    let originalMillis = 0;
    let cached = false;
    if (cacheDir && fs.existsSync(path.join(cacheDir, "complete"))) {
      log(`original build: from the cache ${cacheDir}`);
      originalObjects = listObjects(path.join(cacheDir, "objects"));
      copyFiles(path.join(cacheDir, "objects"), original, originalObjects);
      if (opts.binary !== undefined) copyBinary("original build", path.join(cacheDir, "binary"), path.join(output, "target", path.basename(opts.binary)));
      cached = true;
    } else {
      log(`build original: ${opts.buildCommand}`);
      const t0 = Date.now();
      await run("build original", "sh", ["-c", opts.buildCommand], env);
      originalMillis = Date.now() - t0;
      originalObjects = listObjects(buildDir);
      if (originalObjects.length === 0) {
        throw new BuildError("build original", `\`${opts.buildCommand}\` made no ELF relocatable object (.o) under ${buildDir}`);
      }
      copyFiles(buildDir, original, originalObjects);
      if (opts.binary !== undefined) copyBinary("build original", path.join(buildDir, opts.binary), path.join(output, "target", path.basename(opts.binary)));
      if (cacheDir) saveCache(cacheDir, original, originalObjects, opts.binary === undefined ? undefined : path.join(output, "target", path.basename(opts.binary)));
    }

    // The same directory, reset, with the diff applied.
    log(`reset ${buildDir}`);
    fs.rmSync(buildDir, { recursive: true, force: true });
    copyTree(source, buildDir);
    log(`apply ${diff}`);
    await run("apply diff", "patch", patchArgs(strip, diff), baseEnv);
    log(`build patched: ${opts.buildCommand}`);
    const t1 = Date.now();
    await run("build patched", "sh", ["-c", opts.buildCommand], env);
    const patchedMillis = Date.now() - t1;
    const patchedObjects = listObjects(buildDir);
    const patched = path.join(output, "patched");
    copyFiles(buildDir, patched, patchedObjects);
    let patchedBinary: string | undefined;
    if (opts.binary !== undefined) {
      patchedBinary = path.join(output, "patched-binary", path.basename(opts.binary));
      copyBinary("build patched", path.join(buildDir, opts.binary), patchedBinary);
    }

    // Matched by relative path: the original keeps only what the patched build has.
    const inPatched = new Set(patchedObjects);
    const inOriginal = new Set(originalObjects);
    const removed = originalObjects.filter((o) => !inPatched.has(o));
    for (const o of removed) fs.rmSync(path.join(original, o));
    fs.mkdirSync(original, { recursive: true });
    const result: SourceBuildResult = {
      original,
      patched,
      objects: patchedObjects.filter((o) => inOriginal.has(o)),
      added: patchedObjects.filter((o) => !inOriginal.has(o)),
      removed,
      target: opts.binary === undefined ? undefined : path.join(output, "target", path.basename(opts.binary)),
      patchedBinary,
      buildDir,
      flags,
      cached,
      millis: { original: originalMillis, patched: patchedMillis },
    };
    ok = true;
    return result;
  } finally {
    // Kept on request with its marker: the next run takes it over once this process is gone.
    if (lock && !opts.keepScratch) fs.rmSync(scratch, { recursive: true, force: true });
    if (!ok) for (const d of created) fs.rmSync(d, { recursive: true, force: true });
  }
}

function patchArgs(strip: number, diff: string): string[] {
  // --batch: never ask; --forward: a diff already applied is an error, not a reversal;
  // -r -: no .rej files in the tree (the error shows patch's output instead).
  return [`-p${strip}`, "--batch", "--forward", "--no-backup-if-mismatch", "-r", "-", "-i", diff];
}

async function buildFlags(opts: SourceBuildOptions, buildDir: string, env: NodeJS.ProcessEnv, newestMtime: number): Promise<BuildFlags> {
  const base = { CFLAGS: "", CXXFLAGS: "", CPPFLAGS: "", LDFLAGS: "" };
  if (opts.debian) {
    for (const k of Object.keys(base) as Array<keyof typeof base>) {
      const r = await runCommand("dpkg-buildflags", "dpkg-buildflags", ["--get", k], buildDir, env, undefined);
      base[k] = r.stdout.trim();
    }
  } else {
    base.CFLAGS = env.CFLAGS ?? "-O2 -g";
    base.CXXFLAGS = env.CXXFLAGS ?? "-O2 -g";
    base.CPPFLAGS = env.CPPFLAGS ?? "";
    base.LDFLAGS = env.LDFLAGS ?? "";
  }
  const extra = [...SECTION_FLAGS, ...(opts.extraCflags ?? [])];
  const add = (flags: string) => [flags, ...extra.filter((f) => !flags.split(/\s+/).includes(f))].filter(Boolean).join(" ");
  return {
    CFLAGS: add(base.CFLAGS),
    CXXFLAGS: add(base.CXXFLAGS),
    CPPFLAGS: base.CPPFLAGS,
    LDFLAGS: base.LDFLAGS,
    SOURCE_DATE_EPOCH: env.SOURCE_DATE_EPOCH ?? String(Math.floor(newestMtime / 1000)),
  };
}

async function originalKey(opts: SourceBuildOptions, treeHash: string, flags: BuildFlags, buildDir: string, env: NodeJS.ProcessEnv): Promise<string> {
  // The compiler the command will find first: its version is part of what the objects are.
  const cc = env.CC ?? "cc";
  const version = await runCommand("cache key", cc, ["--version"], os.tmpdir(), env, undefined).then(
    (r) => r.stdout,
    () => "",
  );
  const h = createHash("sha256");
  h.update(JSON.stringify({ v: 1, treeHash, command: opts.buildCommand, flags, buildDir, binary: opts.binary ?? null, cc, version }));
  return h.digest("hex").slice(0, 32);
}

function saveCache(cacheDir: string, objectsDir: string, objects: string[], binary: string | undefined): void {
  // Written to a temporary directory and renamed: a cache entry is whole or absent.
  const tmp = `${cacheDir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  try {
    copyFiles(objectsDir, path.join(tmp, "objects"), objects);
    if (binary) fs.copyFileSync(binary, path.join(tmp, "binary"));
    fs.writeFileSync(path.join(tmp, "complete"), `${new Date().toISOString()}\n`);
    fs.rmSync(cacheDir, { recursive: true, force: true });
    fs.renameSync(tmp, cacheDir);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw new BuildError("cache", `cannot write ${cacheDir}: ${(e as Error).message}`);
  }
}

// ---------------------------------------------------------------- commands

interface CommandOutput {
  stdout: string;
  stderr: string;
}

/** Runs a command; a failure (cannot start, exit status != 0, a signal) is a BuildError naming the step. */
export function runCommand(step: string, command: string, args: string[] | null, cwd: string, env: NodeJS.ProcessEnv, echo: ((line: string) => void) | undefined): Promise<CommandOutput> {
  const shown = args === null ? command : commandText(command, args);
  return new Promise((resolve, reject) => {
    const child = spawn(command, args ?? [], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    const out = new Tail();
    const err = new Tail();
    child.stdout.on("data", (b: Buffer) => {
      out.add(b);
      echo?.(b.toString("utf8").replace(/\n$/, ""));
    });
    child.stderr.on("data", (b: Buffer) => {
      err.add(b);
      echo?.(b.toString("utf8").replace(/\n$/, ""));
    });
    child.on("error", (e: NodeJS.ErrnoException) => {
      reject(new BuildError(step, `cannot run \`${shown}\` in ${cwd}: ${e.code === "ENOENT" ? `${command} not found` : e.message}`));
    });
    child.on("close", (status, signal) => {
      if (status === 0) return resolve({ stdout: out.text(), stderr: err.text() });
      const tail = lastLines(err.text().trim() ? err.text() : out.text(), TAIL_LINES);
      const failure: CommandFailure = { command: shown, cwd, status, signal, tail };
      const how = signal ? `was killed by ${signal}` : `exited with status ${status}`;
      reject(new BuildError(step, `\`${shown}\` ${how} (in ${cwd})${tail ? "; its last output:" : ", printing nothing"}`, failure));
    });
  });
}

/** Keeps the whole output up to TAIL_BYTES, then only its last TAIL_BYTES. */
class Tail {
  private chunks: Buffer[] = [];
  private size = 0;
  add(b: Buffer): void {
    this.chunks.push(b);
    this.size += b.length;
    while (this.size - this.chunks[0].length >= TAIL_BYTES) this.size -= this.chunks.shift()!.length;
  }
  text(): string {
    return Buffer.concat(this.chunks).toString("utf8");
  }
}

function lastLines(text: string, n: number): string {
  const lines = text.replace(/\s+$/, "").split("\n");
  return lines.slice(-n).join("\n");
}

function commandText(command: string, args: string[]): string {
  return [command, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(" ");
}

// ---------------------------------------------------------------- files

interface SourceScan {
  hash: string; // sha256 over (relative path, mode, content) of every file and link
  newestMtime: number; // ms
  objects: string[]; // ELF relocatable files found (a tree that is not clean)
}

const SKIP = new Set([".git", ".hg", ".svn", ".pc"]);

function scanSource(root: string): SourceScan {
  const h = createHash("sha256");
  let newest = 0;
  const objects: string[] = [];
  walk(root, "", (rel, full, st) => {
    newest = Math.max(newest, st.mtimeMs);
    if (st.isSymbolicLink()) {
      h.update(`L${rel}\0${fs.readlinkSync(full)}\0`);
      return;
    }
    const data = fs.readFileSync(full);
    h.update(`F${rel}\0${st.mode & 0o777}\0${data.length}\0`);
    h.update(data);
    if (isRelocatable(data)) objects.push(rel);
  });
  return { hash: h.digest("hex"), newestMtime: newest, objects };
}

/** Every file and symlink under root (not into version-control directories), sorted. */
function walk(root: string, rel: string, visit: (rel: string, full: string, st: fs.Stats) => void): void {
  const dir = path.join(root, rel);
  const names = fs.readdirSync(dir).sort();
  for (const n of names) {
    if (rel === "" && SKIP.has(n)) continue;
    const r = rel === "" ? n : `${rel}/${n}`;
    const full = path.join(root, r);
    const st = fs.lstatSync(full);
    if (st.isDirectory()) walk(root, r, visit);
    else if (st.isFile() || st.isSymbolicLink()) visit(r, full, st);
  }
}

/** ELF64 little-endian x86-64 ET_REL: what a compiler writes for a .o. */
function isRelocatable(head: Uint8Array): boolean {
  return head.length >= 20 && head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c && head[3] === 0x46 && head[16] === 1 && head[17] === 0;
}

/** Relative paths of the ELF relocatable objects under root, sorted. */
export function listObjects(root: string): string[] {
  const found: string[] = [];
  walk(root, "", (rel, full, st) => {
    if (st.isFile() && isObjectFile(full)) found.push(rel);
  });
  return found;
}

/** The file is an ELF relocatable object (by its header). */
export function isObjectFile(file: string): boolean {
  const head = Buffer.alloc(20);
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch {
    return false;
  }
  try {
    return fs.readSync(fd, head, 0, 20, 0) === 20 && isRelocatable(head);
  } finally {
    fs.closeSync(fd);
  }
}

function copyTree(from: string, to: string): void {
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.cpSync(from, to, {
    recursive: true,
    preserveTimestamps: true,
    verbatimSymlinks: true,
    errorOnExist: true,
    force: false,
    filter: (src) => !SKIP.has(path.basename(src)) || path.dirname(src) !== from,
  });
}

function copyFiles(fromRoot: string, toRoot: string, rels: string[]): void {
  for (const r of rels) {
    const dst = path.join(toRoot, r);
    fs.mkdirSync(path.dirname(dst), { recursive: true });
    fs.copyFileSync(path.join(fromRoot, r), dst);
  }
  fs.mkdirSync(toRoot, { recursive: true });
}

function copyBinary(step: string, from: string, to: string): void {
  if (!isFile(from)) throw new BuildError(step, `the build made no binary ${from}`);
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.copyFileSync(from, to);
  fs.chmodSync(to, fs.statSync(from).mode & 0o777);
}

function prepareOutput(output: string): void {
  if (fs.existsSync(output)) {
    checkDirectory("output", output);
    if (fs.readdirSync(output).length > 0) throw new BuildError("options", `output ${output} is not empty`);
  } else {
    fs.mkdirSync(output, { recursive: true });
  }
}

function checkDirectory(what: string, dir: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new BuildError("options", `${what} ${dir}: no such directory`);
  }
  if (!st.isDirectory()) throw new BuildError("options", `${what} ${dir}: not a directory`);
}

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/** `a` is `b` or below it. */
function inside(a: string, b: string): boolean {
  const r = path.relative(b, a);
  return r === "" || (!r.startsWith("..") && !path.isAbsolute(r));
}

// ---------------------------------------------------------------- scratch

interface ScratchLock {
  marker: string;
}

const MARKER = ".patchc";

/** Creates the scratch root for this process, taking over one whose owner died. */
function takeScratch(scratch: string): ScratchLock {
  fs.mkdirSync(path.dirname(scratch), { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.mkdirSync(scratch);
      fs.writeFileSync(path.join(scratch, MARKER), `${process.pid}\n`);
      return { marker: path.join(scratch, MARKER) };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw new BuildError("scratch", `cannot create ${scratch}: ${(e as Error).message}`);
    }
    let owner: number;
    try {
      owner = Number(fs.readFileSync(path.join(scratch, MARKER), "utf8").trim());
    } catch {
      throw new BuildError("scratch", `${scratch} exists and is not a patchc scratch directory: remove it or give another --scratch`);
    }
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner)) {
      throw new BuildError("scratch", `${scratch} is in use by patchc process ${owner}`);
    }
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  throw new BuildError("scratch", `cannot take ${scratch}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
