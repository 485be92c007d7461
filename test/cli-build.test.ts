// `patchc build`'s command line: the three forms planned from the parsed arguments (a
// pure function), and what main() answers when the command line or the inputs are wrong.
import { afterAll, describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as path from "node:path";
import { main } from "../src/cli/main.js";
import { commands } from "../src/cli/commands.js";
import { parseArgs } from "../src/cli/options.js";
import { planBuild, type BuildPlan } from "../src/cli/build-command.js";
import { Scratch } from "./helpers/gcc.js";

const scratch = new Scratch();
afterAll(() => scratch.remove());

function plan(...argv: string[]): BuildPlan {
  return planBuild(parseArgs(["build", ...argv], commands.map((c) => c.spec)));
}

async function patchc(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await main(argv, { out: (t) => void (out += t), err: (t) => void (err += t), isTTY: false });
  return { code, out, err };
}

describe("patchc build: planning", () => {
  it("plans the objects form", () => {
    expect(plan("--orig", "a", "--patched", "b", "--target", "/usr/sbin/nginx", "-o", "fix-1.patch", "--description", "the fix", "--sign", "k.pem")).toEqual({
      mode: "objects",
      original: "a",
      patched: "b",
      target: "/usr/sbin/nginx",
      output: "fix-1.patch",
      patchId: "fix-1",
      description: "the fix",
      sign: "k.pem",
    });
  });

  it("plans the replacement form", () => {
    expect(plan("--replace", "parse=parse_fixed", "--replace=check=check2", "--target", "bin", "-o", "out/x.patch", "--id", "cve-1", "new.o")).toEqual({
      mode: "replace",
      object: "new.o",
      replacements: [
        { old: "parse", new: "parse_fixed" },
        { old: "check", new: "check2" },
      ],
      target: "bin",
      output: "out/x.patch",
      patchId: "cve-1",
      description: undefined,
      sign: undefined,
    });
  });

  it("plans the source form with its defaults", () => {
    expect(plan("--source", "nginx-1.22.1", "--diff", "fix.diff", "--build-cmd", "./configure && make", "--binary", "objs/nginx", "-o", "fix.patch")).toEqual({
      mode: "source",
      source: "nginx-1.22.1",
      diff: "fix.diff",
      buildCommand: "./configure && make",
      binary: "objs/nginx",
      debian: false,
      strip: 1,
      cflags: [],
      scratch: undefined,
      keep: undefined,
      cache: undefined,
      verbose: false,
      target: undefined,
      output: "fix.patch",
      patchId: "fix",
      description: undefined,
      sign: undefined,
    });
    const p = plan("--source", "t", "--diff", "d", "--build-cmd", "make", "--target", "/usr/sbin/t", "--debian", "--strip", "0", "--cflags", "-flive-patching=inline-clone -O2", "--cflags", "-g3", "--scratch", "/s", "--keep", "/k", "--cache", "/c", "-v", "-o", "p.patch");
    expect(p).toMatchObject({ mode: "source", target: "/usr/sbin/t", debian: true, strip: 0, cflags: ["-flive-patching=inline-clone", "-O2", "-g3"], scratch: "/s", keep: "/k", cache: "/c", verbose: true });
  });

  it("refuses what is missing, mixed or misplaced, naming it", () => {
    const bad = (...argv: string[]) => () => plan(...argv);
    expect(bad("-o", "x.patch")).toThrow(/^`patchc build` needs one of: --orig A --patched B; --replace OLD=NEW \.\.\. NEW\.o; --source DIR --diff PATCH --build-cmd CMD/);
    expect(bad("--orig", "a", "--source", "s", "-o", "x.patch")).toThrow("`patchc build`: --orig/--patched and --source are different forms: give one");
    expect(bad("--orig", "a", "--patched", "b", "--target", "t")).toThrow("`patchc build` needs -o FILE (the package to write)");
    expect(bad("--orig", "a", "--target", "t", "-o", "x.patch")).toThrow(/^--orig and --patched go together/);
    expect(bad("--orig", "a", "--patched", "b", "-o", "x.patch")).toThrow("`patchc build --orig/--patched` needs --target BINARY (the binary the running process was started from)");
    expect(bad("--orig", "a", "--patched", "b", "--target", "t", "--debian", "-o", "x.patch")).toThrow("--debian belongs to the --source form, not to --orig/--patched");
    expect(bad("--orig", "a", "--patched", "b", "--target", "t", "-o", "x.patch", "n.o")).toThrow(/takes no object argument \(n\.o\)/);
    expect(bad("--replace", "a=b", "--target", "t", "-o", "x.patch")).toThrow(/needs one object, NEW\.o/);
    expect(bad("--replace", "ab", "--target", "t", "-o", "x.patch", "n.o")).toThrow("--replace ab: give OLD=NEW (the target's function and the one in n.o replacing it)");
    expect(bad("--replace", "a=b", "--replace", "a=c", "--target", "t", "-o", "x.patch", "n.o")).toThrow("--replace: a is replaced twice");
    expect(bad("--source", "s", "--build-cmd", "make", "--binary", "b", "-o", "x.patch")).toThrow(/needs --diff PATCH/);
    expect(bad("--source", "s", "--diff", "d", "--binary", "b", "-o", "x.patch")).toThrow(/needs --build-cmd CMD/);
    expect(bad("--source", "s", "--diff", "d", "--build-cmd", "make", "-o", "x.patch")).toThrow(/needs --binary REL .* or --target BINARY/);
    expect(bad("--source", "s", "--diff", "d", "--build-cmd", "make", "--binary", "../b", "-o", "x.patch")).toThrow("--binary ../b: give a path relative to the top of the tree");
    expect(bad("--source", "s", "--diff", "d", "--build-cmd", "make", "--binary", "b", "--strip", "-1", "-o", "x.patch")).toThrow(/--strip -1: not a count/);
    expect(bad("--source", "s", "--diff", "d", "--build-cmd", "make", "--binary", "b", "-o", "my fix.patch")).toThrow(/the patch id would be "my fix" .*: give --id/);
    expect(bad("--source", "s", "--diff", "d", "--build-cmd", "make", "--binary", "b", "-o", "x.patch", "--id", "-x")).toThrow(/--id -x: not 1-64 characters/);
  });
});

describe("patchc build: through main()", () => {
  it("exits 2 on a wrong command line", async () => {
    const r = await patchc("build", "--orig", "a", "-o", "x.patch");
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^patchc: --orig and --patched go together/);
  });

  it("exits 1 naming the step and the input when an input is wrong, writing nothing", async () => {
    const out = scratch.path("x.patch");
    let r = await patchc("build", "--source", scratch.path("nope"), "--diff", "d", "--build-cmd", "make", "--binary", "b", "-o", out);
    expect(r.code).toBe(1);
    expect(r.err).toBe(`patchc: options: source ${scratch.path("nope")}: no such directory\n`);

    fs.mkdirSync(scratch.path("a"));
    fs.mkdirSync(scratch.path("b"));
    fs.writeFileSync(scratch.path("b/x.o"), "not an object");
    r = await patchc("build", "--orig", scratch.path("a"), "--patched", scratch.path("b"), "--target", "/bin/true", "-o", out);
    expect(r.code).toBe(1);
    expect(r.err).toBe(`patchc: objects: --patched ${scratch.path("b")} holds no ELF relocatable object (.o)\n`);
    r = await patchc("build", "--orig", scratch.path("a"), "--patched", scratch.path("b/x.o"), "--target", "/bin/true", "-o", out);
    expect(r.err).toBe(`patchc: objects: --orig ${scratch.path("a")} is a directory and --patched ${scratch.path("b/x.o")} a file: give two directories or two object files\n`);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.readdirSync(path.dirname(out)).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });

  it("lists build among the commands, with its options", async () => {
    expect((await patchc("--help")).out).toMatch(/\n {2}build {8}make a patch package from two builds/);
    const h = (await patchc("build", "--help")).out;
    for (const o of ["--orig A", "--patched B", "--replace OLD=NEW", "--source DIR", "--diff PATCH", "--build-cmd CMD", "--debian", "--binary REL", "--cflags FLAGS", "--keep DIR", "--cache DIR", "--sign KEY"]) expect(h).toContain(o);
  });
});
