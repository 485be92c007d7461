// Error reporting of the core: every failure has a code and a message.
//
// A failing export returns its failure value (0 for a handle, a nonzero code for a
// status) and records here the code and a message that names the record and the
// reason. The host reads them with core_error_code() and
// core_error_message()/core_error_message_len() (UTF-8, not NUL-terminated),
// valid until the next failing call.
//
// Codes are grouped by area so a host can tell where a failure comes from:
//   1..99     core (memory, handles, arguments)
//   100..199  ELF reader
//   200..299  symbol index and matching
//   300..399  relocation engine
//   400..499  x86-64 decoder and writer
//   500..599  stack-scan analysis
//   600..699  seccomp filter evaluation
//   700..799  object diff

export const enum Err {
  OK = 0,
  // core
  BAD_HANDLE = 1,
  BAD_ARGUMENT = 2,
  OUT_OF_MEMORY = 3,
  NOT_FOUND = 4,
  // ELF reader
  ELF_TRUNCATED = 100,
  ELF_BAD_MAGIC = 101,
  ELF_UNSUPPORTED = 102,
  ELF_BAD_HEADER = 103,
  ELF_BAD_SECTION = 104,
  ELF_BAD_SEGMENT = 105,
  ELF_BAD_STRING = 106,
  ELF_BAD_SYMBOL = 107,
  ELF_BAD_RELOCATION = 108,
  ELF_BAD_VERSION = 109,
  ELF_BAD_NOTE = 110,
  ELF_BAD_DYNAMIC = 111,
  ELF_BAD_HASH = 112,
  ELF_NO_SUCH_TABLE = 113,
  // symbol index
  SYM_NO_TABLE = 200, // the ELF file has no symbol table of the kind asked for
  SYM_NOT_DYNSYM = 201, // dynamic lookup and GOT/PLT slots need an index over .dynsym
  SYM_NOT_LINKED = 202, // GOT/PLT slots asked of an ET_REL object
  SYM_ELF_CLOSED = 203, // the ELF handle an index was built from was closed
  // relocation engine
  RELOC_NOT_RELOCATABLE = 300, // not an ET_REL object, or a table the engine cannot use
  RELOC_UNKNOWN_TYPE = 301, // a relocation type the engine does not know
  RELOC_REFUSED_TYPE = 302, // a known type it refuses (TLS descriptors, dynamic-only types)
  RELOC_OUT_OF_RANGE = 303, // a value does not fit its field
  RELOC_UNDEFINED = 304, // a symbol the caller did not bind (or that cannot be resolved)
  RELOC_BAD_OFFSET = 305, // r_offset outside its section
  RELOC_NOT_PLACED = 306, // a section, the GOT or the stubs have no address
  RELOC_BAD_PLACEMENT = 307, // misaligned, or outside the output window
  RELOC_TLS = 308, // TLS facts missing, or a static-TLS access to dynamic TLS
  RELOC_STATE = 309, // a call out of order (bind after plan, apply before plan)
  RELOC_BAD_SYMBOL = 310, // a binding that does not fit the symbol (index, TLS or not)
  // x86-64 decoder and writer
  X86_TRUNCATED = 400, // the instruction runs past the end of the input
  X86_UNKNOWN_OPCODE = 401, // undefined or invalid in 64-bit mode: never guessed
  X86_AMBIGUOUS_ENCODING = 402, // CPUs disagree (0x66 + near branch: rel16 on AMD, rel32 on Intel)
  X86_TOO_LONG = 403, // more than 15 bytes
  X86_NO_ROOM = 410, // the writer's buffer is full
  X86_OUT_OF_RANGE = 411, // no encoding reaches the destination
  X86_TOO_SHORT = 420, // the function is shorter than the jump (and no proven padding)
  X86_BRANCH_INTO_PATCH_SITE = 421, // a branch lands strictly inside the bytes to overwrite
  X86_UNDECODABLE = 422, // the code around the patch site cannot be decoded
  // stack-scan analysis: CFI parsing (500..519), unwinding (520..)
  CFI_TRUNCATED = 500,
  CFI_BAD_LENGTH = 501,
  CFI_BAD_CIE = 502,
  CFI_BAD_FDE = 503,
  CFI_BAD_VERSION = 504,
  CFI_BAD_AUGMENTATION = 505,
  CFI_BAD_ENCODING = 506,
  CFI_BAD_INSTRUCTION = 507,
  CFI_STATE_OVERFLOW = 508,
  CFI_BAD_HDR = 509,
  CFI_OVERLAP = 510,
  CFI_BAD_IMAGE = 511,
  STACK_NO_FDE = 520,
  STACK_BAD_CFA = 521,
  STACK_BAD_RULE = 522,
  STACK_BAD_EXPRESSION = 523,
  STACK_NEED_MEMORY = 524,
  STACK_DEPTH_LIMIT = 525,
  // seccomp filter evaluation
  SECCOMP_TRUNCATED = 600,
  SECCOMP_BAD_LENGTH = 601,
  SECCOMP_BAD_OPCODE = 602,
  SECCOMP_BAD_JUMP = 603,
  SECCOMP_BAD_LOAD = 604,
  SECCOMP_BAD_MEMORY = 605,
  SECCOMP_DIV_ZERO = 606,
  SECCOMP_NO_RETURN = 607,
  SECCOMP_BAD_DATA = 608,
  // object diff: whole objects refused (700..719), refusals listed in a diff (720..)
  DIFF_NOT_RELOCATABLE = 700,
  DIFF_LTO = 701,
  DIFF_NO_FUNCTION_SECTIONS = 702,
  DIFF_NO_DATA_SECTIONS = 703,
  DIFF_BAD_RELOCATION = 704,
  DIFF_DATA_CHANGED = 720,
  DIFF_NEW_TLS = 721,
  DIFF_CONSTRUCTOR = 722,
  DIFF_AMBIGUOUS_STATIC = 723,
  // compile units of an ELF file's DWARF (diff_units)
  DIFF_DWARF_BAD = 740,
  DIFF_DWARF_COMPRESSED = 741,
}

let lastCode: i32 = 0;
let lastMessage: string = "";
let messageBuf: usize = 0;
let messageLen: u32 = 0;

/** Records a failure and returns its code (so `return fail(...)` reads naturally). */
export function fail(code: i32, message: string): i32 {
  lastCode = code;
  lastMessage = message;
  if (messageBuf != 0) { heap.free(messageBuf); messageBuf = 0; messageLen = 0; }
  return code;
}

/** fail() for exports whose failure value is -1. */
export function failNeg(code: i32, message: string): i32 {
  fail(code, message);
  return -1;
}

export function clearError(): void {
  lastCode = 0;
}

export function errorCode(): i32 {
  return lastCode;
}

export function errorText(): string {
  return lastMessage;
}

/** Encodes the last message as UTF-8 in unmanaged memory, once per failure. */
export function errorMessagePtr(): usize {
  if (messageBuf == 0) {
    const buf = String.UTF8.encode(lastMessage);
    messageLen = <u32>buf.byteLength;
    messageBuf = heap.alloc(max<usize>(messageLen, 1));
    memory.copy(messageBuf, changetype<usize>(buf), messageLen);
  }
  return messageBuf;
}

export function errorMessageLen(): u32 {
  errorMessagePtr();
  return messageLen;
}

/** Formats a u64 as 0x-prefixed hex for messages. */
export function hex(v: u64): string {
  return "0x" + v.toString(16);
}
