// bench/core/reloc.c: the relocation engine of assembly/reloc/engine.ts, same algorithm
// and data layout, in C (gcc -O2), for bench/core/reloc.ts. Not a linker: a mirror, step
// by step, of what the Wasm core does between reloc_open and reloc_apply:
//   scan   every relocation of every SHF_ALLOC section (class, field bounds, TLS check,
//          references per symbol in 96-byte records, stub candidates in an open-addressing
//          table keyed by (symbol, branch?, addend))
//   bind   the undefined symbols (the bench's rule, the same as the Wasm side's)
//   plan   the engine's own GOT slots and the stubs to reserve
//   layout r-x (sections, stubs) / r-- (sections, GOT) / rw- (data, TLS, NOBITS), paged
//   apply  copy the sections into the window, the relocation switch, GOT slots, stubs
// The ELF file is mapped and its section headers found outside the timed part, as the
// Wasm side opens its ELF handle (elf_open) outside it.
//
// usage: reloc-c OBJECT RUNS  ->  one JSON line: median ms, window size, FNV-1a of the window
#include <elf.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// ---- relocation types (assembly/reloc/defs.ts) ----
enum {
  R_NONE = 0, R_64 = 1, R_PC32 = 2, R_GOT32 = 3, R_PLT32 = 4, R_GOTPCREL = 9, R_32 = 10, R_32S = 11,
  R_16 = 12, R_PC16 = 13, R_8 = 14, R_PC8 = 15, R_DTPOFF64 = 17, R_TLSGD = 19, R_TLSLD = 20,
  R_DTPOFF32 = 21, R_GOTTPOFF = 22, R_TPOFF32 = 23, R_PC64 = 24, R_GOTOFF64 = 25, R_GOTPC32 = 26,
  R_GOT64 = 27, R_GOTPCREL64 = 28, R_GOTPC64 = 29, R_GOTPLT64 = 30, R_PLTOFF64 = 31, R_SIZE32 = 32,
  R_SIZE64 = 33, R_GOTPCRELX = 41, R_REX_GOTPCRELX = 42, R_CODE_4_GOTPCRELX = 43, R_CODE_4_GOTTPOFF = 44,
  R_CODE_5_GOTPCRELX = 46, R_CODE_5_GOTTPOFF = 47, R_CODE_6_GOTPCRELX = 49, R_CODE_6_GOTTPOFF = 50,
};
enum { K_UNKNOWN, K_REFUSED, K_OK };
enum {
  REF_ADDR = 1, REF_CALL = 2, REF_GOT = 4, REF_TPOFF_GOT = 8, REF_TPOFF = 16, REF_TLSGD = 32,
  REF_TLSLD = 64, REF_DTPOFF = 128, REF_SIZE = 256, REF_PCREL = 512,
};

static int reloc_class(uint32_t t) {
  switch (t) {
  case R_NONE: case R_64: case R_PC32: case R_GOT32: case R_PLT32: case R_GOTPCREL: case R_32: case R_32S:
  case R_16: case R_PC16: case R_8: case R_PC8: case R_DTPOFF64: case R_TLSGD: case R_TLSLD: case R_DTPOFF32:
  case R_GOTTPOFF: case R_TPOFF32: case R_PC64: case R_GOTOFF64: case R_GOTPC32: case R_GOT64: case R_GOTPCREL64:
  case R_GOTPC64: case R_GOTPLT64: case R_PLTOFF64: case R_SIZE32: case R_SIZE64: case R_GOTPCRELX:
  case R_REX_GOTPCRELX: case R_CODE_4_GOTPCRELX: case R_CODE_5_GOTPCRELX: case R_CODE_6_GOTPCRELX:
  case R_CODE_4_GOTTPOFF: case R_CODE_5_GOTTPOFF: case R_CODE_6_GOTTPOFF:
    return K_OK;
  case 5: case 6: case 7: case 8: case 16: case 18: case 34: case 35: case 36: case 37: case 38: case 39: case 40:
  case 45: case 48: case 51:
    return K_REFUSED;
  }
  return K_UNKNOWN;
}

static uint32_t field_size(uint32_t t) {
  switch (t) {
  case R_NONE: return 0;
  case R_64: case R_DTPOFF64: case R_PC64: case R_GOTOFF64: case R_GOT64: case R_GOTPCREL64: case R_GOTPC64:
  case R_GOTPLT64: case R_PLTOFF64: case R_SIZE64: return 8;
  case R_16: case R_PC16: return 2;
  case R_8: case R_PC8: return 1;
  }
  return 4;
}

static int is_tls_type(uint32_t t) {
  switch (t) {
  case R_DTPOFF64: case R_TLSGD: case R_TLSLD: case R_DTPOFF32: case R_GOTTPOFF: case R_TPOFF32:
  case R_CODE_4_GOTTPOFF: case R_CODE_5_GOTTPOFF: case R_CODE_6_GOTTPOFF: return 1;
  }
  return 0;
}

// One byte per type below 64 (defs.ts TYPE_INFO): class, field size << 2, 64 if TLS.
static uint8_t type_info[64];
static void init_type_info(void) {
  for (uint32_t t = 0; t < 64; t++) {
    int cls = reloc_class(t);
    type_info[t] = (uint8_t)(cls | (cls == K_OK ? field_size(t) << 2 : 0) | (is_tls_type(t) ? 64 : 0));
  }
}

