// The patchc CLI entry: parse, dispatch, and the one place that turns errors into exit codes.
import { commands } from "./commands.js";
import type { Output } from "./command.js";
import { EXIT_FAILED, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE } from "./exit-codes.js";
import { helpText, parseArgs, UsageError } from "./options.js";
import { CoreError } from "../core/instance.js";
import { PackageError } from "../format/errors.js";
import { BuildError } from "../build/errors.js";
import { ApplyError } from "../apply/errors.js";

declare const __PATCHC_VERSION__: string | undefined;

/** Errors the user can act on: shown as one line, exit code 1. */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UserError";
  }
}

export async function main(argv: readonly string[], io: Output): Promise<number> {
  const specs = commands.map((c) => c.spec);
  try {
    const parsed = parseArgs(argv, specs);
    if (parsed.options.version) {
      io.out(`patchc ${typeof __PATCHC_VERSION__ === "string" ? __PATCHC_VERSION__ : "dev"}\n`);
      return EXIT_OK;
    }
    if (!parsed.command || parsed.options.help) {
      io.out(helpText(specs, parsed.command));
      return EXIT_OK;
    }
    const command = commands.find((c) => c.spec.name === parsed.command)!;
    return await command.run(parsed, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`patchc: ${e.message}\n`);
      return EXIT_USAGE;
    }
    if (e instanceof UserError || e instanceof CoreError || e instanceof PackageError || e instanceof BuildError || e instanceof ApplyError || isSystemError(e)) {
      io.err(`patchc: ${(e as Error).message}\n`);
      return EXIT_FAILED;
    }
    io.err(`patchc: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return EXIT_INTERNAL;
  }
}

function isSystemError(e: unknown): boolean {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === "string" && typeof (e as NodeJS.ErrnoException).syscall === "string";
}

const isEntry = typeof require !== "undefined" && typeof module !== "undefined" && require.main === module;
if (isEntry) {
  const io: Output = {
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    isTTY: Boolean(process.stdout.isTTY),
  };
  main(process.argv.slice(2), io).then((code) => {
    process.exitCode = code;
  });
}
