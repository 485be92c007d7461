// Errors of `patchc build` the user can act on (the CLI shows them, exit code 1).
//
// A BuildError names the step that failed ("build original", "apply diff", ...) and,
// when the step ran a command, the command, how it ended and the tail of what it
// printed, so the user sees why without rerunning anything.

export interface CommandFailure {
  command: string; // as the user would type it
  cwd: string;
  status: number | null; // exit status; null when killed by a signal
  signal: string | null;
  tail: string; // the last lines of stderr (or stdout when stderr is empty)
}

export class BuildError extends Error {
  constructor(
    readonly step: string,
    readonly reason: string,
    readonly failure?: CommandFailure,
  ) {
    super(`${step}: ${reason}${failure && failure.tail ? `\n${indent(failure.tail)}` : ""}`);
    this.name = "BuildError";
  }
}

function indent(text: string): string {
  return text
    .split("\n")
    .map((l) => `  | ${l}`)
    .join("\n");
}
