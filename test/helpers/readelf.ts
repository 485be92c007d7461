// Parses `readelf -sW` symbol tables: the oracle of the symbol-index tests.
import { run } from "./gcc.js";

export interface ReadelfSymbol {
  index: number;
  value: bigint;
  size: bigint;
  type: string; // FUNC, OBJECT, IFUNC, FILE, SECTION, NOTYPE, TLS
  bind: string; // LOCAL, GLOBAL, WEAK, UNIQUE
  vis: string;
  ndx: string; // UND, ABS, COM or a section number
  name: string; // as printed: "memcpy@@GLIBC_2.14", "printf@GLIBC_2.2.5"
  base: string; // without the version
  version?: string;
  hidden: boolean; // name@VERSION of a definition (not @@)
  file?: string; // the STT_FILE before it (locals)
}

const ROW = /^\s*(\d+):\s+([0-9a-f]+)\s+(0x[0-9a-f]+|\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*(\S*)/;

/** The rows of `.symtab` or `.dynsym` of a file. */
export function readelfSymbols(path: string, table: ".symtab" | ".dynsym"): ReadelfSymbol[] {
  const out = run("readelf", ["-W", table === ".dynsym" ? "--dyn-syms" : "--syms", path]);
  const rows: ReadelfSymbol[] = [];
  let inTable = false;
  let file: string | undefined;
  for (const line of out.split("\n")) {
    if (line.startsWith("Symbol table ")) {
      inTable = line.includes(`'${table}'`);
      file = undefined;
      continue;
    }
    if (!inTable) continue;
    const m = ROW.exec(line);
    if (!m) continue;
    const name = m[8];
    const at = name.indexOf("@");
    const r: ReadelfSymbol = {
      index: Number(m[1]),
      value: BigInt("0x" + m[2]),
      size: BigInt(m[3]),
      type: m[4],
      bind: m[5],
      vis: m[6],
      ndx: m[7],
      name,
      base: at > 0 ? name.slice(0, at) : name,
      version: at > 0 ? name.slice(name[at + 1] === "@" ? at + 2 : at + 1) : undefined,
      hidden: at > 0 && name[at + 1] !== "@" && m[7] !== "UND",
    };
    if (r.type === "FILE") file = name;
    else if (r.bind === "LOCAL") r.file = file;
    rows.push(r);
  }
  return rows;
}

/** `nm` of a file: name -> addresses (a name may be defined more than once). */
export function nmAddresses(path: string): Map<string, bigint[]> {
  const m = new Map<string, bigint[]>();
  for (const line of run("nm", [path]).split("\n")) {
    const r = /^([0-9a-f]+) \S (\S+)$/.exec(line);
    if (!r) continue;
    const list = m.get(r[2]) ?? [];
    list.push(BigInt("0x" + r[1]));
    m.set(r[2], list);
  }
  return m;
}
