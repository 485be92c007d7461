// @webassemblyjs/wasm-parser ships no types: the part of its AST test/core-abi.test.ts reads.
declare module "@webassemblyjs/wasm-parser" {
  export interface WasmSignature {
    type: "Signature";
    params: Array<{ valtype: string; id?: string }>;
    results: string[];
  }
  export interface WasmField {
    type: string; // "ModuleImport", "ModuleExport", "Func", "Memory", "Global", "TypeInstruction", ...
    [key: string]: unknown;
  }
  export interface WasmProgram {
    type: "Program";
    body: Array<{ type: "Module"; fields: WasmField[] }>;
  }
  export function decode(
    buf: ArrayBuffer | Uint8Array,
    opts?: { ignoreCodeSection?: boolean; ignoreDataSection?: boolean; ignoreCustomNameSection?: boolean; dump?: boolean },
  ): WasmProgram;
}
