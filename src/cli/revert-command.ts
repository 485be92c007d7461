// `patchc revert PID (PATCH-ID | --all) [--timeout MS] [--json]`: takes patches back, last
// in first out per function (the library refuses out of order, naming the patch that stacks
// on it). A patch's memory is freed once a stack scan proves no frame is in it; otherwise
// it is kept, marked retired (shown by `patchc status`).
import type { Command } from "./command.js";
import { EXIT_OK } from "./exit-codes.js";
import { pidArg, positiveInteger, UsageError, type ParsedArgs } from "./options.js";
import { nodeCore } from "../node/core-file.js";
import type { RevertReport } from "../apply/contract.js";
import { ApplyError } from "../apply/errors.js";
import { duration, reportFailure, requireProcess, toJson, type ApplyLibrary } from "./apply-command.js";
import * as engine from "../apply/index.js";

export interface RevertPlan {
  pid: number;
  /** a patch id, or "all" (every patch, newest first) */
  which: string;
  all: boolean;
  timeoutMs?: number;
  json: boolean;
}

export function planRevert(args: ParsedArgs): RevertPlan {
  const o = args.options;
  const pid = pidArg(args.args[0], "revert");
  const id = args.args[1];
  if (o.all && id !== undefined) throw new UsageError(`\`patchc revert\`: give PATCH-ID or --all, not both (${id} and --all)`);
  if (!o.all && id === undefined) throw new UsageError("`patchc revert PID` needs PATCH-ID (see `patchc status PID`) or --all");
  return { pid, which: o.all ? "all" : id!, all: o.all === true, timeoutMs: positiveInteger(o.timeout as number | undefined, "timeout", "a time in milliseconds"), json: o.json === true };
}

export function formatRevert(r: RevertReport): string {
  const lines = r.reverted.map(
    (p) =>
      `process ${r.pid}: reverted ${p.patchId} (${p.functions.join(", ")}); ${p.freed ? "its memory freed" : "its memory kept, marked retired: a frame may still be in it (see patchc status)"}`,
  );
  if (lines.length === 0) lines.push(`process ${r.pid}: nothing to revert`);
  lines.push(`target stopped for ${duration(r.pauseNs)}; total ${duration(r.totalNs)}`);
  return lines.join("\n") + "\n";
}

export function revertCommandWith(lib: Pick<ApplyLibrary, "revertPatch">): Command {
  return {
    spec: {
      name: "revert",
      summary: "take back a patch (or --all) from a running process, last in first out",
      usage: "PID (PATCH-ID | --all)",
      minArgs: 1,
      maxArgs: 2,
      options: [
        { name: "all", kind: "boolean", help: "every patch applied to the process, newest first" },
        { name: "timeout", kind: "number", value: "MS", help: "how long to wait for threads to leave the patch's code (default 5000)" },
      ],
    },
    async run(args, io) {
      const plan = planRevert(args);
      try {
        requireProcess(plan.pid);
        const report = await lib.revertPatch(plan.pid, plan.which, { timeoutMs: plan.timeoutMs, core: nodeCore() });
        io.out(plan.json ? toJson(report) : formatRevert(report));
        return EXIT_OK;
      } catch (e) {
        if (e instanceof ApplyError) return reportFailure(e, plan.json, io);
        throw e;
      }
    },
  };
}

export const revertCommand: Command = revertCommandWith(engine);
