// Exports of the match area (documented in docs/core-abi.md).
export {};