// ---- per-symbol records (hot.ts) ----
enum { SREC = 96, S_VALUE = 0, S_BOUND = 8, S_GOT = 16, S_PLT = 24, S_TPGOT = 32, S_GDGOT = 40, S_LDGOT = 48,
       S_TPOFF = 56, S_MODULE = 64, S_BLOCKTP = 72, S_REFS = 80, S_STATE = 84, S_LDPAIR = 88, S_SECTION = 92 };
// section records (hot.ts): flags, offset, size, align, address u64; kind i8, placed, has data, written u8
enum { SEC = 48, X_FLAGS = 0, X_OFFSET = 8, X_SIZE = 16, X_ALIGN = 24, X_ADDR = 32, X_KIND = 40, X_PLACED = 41, X_DATA = 42, X_WRITTEN = 43 };
enum {
  B_ADDR = 1, B_GOT = 2, B_PLT = 4, B_TPGOT = 8, B_GDGOT = 16, B_LDGOT = 32, B_TLS = 64, B_TLS_STATIC = 128,
  OWN_GOT = 0x100, OWN_TPGOT = 0x200, OWN_GDGOT = 0x400, OWN_LDGOT = 0x800, RESOLVED = 0x1000,
  TLS_STATIC = 0x2000, TLS_MODULE = 0x4000, GOTSYM = 0x8000, IS_TLS = 0x10000, IFUNC_DEF = 0x20000,
};
#define RESOLVE_MASK (RESOLVED | TLS_STATIC | TLS_MODULE)
enum { CAND = 24, C_BRANCH = 1, C_NEEDED = 2, C_RESERVED = 4 };
enum { INFO_GOT_BASE = 1 };
enum { K_EXEC, K_RODATA, K_DATA, K_TDATA, K_TBSS, K_BSS };
#define JUMP_STUB_SIZE 16
#define PAGE 4096ull

#define LD64(p) (*(uint64_t *)(p))
#define LDI64(p) (*(int64_t *)(p))
#define LD32(p) (*(uint32_t *)(p))
#define ST64(p, v) (*(uint64_t *)(p) = (v))
#define ST32(p, v) (*(uint32_t *)(p) = (v))

typedef struct {
  const uint8_t *b;
  const Elf64_Shdr *sh;
  uint32_t nsec;
  const Elf64_Sym *symtab;
  const char *strtab;
  uint32_t nsym;
  uint8_t *syms;
  uint8_t *secs;
  uint32_t *tables;
  uint32_t ntables;
  uint32_t *refList;
  uint32_t refCount, refUndefined;
  uint8_t *cands;
  uint32_t candCount, candCap;
  uint32_t *hashTab; // pairs: index + 1, hash
  uint32_t hashCap;
  uint32_t infoFlags, gotSlots, stubCount;
  uint64_t ldModules[64];
  int nld, ldOwnPair;
  uint64_t gotAddr, stubAddr, gotBase;
  int gotBaseSet;
  int ownTls, ownStatic;
  uint64_t ownModule, ownTlsStart;
  int64_t ownBlockTpoff;
} Rel;

static uint8_t *rec(Rel *r, uint32_t i) { return r->syms + (size_t)i * SREC; }

static int defining_section(Rel *r, uint32_t i) { return (int32_t)LD32(rec(r, i) + S_SECTION); }

static uint8_t *sec(Rel *r, uint32_t s) { return r->secs + (size_t)s * SEC; }

static int is_branch(Rel *r, uint32_t s, uint64_t off) {
  uint8_t *x = sec(r, s);
  if (!(LD64(x + X_FLAGS) & SHF_EXECINSTR) || off < 1) return 0;
  const uint8_t *p = r->b + LD64(x + X_OFFSET) + off;
  uint8_t op = p[-1];
  if (op == 0xe8 || op == 0xe9) return 1;
  return off >= 2 && (op & 0xf0) == 0x80 && p[-2] == 0x0f;
}

static inline uint32_t cand_hash(uint32_t sym, int branch, int64_t addend) {
  uint64_t h = (uint64_t)sym * 0x9e3779b97f4a7c15ull ^ (uint64_t)addend * 0xc2b2ae3d27d4eb4full ^ (branch ? 0x165667b19e3779f9ull : 0);
  h ^= h >> 29;
  return (uint32_t)(h ^ (h >> 32));
}

static int find_candidate(Rel *r, uint32_t sym, int branch, int64_t addend) {
  if (r->hashCap == 0) return -1;
  uint32_t h = cand_hash(sym, branch, addend), mask = r->hashCap - 1, slot = h & mask;
  for (uint32_t probe = 0; probe < r->hashCap; probe++) {
    uint32_t *e = r->hashTab + (size_t)slot * 2;
    if (e[0] == 0) return -1;
    if (e[1] == h) {
      uint8_t *c = r->cands + (size_t)(e[0] - 1) * CAND;
      if (LD32(c) == sym && ((LD32(c + 4) & C_BRANCH) != 0) == branch && LDI64(c + 8) == addend) return (int)(e[0] - 1);
    }
    slot = (slot + 1) & mask;
  }
  return -1;
}

static void hash_insert(Rel *r, uint32_t idx) {
  uint8_t *c = r->cands + (size_t)idx * CAND;
  uint32_t h = cand_hash(LD32(c), (LD32(c + 4) & C_BRANCH) != 0, LDI64(c + 8)), mask = r->hashCap - 1, slot = h & mask;
  while (r->hashTab[(size_t)slot * 2] != 0) slot = (slot + 1) & mask;
  r->hashTab[(size_t)slot * 2] = idx + 1;
  r->hashTab[(size_t)slot * 2 + 1] = h;
}

