// Exit codes of patchc (documented in README.md).
export const EXIT_OK = 0;
/** The operation failed or was refused; the message says why. The target is unchanged. */
export const EXIT_FAILED = 1;
/** The command line was wrong. */
export const EXIT_USAGE = 2;
/** A bug in patchc: an unexpected exception. */
export const EXIT_INTERNAL = 70;
