// Typed wrapper over the seccomp exports of core.wasm (docs/core-abi.md,
// "seccomp filter evaluation"): check a thread's classic BPF filters and compute
// what they return for one syscall, without making it.
import type { Core } from "./instance.js";

/** struct seccomp_data.arch of a 64-bit x86 syscall. */
export const AUDIT_ARCH_X86_64 = 0xc000003e;

/** Actions (the top 16 bits of a filter's return value), least permissive first. */
export const SeccompAction = {
  KILL_PROCESS: 0x80000000,
  KILL_THREAD: 0x00000000,
  TRAP: 0x00030000,
  ERRNO: 0x00050000,
  USER_NOTIF: 0x7fc00000,
  TRACE: 0x7ff00000,
  LOG: 0x7ffc0000,
  ALLOW: 0x7fff0000,
} as const;

export interface SeccompData {
  nr: number;
  /** defaults to AUDIT_ARCH_X86_64 */
  arch?: number;
  /** the address after the `syscall` instruction */
  ip: bigint;
  /** up to 6 arguments; missing ones are 0 */
  args: readonly bigint[];
}

interface SeccompExports {
  seccomp_check(set: number, len: number): number;
  seccomp_eval(set: number, len: number, data: number, dataLen: number): bigint;
  seccomp_action(ret: number): number;
}

function ex(core: Core): SeccompExports {
  return core.exports as unknown as SeccompExports;
}

/** Encodes a struct seccomp_data (64 bytes, little-endian). */
export function encodeSeccompData(d: SeccompData): Uint8Array {
  const b = new Uint8Array(64);
  const v = new DataView(b.buffer);
  v.setInt32(0, d.nr, true);
  v.setUint32(4, d.arch ?? AUDIT_ARCH_X86_64, true);
  v.setBigUint64(8, BigInt.asUintN(64, d.ip), true);
  for (let i = 0; i < 6; i++) v.setBigUint64(16 + 8 * i, BigInt.asUintN(64, d.args[i] ?? 0n), true);
  return b;
}

/** Checks a filter set (count u32, pad u32, instructions; oldest first) as the kernel would; returns the number of filters. */
export function seccompCheck(core: Core, filters: Uint8Array): number {
  const n = core.withBytes(filters, (p, l) => ex(core).seccomp_check(p, l));
  if (n < 0) throw core.lastError("seccomp");
  return n;
}

/** What the filters return for one syscall (u32: action | data); ALLOW for an empty set. */
export function seccompEval(core: Core, filters: Uint8Array, data: SeccompData): number {
  const d = encodeSeccompData(data);
  const r = core.withBytes(filters, (p, l) => core.withBytes(d, (dp, dl) => ex(core).seccomp_eval(p, l, dp, dl)));
  if (r < 0n) throw core.lastError("seccomp");
  return Number(r);
}

/** The action the kernel takes for a return value (unknown actions kill the process). */
export function seccompAction(core: Core, ret: number): number {
  return ex(core).seccomp_action(ret >>> 0) >>> 0;
}

/** A name for an action, for messages. */
export function seccompActionName(action: number): string {
  for (const [k, v] of Object.entries(SeccompAction)) if (v === action >>> 0) return k;
  return `0x${(action >>> 0).toString(16)}`;
}
