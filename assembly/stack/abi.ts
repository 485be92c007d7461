// Exports of the stack area (documented in docs/core-abi.md).
export {};