static void rehash(Rel *r, uint32_t cap) {
  free(r->hashTab);
  r->hashTab = calloc((size_t)cap * 2, 4);
  r->hashCap = cap;
  for (uint32_t i = 0; i < r->candCount; i++) hash_insert(r, i);
}

static void add_candidate(Rel *r, uint32_t sym, int branch, int64_t addend, int needed) {
  int idx = find_candidate(r, sym, branch, addend);
  if (idx < 0) {
    if (r->candCount == r->candCap) {
      uint32_t cap = r->candCap == 0 ? 64 : r->candCap * 2;
      uint8_t *nc = malloc((size_t)cap * CAND);
      if (r->cands) {
        memcpy(nc, r->cands, (size_t)r->candCount * CAND);
        free(r->cands);
      }
      r->cands = nc;
      r->candCap = cap;
    }
    if ((r->candCount + 1) * 2 > r->hashCap) rehash(r, r->hashCap == 0 ? 128 : r->hashCap * 2);
    idx = (int)r->candCount;
    uint8_t *c = r->cands + (size_t)idx * CAND;
    ST32(c, sym);
    ST32(c + 4, branch ? C_BRANCH : 0);
    ST64(c + 8, (uint64_t)addend);
    ST32(c + 16, 0);
    ST32(c + 20, 0);
    r->candCount++;
    hash_insert(r, (uint32_t)idx);
  }
  if (needed) {
    uint8_t *c = r->cands + (size_t)idx * CAND;
    ST32(c + 4, LD32(c + 4) | C_NEEDED);
  }
}

static int scan_table(Rel *r, uint32_t ti) {
  const Elf64_Shdr *rs = &r->sh[ti];
  uint32_t T = rs->sh_info;
  uint64_t size = LD64(sec(r, T) + X_SIZE);
  int exec = (LD64(sec(r, T) + X_FLAGS) & SHF_EXECINSTR) != 0;
  const uint8_t *data = r->b + LD64(sec(r, T) + X_OFFSET);
  const Elf64_Rela *rel = (const Elf64_Rela *)(r->b + rs->sh_offset);
  uint64_t n = rs->sh_size / sizeof(Elf64_Rela);
  for (uint64_t j = 0; j < n; j++) {
    uint64_t off = rel[j].r_offset;
    uint32_t type = ELF64_R_TYPE(rel[j].r_info), sym = ELF64_R_SYM(rel[j].r_info);
    uint32_t ti = type < 64 ? type_info[type] : K_UNKNOWN;
    if ((ti & 3) != K_OK) return -1;
    uint64_t width = (ti >> 2) & 15;
    if (off > size || width > size - off) return -1;
    if (type == R_NONE) continue;
    if (sym >= r->nsym) return -1;
    uint8_t *p = rec(r, sym);
    uint32_t st = LD32(p + S_STATE);
    int tls = (ti & 64) != 0;
    int defSec = (int32_t)LD32(p + S_SECTION);
    if (sym != 0 && tls != ((st & IS_TLS) != 0)) return -1;
    if (sym != 0 && (st & IFUNC_DEF)) return -1;
    uint32_t refs = 0;
    switch (type) {
    case R_64: case R_32: case R_32S: case R_16: case R_8: case R_GOTOFF64: refs = REF_ADDR; break;
    case R_PC64: case R_PC16: case R_PC8: refs = REF_ADDR | REF_PCREL; break;
    case R_PC32:
    case R_PLT32: {
      uint8_t op = exec && off >= 1 ? data[off - 1] : 0;
      int branch = exec && (op == 0xe8 || op == 0xe9 || (off >= 2 && (op & 0xf0) == 0x80 && data[off - 2] == 0x0f));
      if (type == R_PC32 && !branch) {
        refs = REF_ADDR | REF_PCREL;
        break;
      }
      refs = REF_CALL;
      if (sym != 0 && (defSec < 0 || ELF64_ST_TYPE(r->symtab[sym].st_info) != STT_SECTION))
        add_candidate(r, sym, branch, rel[j].r_addend, defSec < 0);
      break;
    }
    case R_PLTOFF64: refs = REF_CALL; break;
    case R_GOTPCREL: case R_GOTPCRELX: case R_REX_GOTPCRELX: case R_CODE_4_GOTPCRELX: case R_CODE_5_GOTPCRELX:
    case R_CODE_6_GOTPCRELX: case R_GOT32: case R_GOT64: case R_GOTPCREL64: case R_GOTPLT64: refs = REF_GOT; break;
    case R_GOTPC32: case R_GOTPC64: refs = 0; break;
    case R_GOTTPOFF: case R_CODE_4_GOTTPOFF: case R_CODE_5_GOTTPOFF: case R_CODE_6_GOTTPOFF: refs = REF_TPOFF_GOT; break;
    case R_TPOFF32: refs = REF_TPOFF; break;
    case R_TLSGD: refs = REF_TLSGD; break;
    case R_TLSLD: refs = REF_TLSLD; break;
    case R_DTPOFF32: case R_DTPOFF64: refs = REF_DTPOFF; break;
    case R_SIZE32: case R_SIZE64: refs = REF_SIZE; break;
    }
    switch (type) {
    case R_GOTOFF64: case R_GOTPC32: case R_GOTPC64: case R_GOT32: case R_GOT64: case R_GOTPLT64: case R_PLTOFF64:
      r->infoFlags |= INFO_GOT_BASE;
    }
    if (sym == 0 && (refs & ~(REF_ADDR | REF_PCREL)) != 0) return -1;
    if (sym != 0) ST32(p + S_REFS, LD32(p + S_REFS) | refs);
  }
  return 0;
}

