// What a package will make apply do, as data (for --json) and as text (for people).
// Pure: takes a decoded package and its signature status.
import * as D from "./defs.js";
import { describeName, type LocalIdentity, type PatchPackage, type Reference } from "./model.js";
import type { ReadPackage } from "./reader.js";
import type { SignatureStatus } from "./verify.js";

export interface PackageReport {
  file: string;
  format: string;
  fileSize: number;
  patchId: string;
  producer?: string;
  description?: string;
  target: { buildId: string; path: string; type: "exec" | "dyn"; soname?: string };
  hash: string;
  signature: SignatureStatus;
  dependencies: Array<{ patchId: string; hash?: string }>;
  functions: FunctionReport[];
  data: Array<{ name: string; size: number; section: string; writable: boolean }>;
  references: ReferenceReport[];
  sections: Array<{ name: string; type: string; flags: string; size: number; align: number; relocations: number }>;
  totals: { code: number; readOnlyData: number; writableData: number; unwind: number };
}

export interface FunctionReport {
  kind: "replace" | "add";
  name: string;
  file?: string;
  sympos?: number;
  size: number; // of the new code
  section: string;
  unwind: boolean; // has an FDE in the package's .eh_frame
  original?: { addr: string; size: number; siteBytes: string; sha256?: string };
  after?: string;
  pieces: Array<{ kind: "cold" | "part"; name: string; file?: string; sympos?: number; size?: number; section?: string; original?: { addr: string; size: number } }>;
}

export interface ReferenceReport {
  name: string;
  file?: string;
  sympos?: number;
  bind: Reference["bind"];
  scope: Reference["scope"];
  type: Reference["type"];
  version?: string;
  library?: string;
  patch?: string;
  addr?: string;
  gotSlot?: string;
  pltEntry?: string;
  tls?: { model: string; offset: string };
  relocations: number; // how many relocations of the package use it
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;

function localFields(l: LocalIdentity | undefined): { file?: string; sympos?: number } {
  return l ? { file: l.file, sympos: l.sympos } : {};
}

function flagLetters(flags: number): string {
  return (flags & D.SHF_WRITE ? "W" : "") + (flags & D.SHF_ALLOC ? "A" : "") + (flags & D.SHF_EXECINSTR ? "X" : "") + (flags & D.SHF_MERGE ? "M" : "") + (flags & D.SHF_STRINGS ? "S" : "");
}

export function reportPackage(pkg: ReadPackage, signature: SignatureStatus): PackageReport {
  const m: PatchPackage = pkg.model;
  const sectionOf = (symbol: number): string => m.sections[m.symbols[symbol].section!].name;
  const uses = new Map<number, number>();
  for (const s of m.sections) for (const r of s.relocations) uses.set(r.symbol, (uses.get(r.symbol) ?? 0) + 1);
  const code = new Set(m.functions.flatMap((f) => [f.symbol, ...f.pieces.flatMap((p) => (p.symbol === undefined ? [] : [p.symbol]))]));
  const totals = { code: 0, readOnlyData: 0, writableData: 0, unwind: 0 };
  for (const s of m.sections) {
    if (s.name === ".eh_frame" || s.name.startsWith(".gcc_except_table")) totals.unwind += s.size;
    else if (s.flags & D.SHF_EXECINSTR) totals.code += s.size;
    else if (s.flags & D.SHF_WRITE) totals.writableData += s.size;
    else totals.readOnlyData += s.size;
  }
  const report: PackageReport = {
    file: pkg.file,
    format: `${pkg.format.major}.${pkg.format.minor}`,
    fileSize: pkg.fileSize,
    patchId: m.patchId,
    target: { ...m.target },
    hash: pkg.hash,
    signature,
    dependencies: m.dependencies.map((d) => ({ ...d })),
    functions: m.functions.map((f) => {
      const r: FunctionReport = { kind: f.kind, name: f.name, ...localFields(f.local), size: m.symbols[f.symbol].size, section: sectionOf(f.symbol), unwind: f.fde !== undefined, pieces: [] };
      if (f.original) {
        r.original = { addr: hex(f.original.addr), size: Number(f.original.size), siteBytes: Buffer.from(f.original.site).toString("hex") };
        if (f.original.sha256) r.original.sha256 = f.original.sha256;
      }
      if (f.after) r.after = f.after;
      r.pieces = f.pieces.map((p) => ({
        kind: p.kind,
        name: p.name,
        ...localFields(p.local),
        ...(p.symbol === undefined ? {} : { size: m.symbols[p.symbol].size, section: sectionOf(p.symbol) }),
        ...(p.original ? { original: { addr: hex(p.original.addr), size: Number(p.original.size) } } : {}),
      }));
      return r;
    }),
    data: m.symbols
      .map((s, i) => ({ s, i }))
      .filter(({ s, i }) => s.section !== undefined && (s.type === "object" || (s.type === "func" && !code.has(i))) && s.size > 0)
      .map(({ s }) => ({ name: s.name, size: s.size, section: m.sections[s.section!].name, writable: (m.sections[s.section!].flags & D.SHF_WRITE) !== 0 })),
    references: m.references.map((r) => {
      const o: ReferenceReport = { name: r.name, ...localFields(r.local), bind: r.bind, scope: r.scope, type: r.type, relocations: uses.get(r.symbol) ?? 0 };
      if (r.version) o.version = r.version;
      if (r.library) o.library = r.library;
      if (r.patch) o.patch = r.patch;
      if (r.addr !== undefined) o.addr = hex(r.addr);
      if (r.gotSlot !== undefined) o.gotSlot = hex(r.gotSlot);
      if (r.pltEntry !== undefined) o.pltEntry = hex(r.pltEntry);
      if (r.tls) o.tls = { model: r.tls.model, offset: hex(r.tls.offset) };
      return o;
    }),
    sections: m.sections.map((s) => ({ name: s.name, type: s.type, flags: flagLetters(s.flags), size: s.size, align: s.align, relocations: s.relocations.length })),
    totals,
  };
  if (m.producer) report.producer = m.producer;
  if (m.description) report.description = m.description;
  return report;
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

function table(rows: string[][], indent = "  "): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => indent + r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join("  ").trimEnd());
}

