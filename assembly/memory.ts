// The memory and error exports of the core's ABI (see docs/core-abi.md).
//
// Every buffer the host passes in or reads out is unmanaged memory from alloc():
// the garbage collector never moves or frees it. The host frees what it allocated.
import { errorCode, errorMessageLen, errorMessagePtr } from "./error";

/** Allocates `size` bytes (16-byte aligned) of unmanaged memory; traps through abort when memory is exhausted. */
export function alloc(size: usize): usize {
  return heap.alloc(size == 0 ? 1 : size);
}

/** Frees memory returned by alloc(). free(0) does nothing. */
export function free(ptr: usize): void {
  if (ptr != 0) heap.free(ptr);
}

/** Code of the last failure (see assembly/error.ts), 0 after a success that cleared it. */
export function core_error_code(): i32 {
  return errorCode();
}

/** UTF-8 message of the last failure; its length is core_error_message_len(). */
export function core_error_message(): usize {
  return errorMessagePtr();
}

export function core_error_message_len(): u32 {
  return errorMessageLen();
}

/** Version of the ABI described in docs/core-abi.md; bumped on any incompatible change. */
export function core_abi_version(): u32 {
  return 1;
}
