// Exports of the x86 area (documented in docs/core-abi.md).
export {};