function refTarget(r: ReferenceReport): string {
  switch (r.bind) {
    case "direct":
      return r.scope === "module" ? `address ${r.addr} in the target` : r.scope === "patch" ? `defined by patch ${r.patch}` : `looked up in the process${r.library ? ` (expected in ${r.library})` : ""}`;
    case "got":
      return `the target's GOT slot ${r.gotSlot}`;
    case "plt":
      return `the target's PLT entry ${r.pltEntry}${r.gotSlot ? ` (GOT slot ${r.gotSlot})` : ""}`;
    case "tls":
      return `TLS ${r.tls!.model.toUpperCase()}, offset ${r.tls!.offset} in the ${r.scope === "module" ? "target's" : r.library ? `${r.library}'s` : "defining module's"} TLS block${r.gotSlot ? ` (GOT slot ${r.gotSlot})` : ""}`;
  }
}

function signatureLine(s: SignatureStatus): string {
  switch (s.status) {
    case "unsigned":
      return "none";
    case "signed":
      return `${s.algorithm}, key ${s.keyId.slice(0, 16)} (not checked: --require-signed KEY checks it)`;
    case "verified":
      return `${s.algorithm}, key ${s.keyId.slice(0, 16)}, verified with ${s.key}`;
  }
}

/** The report as text for people. */
export function formatReport(r: PackageReport): string {
  const out: string[] = [];
  const replaced = r.functions.filter((f) => f.kind === "replace");
  const added = r.functions.filter((f) => f.kind === "add");
  out.push(`${r.file}: patch ${r.patchId} (format ${r.format}, ${r.fileSize} bytes${r.producer ? `, from ${r.producer}` : ""})`);
  if (r.description) out.push(`  ${r.description}`);
  out.push(
    ...table([
      ["target", `build-id ${r.target.buildId} (${r.target.type === "exec" ? "a non-PIE executable" : "a PIE or shared library"}${r.target.soname ? ` ${r.target.soname}` : ""})`],
      ["", `built against ${r.target.path}`],
      ["content", `sha256 ${r.hash}`],
      ["signature", signatureLine(r.signature)],
      ["depends on", r.dependencies.length ? r.dependencies.map((d) => d.patchId + (d.hash ? ` (sha256 ${d.hash.slice(0, 16)})` : "")).join(", ") : "no other patch"],
    ]),
  );
  out.push("");
  out.push("apply will:");
  out.push(`  check the target's build-id${replaced.length ? ", and the bytes at each replaced function's entry" : ""}${r.dependencies.length ? ", and that the patches it depends on are applied" : ""}`);
  out.push(`  load ${r.totals.code} bytes of code, ${r.totals.readOnlyData} of read-only data, ${r.totals.writableData} of writable data, ${r.totals.unwind} of unwind tables`);
  out.push(`  redirect ${plural(replaced.length, "function")} to new code${replaced.length ? ":" : ""}`);
  const name = (f: { name: string; file?: string; sympos?: number }): string => describeName(f.name, f.file ? { file: f.file, sympos: f.sympos! } : undefined);
  if (replaced.length) {
    const rows: string[][] = [["function", "at", "old size", "new size", "checks"]];
    for (const f of replaced) {
      rows.push([name(f), f.original!.addr, `${f.original!.size}`, `${f.size}`, `${f.original!.siteBytes.length / 2} site bytes${f.original!.sha256 ? " + sha256" : ""}${f.after ? `, the jump of ${f.after}` : ""}${f.unwind ? "" : ", no unwind info"}`]);
      for (const p of f.pieces) rows.push([`  + ${p.kind} piece ${name(p)}`, p.original?.addr ?? "(new)", p.original ? `${p.original.size}` : "-", p.size === undefined ? "(gone)" : `${p.size}`, ""]);
    }
    out.push(...table(rows, "    "));
  }
  if (added.length) {
    out.push(`adds ${plural(added.length, "function")}:`);
    out.push(...table(added.map((f) => [f.name, `${f.size} bytes`, f.section])));
  }
  if (r.data.length) {
    out.push(`adds ${plural(r.data.length, "data object")}:`);
    out.push(...table(r.data.map((d) => [d.name, `${d.size} bytes`, `${d.section}${d.writable ? "" : " (read-only)"}`])));
  }
  out.push("");
  out.push(`binds ${plural(r.references.length, "reference")}:`);
  if (r.references.length) {
    out.push(
      ...table([
        ["symbol", "bind", "to", "used by"],
        ...r.references.map((x) => [describeName(x.name, x.file ? { file: x.file, sympos: x.sympos! } : undefined) + (x.version ? `@${x.version}` : ""), x.bind, refTarget(x), plural(x.relocations, "relocation")]),
      ]),
    );
  }
  return out.join("\n") + "\n";
}
