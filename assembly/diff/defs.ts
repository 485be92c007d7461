// Definitions of the object diff: relocation field sizes, section and target classes,
// and the record layouts of its ABI (docs/core-abi.md, "Object diff").
//
// x86-64 psABI (https://gitlab.com/x86-psABIs/x86-64-ABI, table "Relocation Types"):
// in an ET_REL object every relocation names a field of `word8` (1), `word16` (2),
// `word32` (4) or `word64` (8) bytes at r_offset of the section it applies to; the
// linker computes the field from S (the symbol), A (the addend) and P (the field's
// address). Before linking the field holds 0 (RELA keeps the addend apart), but the
// diff masks the field anyway: it compares what each relocation refers to, never the
// bytes under it.
//
// PC-relative forms compute S + A - P where the instruction uses its own end as the
// base, so for `lea .LC0(%rip), %rdi` the assembler writes A = -4 (the disp32 is the
// last 4 bytes of the instruction); an immediate after the disp32 makes it -5, -6 or -8.
// What such a relocation refers to is at S + A + tail, tail = end of instruction - P
// (see tail.ts).

// r_type values (psABI): one table, in the relocation engine's definitions.
import {
  R_NONE,
  R_64,
  R_PC32,
  R_GOT32,
  R_PLT32,
  R_GOTPCREL,
  R_32,
  R_32S,
  R_16,
  R_PC16,
  R_8,
  R_PC8,
  R_DTPMOD64,
  R_DTPOFF64,
  R_TPOFF64,
  R_TLSGD,
  R_TLSLD,
  R_DTPOFF32,
  R_GOTTPOFF,
  R_TPOFF32,
  R_PC64,
  R_GOTOFF64,
  R_GOTPC32,
  R_GOT64,
  R_GOTPCREL64,
  R_GOTPC64,
  R_GOTPLT64,
  R_PLTOFF64,
  R_SIZE32,
  R_SIZE64,
  R_GOTPC32_TLSDESC,
  R_TLSDESC_CALL,
  R_TLSDESC,
  R_GOTPCRELX,
  R_REX_GOTPCRELX,
} from "../reloc/defs";

/** Size in bytes of the field a relocation type writes, or -1 for a type the diff does not know. */
export function relocFieldSize(type: u32): i32 {
  switch (type) {
    case R_NONE: case R_TLSDESC_CALL: return 0;
    case R_8: case R_PC8: return 1;
    case R_16: case R_PC16: return 2;
    case R_PC32: case R_GOT32: case R_PLT32: case R_GOTPCREL: case R_32: case R_32S:
    case R_TLSGD: case R_TLSLD: case R_DTPOFF32: case R_GOTTPOFF: case R_TPOFF32:
    case R_GOTPC32: case R_SIZE32: case R_GOTPC32_TLSDESC: case R_GOTPCRELX: case R_REX_GOTPCRELX:
      return 4;
    case R_64: case R_DTPMOD64: case R_DTPOFF64: case R_TPOFF64: case R_PC64: case R_GOTOFF64:
    case R_GOT64: case R_GOTPCREL64: case R_GOTPC64: case R_GOTPLT64: case R_PLTOFF64: case R_SIZE64:
    case R_TLSDESC:
      return 8;
  }
  return -1;
}

/** Whether the field is relative to its own address (P in the formula): what it refers to is at S + A + tail. */
export function relocIsPcRelative(type: u32): bool {
  switch (type) {
    case R_PC32: case R_PLT32: case R_GOTPCREL: case R_PC16: case R_PC8: case R_TLSGD: case R_TLSLD:
    case R_GOTTPOFF: case R_PC64: case R_GOTPC32: case R_GOTPCREL64: case R_GOTPC64:
    case R_GOTPC32_TLSDESC: case R_GOTPCRELX: case R_REX_GOTPCRELX:
      return true;
  }
  return false;
}

