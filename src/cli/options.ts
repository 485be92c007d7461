// The command line as data: each command declares its options, and parseArgs() is a
// pure function from argv to a typed result (tested without spawning a process).

export type OptionKind = "boolean" | "string" | "number" | "list";

export interface OptionSpec {
  name: string; // long name, without "--"
  short?: string; // one letter, without "-"
  kind: OptionKind;
  help: string;
  value?: string; // placeholder shown in help, e.g. FILE
}

export interface CommandSpec {
  name: string;
  summary: string;
  usage: string; // after "patchc <name> "
  options: OptionSpec[];
  minArgs: number;
  maxArgs: number;
}

export const globalOptions: OptionSpec[] = [
  { name: "help", short: "h", kind: "boolean", help: "show help" },
  { name: "version", kind: "boolean", help: "show the version" },
  { name: "json", kind: "boolean", help: "machine-readable output" },
];

export type OptionValue = boolean | string | number | string[];

export interface ParsedArgs {
  command?: string;
  args: string[];
  options: Record<string, OptionValue>;
}

/** A usage error: exit code 2, with the message shown to the user. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

function findOption(specs: OptionSpec[], token: string): OptionSpec | undefined {
  if (token.startsWith("--")) return specs.find((s) => s.name === token.slice(2));
  return specs.find((s) => s.short !== undefined && s.short === token.slice(1));
}

export function parseArgs(argv: readonly string[], commands: readonly CommandSpec[]): ParsedArgs {
  const result: ParsedArgs = { args: [], options: {} };
  let specs: OptionSpec[] = globalOptions;
  let command: CommandSpec | undefined;
  let onlyArgs = false;
  for (let i = 0; i < argv.length; i++) {
    let token = argv[i];
    if (!onlyArgs && token === "--") {
      onlyArgs = true;
      continue;
    }
    if (!onlyArgs && token.length > 1 && token.startsWith("-")) {
      let inline: string | undefined;
      const eq = token.indexOf("=");
      if (token.startsWith("--") && eq > 0) {
        inline = token.slice(eq + 1);
        token = token.slice(0, eq);
      }
      const spec = findOption(specs, token);
      if (!spec) {
        throw new UsageError(`unknown option ${token}${command ? ` for \`patchc ${command.name}\`` : ""}`);
      }
      if (spec.kind === "boolean") {
        if (inline !== undefined) throw new UsageError(`option --${spec.name} takes no value`);
        result.options[spec.name] = true;
        continue;
      }
      const raw = inline ?? argv[++i];
      if (raw === undefined) throw new UsageError(`option --${spec.name} needs a value (${spec.value ?? "VALUE"})`);
      if (spec.kind === "number") {
        const n = Number(raw);
        if (!Number.isFinite(n)) throw new UsageError(`option --${spec.name}: not a number: ${raw}`);
        result.options[spec.name] = n;
      } else if (spec.kind === "list") {
        const prev = result.options[spec.name];
        result.options[spec.name] = [...(Array.isArray(prev) ? prev : []), raw];
      } else {
        result.options[spec.name] = raw;
      }
      continue;
    }
    if (!command && !onlyArgs) {
      command = commands.find((c) => c.name === token);
      if (!command) throw new UsageError(`unknown command: ${token} (see \`patchc --help\`)`);
      result.command = command.name;
      specs = [...globalOptions, ...command.options];
      continue;
    }
    result.args.push(token);
  }
  if (command && !result.options.help) {
    if (result.args.length < command.minArgs) {
      throw new UsageError(`\`patchc ${command.name}\` needs ${command.usage}`);
    }
    if (result.args.length > command.maxArgs) {
      throw new UsageError(`\`patchc ${command.name}\`: too many arguments (usage: patchc ${command.name} ${command.usage})`);
    }
  }
  return result;
}

function optionLine(o: OptionSpec): string {
  const flag = `${o.short ? `-${o.short}, ` : "    "}--${o.name}${o.kind === "boolean" ? "" : ` ${o.value ?? "VALUE"}`}`;
  return `  ${flag.padEnd(30)} ${o.help}`;
}

export function helpText(commands: readonly CommandSpec[], command?: string): string {
  const c = commands.find((x) => x.name === command);
  if (c) {
    return [`usage: patchc ${c.name} ${c.usage}`, "", c.summary, "", "options:", ...[...c.options, ...globalOptions].map(optionLine), ""].join("\n");
  }
  return [
    "usage: patchc <command> [options]",
    "",
    "Live-patches functions in running Linux x86-64 processes.",
    "",
    "commands:",
    ...commands.map((x) => `  ${x.name.padEnd(12)} ${x.summary}`),
    "",
    "options:",
    ...globalOptions.map(optionLine),
    "",
    "`patchc <command> --help` shows a command's options.",
    "",
  ].join("\n");
}

/** A process id argument: a positive decimal integer (usage error otherwise). */
export function pidArg(text: string, command: string): number {
  if (!/^[1-9][0-9]{0,9}$/.test(text) || Number(text) > 0x3fffffff) throw new UsageError(`\`patchc ${command}\`: ${text} is not a process id (a positive integer)`);
  return Number(text);
}

/** A value of a number option that must be a positive integer, e.g. --timeout MS. */
export function positiveInteger(value: number | undefined, option: string, what: string): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value <= 0) throw new UsageError(`--${option} ${value}: not ${what} (a positive integer)`);
  return value;
}

/** A string option restricted to a few words, e.g. --consistency=function|entry. */
export function choice<T extends string>(value: unknown, option: string, choices: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || !(choices as readonly string[]).includes(value)) throw new UsageError(`--${option} ${String(value)}: give one of ${choices.join(", ")}`);
  return value as T;
}