static int layout_kind(uint64_t fl, int hasData) {
  if (!(fl & SHF_ALLOC)) return -1;
  if (fl & SHF_TLS) return hasData ? K_TDATA : K_TBSS;
  if (fl & SHF_EXECINSTR) return K_EXEC;
  if (!(fl & SHF_WRITE)) return K_RODATA;
  return hasData ? K_DATA : K_BSS;
}

static int rel_open(Rel *r) {
  r->secs = calloc(r->nsec ? r->nsec : 1, SEC);
  for (uint32_t s = 0; s < r->nsec; s++) {
    const Elf64_Shdr *h = &r->sh[s];
    uint8_t *x = sec(r, s);
    int hasData = h->sh_type != SHT_NOBITS && h->sh_type != SHT_NULL;
    ST64(x + X_FLAGS, h->sh_flags);
    ST64(x + X_OFFSET, h->sh_offset);
    ST64(x + X_SIZE, h->sh_size);
    ST64(x + X_ALIGN, h->sh_addralign);
    x[X_DATA] = hasData;
    x[X_KIND] = (uint8_t)(int8_t)(s == 0 ? -1 : layout_kind(h->sh_flags, hasData));
    if (s == 0 || !(h->sh_flags & SHF_ALLOC)) continue;
    if ((h->sh_addralign & (h->sh_addralign - 1)) != 0) return -1;
  }
  r->syms = calloc(r->nsym, SREC);
  ST32(r->syms + S_STATE, RESOLVED);
  ST32(r->syms + S_SECTION, (uint32_t)-1);
  for (uint32_t i = 1; i < r->nsym; i++) {
    uint8_t *p = rec(r, i);
    const Elf64_Sym *sym = &r->symtab[i];
    uint16_t raw = sym->st_shndx;
    int s = raw == SHN_UNDEF || raw >= SHN_LORESERVE ? -1 : raw;
    ST32(p + S_SECTION, (uint32_t)s);
    uint32_t state = 0, type = ELF64_ST_TYPE(sym->st_info);
    if (type == STT_TLS || (s >= 0 && (uint32_t)s < r->nsec && (LD64(sec(r, s) + X_FLAGS) & SHF_TLS))) state = IS_TLS;
    else if (raw == SHN_UNDEF && strcmp(r->strtab + sym->st_name, "_GLOBAL_OFFSET_TABLE_") == 0) state = GOTSYM;
    if (s >= 0 && type == STT_GNU_IFUNC) state |= IFUNC_DEF;
    ST32(p + S_STATE, state);
  }
  r->tables = malloc(r->nsec * 4);
  for (uint32_t s = 1; s < r->nsec; s++) {
    const Elf64_Shdr *rs = &r->sh[s];
    if (rs->sh_type != SHT_RELA || rs->sh_size == 0) continue;
    if (!(LD64(sec(r, rs->sh_info) + X_FLAGS) & SHF_ALLOC)) continue;
    if (scan_table(r, s) != 0) return -1;
    r->tables[r->ntables++] = s;
  }
  // undefined first, then defined, each in index order
  uint32_t n = 0, undef = 0;
  for (uint32_t i = 1; i < r->nsym; i++) {
    if (LD32(rec(r, i) + S_REFS) == 0) continue;
    n++;
    undef += defining_section(r, i) < 0;
  }
  r->refCount = n;
  r->refUndefined = undef;
  r->refList = malloc((n ? n : 1) * 4);
  uint32_t u = 0, d = undef;
  for (uint32_t i = 1; i < r->nsym; i++) {
    if (LD32(rec(r, i) + S_REFS) == 0) continue;
    if (defining_section(r, i) < 0) r->refList[u++] = i;
    else r->refList[d++] = i;
  }
  return 0;
}

static void rel_close(Rel *r) {
  free(r->syms);
  free(r->secs);
  free(r->tables);
  free(r->refList);
  free(r->cands);
  free(r->hashTab);
}

static void bind_addr(Rel *r, uint32_t sym, uint64_t addr) {
  uint8_t *p = rec(r, sym);
  ST64(p + S_BOUND, addr);
  ST32(p + S_STATE, LD32(p + S_STATE) | B_ADDR);
}

