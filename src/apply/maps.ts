// /proc/PID/maps: the target's address space as patchc sees it (proc(5)).
//
//   address           perms offset  dev   inode      pathname
//   55d0c7a00000-55d0c7a28000 r--p 00000000 fe:01 1835049    /usr/bin/cat
//
// The pathname may be empty (anonymous), a pseudo-name ([heap], [stack], [vdso],
// [vvar], [anon:name]), a path with spaces, or a path followed by " (deleted)" when the
// file was replaced on disk (an upgraded library): such a module is read from memory.

export interface Mapping {
  start: bigint;
  end: bigint;
  read: boolean;
  write: boolean;
  exec: boolean;
  shared: boolean;
  offset: bigint;
  dev: string;
  inode: number;
  path: string; // "" for anonymous memory; without the " (deleted)" suffix
  deleted: boolean;
}

const LINE = /^([0-9a-f]+)-([0-9a-f]+) ([r-])([w-])([x-])([ps]) ([0-9a-f]+) ([0-9a-f]+:[0-9a-f]+) (\d+)\s*(.*)$/;

/** Parses the text of /proc/PID/maps; `source` names it in errors. */
export function parseMaps(text: string, source: string): Mapping[] {
  const out: Mapping[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line === "") continue;
    const m = LINE.exec(line);
    if (!m) throw new Error(`${source}: line ${i + 1} is not a mapping: ${JSON.stringify(line.slice(0, 120))}`);
    let path = m[10];
    const deleted = path.endsWith(" (deleted)");
    if (deleted) path = path.slice(0, -" (deleted)".length);
    out.push({
      start: BigInt("0x" + m[1]),
      end: BigInt("0x" + m[2]),
      read: m[3] === "r",
      write: m[4] === "w",
      exec: m[5] === "x",
      shared: m[6] === "s",
      offset: BigInt("0x" + m[7]),
      dev: m[8],
      inode: Number(m[9]),
      path,
      deleted,
    });
  }
  return out;
}

/** The mappings of one file-backed module (same path and inode), in address order. */
export function moduleMappings(maps: Mapping[], path: string, inode?: number): Mapping[] {
  return maps.filter((m) => m.path === path && m.inode !== 0 && (inode === undefined || m.inode === inode));
}
