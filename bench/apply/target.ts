// A fixture server under the pause monitor, and the monitor's shared page.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync, readSync, rmSync, unlinkSync, writeSync } from "node:fs";

const MAGIC = 0x31726f74696e6f6dn;

/** The monitor's page in /dev/shm (pause-monitor.c): largest gap, reads, window epoch. */
export class Monitor {
  private readonly fd: number;
  private readonly buf = Buffer.alloc(32);
  private epoch = 0n;

  constructor(readonly pid: number) {
    this.fd = openSync(`/dev/shm/patchc-monitor-${pid}`, "r+");
    this.read();
    if (this.buf.readBigUInt64LE(0) !== MAGIC) throw new Error(`no pause monitor in ${pid}`);
    this.epoch = this.buf.readBigUInt64LE(24);
  }

  private read(): void {
    readSync(this.fd, this.buf, 0, 32, 0);
  }

  reads(): bigint {
    this.read();
    return this.buf.readBigUInt64LE(16);
  }

  /** Waits until the monitor has made two more publications of its read count (it ran). */
  async ran(): Promise<void> {
    const from = this.reads();
    const t0 = Date.now();
    while (this.reads() < from + 2n * 4096n) {
      if (Date.now() - t0 > 5000) throw new Error(`pause monitor of ${this.pid} does not run`);
      await new Promise((r) => setTimeout(r, 1)); // not a busy loop: it would take the monitor's CPU
    }
  }

  /** Starts a new window (the largest gap restarts from 0) once the monitor saw it. */
  async reset(): Promise<void> {
    // the floor program (bench/apply/floor.c) moves the epoch too: always past the current one
    this.read();
    this.epoch = this.buf.readBigUInt64LE(24) + 1n;
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(this.epoch);
    writeSync(this.fd, b, 0, 8, 24);
    await this.ran();
  }

  /** The largest gap of the window, once the monitor ran after whatever happened (ns). */
  async gap(): Promise<number> {
    await this.ran();
    this.read();
    return Number(this.buf.readBigUInt64LE(8));
  }

  close(): void {
    closeSync(this.fd);
  }
}

export interface Server {
  proc: ChildProcess;
  pid: number;
  monitor?: Monitor;
  kill(): void;
}

/** Starts `server kind n` (with the monitor preloaded when given) and waits for "ready". */
export async function startServer(server: string, kind: "sleep" | "busy", n: number, monitorLib?: string): Promise<Server> {
  const env = monitorLib ? { ...process.env, LD_PRELOAD: monitorLib, PATCHC_MONITOR_NICE: process.env.BENCH_MONITOR_NICE ?? "-20" } : process.env;
  const proc = spawn(server, [kind, String(n)], { stdio: ["pipe", "pipe", "inherit"], env });
  await new Promise<void>((resolve, reject) => {
    let buf = "";
    proc.stdout!.on("data", (d) => {
      buf += d;
      if (buf.includes("ready\n")) resolve();
    });
    proc.on("exit", (c, s) => reject(new Error(`fixture server exited (${c ?? s}) before it was ready`)));
    proc.on("error", reject);
  });
  const pid = proc.pid!;
  const monitor = monitorLib ? new Monitor(pid) : undefined;
  return {
    proc,
    pid,
    monitor,
    kill() {
      monitor?.close();
      proc.kill("SIGKILL");
      forgetPerfMap(pid);
      if (monitorLib) {
        try {
          unlinkSync(`/dev/shm/patchc-monitor-${pid}`);
        } catch {
          // gone already
        }
      }
    },
  };
}

/** Removes the perf map the applies wrote for a bench target that is gone (/tmp: the bench's targets share its root). */
export function forgetPerfMap(pid: number): void {
  rmSync(`/tmp/perf-${pid}.map`, { force: true });
}
