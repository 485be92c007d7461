// Dynamic lookup (scope order, versions, weak, IFUNC) against ld.so itself, and GOT/PLT
// slots against readelf -r and objdump's PLT labels.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { nodeCore } from "../src/node/core-file.js";
import { ElfReader } from "../src/core/elf.js";
import {
  LookupFlags,
  R_X86_64_COPY,
  R_X86_64_IRELATIVE,
  R_X86_64_JUMP_SLOT,
  SymbolIndex,
  SymbolTable,
  lookupInScope,
  type Binding,
  type ScopeEntry,
} from "../src/core/symbols.js";
import { LIBC, Scratch, run } from "./helpers/gcc.js";
import { readelfSymbols } from "./helpers/readelf.js";

const core = nodeCore();
let scratch: Scratch;
const f: Record<string, string> = {};
const open: Array<{ close(): void }> = [];

// libone: a weak dup_sym, dup_data, an IFUNC. libtwo: a global dup_sym, dup_data.
const ONE_C = `
__attribute__((weak)) int dup_sym(void) { return 1; }
int dup_data = 1;
int only_one(void) { return 11; }
static int ifn_impl(void) { return 42; }
static void *ifn_resolver(void) { return (void *)ifn_impl; }
int ifn(void) __attribute__((ifunc("ifn_resolver")));
`;
const TWO_C = `
int dup_sym(void) { return 2; }
int dup_data = 2;
`;
// Prints the link_map order with each module's load bias (what patchc reads from the
// target), then what ld.so bound.
const MAIN_C = `
#define _GNU_SOURCE
#include <link.h>
#include <stdio.h>
int dup_sym(void); extern int dup_data; int ifn(void); int only_one(void);
static int show(struct dl_phdr_info *i, size_t size, void *data) {
  (void)size; (void)data;
  printf("module %s 0x%lx\\n", i->dlpi_name[0] ? i->dlpi_name : "-", (unsigned long)i->dlpi_addr);
  return 0;
}
int main(void) {
  dl_iterate_phdr(show, 0);
  printf("call dup_sym %d\\n", dup_sym());
  printf("addr dup_sym %p\\n", (void *)&dup_sym);
  printf("addr dup_data %p\\n", (void *)&dup_data);
  printf("call ifn %d\\n", ifn());
  return only_one() == 11 ? 0 : 1;
}
`;
// vfun@V1 (hidden), vfun@@V2 (default), plain (unversioned: the base version).
const VER_C = `
int vfun_v1(void) { return 101; }
int vfun_v2(void) { return 102; }
__asm__(".symver vfun_v1, vfun@V1");
__asm__(".symver vfun_v2, vfun@@V2");
int plain(void) { return 7; }
`;
const VER_MAP = `V1 { global: vfun_v1; };\nV2 { global: vfun_v2; } V1;\n`;
// dlsym/dlvsym as an oracle: reads "name [version]" lines, prints what ld.so returns.
const VQ_C = `
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
int main(int argc, char **argv) {
  if (argc != 2) return 2;
  void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!h) { fprintf(stderr, "%s\\n", dlerror()); return 1; }
  struct link_map *lm;
  dlinfo(h, RTLD_DI_LINKMAP, &lm);
  printf("base 0x%lx\\n", (unsigned long)lm->l_addr);
  char line[600], name[300], ver[300];
  while (fgets(line, sizeof line, stdin)) {
    int n = sscanf(line, "%299s %299s", name, ver);
    if (n < 1) continue;
    void *p = n == 2 ? dlvsym(h, name, ver) : dlsym(h, name);
    printf("%s %s %p\\n", name, n == 2 ? ver : "-", p);
  }
  return 0;
}
`;
// GOT/PLT fixture: calls through the PLT, a function pointer to libc (R_X86_64_64),
// environ (a copy relocation in an executable), an IFUNC of its own (IRELATIVE).
const SLOTS_C = `
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
extern char **environ;
static int g_impl(void) { return 7; }
static void *resolve_g(void) { return (void *)g_impl; }
int g(void) __attribute__((ifunc("resolve_g")));
void *keep_free = (void *)&free;
int main(int argc, char **argv) {
  char buf[64];
  memcpy(buf, argv[0], strlen(argv[0]) % 60);
  puts(buf);
  printf("%p %d\\n", (void *)environ, g());
  return 0;
}
`;

