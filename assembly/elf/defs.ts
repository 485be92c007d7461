// ELF64 definitions for x86-64: constants and record layouts, apart from the parser.
// Spec: System V gABI (https://refspecs.linuxfoundation.org/elf/gabi4+/contents.html),
// x86-64 psABI (https://gitlab.com/x86-psABIs/x86-64-ABI), and for symbol versions and
// GNU hash the LSB Core spec and glibc's elf/elf.h.
//
// Everything is little-endian (ELFDATA2LSB); the reader refuses anything else.
//
//   Elf64_Ehdr (64 bytes)                 Elf64_Shdr (64 bytes)        Elf64_Phdr (56 bytes)
//    0 e_ident[16]                         0 sh_name      u32            0 p_type   u32
//   16 e_type      u16                     4 sh_type      u32            4 p_flags  u32
//   18 e_machine   u16                     8 sh_flags     u64            8 p_offset u64
//   20 e_version   u32                    16 sh_addr      u64           16 p_vaddr  u64
//   24 e_entry     u64                    24 sh_offset    u64           24 p_paddr  u64
//   32 e_phoff     u64                    32 sh_size      u64           32 p_filesz u64
//   40 e_shoff     u64                    40 sh_link      u32           40 p_memsz  u64
//   48 e_flags     u32                    44 sh_info      u32           48 p_align  u64
//   52 e_ehsize    u16                    48 sh_addralign u64
//   54 e_phentsize u16                    56 sh_entsize   u64
//   56 e_phnum     u16
//   58 e_shentsize u16                    Elf64_Sym (24 bytes)          Elf64_Rela (24 bytes)
//   60 e_shnum     u16                     0 st_name  u32                0 r_offset u64
//   62 e_shstrndx  u16                     4 st_info  u8 (bind<<4|type)  8 r_info   u64 (sym<<32|type)
//                                          5 st_other u8 (visibility)   16 r_addend i64
//   Elf64_Dyn (16 bytes)                   6 st_shndx u16
//    0 d_tag i64,  8 d_val/d_ptr u64       8 st_value u64, 16 st_size u64

export const EHDR_SIZE: u32 = 64;
export const SHDR_SIZE: u32 = 64;
export const PHDR_SIZE: u32 = 56;
export const SYM_SIZE: u32 = 24;
export const RELA_SIZE: u32 = 24;
export const DYN_SIZE: u32 = 16;
export const RELR_SIZE: u32 = 8;
export const R_X86_64_RELATIVE: u32 = 8;

// e_ident
export const ELFCLASS64: u8 = 2;
export const ELFDATA2LSB: u8 = 1;
export const EV_CURRENT: u8 = 1;

// e_type
export const ET_REL: u16 = 1;
export const ET_EXEC: u16 = 2;
export const ET_DYN: u16 = 3;
export const ET_CORE: u16 = 4;

export const EM_X86_64: u16 = 62;

// special section indices
export const SHN_UNDEF: u16 = 0;
export const SHN_LORESERVE: u16 = 0xff00;
export const SHN_ABS: u16 = 0xfff1;
export const SHN_COMMON: u16 = 0xfff2;
export const SHN_XINDEX: u16 = 0xffff;

// sh_type
export const SHT_NULL: u32 = 0;
export const SHT_PROGBITS: u32 = 1;
export const SHT_SYMTAB: u32 = 2;
export const SHT_STRTAB: u32 = 3;
export const SHT_RELA: u32 = 4;
export const SHT_HASH: u32 = 5;
export const SHT_DYNAMIC: u32 = 6;
export const SHT_NOTE: u32 = 7;
export const SHT_NOBITS: u32 = 8;
export const SHT_REL: u32 = 9;
export const SHT_DYNSYM: u32 = 11;
export const SHT_INIT_ARRAY: u32 = 14;
export const SHT_FINI_ARRAY: u32 = 15;
export const SHT_GROUP: u32 = 17;
export const SHT_SYMTAB_SHNDX: u32 = 18;
export const SHT_RELR: u32 = 19;
export const SHT_X86_64_UNWIND: u32 = 0x70000001;
export const SHT_GNU_HASH: u32 = 0x6ffffff6;
export const SHT_GNU_VERDEF: u32 = 0x6ffffffd;
export const SHT_GNU_VERNEED: u32 = 0x6ffffffe;
export const SHT_GNU_VERSYM: u32 = 0x6fffffff;

// sh_flags
export const SHF_WRITE: u64 = 0x1;
export const SHF_ALLOC: u64 = 0x2;
export const SHF_EXECINSTR: u64 = 0x4;
export const SHF_MERGE: u64 = 0x10;
export const SHF_STRINGS: u64 = 0x20;
export const SHF_INFO_LINK: u64 = 0x40;
export const SHF_GROUP: u64 = 0x200;
export const SHF_TLS: u64 = 0x400;
export const SHF_COMPRESSED: u64 = 0x800;

