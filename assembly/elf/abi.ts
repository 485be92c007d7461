// Exports of the elf area (documented in docs/core-abi.md).
export {};
