// Definitions of the patch package (docs/format.md): the ELF facts it relies on and the
// layouts of its metadata records, apart from the code that reads and writes them.
//
// A package is an ELF64 little-endian relocatable object (ET_REL, EM_X86_64), so the
// relocation engine can place it like any object and binutils can show it:
//
//   ELF header (64 bytes)
//   section data, each at its alignment:
//     code and data          .text.<fn>, .text.unlikely.<fn>, .rodata.*, .data.*, .bss.*
//     their relocations      .rela.<section>  (SHT_RELA, SHF_INFO_LINK, sh_link .symtab)
//     unwind tables          .eh_frame (+ .rela.eh_frame), .gcc_except_table.* (LSDA)
//     symbols                .symtab, .strtab (locals first; sh_info = first global)
//     metadata               .patchc.meta .patchc.funcs .patchc.pieces .patchc.refs
//                            .patchc.deps .patchc.strtab .patchc.blob  (SHF_EXCLUDE)
//     seal                   .patchc.seal: content hash and optional ed25519 signature
//     section names          .shstrtab
//   section header table (64 bytes per section)
//
// Metadata records are little-endian, fixed-size (sh_entsize is the record size), and
// refer to strings by offset into .patchc.strtab (0: none), to byte strings by offset and
// length into .patchc.blob, and to symbols by index into .symtab.
//
// ELF: System V gABI, https://refspecs.linuxfoundation.org/elf/gabi4+/contents.html
// x86-64 relocation types: psABI, https://gitlab.com/x86-psABIs/x86-64-ABI (table 4.9).

export const FORMAT_MAJOR = 1;
export const FORMAT_MINOR = 0;
/** Feature bits a 1.x package may require of its reader; 1.0 defines none. */
export const KNOWN_FEATURES = 0;

export const META_MAGIC = "PATCHC\0\0";
export const HASH_DOMAIN = "patchc-package-1\0";
export const SIGNATURE_DOMAIN = "patchc-package-signature-1\0";

// ---- ELF -------------------------------------------------------------------------
export const EHDR_SIZE = 64;
export const SHDR_SIZE = 64;
export const SYM_SIZE = 24;
export const RELA_SIZE = 24;
export const ET_REL = 1;
export const EM_X86_64 = 62;

export const SHT_NULL = 0;
export const SHT_PROGBITS = 1;
export const SHT_SYMTAB = 2;
export const SHT_STRTAB = 3;
export const SHT_RELA = 4;
export const SHT_NOBITS = 8;
export const SHT_X86_64_UNWIND = 0x70000001;

export const SHF_WRITE = 0x1;
export const SHF_ALLOC = 0x2;
export const SHF_EXECINSTR = 0x4;
export const SHF_MERGE = 0x10;
export const SHF_STRINGS = 0x20;
export const SHF_INFO_LINK = 0x40;
export const SHF_TLS = 0x400;
export const SHF_EXCLUDE = 0x80000000;
/** Flags a code or data section of a package may have. */
export const CONTENT_FLAGS = SHF_WRITE | SHF_ALLOC | SHF_EXECINSTR | SHF_MERGE | SHF_STRINGS;

export const SHN_UNDEF = 0;
export const SHN_LORESERVE = 0xff00;

export const STB_LOCAL = 0;
export const STB_GLOBAL = 1;
export const STB_WEAK = 2;
export const STT_NOTYPE = 0;
export const STT_OBJECT = 1;
export const STT_FUNC = 2;
export const STT_SECTION = 3;
export const STT_TLS = 6;

export const STV_NAMES = ["default", "internal", "hidden", "protected"] as const;

// ---- metadata sections --------------------------------------------------------------
export const SEC_META = ".patchc.meta";
export const SEC_FUNCS = ".patchc.funcs";
export const SEC_PIECES = ".patchc.pieces";
export const SEC_REFS = ".patchc.refs";
export const SEC_DEPS = ".patchc.deps";
export const SEC_STRTAB = ".patchc.strtab";
export const SEC_BLOB = ".patchc.blob";
export const SEC_SEAL = ".patchc.seal";
export const METADATA_SECTIONS = [SEC_META, SEC_FUNCS, SEC_PIECES, SEC_REFS, SEC_DEPS, SEC_STRTAB, SEC_BLOB, SEC_SEAL] as const;

//  .patchc.meta: one header record (96 bytes)
//    0 magic "PATCHC\0\0"                 8 major u16     10 minor u16
//   12 header size u32                   16 required features u32 (reader refuses unknown bits)
//   20 patch id str                      24 producer str      28 description str
//   32 target path hint str              36 target soname str
//   40 target build-id blob offset u32   44 build-id length u32
//   48 target e_type u16 (2 ET_EXEC, 3 ET_DYN)   50 reserved u16
//   52 functions u32   56 pieces u32   60 references u32   64 dependencies u32
//   68..96 reserved (zero)
export const META_SIZE = 96;

//  .patchc.funcs: per function (80 bytes)
//    0 name str       4 file str (locals)   8 sympos u32 (locals, 1-based; 0 global)
//   12 symbol u32 (.symtab index of the new code)
//   16 kind u8 (1 replace, 2 add)   17 flags u8 (1: original sha256 present)   18 reserved u16
//   20 first piece u32   24 piece count u32   28 after str (patch id whose jump the site holds)
//   32 original address u64 (link-time, in the target)   40 original size u64
//   48 site blob offset u32   52 site length u32   56 original sha256 blob offset u32 (32 bytes)
//   60 FDE offset u32 (in .eh_frame)   64 FDE size u32 (0: none)   68..80 reserved
export const FUNC_SIZE = 80;

