// core.wasm: the exported ABI, and nothing else. Each area keeps its exports in its
// own abi.ts; docs/core-abi.md is the contract and test/core-abi.test.ts checks the
// built module against it.
export * from "./memory";
export * from "./elf/abi";
export * from "./match/abi";
export * from "./reloc/abi";
export * from "./x86/abi";
export * from "./stack/abi";
export * from "./diff/abi";
export * from "./seccomp/abi";