static int rel_plan(Rel *r) {
  uint32_t slots = 0;
  for (uint32_t i = 1; i < r->nsym; i++) {
    uint8_t *p = rec(r, i);
    uint32_t refs = LD32(p + S_REFS);
    if (!refs) continue;
    uint32_t st = LD32(p + S_STATE) & ~(OWN_GOT | OWN_TPGOT | OWN_GDGOT | OWN_LDGOT);
    if ((refs & REF_GOT) && !(st & B_GOT)) { st |= OWN_GOT; slots++; }
    if ((refs & REF_TPOFF_GOT) && !(st & B_TPGOT)) { st |= OWN_TPGOT; slots++; }
    if ((refs & REF_TLSGD) && !(st & B_GDGOT)) { st |= OWN_GDGOT; slots += 2; }
    if ((refs & REF_TLSLD) && !(st & B_LDGOT)) {
      int k = 0;
      if (st & B_TLS) {
        uint64_t m = LD64(p + S_MODULE);
        while (k < r->nld && (k == r->ldOwnPair || r->ldModules[k] != m)) k++;
        if (k == r->nld) r->ldModules[r->nld++] = m;
      } else if (r->symtab[i].st_shndx != SHN_UNDEF) {
        if (r->ldOwnPair < 0) {
          r->ldOwnPair = r->nld;
          r->ldModules[r->nld++] = 0;
        }
        k = r->ldOwnPair;
      } else return -1;
      ST32(p + S_LDPAIR, (uint32_t)k);
      st |= OWN_LDGOT;
    }
    ST32(p + S_STATE, st);
  }
  r->gotSlots = slots + 2 * (uint32_t)r->nld;
  uint32_t stubs = 0;
  for (uint32_t c = 0; c < r->candCount; c++) {
    uint8_t *p = r->cands + (size_t)c * CAND;
    uint32_t fl = LD32(p + 4) & ~C_RESERVED;
    if ((fl & C_NEEDED) || (LD32(rec(r, LD32(p)) + S_STATE) & (B_ADDR | B_PLT))) {
      fl |= C_RESERVED;
      ST32(p + 16, stubs);
      stubs++;
    }
    ST32(p + 4, fl);
  }
  r->stubCount = stubs;
  return 0;
}

static uint64_t align_up(uint64_t v, uint64_t a) { return a <= 1 ? v : (v + a - 1) & ~(a - 1); }

static uint64_t place_kind(Rel *r, uint64_t p, int kind) {
  for (uint32_t s = 1; s < r->nsec; s++) {
    uint8_t *x = sec(r, s);
    if ((int8_t)x[X_KIND] != kind) continue;
    p = align_up(p, LD64(x + X_ALIGN));
    ST64(x + X_ADDR, p);
    x[X_PLACED] = 1;
    p += LD64(x + X_SIZE);
  }
  return p;
}

static uint64_t rel_layout(Rel *r, uint64_t base) {
  uint64_t p = place_kind(r, base, K_EXEC);
  p = align_up(p, 16);
  r->stubAddr = p;
  p += (uint64_t)r->stubCount * JUMP_STUB_SIZE;
  p = align_up(p, PAGE);
  p = place_kind(r, p, K_RODATA);
  p = align_up(p, 8);
  r->gotAddr = p;
  p += (uint64_t)r->gotSlots * 8;
  p = align_up(p, PAGE);
  p = place_kind(r, p, K_DATA);
  uint64_t ta = 1;
  for (uint32_t s = 1; s < r->nsec; s++) {
    uint8_t *x = sec(r, s);
    if ((LD64(x + X_FLAGS) & SHF_ALLOC) && (LD64(x + X_FLAGS) & SHF_TLS) && LD64(x + X_ALIGN) > ta) ta = LD64(x + X_ALIGN);
  }
  p = align_up(p, ta);
  p = place_kind(r, p, K_TDATA);
  p = place_kind(r, p, K_TBSS);
  p = place_kind(r, p, K_BSS);
  return align_up(p, PAGE) - base;
}

static void resolve(Rel *r, uint32_t i) {
  uint8_t *p = rec(r, i);
  uint32_t st = LD32(p + S_STATE) & ~RESOLVE_MASK;
  if (st & B_TLS) {
    uint64_t off = LD64(p + S_BOUND);
    ST64(p, off);
    st |= RESOLVED | TLS_MODULE;
    if (st & B_TLS_STATIC) {
      ST64(p + S_TPOFF, (uint64_t)(LDI64(p + S_BLOCKTP) + (int64_t)off));
      st |= TLS_STATIC;
    }
  } else if (st & B_ADDR) {
    ST64(p, LD64(p + S_BOUND));
    st |= RESOLVED;
  } else if (st & GOTSYM) {
    ST64(p, r->gotBase);
    st |= RESOLVED;
  } else {
    const Elf64_Sym *s = &r->symtab[i];
    if (s->st_shndx == SHN_UNDEF) {
      if (ELF64_ST_BIND(s->st_info) == STB_WEAK && !(st & IS_TLS)) {
        ST64(p, 0);
        st |= RESOLVED;
      }
    } else if (s->st_shndx == SHN_ABS) {
      ST64(p, s->st_value);
      st |= RESOLVED;
    } else if (defining_section(r, i) >= 0 && (uint32_t)defining_section(r, i) < r->nsec && sec(r, defining_section(r, i))[X_PLACED]) {
      uint64_t addr = LD64(sec(r, defining_section(r, i)) + X_ADDR) + s->st_value;
      if (st & IS_TLS) {
        if (r->ownTls) {
          uint64_t off = addr - r->ownTlsStart;
          ST64(p, off);
          ST64(p + S_MODULE, r->ownModule);
          st |= RESOLVED | TLS_MODULE;
          if (r->ownStatic) {
            ST64(p + S_TPOFF, (uint64_t)(r->ownBlockTpoff + (int64_t)off));
            st |= TLS_STATIC;
          }
        }
      } else {
        ST64(p, addr);
        st |= RESOLVED;
      }
    }
  }
  ST32(p + S_STATE, st);
}

