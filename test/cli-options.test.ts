// The CLI's argument parser is a pure function: tested without spawning a process.
import { describe, expect, it } from "vitest";
import { helpText, parseArgs, UsageError, type CommandSpec } from "../src/cli/options.js";
import { main } from "../src/cli/main.js";

const commands: CommandSpec[] = [
  {
    name: "build",
    summary: "make a patch",
    usage: "[options] [OBJ...]",
    minArgs: 0,
    maxArgs: 10,
    options: [
      { name: "output", short: "o", kind: "string", help: "output file", value: "FILE" },
      { name: "replace", kind: "list", help: "OLD=NEW", value: "OLD=NEW" },
      { name: "timeout", kind: "number", help: "seconds" },
      { name: "sign", kind: "boolean", help: "sign it" },
    ],
  },
  { name: "status", summary: "show", usage: "PID", minArgs: 1, maxArgs: 1, options: [] },
];

describe("parseArgs", () => {
  it("parses commands, options of every kind, -- and inline values", () => {
    expect(parseArgs(["build", "-o", "x.patch", "--replace", "a=b", "--replace=c=d", "--timeout", "2.5", "--sign", "--", "-weird.o"], commands)).toEqual({
      command: "build",
      args: ["-weird.o"],
      options: { output: "x.patch", replace: ["a=b", "c=d"], timeout: 2.5, sign: true },
    });
    expect(parseArgs(["--json", "status", "12"], commands)).toEqual({ command: "status", args: ["12"], options: { json: true } });
  });

  it("refuses with a message that says what is wrong", () => {
    const bad = (argv: string[]) => () => parseArgs(argv, commands);
    expect(bad(["nope"])).toThrow(new UsageError("unknown command: nope (see `patchc --help`)"));
    expect(bad(["build", "--bogus"])).toThrow(/unknown option --bogus for `patchc build`/);
    expect(bad(["build", "-o"])).toThrow(/--output needs a value \(FILE\)/);
    expect(bad(["build", "--timeout", "soon"])).toThrow(/not a number: soon/);
    expect(bad(["build", "--sign=yes"])).toThrow(/takes no value/);
    expect(bad(["status"])).toThrow(/needs PID/);
    expect(bad(["status", "1", "2"])).toThrow(/too many arguments/);
  });

  it("lists commands and a command's options in help", () => {
    expect(helpText(commands)).toMatch(/build +make a patch/);
    expect(helpText(commands, "build")).toMatch(/-o, --output FILE +output file/);
  });
});

describe("main", () => {
  it("turns usage errors into exit code 2 and --help into 0", async () => {
    let out = "";
    let err = "";
    const sink = { out: (t: string) => void (out += t), err: (t: string) => void (err += t), isTTY: false };
    expect(await main(["--help"], sink)).toBe(0);
    expect(out).toMatch(/^usage: patchc <command>/);
    expect(await main(["frobnicate"], sink)).toBe(2);
    expect(err).toBe("patchc: unknown command: frobnicate (see `patchc --help`)\n");
  });
});
