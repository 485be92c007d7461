// `patchc inspect FILE [--json] [--require-signed KEY]`: what apply will do with a package.
import type { Command } from "./command.js";
import { EXIT_OK } from "./exit-codes.js";
import { nodeCore } from "../node/core-file.js";
import { readPackageFile } from "../format/reader.js";
import { readVerifyingKey, requireSignature, signatureStatus } from "../format/verify.js";
import { formatReport, reportPackage } from "../format/describe.js";

export const inspectCommand: Command = {
  spec: {
    name: "inspect",
    summary: "show what a patch package holds and what apply will do with it",
    usage: "FILE",
    minArgs: 1,
    maxArgs: 1,
    options: [{ name: "require-signed", kind: "string", value: "KEY", help: "fail unless the package is signed by this ed25519 key (PEM)" }],
  },
  async run(args, io) {
    // Errors are PackageErrors naming the file and the reason: main() shows them, exit code 1.
    const pkg = readPackageFile(nodeCore(), args.args[0]);
    const keyPath = args.options["require-signed"] as string | undefined;
    const key = keyPath === undefined ? undefined : { key: readVerifyingKey(keyPath), name: keyPath };
    if (key) requireSignature(pkg, key.key, key.name);
    const report = reportPackage(pkg, signatureStatus(pkg, key));
    io.out(args.options.json ? JSON.stringify(report, null, 2) + "\n" : formatReport(report));
    return EXIT_OK;
  },
};
