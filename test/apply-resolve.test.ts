// openTarget and resolveReferences against live processes: a fixture (PIE and non-PIE)
// that loads a shared library and runs under an LD_PRELOAD malloc prints, to a pipe,
// the addresses it sees itself (&global, a static local through a helper, its TLS
// variable's thread-pointer offset, memcpy as the library's GOT holds it after a call,
// dlsym's answers for an IFUNC nobody has bound and for the preloaded calloc). A patch
// package made by the real `patchc build` references those; each reference resolved in
// the running process must be exactly what the process sees.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { buildSync } from "esbuild";
import { once } from "node:events";
import { join } from "node:path";
import { nodeCore } from "../src/node/core-file.js";
import { main } from "../src/cli/main.js";
import { readPackageFile, type ReadPackage } from "../src/format/reader.js";
import { ElfReader } from "../src/core/elf.js";
import { ApplyError } from "../src/apply/errors.js";
import { closeTarget, openTarget } from "../src/apply/target.js";
import { clearResolveCache, resolveReferences } from "../src/apply/resolve.js";
import type { ResolvedReference, TargetProcess } from "../src/apply/contract.js";
import { ProcMemory } from "../src/apply/proc-memory.js";
import { Scratch, run } from "./helpers/gcc.js";
import { rejected, thrown } from "./helpers/thrown.js";

const core = nodeCore();
let scratch: Scratch;
const children: ChildProcess[] = [];

const LIB_C = `
#include <string.h>
__thread int lib_tls = 5;
__thread int lib_tls_ie __attribute__((tls_model("initial-exec"))) = 9;
int lib_global = 11;
void *lib_copy(void *d, const void *s, size_t n) { return memcpy(d, s, n); }
size_t lib_len(const char *s) { return strlen(s); } /* never called: its JUMP_SLOT stays lazy */
long lib_tls_off(void) { return (char *)&lib_tls - (char *)__builtin_thread_pointer(); }
long lib_tls_ie_off(void) { return (char *)&lib_tls_ie - (char *)__builtin_thread_pointer(); }
int *lib_global_addr(void) { return &lib_global; }
__attribute__((noinline)) int lib_work(int x) { return x + lib_global + lib_tls; }
`;
const LIB_FIX = LIB_C.replace("return x + lib_global + lib_tls;", "return x * 2 + lib_global - lib_tls + lib_tls_ie;");

// A malloc of our own, preloaded: a bump allocator over one mmap'd arena.
const PRELOAD_C = `
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
static char *arena, *top, *end;
static void *take(size_t n, size_t align) {
  if (!arena) { arena = top = mmap(0, 64 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); end = arena + (64 << 20); }
  top = (char *)(((size_t)top + align - 1) & ~(align - 1));
  if (top + n + 16 > end) return 0;
  *(size_t *)top = n; top += 16;
  void *p = top; top += n; return p;
}
void *malloc(size_t n) { return take(n, 16); }
void free(void *p) { (void)p; }
void *calloc(size_t a, size_t b) { void *p = take(a * b, 16); if (p) memset(p, 0, a * b); return p; }
void *realloc(void *p, size_t n) { void *q = take(n, 16); if (p && q) { size_t o = ((size_t *)p)[-2]; memcpy(q, p, o < n ? o : n); } return q; }
void *memalign(size_t a, size_t n) { return take(n, a < 16 ? 16 : a); }
void *aligned_alloc(size_t a, size_t n) { return memalign(a, n); }
int posix_memalign(void **r, size_t a, size_t n) { *r = memalign(a, n); return *r ? 0 : 12; }
size_t malloc_usable_size(void *p) { return ((size_t *)p)[-2]; }
`;

