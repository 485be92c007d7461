// Compiles C fixtures with the system gcc at test time, into a fresh temp directory.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export class Scratch {
  readonly dir = mkdtempSync(join(tmpdir(), "patchc-test-"));

  path(name: string): string {
    return join(this.dir, name);
  }

  write(name: string, text: string): string {
    const p = this.path(name);
    writeFileSync(p, text);
    return p;
  }

  /**
   * Compiles `source` (C text, or a path) with gcc in this directory; returns the output
   * path. `libs` go after the source (link order matters with --as-needed).
   */
  gcc(source: string, out: string, flags: string[] = [], libs: string[] = []): string {
    const src = source.includes("\n") ? this.write(out.replace(/\.[^.]*$/, "") + ".c", source) : source;
    const o = this.path(out);
    execFileSync("gcc", [...flags, src, "-o", o, ...libs], { cwd: this.dir, stdio: ["ignore", "pipe", "pipe"] });
    return o;
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Runs a tool and returns its stdout (throws with stderr on failure). */
export function run(cmd: string, args: string[], opts: { cwd?: string; maxBuffer?: number } = {}): string {
  return execFileSync(cmd, args, { encoding: "utf8", maxBuffer: opts.maxBuffer ?? 256 * 1024 * 1024, cwd: opts.cwd, stdio: ["ignore", "pipe", "pipe"] });
}

export const LIBC = "/lib/x86_64-linux-gnu/libc.so.6";
