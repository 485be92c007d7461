// Exports of the seccomp area (documented in docs/core-abi.md, "seccomp filter evaluation").
// The filter-set layout and the kernel's rules are described in ./bpf.ts.
import { Bytes } from "../bytes";
import { Err, clearError, fail } from "../error";
import { DATA_SIZE, actionOf, checkSet, runSet } from "./bpf";

/**
 * Checks a filter set ([set, set+len): per filter `count u32, pad u32, count x 8-byte
 * instructions`, oldest first) the way the kernel checks a filter it installs.
 * Returns the number of filters (0 for an empty set), or -1 with the failure recorded.
 */
export function seccomp_check(set: usize, len: usize): i32 {
  clearError();
  if (set == 0 && len != 0) {
    fail(Err.BAD_ARGUMENT, "seccomp_check: null filter set");
    return -1;
  }
  return checkSet(new Bytes(set, <u64>len));
}

/**
 * The value the filters return for one syscall: [data, data+dataLen) is a
 * struct seccomp_data (64 bytes). The result is the kernel's combined return value
 * (u32: action in the top 16 bits, data below; SECCOMP_RET_ALLOW 0x7fff0000 for an
 * empty set), or -1 with the failure recorded.
 */
export function seccomp_eval(set: usize, len: usize, data: usize, dataLen: usize): i64 {
  clearError();
  if ((set == 0 && len != 0) || data == 0) {
    fail(Err.BAD_ARGUMENT, "seccomp_eval: null pointer");
    return -1;
  }
  if (dataLen != DATA_SIZE) {
    fail(Err.SECCOMP_BAD_DATA, "seccomp_eval: seccomp_data is " + DATA_SIZE.toString() + " bytes, " + dataLen.toString() + " given");
    return -1;
  }
  const b = new Bytes(set, <u64>len);
  const n = checkSet(b);
  if (n < 0) return -1;
  return <i64>runSet(b, n, data);
}

/** The action the kernel takes for a return value (its top 16 bits; unknown actions kill the process). */
export function seccomp_action(ret: u32): u32 {
  return actionOf(ret);
}