const MAIN_C = `
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int ext_global = 7;
__thread int tls_var = 3;
void *lib_copy(void *, const void *, size_t);
long lib_tls_off(void);
long lib_tls_ie_off(void);
int *lib_global_addr(void);
int lib_work(int);
/* an IFUNC of the executable itself: the resolver's choice is printed as the oracle */
static int ifn_a(int x) { return x + 1; }
static int ifn_b(int x) { return x + 2; }
static void *ifn_resolver(void) { return getenv("PATCHC_NEVER_SET") ? (void *)ifn_b : (void *)ifn_a; }
int my_ifn(int) __attribute__((ifunc("ifn_resolver")));
__attribute__((noinline)) int *bump(void) { static int hits = 1; hits++; return &hits; }
__attribute__((noinline)) long work(long x) {
  char *p = malloc(x + 1);
  long r = x + ext_global + tls_var + (p != 0);
  free(p);
  return r;
}
int main(int argc, char **argv) {
  char a[64], b[64] = "abc";
  (void)argv;
  lib_copy(a, b, (size_t)argc + 3);
  printf("ext_global %p\\n", (void *)&ext_global);
  printf("my_ifn %p %d\\n", ifn_resolver(), my_ifn(argc));
  printf("hits %p\\n", (void *)bump());
  printf("tls_var %ld\\n", (long)((char *)&tls_var - (char *)__builtin_thread_pointer()));
  printf("memcpy %p\\n", dlsym(RTLD_DEFAULT, "memcpy"));
  printf("strlen %p\\n", dlsym(RTLD_DEFAULT, "strlen"));
  printf("memrchr %p\\n", dlsym(RTLD_DEFAULT, "memrchr"));
  printf("calloc %p\\n", dlsym(RTLD_DEFAULT, "calloc"));
  printf("malloc %p\\n", dlsym(RTLD_DEFAULT, "malloc"));
  printf("lib_tls %ld\\n", lib_tls_off());
  printf("lib_tls_ie %ld\\n", lib_tls_ie_off());
  printf("lib_global %p\\n", (void *)lib_global_addr());
  printf("work %ld %d\\n", work(argc), lib_work(argc));
  printf("ready\\n");
  fflush(stdout);
  for (;;) pause();
}
`;
// The fix: work() now also uses calloc (the preloaded one), memcpy and memrchr (IFUNCs the
// executable never imported), and bump() changes its static local.
const MAIN_FIX = MAIN_C.replace(
  "  long r = x + ext_global + tls_var + (p != 0);\n  free(p);",
  "  char *q = calloc(x + 1, 1);\n  memcpy(p, q, x);\n  char *e = memrchr(p, 0, x);\n  long r = x + ext_global + tls_var + (e != 0) + *bump() + (long)strlen(e ? e : p) + my_ifn(x);\n  free(q);\n  free(p);",
).replace("static int hits = 1; hits++;", "static int hits = 1; hits += 2;");

const CFLAGS = ["-O2", "-g", "-ffunction-sections", "-fdata-sections"];

interface Build {
  dir: string;
  exe: string;
  lib: string;
  preload: string;
  exePatch: ReadPackage;
  libPatch: ReadPackage;
}

