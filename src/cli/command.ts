// What a CLI command is: its declared options, and a run function that writes to
// the given output and returns an exit code (see src/cli/exit-codes.ts).
import type { CommandSpec, ParsedArgs } from "./options.js";

export interface Output {
  out(text: string): void;
  err(text: string): void;
  isTTY: boolean;
}

export interface Command {
  spec: CommandSpec;
  run(args: ParsedArgs, io: Output): Promise<number>;
}