static void assign_got(Rel *r) {
  uint64_t k = 0, g = r->gotAddr;
  for (uint32_t i = 1; i < r->nsym; i++) {
    uint8_t *p = rec(r, i);
    uint32_t st = LD32(p + S_STATE);
    if (!(st & (OWN_GOT | OWN_TPGOT | OWN_GDGOT | OWN_LDGOT))) continue;
    if (st & OWN_GOT) ST64(p + S_GOT, g + 8 * k++);
    if (st & OWN_TPGOT) ST64(p + S_TPGOT, g + 8 * k++);
    if (st & OWN_GDGOT) { ST64(p + S_GDGOT, g + 8 * k); k += 2; }
  }
  uint64_t ld = g + 8 * k;
  for (uint32_t i = 1; i < r->nsym; i++) {
    uint8_t *p = rec(r, i);
    if (LD32(p + S_STATE) & OWN_LDGOT) ST64(p + S_LDGOT, ld + (uint64_t)LD32(p + S_LDPAIR) * 16);
  }
}

static inline int signed32(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }
#define CHECK(v, lo, hi) do { if ((v) < (lo) || (v) > (hi)) return -1; } while (0)

static int via_stub(Rel *r, const Elf64_Rela *rel, uint32_t T, uint64_t L, uint64_t P, uint8_t *loc) {
  uint32_t type = ELF64_R_TYPE(rel->r_info), sym = ELF64_R_SYM(rel->r_info);
  int branch = is_branch(r, T, rel->r_offset);
  if (type == R_PC32 && !branch) return -1;
  int c = find_candidate(r, sym, branch, rel->r_addend);
  if (c < 0 || !(LD32(r->cands + (size_t)c * CAND + 4) & C_RESERVED)) return -1;
  uint64_t stub = r->stubAddr + (uint64_t)LD32(r->cands + (size_t)c * CAND + 16) * JUMP_STUB_SIZE;
  int64_t v = branch ? (int64_t)(stub - P - 4) : (int64_t)(stub + (uint64_t)rel->r_addend - P);
  if (!signed32(v)) return -1;
  *(int32_t *)loc = (int32_t)v;
  return 0;
}