// Section classes (what the diff does with a section's contents).
export const SK_OTHER: u8 = 0; // not loaded, or nothing the diff looks at
export const SK_TEXT: u8 = 1; // SHF_EXECINSTR: functions
export const SK_DATA: u8 = 2; // writable data (.data.*, .bss.*, .data.rel.*)
export const SK_RODATA: u8 = 3; // read-only, not mergeable (.rodata.<fn> jump tables, named constants)
export const SK_STR: u8 = 4; // SHF_MERGE|SHF_STRINGS (.rodata.str1.1, .rodata.<fn>.str1.8): compared by content
export const SK_CONST: u8 = 5; // SHF_MERGE without SHF_STRINGS (.rodata.cst8 ...): compared by content
export const SK_TLS: u8 = 6; // SHF_TLS (.tdata.*, .tbss.*)
export const SK_INIT: u8 = 7; // .init_array, .fini_array, .preinit_array, .ctors, .dtors
export const SK_EH: u8 = 8; // .eh_frame
export const SK_LSDA: u8 = 9; // .gcc_except_table*: LSDA, found through .eh_frame

// Resolved targets of a relocation (what it refers to).
export const T_NONE: u8 = 0; // symbol 0: the addend alone
export const T_EXTERNAL: u8 = 1; // undefined symbol, by name
export const T_FUNC: u8 = 2; // a function of the object (index into the function list), offset from its start
export const T_DATA: u8 = 3; // a named data object (index into the data list), offset from its start
export const T_STR: u8 = 4; // a position in a mergeable string section
export const T_CONST: u8 = 5; // a position in a mergeable constant section
export const T_PRIVATE: u8 = 6; // read-only data the compiler made (jump table, CSWTCH, __func__, LSDA): by content
export const T_ABS: u8 = 7; // SHN_ABS symbol: by value
export const T_SECTION: u8 = 8; // any other section, by name and offset

// Function kinds, statuses, reasons (record fields).
export const KIND_FUNCTION: u8 = 0;
export const KIND_CLONE: u8 = 1;
export const KIND_COLD: u8 = 2;

export const ST_UNCHANGED: u8 = 0;
export const ST_CHANGED: u8 = 1;
export const ST_LINE_ONLY: u8 = 2;
export const ST_ADDED: u8 = 3;
export const ST_REMOVED: u8 = 4;

export const WHY_NONE: u8 = 0;
export const WHY_SIZE: u8 = 1; // sizes differ
export const WHY_BYTES: u8 = 2; // unrelocated bytes differ at `at`
export const WHY_RELOC_COUNT: u8 = 3; // a different number of relocations
export const WHY_RELOC_LAYOUT: u8 = 4; // a relocation at another offset or of another type (at `at`)
export const WHY_RELOC_TARGET: u8 = 5; // a relocation refers to something else (at `at`)
export const WHY_PIECE: u8 = 6; // its cold piece or its parent changed
export const WHY_COUPLED: u8 = 7; // it refers into the middle of a changed function
export const WHY_NO_LINES: u8 = 8; // only line-like immediates differ, but there is no .debug_line to prove it
export const WHY_LINE_MISMATCH: u8 = 9; // line-like immediates differ by other than their code's line shift
export const WHY_LSDA: u8 = 10; // its exception table (LSDA) differs

// Reference kinds (what a changed or added function needs).
export const REF_PRIVATE: u8 = 1; // compiler-made read-only data: moves with the code
export const REF_STRINGS: u8 = 2; // mergeable string section: moves with the code
export const REF_CONSTS: u8 = 3; // mergeable constant section: moves with the code
export const REF_LSDA: u8 = 4; // exception table: moves with the code
export const REF_DATA: u8 = 5; // existing named data: stays in the running program
export const REF_NEW_DATA: u8 = 6; // named data new in the patched object: goes into the package
export const REF_FUNCTION: u8 = 7; // a function of the object
export const REF_EXTERNAL: u8 = 8; // an undefined symbol
export const REF_SECTION: u8 = 9; // another section (by name)
export const REF_ABS: u8 = 10; // an absolute symbol

// Data statuses reuse ST_*; why codes for data:
export const DWHY_SIZE: u8 = 1;
export const DWHY_VALUE: u8 = 2;
export const DWHY_KIND: u8 = 3; // moved between TLS, writable and read-only

// Record sizes (docs/core-abi.md).
export const INFO_SIZE: u32 = 32;
export const FUNC_REC: u32 = 64;
export const REF_REC: u32 = 40;
export const DATA_REC: u32 = 48;
export const REFUSAL_REC: u32 = 24;
export const SITE_REC: u32 = 24;

// Heuristic bounds of the __LINE__ check (see lines.ts).
export const LINE_SLACK: i64 = 16;
export const LINE_MAX: u32 = 10000000;
