// x86-64 relocation types: numbers, names, field widths, and what each asks of a symbol.
// Spec: System V x86-64 psABI, section 4.4 "Relocation" (table 4.9) and the TLS
// supplement (Drepper, "ELF Handling For Thread-Local Storage", section 4.3):
//   https://gitlab.com/x86-psABIs/x86-64-ABI
//   https://www.akkadia.org/drepper/tls.pdf
//
// Formula letters (psABI): A addend, B image base, G offset of the symbol's GOT entry
// from GOT, GOT the address of the GOT, L the address of the symbol's PLT entry, P the
// address of the field being relocated, S the symbol's value, Z the symbol's size.
// The engine works with G + GOT directly (the absolute address of the GOT slot).
//
//   type                 no.  field   value                     check
//   R_X86_64_NONE         0   none
//   R_X86_64_64           1   word64  S + A
//   R_X86_64_PC32         2   word32  S + A - P                 signed 32
//   R_X86_64_GOT32        3   word32  G + A                     signed 32
//   R_X86_64_PLT32        4   word32  L + A - P                 signed 32 (else a stub)
//   R_X86_64_GOTPCREL     9   word32  G + GOT + A - P           signed 32
//   R_X86_64_32          10   word32  S + A                     unsigned 32
//   R_X86_64_32S         11   word32  S + A                     signed 32
//   R_X86_64_16          12   word16  S + A                     16 bits, either sign
//   R_X86_64_PC16        13   word16  S + A - P                 signed 16
//   R_X86_64_8           14   word8   S + A                     8 bits, either sign
//   R_X86_64_PC8         15   word8   S + A - P                 signed 8
//   R_X86_64_DTPOFF64    17   word64  offset of S in its module's TLS block + A
//   R_X86_64_TLSGD       19   word32  GOT pair (module, offset) + A - P
//   R_X86_64_TLSLD       20   word32  GOT pair (module, 0) + A - P
//   R_X86_64_DTPOFF32    21   word32  offset of S in its module's TLS block + A   signed 32
//   R_X86_64_GOTTPOFF    22   word32  GOT slot holding tpoff(S) + A - P           signed 32
//   R_X86_64_TPOFF32     23   word32  tpoff(S) + A                                signed 32
//   R_X86_64_PC64        24   word64  S + A - P
//   R_X86_64_GOTOFF64    25   word64  S + A - GOT
//   R_X86_64_GOTPC32     26   word32  GOT + A - P               signed 32
//   R_X86_64_GOT64       27   word64  G + A
//   R_X86_64_GOTPCREL64  28   word64  G + GOT - P + A
//   R_X86_64_GOTPC64     29   word64  GOT - P + A
//   R_X86_64_GOTPLT64    30   word64  G + A (the engine's GOT slot for S: no lazy binding)
//   R_X86_64_PLTOFF64    31   word64  L - GOT + A
//   R_X86_64_SIZE32      32   word32  Z + A                     unsigned 32
//   R_X86_64_SIZE64      33   word64  Z + A
//   R_X86_64_GOTPCRELX   41   word32  as GOTPCREL (the linker may relax; this engine does not)
//   R_X86_64_REX_GOTPCRELX 42 word32  as GOTPCREL
//   R_X86_64_CODE_4_GOTPCRELX 43, _5_ 46, _6_ 49: as GOTPCREL (APX encodings)
//   R_X86_64_CODE_4_GOTTPOFF 44, _5_ 47, _6_ 50:  as GOTTPOFF
//
// tpoff(S): x86-64 uses TLS variant II: the thread pointer (%fs:0) points at the end of
// the static TLS area, module blocks lie below it, so tpoff is negative:
//
//       lower addresses                                     %fs:0 = TP
//   ... | module 2 block | module 1 (executable) block      |  TCB ...
//         ^ TP + tpoff(module 2)  ^ TP + tpoff(module 1)
//   tpoff(S) = tpoff of S's module block + offset of S in the block.
//
// Refused: TLS descriptors (GOTPC32_TLSDESC 34, TLSDESC_CALL 35, CODE_n_GOTPC32_TLSDESC
// 45/48/51: -mtls-dialect=gnu2) and the types only a dynamic linker applies (COPY 5,
// GLOB_DAT 6, JUMP_SLOT 7, RELATIVE 8, DTPMOD64 16, TPOFF64 18, TLSDESC 36,
// IRELATIVE 37, RELATIVE64 38), which have no meaning in an ET_REL object.

