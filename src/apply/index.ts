// The library entry points of `patchc apply | revert | status` (contract.ts declares them):
//
//   applyPatch(pid, pkg, opts)      -> ApplyReport    (session.ts)
//   revertPatch(pid, which, opts)   -> RevertReport   (session.ts)
//   readStatus(pid, opts?)          -> StatusReport   (status.ts)
//
// Each throws ApplyError (errors.ts) on a refusal or failure, after undoing its own steps.
export { applyPatch, revertPatch } from "./session.js";
export { readStatus } from "./status.js";
export { ApplyError, type ApplyErrorCode } from "./errors.js";
export type * from "./contract.js";