//  .patchc.pieces: per piece of a function (48 bytes), in function order
//    0 name str    4 file str    8 sympos u32    12 symbol u32 (new piece; 0: none)
//   16 kind u8 (1 cold, 2 part)   17 flags u8 (1: original present)   18 reserved u16
//   20 FDE offset u32 (in .eh_frame)   24 FDE size u32 (0: none)   28 reserved u32
//   32 original address u64   40 original size u64
export const PIECE_SIZE = 48;

//  .patchc.refs: per undefined symbol of .symtab (72 bytes)
//    0 symbol u32    4 name str    8 file str    12 sympos u32
//   16 bind u8 (1 direct, 2 got, 3 plt, 4 tls)   17 scope u8 (1 module, 2 dynamic, 3 patch)
//   18 type u8 (0 notype, 1 func, 2 object, 3 tls, 4 ifunc)   19 TLS model u8 (0 none, 1 gd, 2 ld, 3 ie, 4 le)
//   20 flags u32 (1 address, 2 GOT slot, 4 PLT entry; the TLS offset is present with a TLS model)
//   24 version str   28 where str (dynamic: library; patch: patch id)
//   32 address u64   40 GOT slot u64   48 PLT entry u64   56 TLS offset u64   64 reserved u64
export const REF_SIZE = 72;
export const REF_HAS_ADDR = 1;
export const REF_HAS_GOT = 2;
export const REF_HAS_PLT = 4;

//  .patchc.deps: per dependency (40 bytes)
//    0 patch id str    4 flags u32 (1: content hash present)    8 sha256[32]
export const DEP_SIZE = 40;

//  .patchc.seal (136 bytes), the one section outside the content hash
//    0 hash algorithm u32 (1 sha256)   4 signature algorithm u32 (0 none, 1 ed25519)
//    8 content sha256[32]   40 signer's raw ed25519 public key[32]   72 signature[64]
export const SEAL_SIZE = 136;

export const FUNC_KINDS = [undefined, "replace", "add"] as const;
export const PIECE_KINDS = [undefined, "cold", "part"] as const;
export const BIND_KINDS = [undefined, "direct", "got", "plt", "tls"] as const;
export const SCOPES = [undefined, "module", "dynamic", "patch"] as const;
export const REF_TYPES = ["notype", "func", "object", "tls", "ifunc"] as const;
export const TLS_MODELS = [undefined, "gd", "ld", "ie", "le"] as const;

// ---- x86-64 relocation types of relocatable objects ---------------------------------
// name and the number of bytes each patches (psABI table 4.9 and the TLS/GOTPCRELX
// additions). Dynamic-only types (COPY, GLOB_DAT, JUMP_SLOT, RELATIVE, IRELATIVE,
// RELATIVE64) never appear in an object and are refused.
export const RELOC_TYPES: ReadonlyMap<number, { name: string; width: number }> = new Map(
  (
    [
      [0, "NONE", 0],
      [1, "64", 8],
      [2, "PC32", 4],
      [3, "GOT32", 4],
      [4, "PLT32", 4],
      [9, "GOTPCREL", 4],
      [10, "32", 4],
      [11, "32S", 4],
      [12, "16", 2],
      [13, "PC16", 2],
      [14, "8", 1],
      [15, "PC8", 1],
      [16, "DTPMOD64", 8],
      [17, "DTPOFF64", 8],
      [18, "TPOFF64", 8],
      [19, "TLSGD", 4],
      [20, "TLSLD", 4],
      [21, "DTPOFF32", 4],
      [22, "GOTTPOFF", 4],
      [23, "TPOFF32", 4],
      [24, "PC64", 8],
      [25, "GOTOFF64", 8],
      [26, "GOTPC32", 4],
      [27, "GOT64", 8],
      [28, "GOTPCREL64", 8],
      [29, "GOTPC64", 8],
      [30, "GOTPLT64", 8],
      [31, "PLTOFF64", 8],
      [32, "SIZE32", 4],
      [33, "SIZE64", 8],
      [34, "GOTPC32_TLSDESC", 4],
      [35, "TLSDESC_CALL", 0],
      [41, "GOTPCRELX", 4],
      [42, "REX_GOTPCRELX", 4],
      [43, "CODE_4_GOTPCRELX", 4],
      [44, "CODE_4_GOTTPOFF", 4],
      [45, "CODE_4_GOTPC32_TLSDESC", 4],
    ] as const
  ).map(([t, name, width]) => [t, { name: `R_X86_64_${name}`, width }]),
);

/** TLS relocation types and the access model each belongs to (psABI "Thread-Local Storage"; Drepper, "ELF Handling For Thread-Local Storage"). */
export const TLS_RELOC_MODELS: ReadonlyMap<number, "gd" | "ld" | "ie" | "le"> = new Map([
  [19, "gd"], // TLSGD
  [34, "gd"], // GOTPC32_TLSDESC (TLS descriptors: a general dynamic access)
  [35, "gd"], // TLSDESC_CALL
  [45, "gd"], // CODE_4_GOTPC32_TLSDESC
  [20, "ld"], // TLSLD
  [21, "ld"], // DTPOFF32
  [17, "ld"], // DTPOFF64
  [22, "ie"], // GOTTPOFF
  [44, "ie"], // CODE_4_GOTTPOFF
  [23, "le"], // TPOFF32
  [18, "le"], // TPOFF64
]);

export function relocName(type: number): string {
  return RELOC_TYPES.get(type)?.name ?? `relocation type ${type}`;
}