export const R_NONE: u32 = 0;
export const R_64: u32 = 1;
export const R_PC32: u32 = 2;
export const R_GOT32: u32 = 3;
export const R_PLT32: u32 = 4;
export const R_COPY: u32 = 5;
export const R_GLOB_DAT: u32 = 6;
export const R_JUMP_SLOT: u32 = 7;
export const R_RELATIVE: u32 = 8;
export const R_GOTPCREL: u32 = 9;
export const R_32: u32 = 10;
export const R_32S: u32 = 11;
export const R_16: u32 = 12;
export const R_PC16: u32 = 13;
export const R_8: u32 = 14;
export const R_PC8: u32 = 15;
export const R_DTPMOD64: u32 = 16;
export const R_DTPOFF64: u32 = 17;
export const R_TPOFF64: u32 = 18;
export const R_TLSGD: u32 = 19;
export const R_TLSLD: u32 = 20;
export const R_DTPOFF32: u32 = 21;
export const R_GOTTPOFF: u32 = 22;
export const R_TPOFF32: u32 = 23;
export const R_PC64: u32 = 24;
export const R_GOTOFF64: u32 = 25;
export const R_GOTPC32: u32 = 26;
export const R_GOT64: u32 = 27;
export const R_GOTPCREL64: u32 = 28;
export const R_GOTPC64: u32 = 29;
export const R_GOTPLT64: u32 = 30;
export const R_PLTOFF64: u32 = 31;
export const R_SIZE32: u32 = 32;
export const R_SIZE64: u32 = 33;
export const R_GOTPC32_TLSDESC: u32 = 34;
export const R_TLSDESC_CALL: u32 = 35;
export const R_TLSDESC: u32 = 36;
export const R_IRELATIVE: u32 = 37;
export const R_RELATIVE64: u32 = 38;
export const R_GOTPCRELX: u32 = 41;
export const R_REX_GOTPCRELX: u32 = 42;
export const R_CODE_4_GOTPCRELX: u32 = 43;
export const R_CODE_4_GOTTPOFF: u32 = 44;
export const R_CODE_4_GOTPC32_TLSDESC: u32 = 45;
export const R_CODE_5_GOTPCRELX: u32 = 46;
export const R_CODE_5_GOTTPOFF: u32 = 47;
export const R_CODE_5_GOTPC32_TLSDESC: u32 = 48;
export const R_CODE_6_GOTPCRELX: u32 = 49;
export const R_CODE_6_GOTTPOFF: u32 = 50;
export const R_CODE_6_GOTPC32_TLSDESC: u32 = 51;
export const R_MAX: u32 = 51;

