// docs/core-abi.md, read as data: the export and import tables (format rules are at
// the top of that document's "Conventions") and the signatures of a built core.wasm.
import { readFileSync } from "node:fs";
import { decode, type WasmField, type WasmSignature } from "@webassemblyjs/wasm-parser";

export const WASM_TYPES = ["i32", "i64", "f32", "f64"] as const;

/** A Wasm signature as written in the doc: "(i32, i64) -> i32", "(i32)", "memory". */
export type Sig = string;

export interface DocEntry {
  name: string;
  sig: Sig;
  section: string; // the "## heading" it is under
  line: number;
}

export interface AbiDoc {
  exports: DocEntry[];
  imports: DocEntry[];
  errors: string[]; // rows of an export/import table that do not follow the format
}

/** `(a: i32, b: i64) -> i32` -> "(i32, i64) -> i32"; null when it does not follow the format. */
export function parseSignature(text: string): Sig | null {
  const m = /^\((.*)\)\s*(?:->\s*(\S+))?$/.exec(text.trim());
  if (!m) return null;
  const params: string[] = [];
  if (m[1].trim() !== "") {
    for (const p of m[1].split(",")) {
      const pm = /^\s*[A-Za-z_][A-Za-z0-9_]*\s*:\s*(\S+)\s*$/.exec(p);
      if (!pm || !(WASM_TYPES as readonly string[]).includes(pm[1])) return null;
      params.push(pm[1]);
    }
  }
  if (m[2] !== undefined && !(WASM_TYPES as readonly string[]).includes(m[2])) return null;
  return formatSig(params, m[2] === undefined ? [] : [m[2]]);
}

export function formatSig(params: string[], results: string[]): Sig {
  return `(${params.join(", ")})` + (results.length ? ` -> ${results.length === 1 ? results[0] : "(" + results.join(", ") + ")"}` : "");
}

function cells(line: string): string[] {
  // Only the first two cells matter; the meaning may itself contain "|".
  return line.split("|").slice(1).map((c) => c.trim());
}

export function parseAbiDoc(text: string): AbiDoc {
  const doc: AbiDoc = { exports: [], imports: [], errors: [] };
  const lines = text.split("\n");
  let section = "";
  let table: "export" | "import" | null = null;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (/^#{1,6}\s/.test(line)) section = line.replace(/^#+\s*/, "");
    if (!line.trimStart().startsWith("|")) {
      table = null;
      continue;
    }
    const c = cells(line);
    if (table === null) {
      // A table starts: is its header an export or import table?
      if ((c[0] === "export" || c[0] === "import") && c[1] === "signature") table = c[0];
      else table = null;
      // The header of any other table keeps table null until the table ends.
      if (table === null) {
        while (i + 1 < lines.length && lines[i + 1].trimStart().startsWith("|")) i++;
      }
      continue;
    }
    if (/^\|[\s|:-]*$/.test(line)) continue; // the |---| rule
    const where = `docs/core-abi.md:${i + 1}`;
    const name = /^`([^`]+)`$/.exec(c[0] ?? "");
    if (!name) {
      doc.errors.push(`${where}: the ${table} name ${JSON.stringify(c[0])} is not in backquotes`);
      continue;
    }
    let sig: Sig | null;
    if (table === "export" && name[1] === "memory") {
      sig = c[1] === "memory" ? "memory" : null;
    } else {
      const s = /^`([^`]+)`$/.exec(c[1] ?? "");
      sig = s ? parseSignature(s[1]) : null;
    }
    if (sig === null) {
      doc.errors.push(`${where}: the signature ${JSON.stringify(c[1])} of ${name[1]} is not \`(name: type, ...) -> type\` with Wasm types (i32, i64, f32, f64)`);
      continue;
    }
    (table === "export" ? doc.exports : doc.imports).push({ name: name[1], sig, section, line: i + 1 });
  }
  return doc;
}

export function readAbiDoc(path: string): AbiDoc {
  return parseAbiDoc(readFileSync(path, "utf8"));
}

export interface WasmAbi {
  exports: Map<string, Sig>; // function exports: their signature; memory: "memory"; others: "global", "table"
  imports: Map<string, Sig>; // "module.name" -> signature (or the import's kind)
}

/** The imports and exports of a built module, through @webassemblyjs/wasm-parser. */
export function wasmAbi(bytes: Uint8Array): WasmAbi {
  // ignoreCodeSection: version 1.14 cannot decode 0xFC (bulk memory, saturating) opcodes.
  const ast = decode(bytes, { ignoreCodeSection: true, ignoreDataSection: true, ignoreCustomNameSection: true });
  const fields: WasmField[] = ast.body[0].fields;
  const types = fields.filter((f) => f.type === "TypeInstruction").map((f) => f.functype as WasmSignature);
  const sigOf = (s: unknown): Sig => {
    // Inline signature, or a reference to the type section.
    const sig = (s as WasmSignature).type === "Signature" ? (s as WasmSignature) : types[Number((s as { value: number }).value)];
    if (!sig) throw new Error(`core.wasm: unresolvable function signature ${JSON.stringify(s)}`);
    return formatSig(
      sig.params.map((p) => p.valtype),
      sig.results,
    );
  };
  const imports = new Map<string, Sig>();
  const funcs: Sig[] = []; // the function index space: imports first
  for (const f of fields) {
    if (f.type !== "ModuleImport") continue;
    const d = f.descr as { type: string; signature?: unknown };
    const key = `${f.module}.${f.name}`;
    if (d.type === "FuncImportDescr") {
      funcs.push(sigOf(d.signature));
      imports.set(key, sigOf(d.signature));
    } else {
      imports.set(key, d.type);
    }
  }
  for (const f of fields) if (f.type === "Func") funcs.push(sigOf(f.signature));
  const exports = new Map<string, Sig>();
  for (const f of fields) {
    if (f.type !== "ModuleExport") continue;
    const d = f.descr as { exportType: string; id: { value: number } };
    if (d.exportType === "Func") {
      const sig = funcs[d.id.value];
      if (sig === undefined) throw new Error(`core.wasm: export ${f.name} names function ${d.id.value}, which does not exist`);
      exports.set(f.name as string, sig);
    } else {
      exports.set(f.name as string, d.exportType.toLowerCase());
    }
  }
  return { exports, imports };
}

/** Every difference between the doc and the module, one line each (empty: they agree). */
export function compareAbi(doc: AbiDoc, wasm: WasmAbi): string[] {
  const out = [...doc.errors];
  const diff = (kind: string, documented: DocEntry[], actual: Map<string, Sig>) => {
    const seen = new Map<string, DocEntry>();
    for (const e of documented) {
      const prev = seen.get(e.name);
      if (prev) {
        out.push(`${kind} ${e.name} is documented twice (docs/core-abi.md:${prev.line} and :${e.line})`);
        continue;
      }
      seen.set(e.name, e);
      const sig = actual.get(e.name);
      if (sig === undefined) out.push(`${kind} ${e.name} is documented (docs/core-abi.md:${e.line}, "${e.section}") but core.wasm has no such ${kind}`);
      else if (sig !== e.sig) out.push(`${kind} ${e.name}: documented as ${e.sig} (docs/core-abi.md:${e.line}) but core.wasm has ${sig}`);
    }
    for (const [name, sig] of actual) {
      if (!seen.has(name)) out.push(`${kind} ${name} ${sig} is in core.wasm but not documented in docs/core-abi.md`);
    }
  };
  diff("export", doc.exports, wasm.exports);
  diff("import", doc.imports, wasm.imports);
  return out;
}
