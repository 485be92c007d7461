// Errors of `patchc apply | revert | status` the user can act on (the CLI shows them,
// exit code 1). An ApplyError names the process (and, when it concerns one, the
// function) and the reason; `code` is a stable word for tools (--json) and tests.
//
// Whatever raised it, the target was left running and fully old or fully new: the
// code that throws one undoes its own steps first.

export type ApplyErrorCode =
  | "NO_PROCESS" // dead PID, zombie, not permitted
  | "WRONG_BUILD" // no module with the package's build-id in the process
  | "BAD_PACKAGE" // unreadable, truncated, corrupt, unsigned when a signature is required
  | "UNRESOLVED" // a reference the package needs has no definite target in the process
  | "NO_MEMORY" // no gap within reach, or the target refused the mapping
  | "SITE_MISMATCH" // a site does not hold the bytes the package expects
  | "DEPENDENCY" // a patch this one depends on is not applied (or applied in another build)
  | "ALREADY_APPLIED"
  | "NOT_APPLIED" // revert of a patch that is not there
  | "OUT_OF_ORDER" // revert of a patch a later patch stacks on
  | "BUSY" // a thread stayed inside a function being replaced until --timeout
  | "TARGET_GONE" // the process exited or called exec during the operation
  | "TRACE"; // ptrace failed (already traced, seccomp, ...)

export class ApplyError extends Error {
  constructor(
    readonly code: ApplyErrorCode,
    /** "process 1234" or "process 1234, function foo" */
    readonly subject: string,
    readonly reason: string,
    /** a thread the reason concerns (BUSY), 0 when none */
    readonly tid = 0,
  ) {
    super(`${subject}: ${reason}`);
    this.name = "ApplyError";
  }
}

export const processSubject = (pid: number, fn?: string): string => (fn ? `process ${pid}, function ${fn}` : `process ${pid}`);