// p_type
export const PT_NULL: u32 = 0;
export const PT_LOAD: u32 = 1;
export const PT_DYNAMIC: u32 = 2;
export const PT_INTERP: u32 = 3;
export const PT_NOTE: u32 = 4;
export const PT_PHDR: u32 = 6;
export const PT_TLS: u32 = 7;
export const PT_GNU_EH_FRAME: u32 = 0x6474e550;
export const PT_GNU_STACK: u32 = 0x6474e551;
export const PT_GNU_RELRO: u32 = 0x6474e552;
export const PT_GNU_PROPERTY: u32 = 0x6474e553;

// p_flags
export const PF_X: u32 = 1;
export const PF_W: u32 = 2;
export const PF_R: u32 = 4;

// st_info
export const STB_LOCAL: u8 = 0;
export const STB_GLOBAL: u8 = 1;
export const STB_WEAK: u8 = 2;
export const STB_GNU_UNIQUE: u8 = 10;
export const STT_NOTYPE: u8 = 0;
export const STT_OBJECT: u8 = 1;
export const STT_FUNC: u8 = 2;
export const STT_SECTION: u8 = 3;
export const STT_FILE: u8 = 4;
export const STT_COMMON: u8 = 5;
export const STT_TLS: u8 = 6;
export const STT_GNU_IFUNC: u8 = 10;

// d_tag
export const DT_NULL: i64 = 0;
export const DT_NEEDED: i64 = 1;
export const DT_PLTRELSZ: i64 = 2;
export const DT_PLTGOT: i64 = 3;
export const DT_HASH: i64 = 4;
export const DT_STRTAB: i64 = 5;
export const DT_SYMTAB: i64 = 6;
export const DT_RELA: i64 = 7;
export const DT_RELASZ: i64 = 8;
export const DT_RELAENT: i64 = 9;
export const DT_STRSZ: i64 = 10;
export const DT_SYMENT: i64 = 11;
export const DT_INIT: i64 = 12;
export const DT_FINI: i64 = 13;
export const DT_SONAME: i64 = 14;
export const DT_RPATH: i64 = 15;
export const DT_REL: i64 = 17;
export const DT_PLTREL: i64 = 20;
export const DT_JMPREL: i64 = 23;
export const DT_INIT_ARRAY: i64 = 25;
export const DT_FINI_ARRAY: i64 = 26;
export const DT_RUNPATH: i64 = 29;
export const DT_FLAGS: i64 = 30;
export const DT_PREINIT_ARRAY: i64 = 32;
export const DT_RELRSZ: i64 = 35;
export const DT_RELR: i64 = 36;
export const DT_RELRENT: i64 = 37;
export const DT_GNU_HASH: i64 = 0x6ffffef5;
export const DT_VERSYM: i64 = 0x6ffffff0;
export const DT_RELACOUNT: i64 = 0x6ffffff9;
export const DT_FLAGS_1: i64 = 0x6ffffffb;
export const DT_VERDEF: i64 = 0x6ffffffc;
export const DT_VERDEFNUM: i64 = 0x6ffffffd;
export const DT_VERNEED: i64 = 0x6ffffffe;
export const DT_VERNEEDNUM: i64 = 0x6fffffff;

// notes
export const NT_GNU_BUILD_ID: u32 = 3;

// symbol versions (.gnu.version entries)
export const VER_NDX_LOCAL: u16 = 0;
export const VER_NDX_GLOBAL: u16 = 1;
export const VERSYM_HIDDEN: u16 = 0x8000;
export const VER_FLG_BASE: u16 = 0x1;

// Elf64_Verdef (20 bytes): vd_version u16, vd_flags u16, vd_ndx u16, vd_cnt u16, vd_hash u32, vd_aux u32, vd_next u32
// Elf64_Verdaux (8 bytes): vda_name u32, vda_next u32
// Elf64_Verneed (16 bytes): vn_version u16, vn_cnt u16, vn_file u32, vn_aux u32, vn_next u32
// Elf64_Vernaux (16 bytes): vna_hash u32, vna_flags u16, vna_other u16, vna_name u32, vna_next u32
export const VERDEF_SIZE: u32 = 20;
export const VERDAUX_SIZE: u32 = 8;
export const VERNEED_SIZE: u32 = 16;
export const VERNAUX_SIZE: u32 = 16;

// Limits that turn absurd counts into errors before any loop runs.
export const MAX_SECTIONS: u32 = 1 << 20;
export const MAX_SEGMENTS: u32 = 1 << 16;
export const MAX_VERSIONS: u32 = 1 << 16;
