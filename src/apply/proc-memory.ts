// Reading a live process's memory without stopping it: pread(2) on /proc/PID/mem.
// This needs ptrace-read access to the target (root, or the same user with
// kernel.yama.ptrace_scope permitting). Writing text goes through the shim.
import { closeSync, openSync, readSync } from "node:fs";

export interface MemoryReader {
  /** Exactly `len` bytes at `addr`; throws naming the process and the range when unreadable. */
  read(addr: bigint, len: number): Uint8Array;
  close(): void;
}

export class ProcMemory implements MemoryReader {
  private fd: number;

  constructor(readonly pid: number) {
    try {
      this.fd = openSync(`/proc/${pid}/mem`, "r");
    } catch (e) {
      throw new Error(`process ${pid}: cannot open /proc/${pid}/mem: ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
  }

  read(addr: bigint, len: number): Uint8Array {
    const buf = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      let n: number;
      try {
        n = readSync(this.fd, buf, done, len - done, addr + BigInt(done));
      } catch (e) {
        throw new Error(`process ${this.pid}: cannot read ${len} bytes at 0x${addr.toString(16)}: ${(e as NodeJS.ErrnoException).code ?? e}`);
      }
      if (n === 0) throw new Error(`process ${this.pid}: cannot read ${len} bytes at 0x${addr.toString(16)}: end of memory`);
      done += n;
    }
    return buf;
  }

  /** The NUL-terminated string at addr (at most `max` bytes), read a page at a time. */
  readCString(addr: bigint, max = 4096): string {
    let s = "";
    while (s.length < max) {
      const pageLeft = 4096 - Number(addr % 4096n);
      const chunk = this.read(addr, Math.min(pageLeft, max - s.length));
      const nul = chunk.indexOf(0);
      s += new TextDecoder().decode(nul >= 0 ? chunk.subarray(0, nul) : chunk);
      if (nul >= 0) return s;
      addr += BigInt(chunk.length);
    }
    throw new Error(`process ${this.pid}: string at 0x${addr.toString(16)} is longer than ${max} bytes`);
  }

  close(): void {
    closeSync(this.fd);
  }
}