beforeAll(() => {
  scratch = new Scratch();
  const d = scratch.dir;
  scratch.write("one.c", ONE_C);
  scratch.write("two.c", TWO_C);
  scratch.write("main.c", MAIN_C);
  scratch.write("ver.c", VER_C);
  scratch.write("ver.map", VER_MAP);
  scratch.write("vq.c", VQ_C);
  scratch.write("slots.c", SLOTS_C);
  const gcc = (...a: string[]) => run("gcc", a, { cwd: d });
  gcc("-O2", "-shared", "-fPIC", "one.c", "-o", "libone.so");
  gcc("-O2", "-shared", "-fPIC", "two.c", "-o", "libtwo.so");
  gcc("-O2", "main.c", "-L.", "-Wl,--no-as-needed", "-lone", "-ltwo", `-Wl,-rpath,${d}`, "-o", "main");
  gcc("-O2", "-no-pie", "-fno-PIE", "main.c", "-L.", "-Wl,--no-as-needed", "-lone", "-ltwo", `-Wl,-rpath,${d}`, "-o", "main-nopie");
  gcc("-O2", "-shared", "-fPIC", "ver.c", "-Wl,--version-script=ver.map", "-o", "libver.so");
  gcc("-O2", "vq.c", "-o", "vq", "-ldl");
  gcc("-O2", "-fcf-protection=full", "-Wl,-z,ibtplt", "slots.c", "-o", "slots-ibt");
  gcc("-O2", "-fcf-protection=none", "-no-pie", "-fno-PIE", "slots.c", "-o", "slots-nopie");
  gcc("-O2", "-fno-plt", "slots.c", "-o", "slots-noplt");
  for (const n of ["libone.so", "libtwo.so", "main", "main-nopie", "libver.so", "vq", "slots-ibt", "slots-nopie", "slots-noplt"]) f[n] = scratch.path(n);
});
afterAll(() => {
  for (const o of open.reverse()) o.close();
  scratch?.remove();
});

const cache = new Map<string, SymbolIndex>();
function dynIndex(path: string, data?: Uint8Array): SymbolIndex {
  const key = data ? `${path}#patched` : path;
  let x = cache.get(key);
  if (!x) {
    const elf = new ElfReader(core, data ?? readFileSync(path), path);
    x = new SymbolIndex(core, elf, SymbolTable.DYNSYM);
    open.push(elf, x);
    cache.set(key, x);
  }
  return x;
}

interface Run {
  modules: Array<{ path: string; bias: bigint }>;
  values: Map<string, string>;
}

/** Runs a program; returns its module list (link_map order) and its other lines by first two words. */
function runMain(path: string, env: Record<string, string> = {}): Run {
  const out = execFileSync(path, { encoding: "utf8", env: { ...process.env, ...env } });
  const r: Run = { modules: [], values: new Map() };
  for (const line of out.trim().split("\n")) {
    const w = line.split(" ");
    if (w[0] === "module") {
      if (w[1] === "linux-vdso.so.1") continue; // no file: patchc reads it from memory
      r.modules.push({ path: w[1] === "-" ? path : w[1], bias: BigInt(w[2]) });
    } else r.values.set(`${w[0]} ${w[1]}`, w[2]);
  }
  return r;
}

function scopeOf(r: Run): ScopeEntry[] {
  return r.modules.map((m) => ({ index: dynIndex(m.path), bias: m.bias }));
}

function bound(scope: ScopeEntry[], ref: string, flags = LookupFlags.NONE): Binding {
  const b = lookupInScope(core, scope, ref, flags);
  expect(b, ref).toBeDefined();
  return b!;
}

