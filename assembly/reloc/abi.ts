// Exports of the reloc area (documented in docs/core-abi.md).
export {};