/** psABI name of a type, "type N" for numbers without one. */
export function relocName(type: u32): string {
  switch (type) {
    case R_NONE: return "R_X86_64_NONE";
    case R_64: return "R_X86_64_64";
    case R_PC32: return "R_X86_64_PC32";
    case R_GOT32: return "R_X86_64_GOT32";
    case R_PLT32: return "R_X86_64_PLT32";
    case R_COPY: return "R_X86_64_COPY";
    case R_GLOB_DAT: return "R_X86_64_GLOB_DAT";
    case R_JUMP_SLOT: return "R_X86_64_JUMP_SLOT";
    case R_RELATIVE: return "R_X86_64_RELATIVE";
    case R_GOTPCREL: return "R_X86_64_GOTPCREL";
    case R_32: return "R_X86_64_32";
    case R_32S: return "R_X86_64_32S";
    case R_16: return "R_X86_64_16";
    case R_PC16: return "R_X86_64_PC16";
    case R_8: return "R_X86_64_8";
    case R_PC8: return "R_X86_64_PC8";
    case R_DTPMOD64: return "R_X86_64_DTPMOD64";
    case R_DTPOFF64: return "R_X86_64_DTPOFF64";
    case R_TPOFF64: return "R_X86_64_TPOFF64";
    case R_TLSGD: return "R_X86_64_TLSGD";
    case R_TLSLD: return "R_X86_64_TLSLD";
    case R_DTPOFF32: return "R_X86_64_DTPOFF32";
    case R_GOTTPOFF: return "R_X86_64_GOTTPOFF";
    case R_TPOFF32: return "R_X86_64_TPOFF32";
    case R_PC64: return "R_X86_64_PC64";
    case R_GOTOFF64: return "R_X86_64_GOTOFF64";
    case R_GOTPC32: return "R_X86_64_GOTPC32";
    case R_GOT64: return "R_X86_64_GOT64";
    case R_GOTPCREL64: return "R_X86_64_GOTPCREL64";
    case R_GOTPC64: return "R_X86_64_GOTPC64";
    case R_GOTPLT64: return "R_X86_64_GOTPLT64";
    case R_PLTOFF64: return "R_X86_64_PLTOFF64";
    case R_SIZE32: return "R_X86_64_SIZE32";
    case R_SIZE64: return "R_X86_64_SIZE64";
    case R_GOTPC32_TLSDESC: return "R_X86_64_GOTPC32_TLSDESC";
    case R_TLSDESC_CALL: return "R_X86_64_TLSDESC_CALL";
    case R_TLSDESC: return "R_X86_64_TLSDESC";
    case R_IRELATIVE: return "R_X86_64_IRELATIVE";
    case R_RELATIVE64: return "R_X86_64_RELATIVE64";
    case 39: return "R_X86_64_PC32_BND";
    case 40: return "R_X86_64_PLT32_BND";
    case R_GOTPCRELX: return "R_X86_64_GOTPCRELX";
    case R_REX_GOTPCRELX: return "R_X86_64_REX_GOTPCRELX";
    case R_CODE_4_GOTPCRELX: return "R_X86_64_CODE_4_GOTPCRELX";
    case R_CODE_4_GOTTPOFF: return "R_X86_64_CODE_4_GOTTPOFF";
    case R_CODE_4_GOTPC32_TLSDESC: return "R_X86_64_CODE_4_GOTPC32_TLSDESC";
    case R_CODE_5_GOTPCRELX: return "R_X86_64_CODE_5_GOTPCRELX";
    case R_CODE_5_GOTTPOFF: return "R_X86_64_CODE_5_GOTTPOFF";
    case R_CODE_5_GOTPC32_TLSDESC: return "R_X86_64_CODE_5_GOTPC32_TLSDESC";
    case R_CODE_6_GOTPCRELX: return "R_X86_64_CODE_6_GOTPCRELX";
    case R_CODE_6_GOTTPOFF: return "R_X86_64_CODE_6_GOTTPOFF";
    case R_CODE_6_GOTPC32_TLSDESC: return "R_X86_64_CODE_6_GOTPC32_TLSDESC";
  }
  return "relocation type " + type.toString();
}

// What a relocation asks of its symbol: the reference kinds recorded per symbol by the
// scan (reported to the caller, who resolves the symbols, see reloc_refs).
export const REF_ADDR: u32 = 1; // S as an address (absolute or PC-relative data reference)
export const REF_CALL: u32 = 2; // a branch or PLT reference: L (a PLT entry) or S
export const REF_GOT: u32 = 4; // a GOT slot holding S
export const REF_TPOFF_GOT: u32 = 8; // a GOT slot holding tpoff(S) (initial exec)
export const REF_TPOFF: u32 = 16; // tpoff(S) itself (local exec)
export const REF_TLSGD: u32 = 32; // a GOT pair (module id, offset) (general dynamic)
export const REF_TLSLD: u32 = 64; // a GOT pair (module id, 0) of S's module (local dynamic)
export const REF_DTPOFF: u32 = 128; // offset of S in its module's TLS block
export const REF_SIZE: u32 = 256; // Z, the symbol's size
export const REF_PCREL: u32 = 512; // a PC-relative data reference that no stub can extend
export const REF_TLS_MASK: u32 = REF_TPOFF_GOT | REF_TPOFF | REF_TLSGD | REF_TLSLD | REF_DTPOFF;