describe("dynamic lookup in scope order, as ld.so binds", () => {
  it("binds to the first definition in link_map order, weak or not", () => {
    const r = runMain(f.main);
    expect(r.modules.map((m) => m.path.replace(/.*\//, ""))).toEqual(["main", "libone.so", "libtwo.so", "libc.so.6", "ld-linux-x86-64.so.2"]);
    expect(r.values.get("call dup_sym")).toBe("1");
    const scope = scopeOf(r);
    const b = bound(scope, "dup_sym");
    expect(scope[b.position].index.elf.name).toBe(f["libone.so"]);
    expect(b.weak).toBe(true);
    expect(b.kind).toBe("func");
    expect(b.address).toBe(BigInt(r.values.get("addr dup_sym")!));
    // dup_data: main's copy (a copy relocation in a PIE) comes first.
    const d = bound(scope, "dup_data");
    expect(d.position).toBe(0);
    expect(d.address).toBe(BigInt(r.values.get("addr dup_data")!));
    expect(lookupInScope(core, scope, "no_such_symbol")).toBeUndefined();
  });

  it("follows LD_PRELOAD's order", () => {
    const r = runMain(f.main, { LD_PRELOAD: f["libtwo.so"] });
    expect(r.modules[1].path).toBe(f["libtwo.so"]);
    expect(r.values.get("call dup_sym")).toBe("2");
    const b = bound(scopeOf(r), "dup_sym");
    expect(b.weak).toBe(false);
    expect(b.address).toBe(BigInt(r.values.get("addr dup_sym")!));
  });

  it("with LD_DYNAMIC_WEAK=1, a later global beats an earlier weak definition", () => {
    const r = runMain(f.main, { LD_DYNAMIC_WEAK: "1" });
    expect(r.values.get("call dup_sym")).toBe("2");
    const scope = scopeOf(r);
    expect(bound(scope, "dup_sym", LookupFlags.DYNAMIC_WEAK).address).toBe(BigInt(r.values.get("addr dup_sym")!));
    expect(bound(scope, "dup_sym").weak).toBe(true); // the default mode still takes libone's
  });

  it("a data reference binds to a non-PIE executable's canonical PLT entry", () => {
    const r = runMain(f["main-nopie"]);
    const scope = scopeOf(r);
    const data = bound(scope, "dup_sym", LookupFlags.DATA);
    expect(data.position).toBe(0);
    expect(data.canonicalPlt).toBe(true);
    expect(data.address).toBe(BigInt(r.values.get("addr dup_sym")!));
    // A call (PLT relocation) skips the executable's undefined symbol.
    expect(bound(scope, "dup_sym").position).toBe(1);
  });

  it("skips undefined and hidden-visibility symbols", () => {
    const r = runMain(f.main);
    // main's .dynsym has dup_sym undefined: the first scope entry must not answer.
    const main = dynIndex(f.main);
    expect(main.get(main.find("dup_sym")!).defined).toBe(false);
    // libone with dup_sym made STV_HIDDEN (st_other patched in a copy): libtwo's binds.
    const one = dynIndex(f["libone.so"]);
    const bytes = new Uint8Array(readFileSync(f["libone.so"]));
    const dynsym = one.elf.sections().find((s) => s.name === ".dynsym")!;
    bytes[Number(dynsym.offset) + one.find("dup_sym")! * 24 + 5] = 2;
    const scope = scopeOf(r);
    scope[1] = { index: dynIndex(f["libone.so"], bytes), bias: scope[1].bias };
    const b = bound(scope, "dup_sym");
    expect(scope[b.position].index.elf.name).toBe(f["libtwo.so"]);
  });

  it("reports an IFUNC as such, with its resolver, never as the function", () => {
    const r = runMain(f.main);
    expect(r.values.get("call ifn")).toBe("42");
    const scope = scopeOf(r);
    const b = bound(scope, "ifn");
    expect(b.kind).toBe("ifunc");
    expect(b.address).toBeUndefined();
    const sym = readelfSymbols(f["libone.so"], ".symtab").find((s) => s.name === "ifn_resolver")!;
    expect(b.resolver).toBe(r.modules[1].bias + sym.value);
    // libc's memcpy and strlen are IFUNCs.
    for (const name of ["memcpy", "strlen"]) expect(bound(scope, name).kind).toBe("ifunc");
  });

  it("refuses an index over .symtab in a scope", () => {
    const elf = new ElfReader(core, readFileSync(f.main), f.main);
    const x = new SymbolIndex(core, elf, SymbolTable.SYMTAB);
    expect(() => lookupInScope(core, [{ index: x, bias: 0n }], "main")).toThrow(/over \.symtab/);
    x.close();
    elf.close();
  });
});

/** dlvsym/dlsym answers for `queries` ("name" or "name version") in the library `lib`. */
function dlAnswers(lib: string, queries: string[]): { base: bigint; answers: Map<string, bigint> } {
  const out = execFileSync(f.vq, [lib], { input: queries.join("\n") + "\n", encoding: "utf8", maxBuffer: 64 << 20 });
  const lines = out.trim().split("\n");
  const base = BigInt(lines[0].split(" ")[1]);
  const answers = new Map<string, bigint>();
  for (const l of lines.slice(1)) {
    const [n, v, p] = l.split(" ");
    answers.set(v === "-" ? n : `${n} ${v}`, p === "(nil)" ? 0n : BigInt(p));
  }
  return { base, answers };
}

describe("symbol versions, against dlvsym and dlsym", () => {
  it("binds vfun@V1 (hidden), vfun@V2 and vfun (the default) like ld.so", () => {
    const { base, answers } = dlAnswers(f["libver.so"], ["vfun V1", "vfun V2", "vfun", "plain", "plain V1", "vfun V3"]);
    const scope = [{ index: dynIndex(f["libver.so"]), bias: base }];
    // dlvsym marks its request hidden: it never takes an unversioned definition.
    const at = (ref: string, flags: LookupFlags) => lookupInScope(core, scope, ref, flags)?.address ?? 0n;
    expect(at("vfun@V1", LookupFlags.HIDDEN_REQUEST)).toBe(answers.get("vfun V1"));
    expect(at("vfun@V2", LookupFlags.HIDDEN_REQUEST)).toBe(answers.get("vfun V2"));
    expect(at("vfun", LookupFlags.NONE)).toBe(answers.get("vfun"));
    expect(at("plain", LookupFlags.NONE)).toBe(answers.get("plain"));
    expect(at("plain@V1", LookupFlags.HIDDEN_REQUEST)).toBe(0n);
    expect(answers.get("plain V1")).toBe(0n);
    expect(at("vfun@V3", LookupFlags.HIDDEN_REQUEST)).toBe(0n);
    expect(answers.get("vfun V3")).toBe(0n);
    // A relocation's requirement (not hidden) accepts the unversioned definition.
    expect(at("plain@V1", LookupFlags.NONE)).toBe(answers.get("plain"));
    expect(bound(scope, "vfun@V1").hiddenVersion).toBe(true);
    expect(bound(scope, "vfun@V2").hiddenVersion).toBe(false);
    // An old unversioned binary gets the oldest version.
    expect(at("vfun", LookupFlags.OLDEST)).toBe(answers.get("vfun V1"));
  });

  it("binds memcpy@GLIBC_2.14 and memcpy@GLIBC_2.2.5 to their own definitions", () => {
    const rows = readelfSymbols(LIBC, ".dynsym").filter((r) => r.base === "memcpy");
    const v214 = rows.find((r) => r.version === "GLIBC_2.14")!;
    const v225 = rows.find((r) => r.version === "GLIBC_2.2.5")!;
    expect(v214.hidden).toBe(false);
    expect(v225.hidden).toBe(true);
    const scope = [{ index: dynIndex(LIBC), bias: 0n }];
    const b214 = bound(scope, "memcpy@GLIBC_2.14");
    expect(b214.id).toBe(v214.index);
    expect(b214.kind).toBe("ifunc");
    expect(b214.resolver).toBe(v214.value);
    const b225 = bound(scope, "memcpy@GLIBC_2.2.5");
    expect(b225.id).toBe(v225.index);
    expect(b225.hiddenVersion).toBe(true);
    expect(bound(scope, "memcpy").id).toBe(v214.index); // the default, memcpy@@GLIBC_2.14
    expect(bound(scope, "memcpy", LookupFlags.OLDEST).id).toBe(v225.index);
  });

  it("agrees with dlvsym and dlsym on every versioned definition of libc", () => {
    const rows = readelfSymbols(LIBC, ".dynsym").filter((r) => r.ndx !== "UND" && r.version && r.type !== "IFUNC" && r.type !== "TLS");
    const queries = [...new Set([...rows.map((r) => `${r.base} ${r.version}`), ...rows.map((r) => r.base)])];
    const { base, answers } = dlAnswers(LIBC, queries);
    const scope = [{ index: dynIndex(LIBC), bias: base }];
    let compared = 0;
    for (const q of queries) {
      const [name, version] = q.split(" ");
      const want = answers.get(q)!;
      const b = lookupInScope(core, scope, version ? `${name}@${version}` : name, version ? LookupFlags.HIDDEN_REQUEST : LookupFlags.NONE);
      if (b?.kind === "ifunc" || b?.kind === "tls") continue; // dlsym returns the resolved function / this thread's variable
      expect(b?.address ?? 0n, q).toBe(want);
      compared++;
    }
    expect(compared).toBeGreaterThan(2000);
  });
});

/** readelf -rW: dynamic relocations in table order. */
function readelfRelocs(path: string) {
  const rows: Array<{ offset: bigint; type: string; sym: string; addend: bigint }> = [];
  for (const line of run("readelf", ["-rW", path]).split("\n")) {
    const m = /^([0-9a-f]{16})\s+[0-9a-f]{16}\s+(R_X86_64_\w+)\s+(?:([0-9a-f]{16})\s+(\S+)\s+([+-])\s+([0-9a-f]+)|([0-9a-f]+))?/.exec(line);
    if (!m) continue;
    const addend = m[6] !== undefined ? (m[5] === "-" ? -1n : 1n) * BigInt("0x" + m[6]) : m[7] !== undefined ? BigInt("0x" + m[7]) : 0n;
    rows.push({ offset: BigInt("0x" + m[1]), type: m[2], sym: m[4] ?? "", addend });
  }
  return rows;
}

/** objdump's PLT entry labels: address -> "puts@plt", "*ABS*+0x1250@plt". */
function objdumpPlt(path: string): Map<bigint, string> {
  const secs = run("readelf", ["-SW", path]).match(/\.plt(\.sec|\.got)?\b/g) ?? [];
  const args = ["-d", ...[...new Set(secs)].flatMap((s) => ["-j", s]), path];
  const m = new Map<bigint, string>();
  for (const line of run("objdump", args).split("\n")) {
    const r = /^([0-9a-f]+) <(.+@plt)>:$/.exec(line);
    if (r) m.set(BigInt("0x" + r[1]), r[2]);
  }
  return m;
}

const SLOT_TYPES = ["R_X86_64_64", "R_X86_64_COPY", "R_X86_64_GLOB_DAT", "R_X86_64_JUMP_SLOT", "R_X86_64_IRELATIVE", "R_X86_64_DTPMOD64", "R_X86_64_DTPOFF64", "R_X86_64_TPOFF64"];
const TYPE_NUM: Record<string, number> = { R_X86_64_64: 1, R_X86_64_COPY: 5, R_X86_64_GLOB_DAT: 6, R_X86_64_JUMP_SLOT: 7, R_X86_64_DTPMOD64: 16, R_X86_64_DTPOFF64: 17, R_X86_64_TPOFF64: 18, R_X86_64_IRELATIVE: 37 };

describe("GOT and PLT slots, against readelf -r and objdump", () => {
  for (const name of ["slots-ibt", "slots-nopie", "slots-noplt", "libc"]) {
    it(`${name}: every slot relocation, and the PLT entry jumping through it`, () => {
      const path = name === "libc" ? LIBC : f[name];
      const x = dynIndex(path);
      const slots = x.slots();
      const want = readelfRelocs(path).filter((r) => SLOT_TYPES.includes(r.type));
      expect(slots.map((s) => [s.address, s.type, s.addend])).toEqual(want.map((r) => [r.offset, TYPE_NUM[r.type], r.addend]));
      slots.forEach((s, i) => {
        const base = want[i].sym.replace(/@.*/, "");
        if (s.type === R_X86_64_IRELATIVE) {
          if (s.symbol >= 0) expect(x.get(s.symbol).value).toBe(BigInt(s.addend));
        } else if (base) {
          expect(x.get(s.symbol).name).toBe(base);
        } else {
          expect(s.symbol).toBe(-1);
        }
      });
      const labels = objdumpPlt(path);
      const entries = [...labels].filter(([, l]) => !/@plt-0x|^\.plt/.test(l));
      expect(entries.length).toBeGreaterThan(0);
      for (const [addr, label] of entries) {
        const s = slots.find((t) => t.plt === addr);
        expect(s, `${label} at 0x${addr.toString(16)}`).toBeDefined();
        const expected = s!.type === R_X86_64_IRELATIVE ? `*ABS*+0x${s!.addend.toString(16)}@plt` : `${x.get(s!.symbol).name}@plt`;
        expect(label).toBe(expected);
      }
      for (const s of slots) if (s.plt !== undefined) expect(labels.has(s.plt), `0x${s.plt.toString(16)}`).toBe(true);
    });
  }

  it("calls go through .plt.sec when there is one, and IRELATIVE names libc's IFUNC", () => {
    const ibt = dynIndex(f["slots-ibt"]).slotsOf("puts");
    expect(ibt.length).toBe(1);
    expect(ibt[0].type).toBe(R_X86_64_JUMP_SLOT);
    expect(ibt[0].pltSection).toBe("plt.sec");
    expect(dynIndex(f["slots-nopie"]).slotsOf("puts")[0].pltSection).toBe("plt");
    expect(dynIndex(f["slots-noplt"]).slotsOf("puts")[0].plt).toBeUndefined(); // -fno-plt: call *GOT
    const libc = dynIndex(LIBC);
    const memcpy = libc.slotsOf("memcpy");
    expect(memcpy.some((s) => s.type === R_X86_64_IRELATIVE && libc.get(s.symbol).name === "memcpy" && s.plt !== undefined)).toBe(true);
    expect(libc.slotsOf("memcpy@GLIBC_2.14").length).toBe(memcpy.length);
    expect(libc.slotsOf("memcpy@GLIBC_2.2.5").length).toBe(0);
  });

  it("reports an executable's copy relocation under every alias of the object", () => {
    const x = dynIndex(f["slots-nopie"]);
    const copy = readelfRelocs(f["slots-nopie"]).find((r) => r.type === "R_X86_64_COPY")!;
    for (const name of ["environ", "__environ"]) {
      const s = x.slotsOf(name);
      expect(s.length, name).toBe(1);
      expect(s[0].type).toBe(R_X86_64_COPY);
      expect(s[0].address).toBe(copy.offset);
    }
    expect(x.slotsOf("puts@GLIBC_2.2.5").length).toBe(1);
    expect(x.slotsOf("puts@GLIBC_2.99").length).toBe(0);
    expect(x.slotsOf("free")[0].type).toBe(1); // R_X86_64_64: keep_free
  });
});