function cc(args: string[], cwd: string): void {
  const r = spawnSync("gcc", args, { cwd, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`gcc ${args.join(" ")}: ${r.stderr}`);
}

async function patchcBuild(orig: string, patched: string, target: string, out: string): Promise<ReadPackage> {
  let err = "";
  const io = { out: () => undefined, err: (t: string) => void (err += t), isTTY: false };
  const code = await main(["build", "--orig", orig, "--patched", patched, "--target", target, "-o", out], io);
  if (code !== 0) throw new Error(`patchc build ${target}: exit ${code}: ${err}`);
  return readPackageFile(core, out);
}

/** Compiles the library, the preload malloc and the executable (PIE or not), and their patches. */
async function buildAll(pie: boolean): Promise<Build> {
  const dir = scratch.path(pie ? "pie" : "nopie");
  for (const d of ["orig", "fixed", "src"]) mkdirSync(join(dir, d), { recursive: true });
  const pic = pie ? ["-fPIE"] : ["-fno-PIE"];
  const compile = (name: string, text: string, out: string, flags: string[]) => {
    writeFileSync(join(dir, "src", name), text);
    cc([...CFLAGS, ...flags, "-c", name, "-o", out], join(dir, "src"));
  };
  compile("fx.c", LIB_C, join(dir, "orig", "fx.o"), ["-fPIC"]);
  const lib = join(dir, "libfx.so");
  cc(["-shared", "-Wl,--build-id", join(dir, "orig", "fx.o"), "-o", lib], dir);
  const preload = join(dir, "libpremalloc.so");
  writeFileSync(join(dir, "premalloc.c"), PRELOAD_C);
  cc(["-O2", "-shared", "-fPIC", "-Wl,--build-id", "premalloc.c", "-o", preload], dir);
  compile("main.c", MAIN_C, join(dir, "orig", "main.o"), pic);
  const exe = join(dir, "fixture");
  cc([pie ? "-pie" : "-no-pie", "-Wl,--build-id", join(dir, "orig", "main.o"), `-L${dir}`, `-Wl,-rpath,${dir}`, "-lfx", "-o", exe], dir);
  // The fixed builds, each in a directory of its own with the same object name.
  mkdirSync(join(dir, "fixed-exe"));
  mkdirSync(join(dir, "orig-exe"));
  mkdirSync(join(dir, "fixed-lib"));
  mkdirSync(join(dir, "orig-lib"));
  copyFileSync(join(dir, "orig", "main.o"), join(dir, "orig-exe", "main.o"));
  copyFileSync(join(dir, "orig", "fx.o"), join(dir, "orig-lib", "fx.o"));
  compile("main.c", MAIN_FIX, join(dir, "fixed-exe", "main.o"), pic);
  compile("fx.c", LIB_FIX, join(dir, "fixed-lib", "fx.o"), ["-fPIC"]);
  const exePatch = await patchcBuild(join(dir, "orig-exe"), join(dir, "fixed-exe"), exe, join(dir, "exe.patch"));
  const libPatch = await patchcBuild(join(dir, "orig-lib"), join(dir, "fixed-lib"), lib, join(dir, "lib.patch"));
  return { dir, exe, lib, preload, exePatch, libPatch };
}

interface Running {
  child: ChildProcess;
  pid: number;
  seen: Map<string, string>;
}

async function start(b: Build): Promise<Running> {
  const child = spawn(b.exe, [], { env: { ...process.env, LD_PRELOAD: b.preload }, stdio: ["ignore", "pipe", "inherit"] });
  children.push(child);
  let text = "";
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => {
      text += d.toString();
      if (text.includes("ready\n")) resolve();
    });
    child.on("exit", (code, sig) => reject(new Error(`fixture exited (${code ?? sig}): ${text}`)));
  });
  const seen = new Map<string, string>();
  for (const line of text.split("\n")) {
    const [k, ...v] = line.split(" ");
    if (k) seen.set(k, v.join(" "));
  }
  return { child, pid: child.pid!, seen };
}

const ptr = (s: string | undefined): bigint => BigInt(s!);

function refByName(pkg: ReadPackage, res: ResolvedReference[], name: string): ResolvedReference {
  const i = pkg.model.references.findIndex((r) => r.name === name);
  if (i < 0) throw new Error(`the package has no reference ${name}: ${pkg.model.references.map((r) => `${r.name} ${r.bind}/${r.scope}`).join(", ")}`);
  return res.find((r) => r.reference === i)!;
}

function buildIdOf(path: string): string {
  const e = new ElfReader(core, readFileSync(path), path);
  const id = e.info.buildId!;
  e.close();
  return id;
}

/** Runtime address of `name@plt` in the executable, by objdump (plus the load bias). */
function pltOf(exe: string, name: string, bias: bigint): bigint {
  const m = new RegExp(`^([0-9a-f]+) <${name}@plt>:`, "m").exec(run("objdump", ["-d", "--no-show-raw-insn", exe]));
  if (!m) throw new Error(`objdump shows no ${name}@plt in ${exe}`);
  return BigInt("0x" + m[1]) + bias;
}

beforeAll(() => {
  scratch = new Scratch();
});

afterAll(() => {
  for (const c of children) c.kill("SIGKILL");
  scratch?.remove();
});