// The relocation switch (engine.ts applyTable).
static int apply_table(Rel *r, uint32_t ti, uint8_t *out, uint64_t base) {
  const Elf64_Shdr *rs = &r->sh[ti];
  uint32_t T = rs->sh_info;
  uint64_t secBase = LD64(sec(r, T) + X_ADDR);
  uint8_t *loc0 = out + (secBase - base);
  uint64_t GOT = r->gotBase;
  const uint8_t *o = r->b + rs->sh_offset, *end = o + rs->sh_size / 24 * 24;
  for (; o < end; o += 24) {
    const Elf64_Rela *rel = (const Elf64_Rela *)o;
    uint64_t off = LD64(o), info = LD64(o + 8);
    int64_t A = LDI64(o + 16);
    uint32_t type = (uint32_t)info;
    uint8_t *p = r->syms + (size_t)(info >> 32) * SREC;
    uint32_t st = LD32(p + S_STATE);
    uint64_t S = LD64(p), P = secBase + off;
    uint8_t *loc = loc0 + off;
    switch (type) {
    case R_NONE: break;
    case R_64: if (!(st & RESOLVED)) return -1; ST64(loc, S + (uint64_t)A); break;
    case R_PC32: {
      if (!(st & RESOLVED)) return -1;
      int64_t v = (int64_t)(S + (uint64_t)A - P);
      if (signed32(v)) *(int32_t *)loc = (int32_t)v;
      else if (via_stub(r, rel, T, S, P, loc)) return -1;
      break;
    }
    case R_PLT32: {
      uint64_t L = S;
      if (st & B_PLT) L = LD64(p + S_PLT);
      else if (!(st & RESOLVED)) return -1;
      int64_t v = (int64_t)(L + (uint64_t)A - P);
      if (signed32(v)) *(int32_t *)loc = (int32_t)v;
      else if (via_stub(r, rel, T, L, P, loc)) return -1;
      break;
    }
    case R_GOTPCREL: case R_GOTPCRELX: case R_REX_GOTPCRELX: case R_CODE_4_GOTPCRELX: case R_CODE_5_GOTPCRELX:
    case R_CODE_6_GOTPCRELX: {
      int64_t v = (int64_t)(LD64(p + S_GOT) + (uint64_t)A - P);
      CHECK(v, INT32_MIN, INT32_MAX);
      *(int32_t *)loc = (int32_t)v;
      break;
    }
    case R_32: {
      if (!(st & RESOLVED)) return -1;
      int64_t v = (int64_t)(S + (uint64_t)A);
      CHECK(v, 0, 0xffffffffll);
      *(uint32_t *)loc = (uint32_t)v;
      break;
    }
    case R_32S: {
      if (!(st & RESOLVED)) return -1;
      int64_t v = (int64_t)(S + (uint64_t)A);
      CHECK(v, INT32_MIN, INT32_MAX);
      *(int32_t *)loc = (int32_t)v;
      break;
    }
    case R_TLSGD: { int64_t v = (int64_t)(LD64(p + S_GDGOT) + (uint64_t)A - P); CHECK(v, INT32_MIN, INT32_MAX); *(int32_t *)loc = (int32_t)v; break; }
    case R_TLSLD: { int64_t v = (int64_t)(LD64(p + S_LDGOT) + (uint64_t)A - P); CHECK(v, INT32_MIN, INT32_MAX); *(int32_t *)loc = (int32_t)v; break; }
    case R_GOTTPOFF: case R_CODE_4_GOTTPOFF: case R_CODE_5_GOTTPOFF: case R_CODE_6_GOTTPOFF: {
      int64_t v = (int64_t)(LD64(p + S_TPGOT) + (uint64_t)A - P);
      CHECK(v, INT32_MIN, INT32_MAX);
      *(int32_t *)loc = (int32_t)v;
      break;
    }
    case R_DTPOFF32: { if (!(st & RESOLVED)) return -1; int64_t v = (int64_t)(S + (uint64_t)A); CHECK(v, INT32_MIN, INT32_MAX); *(int32_t *)loc = (int32_t)v; break; }
    case R_DTPOFF64: if (!(st & RESOLVED)) return -1; ST64(loc, S + (uint64_t)A); break;
    case R_TPOFF32: {
      if (!(st & TLS_STATIC)) return -1;
      int64_t v = LDI64(p + S_TPOFF) + A;
      CHECK(v, INT32_MIN, INT32_MAX);
      *(int32_t *)loc = (int32_t)v;
      break;
    }
    case R_PC64: if (!(st & RESOLVED)) return -1; ST64(loc, S + (uint64_t)A - P); break;
    case R_GOTOFF64: if (!(st & RESOLVED)) return -1; ST64(loc, S + (uint64_t)A - GOT); break;
    case R_GOTPC32: { int64_t v = (int64_t)(GOT + (uint64_t)A - P); CHECK(v, INT32_MIN, INT32_MAX); *(int32_t *)loc = (int32_t)v; break; }
    case R_GOT32: { int64_t v = (int64_t)(LD64(p + S_GOT) - GOT + (uint64_t)A); CHECK(v, INT32_MIN, INT32_MAX); *(int32_t *)loc = (int32_t)v; break; }
    case R_GOT64: case R_GOTPLT64: ST64(loc, LD64(p + S_GOT) - GOT + (uint64_t)A); break;
    case R_GOTPCREL64: ST64(loc, LD64(p + S_GOT) + (uint64_t)A - P); break;
    case R_GOTPC64: ST64(loc, GOT + (uint64_t)A - P); break;
    case R_PLTOFF64: {
      uint64_t L = S;
      if (st & B_PLT) L = LD64(p + S_PLT);
      else if (!(st & RESOLVED)) return -1;
      ST64(loc, L - GOT + (uint64_t)A);
      break;
    }
    case R_16: { if (!(st & RESOLVED)) return -1; int64_t v = (int64_t)(S + (uint64_t)A); CHECK(v, -0x8000, 0xffff); *(uint16_t *)loc = (uint16_t)v; break; }
    case R_PC16: { if (!(st & RESOLVED)) return -1; int64_t v = (int64_t)(S + (uint64_t)A - P); CHECK(v, -0x8000, 0x7fff); *(uint16_t *)loc = (uint16_t)v; break; }
    case R_8: { if (!(st & RESOLVED)) return -1; int64_t v = (int64_t)(S + (uint64_t)A); CHECK(v, -0x80, 0xff); *loc = (uint8_t)v; break; }
    case R_PC8: { if (!(st & RESOLVED)) return -1; int64_t v = (int64_t)(S + (uint64_t)A - P); CHECK(v, -0x80, 0x7f); *loc = (uint8_t)v; break; }
    case R_SIZE32: case R_SIZE64: {
      uint32_t sym = (uint32_t)(info >> 32);
      if (sym == 0 || r->symtab[sym].st_shndx == SHN_UNDEF) return -1;
      int64_t v = (int64_t)(r->symtab[sym].st_size + (uint64_t)A);
      if (type == R_SIZE64) ST64(loc, (uint64_t)v);
      else { CHECK(v, 0, 0xffffffffll); *(uint32_t *)loc = (uint32_t)v; }
      break;
    }
    default: return -1;
    }
  }
  return 0;
}

static uint64_t stub_target(Rel *r, uint32_t c) {
  uint8_t *p = r->cands + (size_t)c * CAND, *s = rec(r, LD32(p));
  uint64_t L = (LD32(s + S_STATE) & B_PLT) ? LD64(s + S_PLT) : LD64(s);
  return (LD32(p + 4) & C_BRANCH) ? L + (uint64_t)LDI64(p + 8) + 4 : L;
}

