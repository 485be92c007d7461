// The target's perf map: so that `perf report` names the patched functions' new code.
//
// perf(1) reads symbols for anonymous executable memory (JIT code, and our patch
// region) from /tmp/perf-PID.map, one symbol a line (tools/perf/Documentation/jit-interface.txt):
//
//   START SIZE symbolname        START and SIZE in hex (perf parses them with strtoull
//   7f2a3c001040 5a patchc:fix-1:parse            base 16: we write lowercase, no "0x")
//
// For a process in another PID namespace (a container), perf looks in the process's own
// root, under the pid the process has there: /proc/PID/root/tmp/perf-NSPID.map, NSPID
// being the last field of "NStgid:" in /proc/PID/status. So do we.
//
// The file may already exist and be written by the target itself (a JIT: V8, the JVM,
// LuaJIT), possibly at this very moment: it is never truncated or rewritten. It is opened
// O_APPEND and all our lines go out in one write(2), which the kernel appends atomically
// at the end of a regular file, so they never interleave with the JIT's lines. perf uses
// the last line covering an address, so a later patch's lines win over earlier ones.
//
// /tmp is world-writable: the path is opened with O_NOFOLLOW and must be a regular file,
// so a symlink planted there cannot make a privileged patchc append to another file.
// A map we create is given to the target's user (when we may), so the target can
// append to it too, and perf (which ignores map files not owned by the user running it
// or root) reads it.
import { closeSync, constants, fchownSync, fstatSync, openSync, readFileSync, writeSync } from "node:fs";
import type { Range } from "./contract.js";

/** The name of a patch's function in the perf map. */
export const perfMapName = (patchId: string, fn: string): string => `patchc:${patchId}:${fn}`;

/** The lines for `entries` ("ADDR SIZE NAME\n" each); with `patchId`, names become patchc:<patchId>:<name>. */
export function formatPerfMap(entries: readonly Range[], patchId?: string): string {
  let text = "";
  for (const e of entries) {
    if (e.hi <= e.lo) continue; // an empty range names nothing
    const name = (patchId === undefined ? e.name : perfMapName(patchId, e.name)).replace(/[\r\n]/g, "?");
    text += `${e.lo.toString(16)} ${(e.hi - e.lo).toString(16)} ${name}\n`;
  }
  return text;
}

interface ProcIds {
  nspid: number;
  uid: number;
  gid: number;
}

function procIds(pid: number): ProcIds {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch (e) {
    throw new Error(`process ${pid}: cannot read /proc/${pid}/status for its perf map: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
  const field = (name: string): number[] => {
    const m = new RegExp(`^${name}:\\s*(.*)$`, "m").exec(status);
    return m ? m[1].trim().split(/\s+/).map(Number) : [];
  };
  const ns = field("NStgid");
  const uid = field("Uid");
  const gid = field("Gid");
  return { nspid: ns.length ? ns[ns.length - 1] : pid, uid: uid[1] ?? -1, gid: gid[1] ?? -1 };
}

/** Where perf looks for the map of `pid` (seen from here). */
export function perfMapPath(pid: number): string {
  return `/proc/${pid}/root/tmp/perf-${procIds(pid).nspid}.map`;
}

/**
 * Appends "ADDR SIZE NAME" lines for `entries` to the perf map of process `pid`, creating
 * it if absent, never truncating it. With `patchId` the names are patchc:<patchId>:<name>;
 * without, they are written as given. Throws an Error naming the process and the file
 * (the caller has already applied the patch: it reports this as a warning).
 */
export function appendPerfMap(pid: number, entries: Range[], patchId?: string): void {
  const text = formatPerfMap(entries, patchId);
  if (text === "") return;
  const ids = procIds(pid);
  const file = `/proc/${pid}/root/tmp/perf-${ids.nspid}.map`;
  const flags = constants.O_WRONLY | constants.O_APPEND | constants.O_NOFOLLOW;
  const fail = (what: string, e: unknown): never => {
    throw new Error(`process ${pid}: cannot ${what} its perf map ${file}: ${(e as NodeJS.ErrnoException).code ?? e}`);
  };
  let fd: number;
  let created = false;
  try {
    fd = openSync(file, flags | constants.O_CREAT | constants.O_EXCL, 0o644);
    created = true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") fail("create", e);
    try {
      fd = openSync(file, flags);
    } catch (e2) {
      fail("open", (e2 as NodeJS.ErrnoException).code === "ELOOP" ? "a symbolic link (refused)" : e2);
    }
  }
  try {
    if (!fstatSync(fd!).isFile()) fail("append to", "not a regular file");
    if (created && ids.uid >= 0 && process.getuid?.() === 0 && ids.uid !== 0) {
      try {
        fchownSync(fd!, ids.uid, ids.gid);
      } catch {
        // a map owned by root is still read by perf
      }
    }
    const bytes = Buffer.from(text, "utf8");
    const n = writeSync(fd!, bytes); // one write: appended as a whole
    if (n !== bytes.length) fail("append to", `short write (${n} of ${bytes.length} bytes)`);
  } finally {
    closeSync(fd!);
  }
}