for (const pie of [true, false]) {
  describe(`resolve in a live ${pie ? "PIE" : "non-PIE"} process`, () => {
    let b: Build;
    let p: Running;
    let target: TargetProcess | undefined;

    beforeAll(async () => {
      b = await buildAll(pie);
      p = await start(b);
    });
    afterAll(() => {
      if (target) closeTarget(target);
      p?.child.kill("SIGKILL");
    });

    it("opens the process: the executable by build-id, its bias, the link_map with the preload first", () => {
      target = openTarget(core, p.pid, b.exePatch.model.target.buildId, b.exePatch.file, b.exePatch.model.target.path);
      expect(target.module.module.path).toBe(b.exe);
      expect(target.module.image.info.buildId).toBe(buildIdOf(b.exe));
      if (pie) expect(target.module.bias).not.toBe(0n);
      else expect(target.module.bias).toBe(0n);
      const names = target.linkMap.map((e) => e.name);
      expect(names[0]).toBe("");
      // ld.so's order: the executable, the vDSO, LD_PRELOAD, then DT_NEEDED.
      const iPre = names.indexOf(b.preload);
      expect(iPre).toBeGreaterThan(0);
      expect(names.indexOf(b.lib)).toBeGreaterThan(iPre);
      expect(names.findIndex((n) => n.endsWith("/libc.so.6"))).toBeGreaterThan(iPre);
    });

    it("binds every reference of the executable's patch to what the process itself sees", async () => {
      const pkg = b.exePatch;
      const res = await resolveReferences(core, target!, pkg, {});
      expect(res.map((r) => r.reference)).toEqual(pkg.model.references.map((_, i) => i));
      const addrOf = (name: string): bigint => {
        const r = refByName(pkg, res, name);
        expect(r.binding.kind, r.how).toBe("addr");
        return (r.binding as { addr: bigint }).addr;
      };
      expect(addrOf("ext_global")).toBe(ptr(p.seen.get("ext_global")));
      const hits = pkg.model.references.find((r) => r.name.startsWith("hits"))!;
      expect(hits.local).toBeDefined();
      expect(addrOf(hits.name)).toBe(ptr(p.seen.get("hits")));
      // IFUNCs: memcpy as the library's GOT holds it, memrchr as its resolver says (dlsym calls it).
      expect(addrOf("memcpy")).toBe(ptr(p.seen.get("memcpy")));
      expect(refByName(pkg, res, "memcpy").how).toMatch(/IFUNC: .*JUMP_SLOT slot /);
      // strlen: the library's JUMP_SLOT was never called (still its lazy PLT stub): the resolver decides.
      expect(addrOf("strlen")).toBe(ptr(p.seen.get("strlen")));
      expect(refByName(pkg, res, "strlen").how).toMatch(/resolver .* returned/);
      expect(addrOf("memrchr")).toBe(ptr(p.seen.get("memrchr")));
      expect(refByName(pkg, res, "memrchr").how).toMatch(/resolver .* returned/);
      // The executable's own IFUNC: what ld.so resolved into its IRELATIVE slot.
      expect(addrOf("my_ifn")).toBe(ptr(p.seen.get("my_ifn")!.split(" ")[0]));
      expect(refByName(pkg, res, "my_ifn").how).toMatch(/IRELATIVE slot/);
      // The preloaded calloc, ahead of libc's in the search order.
      expect(addrOf("calloc")).toBe(ptr(p.seen.get("calloc")));
      expect(refByName(pkg, res, "calloc").how).toContain(b.preload);
      // malloc through the executable's own PLT entry, whose GOT slot holds the preloaded one.
      const m = refByName(pkg, res, "malloc");
      expect(m.binding).toEqual({ kind: "plt", addr: pltOf(b.exe, "malloc", target!.module.bias) });
      // TLS: the executable's block, at the offset the process computes itself.
      const t = refByName(pkg, res, "tls_var");
      expect(t.binding.kind).toBe("tls");
      const tb = t.binding as { module: bigint; offset: bigint; blockTpoff?: bigint };
      expect(tb.module).toBe(1n);
      expect(tb.blockTpoff! + tb.offset).toBe(BigInt(p.seen.get("tls_var")!));
      for (const r of res) expect(r.how.length).toBeGreaterThan(10);
      if (process.env.PATCHC_SHOW) console.log(res.map((r) => `${pkg.model.references[r.reference].name}: ${r.how}`).join("\n"));
    });

    it("binds the library's patch: its global and its TLS block (module id and offset from its link_map)", async () => {
      const lt = openTarget(core, p.pid, b.libPatch.model.target.buildId, b.libPatch.file);
      try {
        expect(lt.module.module.path).toBe(b.lib);
        const res = await resolveReferences(core, lt, b.libPatch, {});
        const g = refByName(b.libPatch, res, "lib_global");
        const gaddr = g.binding.kind === "addr" ? g.binding.addr : g.binding.kind === "got" ? Buffer.from(readMem(p.pid, g.binding.slot, 8)).readBigUInt64LE(0) : -1n;
        expect(gaddr).toBe(ptr(p.seen.get("lib_global")));
        const t = refByName(b.libPatch, res, "lib_tls");
        const tb = t.binding as { kind: string; module: bigint; offset: bigint; blockTpoff?: bigint };
        expect(tb.kind).toBe("tls");
        expect(tb.module).toBeGreaterThan(1n);
        expect(tb.blockTpoff! + tb.offset).toBe(BigInt(p.seen.get("lib_tls")!));
        expect(t.how).toContain("its link_map");
        const ie = refByName(b.libPatch, res, "lib_tls_ie");
        const ib = ie.binding as { kind: string; module: bigint; offset: bigint; blockTpoff?: bigint };
        expect(b.libPatch.model.references[ie.reference].tls!.model).toBe("ie");
        expect({ module: ib.module, at: ib.blockTpoff! + ib.offset }).toEqual({ module: tb.module, at: BigInt(p.seen.get("lib_tls_ie")!) });
        // Without its link_map entry: the same facts from the TPOFF64 / DTPMOD64 slots ld.so filled.
        const viaGot = await resolveReferences(core, { ...lt, linkMap: [] }, b.libPatch, {});
        const g2 = refByName(b.libPatch, viaGot, "lib_tls");
        expect(g2.binding).toEqual(t.binding);
        expect(g2.how).toContain("its GOT slots as ld.so filled them");
      } finally {
        closeTarget(lt);
      }
    });

    it("checks module symbols of a stripped executable in its debug file, found by build-id", async () => {
      const stripped = join(b.dir, "fixture-stripped");
      copyFileSync(b.exe, stripped);
      run("strip", ["--strip-all", stripped]);
      const id = buildIdOf(b.exe);
      expect(buildIdOf(stripped)).toBe(id);
      const debugDir = join(b.dir, "debug");
      mkdirSync(join(debugDir, ".build-id", id.slice(0, 2)), { recursive: true });
      const debugFile = join(debugDir, ".build-id", id.slice(0, 2), `${id.slice(2)}.debug`);
      run("objcopy", ["--only-keep-debug", b.exe, debugFile]);
      const s = await start({ ...b, exe: stripped });
      const st = openTarget(core, s.pid, b.exePatch.model.target.buildId, b.exePatch.file);
      try {
        const pkg = b.exePatch;
        // symbol tables are kept by build-id between calls: forget the unstripped file's
        clearResolveCache(core);
        let res = await resolveReferences(core, st, pkg, { debugDirs: [debugDir] });
        const hits = pkg.model.references.find((r) => r.name.startsWith("hits"))!;
        expect(refByName(pkg, res, hits.name).binding).toEqual({ kind: "addr", addr: ptr(s.seen.get("hits")) });
        // looked up in the target's root first (the same as ours here)
        expect(refByName(pkg, res, hits.name).how).toContain(`checked in ${debugFile})`);
        // a wrong position of the local is caught in the debug file
        const i = pkg.model.references.indexOf(hits);
        const bad = { ...pkg, model: { ...pkg.model, references: pkg.model.references.map((r, k) => (k === i ? { ...r, local: { file: "main.c", sympos: 2 } } : r)) } };
        await expect(resolveReferences(core, st, bad, { debugDirs: [debugDir] })).rejects.toThrow(`${debugFile} has no local symbol ${hits.name} of main.c at position 2`);
        // without the debug file: bound by the package's address, said to be unchecked
        clearResolveCache(core);
        res = await resolveReferences(core, st, pkg, { debugDirs: [join(b.dir, "nowhere")] });
        expect(refByName(pkg, res, hits.name).binding).toEqual({ kind: "addr", addr: ptr(s.seen.get("hits")) });
        expect(refByName(pkg, res, hits.name).how).toMatch(/unchecked: no symbol table/);
      } finally {
        closeTarget(st);
        s.child.kill("SIGKILL");
      }
    });

    it("refuses a reference the process cannot bind, naming the process, the reference and why", async () => {
      const pkg = b.exePatch;
      const refs = pkg.model.references;
      const altered = (i: number, change: object): ReadPackage => ({ ...pkg, model: { ...pkg.model, references: refs.map((r, k) => (k === i ? { ...r, ...change } : r)) } });
      const unresolved = async (q: ReadPackage): Promise<ApplyError> => {
        const e = await rejected(ApplyError, resolveReferences(core, target!, q, {}));
        expect(e.code).toBe("UNRESOLVED");
        expect(e.message).toContain(`process ${p.pid}: reference `);
        return e;
      };
      const iCalloc = refs.findIndex((r) => r.name === "calloc");
      let e = await unresolved(altered(iCalloc, { name: "no_such_function_xyz" }));
      expect(e.message).toMatch(/reference no_such_function_xyz \(direct, scope dynamic\) .*no module in the process's search order defines no_such_function_xyz \(searched .*libpremalloc\.so.*libc\.so\.6/);
      // A version no module defines (ld.so would take an unversioned definition, as the preload's
      // calloc is, for any version: so memrchr, which only libc defines, with versions).
      e = await unresolved(altered(refs.findIndex((r) => r.name === "memrchr"), { version: "GLIBC_9.99" }));
      expect(e.message).toContain("defines memrchr@GLIBC_9.99");
      const iGlobal = refs.findIndex((r) => r.name === "ext_global");
      e = await unresolved(altered(iGlobal, { addr: refs[iGlobal].addr! + 8n }));
      expect(e.message).toMatch(/ext_global .*the package has it at 0x[0-9a-f]+, .* at 0x[0-9a-f]+/);
      const iHits = refs.findIndex((r) => r.name.startsWith("hits"));
      e = await unresolved(altered(iHits, { local: { file: "main.c", sympos: 2 } }));
      expect(e.message).toMatch(/has no local symbol hits\.\d+ of main\.c at position 2/);
      const iMalloc = refs.findIndex((r) => r.name === "malloc");
      e = await unresolved(altered(iMalloc, { bind: "got", gotSlot: 0x10000000000n }));
      expect(e.message).toMatch(/reference malloc@GLIBC_2\.2\.5 \(got, scope dynamic\) .*: its GOT slot 0x[0-9a-f]+ is not in the memory of /);
      e = await unresolved(altered(iMalloc, { pltEntry: refs[iGlobal].addr }));
      expect(e.message).toMatch(/its PLT entry 0x[0-9a-f]+ is not in the code of /);
      e = await unresolved(altered(iGlobal, { scope: "patch", patch: "earlier-1" }));
      expect(e.message).toContain("patch earlier-1 is not applied");
      // scope patch with the caller's answer
      const res = await resolveReferences(core, target!, altered(iGlobal, { scope: "patch", patch: "earlier-1" }), { patchSymbol: (id, name) => (id === "earlier-1" && name === "ext_global" ? 0x1234n : undefined) });
      expect(res[iGlobal].binding).toEqual({ kind: "addr", addr: 0x1234n });
    });

    it("refuses a package for another build, a dead process and a zombie", async () => {
      const other = "ab".repeat(20);
      const wrong = thrown(ApplyError, () => openTarget(core, p.pid, other, "/x/other.patch", "/usr/sbin/other"));
      expect(wrong.code).toBe("WRONG_BUILD");
      expect(wrong.message).toContain(`process ${p.pid}: the package /x/other.patch is for build-id ${other} (built for /usr/sbin/other), and no module mapped in the process has it`);
      expect(wrong.message).toContain(`${b.exe} ${buildIdOf(b.exe)}`);

      const dead = spawn("true");
      await new Promise((r) => dead.on("exit", r));
      expect(() => openTarget(core, dead.pid!, other, "x.patch")).toThrow(new ApplyError("NO_PROCESS", `process ${dead.pid}`, "no such process (it exited, or never existed)"));

      // A zombie: the child of a process that never waits for it.
      const zsrc = "#include <stdio.h>\n#include <unistd.h>\nint main(void) { pid_t c = fork(); if (c == 0) _exit(0); printf(\"%d\\n\", c); fflush(stdout); for (;;) pause(); }\n";
      const parent = spawn(scratch.gcc(zsrc, `zombie-parent-${pie ? "pie" : "nopie"}`), [], { stdio: ["ignore", "pipe", "ignore"] });
      children.push(parent);
      const [line] = (await once(parent.stdout!, "data")) as [Buffer];
      const zpid = Number(line.toString().trim());
      for (let i = 0; i < 200 && !/\) Z /.test(readFileSync(`/proc/${zpid}/stat`, "utf8")); i++) await new Promise((r) => setTimeout(r, 10));
      expect(() => openTarget(core, zpid, other, "x.patch")).toThrow(/^process \d+: is a zombie: it has exited and has no memory left/);
      parent.kill("SIGKILL");
    });

    it("refuses a process it may not read, saying so (openTarget run as nobody)", () => {
      // openTarget bundled for a plain node run as uid 65534: the refusal comes before any core use.
      const dir = join(b.dir, "as-nobody");
      mkdirSync(dir, { recursive: true });
      const entry = join(dir, "entry.ts");
      writeFileSync(
        entry,
        `import { openTarget } from ${JSON.stringify(join(process.cwd(), "src/apply/target.ts"))};
try { openTarget({} as never, Number(process.argv[2]), "00", "x.patch"); console.log("{}"); }
catch (e) { console.log(JSON.stringify({ code: (e as { code?: string }).code, message: (e as Error).message })); }`,
      );
      const out = join(dir, "entry.mjs");
      buildSync({ entryPoints: [entry], bundle: true, platform: "node", format: "esm", outfile: out, logLevel: "silent" });
      for (const d of [scratch.dir, b.dir, dir]) chmodSync(d, 0o755);
      chmodSync(out, 0o644);
      const r = spawnSync(process.execPath, [out, String(p.pid)], { uid: 65534, gid: 65534, encoding: "utf8" });
      expect(r.stderr).toBe("");
      const e = JSON.parse(r.stdout) as { code: string; message: string };
      expect(e.code).toBe("NO_PROCESS");
      expect(e.message).toMatch(new RegExp(`^process ${p.pid}: not permitted to read it \\(/proc/${p.pid}/maps: EACCES\\): trace it as its own user or as root \\(patchc runs as uid 65534`));
    });

    it("finds a library by build-id after its file was deleted and replaced by another build", async () => {
      const newBuild = join(b.dir, "libfx-new.so");
      cc(["-shared", "-fPIC", "-O2", "-Wl,--build-id", join(b.dir, "src", "fx.c"), "-o", newBuild], b.dir);
      // the upgrade: a new file under the old name, as a package manager does (rename over it)
      writeFileSync(join(b.dir, "src", "fx.c"), LIB_FIX);
      cc(["-shared", "-fPIC", "-O2", "-Wl,--build-id", join(b.dir, "src", "fx.c"), "-o", newBuild], b.dir);
      expect(buildIdOf(newBuild)).not.toBe(b.libPatch.model.target.buildId);
      renameSync(newBuild, b.lib);
      const lt = openTarget(core, p.pid, b.libPatch.model.target.buildId, b.libPatch.file);
      try {
        expect(lt.module.module.path).toBe(b.lib);
        expect(lt.module.module.deleted).toBe(true);
        // the symbols are still checked: from the mapped file itself (map_files), not the new one
        const res = await resolveReferences(core, lt, b.libPatch, {});
        const g = refByName(b.libPatch, res, "lib_global");
        if (g.binding.kind === "addr") expect(g.how).toContain("checked in the mapped file's .symtab");
      } finally {
        closeTarget(lt);
      }
      // the new build is on disk, not in the process
      expect(() => openTarget(core, p.pid, buildIdOf(b.lib), "new.patch")).toThrow(/WRONG_BUILD|no module mapped in the process has it/);
    });
  });
}

function readMem(pid: number, addr: bigint, len: number): Uint8Array {
  const mem = new ProcMemory(pid);
  try {
    return mem.read(addr, len);
  } finally {
    mem.close();
  }
}