static int rel_apply(Rel *r, uint8_t *out, uint64_t len, uint64_t base) {
  if (!r->gotBaseSet) r->gotBase = r->gotAddr;
  for (uint32_t s = 1; s < r->nsec; s++) {
    uint8_t *x = sec(r, s);
    x[X_WRITTEN] = 0;
    if (!x[X_PLACED] || ((LD64(x + X_FLAGS) & SHF_TLS) && !x[X_DATA])) continue;
    uint64_t addr = LD64(x + X_ADDR), size = LD64(x + X_SIZE);
    if (addr < base || addr - base > len || size > len - (addr - base)) return -1;
    x[X_WRITTEN] = 1;
  }
  for (uint32_t k = 0; k < r->refCount; k++) resolve(r, r->refList[k]);
  assign_got(r);
  for (uint32_t s = 1; s < r->nsec; s++) {
    uint8_t *x = sec(r, s);
    if (!x[X_WRITTEN]) continue;
    uint8_t *dst = out + (LD64(x + X_ADDR) - base);
    if (x[X_DATA]) memcpy(dst, r->b + LD64(x + X_OFFSET), LD64(x + X_SIZE));
    else memset(dst, 0, LD64(x + X_SIZE));
  }
  for (uint32_t k = 0; k < r->ntables; k++)
    if (sec(r, r->sh[r->tables[k]].sh_info)[X_WRITTEN] && apply_table(r, r->tables[k], out, base)) return -1;
  // GOT
  uint8_t *g = out + (r->gotAddr - base);
  size_t k = 0;
  for (uint32_t i = 1; i < r->nsym; i++) {
    uint8_t *p = rec(r, i);
    uint32_t st = LD32(p + S_STATE);
    if (!(st & (OWN_GOT | OWN_TPGOT | OWN_GDGOT))) continue;
    if (st & OWN_GOT) { if (!(st & RESOLVED)) return -1; ST64(g + 8 * k++, LD64(p)); }
    if (st & OWN_TPGOT) { if (!(st & TLS_STATIC)) return -1; ST64(g + 8 * k++, LD64(p + S_TPOFF)); }
    if (st & OWN_GDGOT) { if (!(st & RESOLVED)) return -1; ST64(g + 8 * k, LD64(p + S_MODULE)); ST64(g + 8 * k + 8, LD64(p)); k += 2; }
  }
  for (int m = 0; m < r->nld; m++) {
    ST64(g + 8 * k, m == r->ldOwnPair ? r->ownModule : r->ldModules[m]);
    ST64(g + 8 * k + 8, 0);
    k += 2;
  }
  // stubs: ff 25 00000000, the target, cc cc
  uint8_t *w = out + (r->stubAddr - base);
  for (uint32_t c = 0; c < r->candCount; c++) {
    uint8_t *p = r->cands + (size_t)c * CAND;
    if (!(LD32(p + 4) & C_RESERVED)) continue;
    uint32_t st = LD32(rec(r, LD32(p)) + S_STATE);
    if (!(st & (B_PLT | RESOLVED))) return -1;
    w[0] = 0xff;
    w[1] = 0x25;
    ST32(w + 2, 0);
    ST64(w + 6, stub_target(r, c));
    w[14] = w[15] = 0xcc;
    w += JUMP_STUB_SIZE;
  }
  return 0;
}

// ---- the bench ----

#define BASE 0x555555554000ull
#define FAR 0x7f0000000000ull
#define NEAR (BASE + 0x40000000ull)

/** The bench's binding rule (bench/core/reloc.ts does the same). */
static void bind_all(Rel *r) {
  for (uint32_t k = 0; k < r->refUndefined; k++) {
    uint32_t i = r->refList[k];
    if (r->symtab[i].st_shndx != SHN_UNDEF || (LD32(rec(r, i) + S_STATE) & (GOTSYM | IS_TLS))) continue;
    uint32_t refs = LD32(rec(r, i) + S_REFS);
    bind_addr(r, i, (refs == REF_CALL ? FAR : NEAR) + (uint64_t)i * 16);
  }
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s OBJECT RUNS\n", argv[0]);
    return 2;
  }
  int fd = open(argv[1], O_RDONLY);
  struct stat sb;
  if (fd < 0 || fstat(fd, &sb) != 0) return perror(argv[1]), 1;
  const uint8_t *b = mmap(NULL, sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (b == MAP_FAILED) return perror("mmap"), 1;
  const Elf64_Ehdr *eh = (const Elf64_Ehdr *)b;
  Rel proto = {0};
  proto.b = b;
  proto.sh = (const Elf64_Shdr *)(b + eh->e_shoff);
  proto.nsec = eh->e_shnum;
  for (uint32_t s = 0; s < proto.nsec; s++) {
    if (proto.sh[s].sh_type == SHT_SYMTAB) {
      proto.symtab = (const Elf64_Sym *)(b + proto.sh[s].sh_offset);
      proto.nsym = proto.sh[s].sh_size / sizeof(Elf64_Sym);
      proto.strtab = (const char *)(b + proto.sh[proto.sh[s].sh_link].sh_offset);
    }
  }
  proto.ldOwnPair = -1;
  init_type_info();
  int runs = atoi(argv[2]);
  uint8_t *window = NULL;
  uint64_t size = 0;
  double *t = malloc(sizeof(double) * (runs + 10));
  uint32_t relocs = 0;
  for (int i = 0; i < runs + 10; i++) {
    double t0 = now_ms();
    Rel r = proto;
    if (rel_open(&r)) return fprintf(stderr, "scan failed\n"), 1;
    bind_all(&r);
    if (rel_plan(&r)) return fprintf(stderr, "plan failed\n"), 1;
    uint64_t sz = rel_layout(&r, BASE);
    if (!window) {
      size = sz;
      window = calloc(1, size);
    }
    if (rel_apply(&r, window, size, BASE)) return fprintf(stderr, "apply failed\n"), 1;
    relocs = 0;
    for (uint32_t k = 0; k < r.ntables; k++) relocs += r.sh[r.tables[k]].sh_size / 24;
    rel_close(&r);
    t[i] = now_ms() - t0;
  }
  qsort(t + 10, runs, sizeof(double), cmp_double);
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint64_t i = 0; i < size; i++) h = (h ^ window[i]) * 0x100000001b3ull;
  printf("{\"ms\": %.4f, \"size\": %llu, \"relocations\": %u, \"fnv\": \"%016llx\"}\n", t[10 + runs / 2], (unsigned long long)size, relocs,
         (unsigned long long)h);
  return 0;
}