// Classes of types (the scan's first switch).
export const K_UNKNOWN: u32 = 0;
export const K_REFUSED: u32 = 1; // known, refused (TLSDESC, dynamic-only)
export const K_OK: u32 = 2;

/** K_OK, K_REFUSED or K_UNKNOWN. */
export function relocClass(type: u32): u32 {
  switch (type) {
    case R_NONE: case R_64: case R_PC32: case R_GOT32: case R_PLT32: case R_GOTPCREL:
    case R_32: case R_32S: case R_16: case R_PC16: case R_8: case R_PC8:
    case R_DTPOFF64: case R_TLSGD: case R_TLSLD: case R_DTPOFF32: case R_GOTTPOFF: case R_TPOFF32:
    case R_PC64: case R_GOTOFF64: case R_GOTPC32: case R_GOT64: case R_GOTPCREL64: case R_GOTPC64:
    case R_GOTPLT64: case R_PLTOFF64: case R_SIZE32: case R_SIZE64:
    case R_GOTPCRELX: case R_REX_GOTPCRELX: case R_CODE_4_GOTPCRELX: case R_CODE_5_GOTPCRELX: case R_CODE_6_GOTPCRELX:
    case R_CODE_4_GOTTPOFF: case R_CODE_5_GOTTPOFF: case R_CODE_6_GOTTPOFF:
      return K_OK;
    case R_COPY: case R_GLOB_DAT: case R_JUMP_SLOT: case R_RELATIVE: case R_DTPMOD64: case R_TPOFF64:
    case R_GOTPC32_TLSDESC: case R_TLSDESC_CALL: case R_TLSDESC: case R_IRELATIVE: case R_RELATIVE64:
    case R_CODE_4_GOTPC32_TLSDESC: case R_CODE_5_GOTPC32_TLSDESC: case R_CODE_6_GOTPC32_TLSDESC:
    case 39: case 40:
      return K_REFUSED;
  }
  return K_UNKNOWN;
}

/** Bytes of the field a type writes (0 for NONE). Only for K_OK types. */
export function fieldSize(type: u32): u32 {
  switch (type) {
    case R_NONE: return 0;
    case R_64: case R_DTPOFF64: case R_PC64: case R_GOTOFF64: case R_GOT64: case R_GOTPCREL64:
    case R_GOTPC64: case R_GOTPLT64: case R_PLTOFF64: case R_SIZE64:
      return 8;
    case R_16: case R_PC16: return 2;
    case R_8: case R_PC8: return 1;
  }
  return 4;
}

/** Whether a type refers to a thread-local symbol. */
export function isTlsType(type: u32): bool {
  switch (type) {
    case R_DTPOFF64: case R_TLSGD: case R_TLSLD: case R_DTPOFF32: case R_GOTTPOFF: case R_TPOFF32:
    case R_CODE_4_GOTTPOFF: case R_CODE_5_GOTTPOFF: case R_CODE_6_GOTTPOFF:
      return true;
  }
  return false;
}

/** Why a known type is refused, for the message. */
export function refusalReason(type: u32): string {
  switch (type) {
    case R_GOTPC32_TLSDESC: case R_TLSDESC_CALL: case R_TLSDESC:
    case R_CODE_4_GOTPC32_TLSDESC: case R_CODE_5_GOTPC32_TLSDESC: case R_CODE_6_GOTPC32_TLSDESC:
      return "TLS descriptors (-mtls-dialect=gnu2) are not supported; build the patch with -mtls-dialect=gnu";
    case 39: case 40:
      return "MPX relocations are obsolete";
  }
  return "it is a dynamic relocation, which has no meaning in a relocatable object";
}

/**
 * One byte per type below 64, for the scan's loop (one load instead of three switches):
 * bits 0-1 the class (K_*), bits 2-5 the field size, bit 6 a TLS type. Types from 64 on
 * are unknown.
 */
export const TYPE_INFO: usize = memory.data(64);
export const TI_TLS: u32 = 64;
for (let t: u32 = 0; t < 64; t++) {
  const cls = relocClass(t);
  store<u8>(TYPE_INFO + <usize>t, <u8>(cls | (cls == K_OK ? fieldSize(t) << 2 : 0) | (isTlsType(t) ? TI_TLS : 0)));
}
