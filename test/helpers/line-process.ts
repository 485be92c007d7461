// A child process whose stdout is read line by line: the fixtures of the shim and apply
// tests answer on stdout, one line per event or reply. Subclasses decide how lines are
// matched (consumed by tag, or searched from an index) and wait with nextChange().
import { spawn, type ChildProcess } from "node:child_process";

export class LineProcess {
  readonly proc: ChildProcess;
  /** lines read so far (a subclass may consume them) */
  readonly lines: string[] = [];
  exited = false;
  stderr = "";
  private waiters: Array<() => void> = [];

  constructor(exe: string, args: string[] = [], opts: { stdin?: "pipe" | "ignore"; env?: Record<string, string> } = {}) {
    this.proc = spawn(exe, args, { stdio: [opts.stdin ?? "pipe", "pipe", "pipe"], env: opts.env ? { ...process.env, ...opts.env } : process.env });
    let buf = "";
    this.proc.stdout!.setEncoding("utf8");
    this.proc.stdout!.on("data", (d: string) => {
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        this.lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
      this.wake();
    });
    this.proc.stderr!.setEncoding("utf8");
    this.proc.stderr!.on("data", (d: string) => (this.stderr += d));
    this.proc.stdin?.on("error", () => {}); // a target that exits before reading its input
    this.proc.on("exit", () => {
      this.exited = true;
      this.onExit();
      this.wake();
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get alive(): boolean {
    return !this.exited && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Called once when the process exits (before waiters wake). */
  protected onExit(): void {}

  /** Resolves when a line arrives or the process exits, or at `deadline` (Date.now() ms). */
  protected nextChange(deadline: number): Promise<void> {
    return new Promise<void>((r) => {
      const t = setTimeout(r, Math.max(1, deadline - Date.now()));
      this.waiters.push(() => {
        clearTimeout(t);
        r();
      });
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
