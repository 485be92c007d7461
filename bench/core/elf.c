// The ELF reader of assembly/elf/file.ts (files with section headers: the path libc.so.6
// and the node executable take) in C, for bench/core/elf.ts: the same validation, step
// by step and check by check, and the same data layout (one heap object per section,
// segment, table and version, in growable arrays of pointers, as AssemblyScript's
// Array<Section> holds them), then elf_symbols' 48-byte records. Built with gcc -O2 at
// bench time.
//
//   elf FILE RUNS
//   prints one JSON line: medians in ms of opening (validating) the file and of reading
//   every record of both symbol tables in chunks of 4096, plus the counts and a checksum
//   of the records (compared with the Wasm core's by the bench).
//
// Not mirrored (not taken by files with section headers): the tables from the dynamic
// segment, images, and the error messages (only error codes: these inputs are valid).
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int32_t i32;
typedef int64_t i64;

enum {
  EHDR_SIZE = 64, SHDR_SIZE = 64, PHDR_SIZE = 56, SYM_SIZE = 24, RELA_SIZE = 24, DYN_SIZE = 16, RELR_SIZE = 8,
  VERDEF_SIZE = 20, VERDAUX_SIZE = 8, VERNEED_SIZE = 16, VERNAUX_SIZE = 16,
  SHT_NULL = 0, SHT_SYMTAB = 2, SHT_STRTAB = 3, SHT_RELA = 4, SHT_DYNAMIC = 6, SHT_NOTE = 7, SHT_NOBITS = 8, SHT_REL = 9,
  SHT_DYNSYM = 11, SHT_SYMTAB_SHNDX = 18, SHT_RELR = 19,
  PT_LOAD = 1, PT_TLS = 7,
  SHN_LORESERVE = 0xff00, SHN_XINDEX = 0xffff, VERSYM_HIDDEN = 0x8000, VER_NDX_GLOBAL = 1, VER_FLG_BASE = 1,
  NT_GNU_BUILD_ID = 3,
};
#define SHT_GNU_VERDEF 0x6ffffffdu
#define SHT_GNU_VERNEED 0x6ffffffeu
#define SHT_GNU_VERSYM 0x6fffffffu
#define SHF_INFO_LINK 0x40ull
#define MAX_SECTIONS (1u << 20)
#define MAX_VERSIONS (1u << 16)

// Errors: codes as in assembly/error.ts.
enum { ELF_TRUNCATED = 100, ELF_BAD_MAGIC, ELF_UNSUPPORTED, ELF_BAD_HEADER, ELF_BAD_SECTION, ELF_BAD_SEGMENT, ELF_BAD_STRING, ELF_BAD_SYMBOL,
       ELF_BAD_RELOCATION, ELF_BAD_VERSION, ELF_BAD_NOTE };

// ---- Bytes (assembly/bytes.ts) -------------------------------------------------------

typedef struct {
  const u8* base;
  u64 length;
} Bytes;

static inline bool in_range(const Bytes* b, u64 off, u64 size) { return off <= b->length && size <= b->length - off; }
static inline u8 b_u8(const Bytes* b, u64 o) { return b->base[o]; }
static inline u16 b_u16(const Bytes* b, u64 o) { u16 v; memcpy(&v, b->base + o, 2); return v; }
static inline u32 b_u32(const Bytes* b, u64 o) { u32 v; memcpy(&v, b->base + o, 4); return v; }
static inline u64 b_u64(const Bytes* b, u64 o) { u64 v; memcpy(&v, b->base + o, 8); return v; }
static inline i64 b_i64(const Bytes* b, u64 o) { i64 v; memcpy(&v, b->base + o, 8); return v; }
static inline u16 ld16(const u8* p) { u16 v; memcpy(&v, p, 2); return v; }
static inline u32 ld32(const u8* p) { u32 v; memcpy(&v, p, 4); return v; }

static u32 found_len;

static i64 str_at(const Bytes* b, u64 tab_off, u64 tab_size, u32 idx) {
  if ((u64)idx >= tab_size) return -1;
  const u8* start = b->base + tab_off + idx;
  const u8* end = b->base + tab_off + tab_size;
  const u8* p = start;
  while (p < end && *p != 0) p++;
  if (p == end) return -1;
  found_len = (u32)(p - start);
  return (i64)(tab_off + idx);
}

// ---- growable arrays of pointers (AssemblyScript's Array<T> of objects) -----------------

typedef struct {
  void** items;
  u32 length, cap;
} Array;

static void push(Array* a, void* x) {
  if (a->length == a->cap) {
    a->cap = a->cap ? a->cap * 2 : 8;
    a->items = realloc(a->items, a->cap * sizeof(void*));
  }
  a->items[a->length++] = x;
}
static void free_all(Array* a) {
  for (u32 i = 0; i < a->length; i++) free(a->items[i]);
  free(a->items);
}

typedef struct {
  u32 index, name, name_len, type;
  u64 flags, addr, offset, size;
  u32 link, info;
  u64 align, entsize;
  bool has_data;
} Section;

typedef struct {
  u32 type, flags;
  u64 offset, vaddr, paddr, filesz, memsz, align;
} Segment;

typedef struct {
  u32 kind;
  u64 offset;
  u32 count;
  u64 str_offset, str_size;
  u32 first_global;
  i64 versym, shndx;
  i32 section;
  u32* name_lens; // measured by check_symbols
} SymTable;

typedef struct {
  u32 kind;
  u64 offset;
  u32 count;
  i32 section, target;
  u32 symtab, words;
} RelaTable;

typedef struct {
  u16 index;
  u32 name, name_len, file, file_len;
  bool is_def, is_base;
} Version;

typedef struct {
  u64 tab_off, tab_size;
  u32* nuls;
  u32 n;
} NulIndex;

typedef struct {
  Bytes bytes;
  u16 type, machine;
  u64 entry, phoff, shoff;
  u32 flags, shstrndx;
  Array sections, segments, relas, versions, nul_indexes;
  SymTable* symtabs[2];
  u16* version_slot;
  u32 version_slot_len;
  u32* version_words; // per version index: name ptr, name length, file ptr, file length
  u32 version_words_len;
  i64 dynamic_offset;
  u32 dynamic_count;
  i64 build_id;
  u32 build_id_len;
  u64 eh_frame_addr, eh_frame_size, eh_frame_hdr_addr, eh_frame_hdr_size;
  i64 eh_frame_offset, eh_frame_hdr_offset;
  i32 tls_segment;
  u64 scan_budget;
} ElfFile;

#define SECTION(f, i) ((Section*)(f)->sections.items[i])
#define SEGMENT(f, i) ((Segment*)(f)->segments.items[i])

// ElfFile.str(): strAt within a scanning budget, then binary search over the NULs.
static i64 nul_find(NulIndex* t, u32 idx) {
  if ((u64)idx >= t->tab_size) return -1;
  u32 lo = 0, hi = t->n;
  while (lo < hi) {
    u32 mid = (lo + hi) >> 1;
    if (t->nuls[mid] < idx) lo = mid + 1;
    else hi = mid;
  }
  if (lo == t->n) return -1;
  found_len = t->nuls[lo] - idx;
  return (i64)(t->tab_off + idx);
}

static i64 f_str(ElfFile* f, u64 tab_off, u64 tab_size, u32 idx) {
  if (f->scan_budget > 0) {
    i64 at = str_at(&f->bytes, tab_off, tab_size, idx);
    u64 cost = at >= 0 ? (u64)found_len + 1 : (u64)idx < tab_size ? tab_size - idx : 1;
    f->scan_budget = cost >= f->scan_budget ? 0 : f->scan_budget - cost;
    return at;
  }
  for (u32 i = 0; i < f->nul_indexes.length; i++) {
    NulIndex* t = f->nul_indexes.items[i];
    if (t->tab_off == tab_off && t->tab_size == tab_size) return nul_find(t, idx);
  }
  NulIndex* t = calloc(1, sizeof *t);
  t->tab_off = tab_off;
  t->tab_size = tab_size;
  const u8* s = f->bytes.base + tab_off;
  for (u64 i = 0; i < tab_size; i++) t->n += s[i] == 0;
  t->nuls = malloc(t->n * 4 + 4);
  u32 k = 0;
  for (u64 i = 0; i < tab_size; i++) if (s[i] == 0) t->nuls[k++] = (u32)i;
  push(&f->nul_indexes, t);
  return nul_find(t, idx);
}

// ---- header, program headers, section headers ----------------------------------------

static int read_header(ElfFile* f) {
  const Bytes* b = &f->bytes;
  if (!in_range(b, 0, EHDR_SIZE)) return ELF_TRUNCATED;
  if (b_u32(b, 0) != 0x464c457f) return ELF_BAD_MAGIC;
  if (b_u8(b, 4) != 2 || b_u8(b, 5) != 1 || b_u8(b, 6) != 1) return ELF_UNSUPPORTED;
  f->type = b_u16(b, 16);
  f->machine = b_u16(b, 18);
  if (f->machine != 62) return ELF_UNSUPPORTED;
  if (f->type != 1 && f->type != 2 && f->type != 3) return ELF_UNSUPPORTED;
  f->entry = b_u64(b, 24);
  f->phoff = b_u64(b, 32);
  f->shoff = b_u64(b, 40);
  f->flags = b_u32(b, 48);
  u32 phnum = b_u16(b, 56);
  if (phnum != 0 && b_u16(b, 54) != PHDR_SIZE) return ELF_BAD_HEADER;
  if (f->shoff != 0 && b_u16(b, 58) != SHDR_SIZE) return ELF_BAD_HEADER;
  return 0;
}

static int read_segments(ElfFile* f) {
  const Bytes* b = &f->bytes;
  u32 phnum = b_u16(b, 56);
  if (phnum == 0) return 0;
  if (phnum == 0xffff) return ELF_UNSUPPORTED;
  if (!in_range(b, f->phoff, (u64)phnum * PHDR_SIZE)) return ELF_TRUNCATED;
  for (u32 i = 0; i < phnum; i++) {
    u64 o = f->phoff + (u64)i * PHDR_SIZE;
    Segment* s = calloc(1, sizeof *s);
    s->type = b_u32(b, o);
    s->flags = b_u32(b, o + 4);
    s->offset = b_u64(b, o + 8);
    s->vaddr = b_u64(b, o + 16);
    s->paddr = b_u64(b, o + 24);
    s->filesz = b_u64(b, o + 32);
    s->memsz = b_u64(b, o + 40);
    s->align = b_u64(b, o + 48);
    if (s->type == PT_LOAD) {
      if (s->filesz > s->memsz) { free(s); return ELF_BAD_SEGMENT; }
      if (s->vaddr + s->memsz < s->vaddr) { free(s); return ELF_BAD_SEGMENT; }
    }
    if (s->type == PT_TLS) f->tls_segment = (i32)i;
    push(&f->segments, s);
  }
  return 0;
}

static int read_sections(ElfFile* f) {
  const Bytes* b = &f->bytes;
  if (!in_range(b, f->shoff, SHDR_SIZE)) return ELF_TRUNCATED;
  u64 shnum = b_u16(b, 60);
  if (shnum == 0) shnum = b_u64(b, f->shoff + 32);
  u32 shstrndx = b_u16(b, 62);
  if (shstrndx == SHN_XINDEX) shstrndx = b_u32(b, f->shoff + 44);
  if (shnum > MAX_SECTIONS) return ELF_BAD_HEADER;
  if (!in_range(b, f->shoff, shnum * SHDR_SIZE)) return ELF_TRUNCATED;
  if (shstrndx >= (u32)shnum && shstrndx != 0) return ELF_BAD_HEADER;
  f->shstrndx = shstrndx;
  u32 n = (u32)shnum;
  for (u32 i = 0; i < n; i++) {
    u64 o = f->shoff + (u64)i * SHDR_SIZE;
    Section* s = calloc(1, sizeof *s);
    s->index = i;
    s->name = b_u32(b, o);
    s->type = b_u32(b, o + 4);
    s->flags = b_u64(b, o + 8);
    s->addr = b_u64(b, o + 16);
    s->offset = b_u64(b, o + 24);
    s->size = b_u64(b, o + 32);
    s->link = b_u32(b, o + 40);
    s->info = b_u32(b, o + 44);
    s->align = b_u64(b, o + 48);
    s->entsize = b_u64(b, o + 56);
    if (s->type != SHT_NOBITS && s->type != SHT_NULL) {
      if (!in_range(b, s->offset, s->size)) { free(s); return ELF_TRUNCATED; }
      s->has_data = true;
    }
    if (s->link >= n && s->type != SHT_NULL) { free(s); return ELF_BAD_SECTION; }
    push(&f->sections, s);
  }
  if (shstrndx != 0) {
    Section* strs = SECTION(f, shstrndx);
    if (strs->type != SHT_STRTAB || !strs->has_data) return ELF_BAD_SECTION;
    for (u32 i = 0; i < n; i++) {
      Section* s = SECTION(f, i);
      i64 at = f_str(f, strs->offset, strs->size, s->name);
      if (at < 0) return ELF_BAD_STRING;
      s->name = (u32)at;
      s->name_len = found_len;
    }
  } else {
    for (u32 i = 0; i < n; i++) SECTION(f, i)->name = SECTION(f, i)->name_len = 0;
  }
  return 0;
}

static i32 section_by_name(ElfFile* f, const char* name) {
  u32 len = (u32)strlen(name);
  for (u32 i = 0; i < f->sections.length; i++) {
    Section* s = SECTION(f, i);
    if (s->name_len == len && memcmp(f->bytes.base + s->name, name, len) == 0) return (i32)i;
  }
  return -1;
}

// ---- versions ------------------------------------------------------------------------

static int add_version(ElfFile* f, Version* v) {
  if ((u32)v->index >= MAX_VERSIONS) { free(v); return ELF_BAD_VERSION; } // (never: a u16 index)
  if ((u32)v->index >= f->version_slot_len) {
    u32 len = (u32)v->index + 1 > f->version_slot_len * 2 ? (u32)v->index + 1 : f->version_slot_len * 2;
    u16* grown = calloc(len, 2);
    memcpy(grown, f->version_slot, f->version_slot_len * 2);
    free(f->version_slot);
    f->version_slot = grown;
    f->version_slot_len = len;
  }
  if (f->version_slot[v->index] != 0) { free(v); return ELF_BAD_VERSION; }
  push(&f->versions, v);
  f->version_slot[v->index] = (u16)f->versions.length;
  return 0;
}

static Version* version_of(ElfFile* f, u16 index) {
  if (index >= f->version_slot_len) return NULL;
  u16 slot = f->version_slot[index];
  return slot == 0 ? NULL : f->versions.items[slot - 1];
}

static int read_verdef(ElfFile* f, u64 off, u64 size, u32 count, u64 str_off, u64 str_size) {
  const Bytes* b = &f->bytes;
  if (count > MAX_VERSIONS) return ELF_BAD_VERSION;
  u64 p = off;
  for (u32 i = 0; i < count; i++) {
    if (p < off || !in_range(b, p, VERDEF_SIZE) || p + VERDEF_SIZE > off + size) return ELF_BAD_VERSION;
    u16 flags = b_u16(b, p + 2), ndx = b_u16(b, p + 4);
    u32 aux = b_u32(b, p + 12), next = b_u32(b, p + 16);
    u64 a = p + aux;
    if (!in_range(b, a, VERDAUX_SIZE) || a + VERDAUX_SIZE > off + size) return ELF_BAD_VERSION;
    i64 at = f_str(f, str_off, str_size, b_u32(b, a));
    if (at < 0) return ELF_BAD_STRING;
    Version* v = calloc(1, sizeof *v);
    v->index = ndx & ~VERSYM_HIDDEN;
    v->name = (u32)at;
    v->name_len = found_len;
    v->is_def = true;
    v->is_base = (flags & VER_FLG_BASE) != 0;
    int r = add_version(f, v);
    if (r) return r;
    if (next == 0) break;
    p += next;
  }
  return 0;
}

static int read_verneed(ElfFile* f, u64 off, u64 size, u32 count, u64 str_off, u64 str_size) {
  const Bytes* b = &f->bytes;
  if (count > MAX_VERSIONS) return ELF_BAD_VERSION;
  u64 end = off + size, p = off;
  u32 budget = MAX_VERSIONS;
  for (u32 i = 0; i < count; i++) {
    if (p < off || !in_range(b, p, VERNEED_SIZE) || p + VERNEED_SIZE > end) return ELF_BAD_VERSION;
    u32 cnt = b_u16(b, p + 2);
    i64 file = f_str(f, str_off, str_size, b_u32(b, p + 4));
    if (file < 0) return ELF_BAD_STRING;
    u32 file_len = found_len;
    u64 a = p + b_u32(b, p + 8);
    for (u32 j = 0; j < cnt; j++) {
      if (budget-- == 0) return ELF_BAD_VERSION;
      if (a < off || !in_range(b, a, VERNAUX_SIZE) || a + VERNAUX_SIZE > end) return ELF_BAD_VERSION;
      i64 at = f_str(f, str_off, str_size, b_u32(b, a + 8));
      if (at < 0) return ELF_BAD_STRING;
      Version* v = calloc(1, sizeof *v);
      v->index = b_u16(b, a + 6) & ~VERSYM_HIDDEN;
      v->name = (u32)at;
      v->name_len = found_len;
      v->file = (u32)file;
      v->file_len = file_len;
      int r = add_version(f, v);
      if (r) return r;
      u32 next = b_u32(b, a + 12);
      if (next == 0) break;
      a += next;
    }
    u32 next = b_u32(b, p + 12);
    if (next == 0) break;
    p += next;
  }
  return 0;
}

// ---- tables from sections --------------------------------------------------------------

static u32 relr_count(const Bytes* b, u64 off, u32 words) {
  u32 n = 0;
  for (u32 i = 0; i < words; i++) {
    u64 w = b_u64(b, off + (u64)i * 8);
    n += (w & 1) == 0 ? 1 : (u32)__builtin_popcountll(w) - 1;
  }
  return n;
}

static int check_rela_symbols(ElfFile* f, RelaTable* t) {
  SymTable* st = f->symtabs[t->symtab];
  u32 nsym = st ? st->count : 0;
  const Bytes* b = &f->bytes;
  for (u32 j = 0; j < t->count; j++) {
    u32 sym = (u32)(b_u64(b, t->offset + (u64)j * RELA_SIZE + 8) >> 32);
    if (sym != 0 && sym >= nsym) return ELF_BAD_RELOCATION;
  }
  return 0;
}

static int check_symbols(ElfFile* f) {
  const Bytes* b = &f->bytes;
  u32 nsec = f->sections.length;
  for (u32 k = 0; k < 2; k++) {
    SymTable* t = f->symtabs[k];
    if (!t) continue;
    t->name_lens = malloc((size_t)t->count * 4 + 4);
    for (u32 i = 0; i < t->count; i++) {
      u64 o = t->offset + (u64)i * SYM_SIZE;
      if (f_str(f, t->str_offset, t->str_size, b_u32(b, o)) < 0) return ELF_BAD_STRING;
      t->name_lens[i] = found_len;
      u16 shndx = b_u16(b, o + 6);
      if (shndx == SHN_XINDEX) {
        if (t->shndx < 0) return ELF_BAD_SYMBOL;
        if (b_u32(b, (u64)t->shndx + (u64)i * 4) >= nsec) return ELF_BAD_SYMBOL;
      } else if (shndx < SHN_LORESERVE && nsec != 0 && (u32)shndx >= nsec) {
        return ELF_BAD_SYMBOL;
      }
      if (t->versym >= 0) {
        u16 v = b_u16(b, (u64)t->versym + (u64)i * 2) & ~VERSYM_HIDDEN;
        if (v > VER_NDX_GLOBAL && version_of(f, v) == NULL) return ELF_BAD_VERSION;
      }
    }
  }
  return 0;
}

static void build_version_words(ElfFile* f) {
  u32 n = f->version_slot_len;
  f->version_words = calloc((size_t)n * 4 + 4, 4);
  f->version_words_len = n * 4;
  for (u32 k = 0; k < n; k++) {
    Version* v = version_of(f, (u16)k);
    if (!v) continue;
    f->version_words[4 * k] = (u32)(uintptr_t)(f->bytes.base + v->name);
    f->version_words[4 * k + 1] = v->name_len;
    if (!v->is_def) {
      f->version_words[4 * k + 2] = (u32)(uintptr_t)(f->bytes.base + v->file);
      f->version_words[4 * k + 3] = v->file_len;
    }
  }
}

static int tables_from_sections(ElfFile* f) {
  u32 n = f->sections.length;
  for (u32 i = 0; i < n; i++) {
    Section* s = SECTION(f, i);
    if (s->type == SHT_SYMTAB || s->type == SHT_DYNSYM) {
      u32 kind = s->type == SHT_SYMTAB ? 0 : 1;
      if (f->symtabs[kind]) return ELF_BAD_SECTION;
      if (s->size % SYM_SIZE != 0) return ELF_BAD_SYMBOL;
      Section* strs = SECTION(f, s->link);
      if (strs->type != SHT_STRTAB || !strs->has_data) return ELF_BAD_SECTION;
      SymTable* t = calloc(1, sizeof *t);
      t->kind = kind;
      t->offset = s->offset;
      t->count = (u32)(s->size / SYM_SIZE);
      t->str_offset = strs->offset;
      t->str_size = strs->size;
      t->first_global = s->info;
      t->versym = -1;
      t->shndx = -1;
      t->section = (i32)i;
      f->symtabs[kind] = t;
    }
  }
  for (u32 i = 0; i < n; i++) {
    Section* s = SECTION(f, i);
    if (s->type == SHT_SYMTAB_SHNDX) {
      SymTable* t = f->symtabs[0];
      if (!t || t->section != (i32)s->link || s->size < (u64)t->count * 4) return ELF_BAD_SECTION;
      t->shndx = (i64)s->offset;
    } else if (s->type == SHT_GNU_VERSYM) {
      SymTable* t = f->symtabs[1];
      if (!t || s->size < (u64)t->count * 2) return ELF_BAD_VERSION;
      t->versym = (i64)s->offset;
    }
  }
  for (u32 i = 0; i < n; i++) {
    Section* s = SECTION(f, i);
    if (s->type != SHT_GNU_VERDEF && s->type != SHT_GNU_VERNEED) continue;
    Section* strs = SECTION(f, s->link);
    if (strs->type != SHT_STRTAB || !strs->has_data) return ELF_BAD_VERSION;
    int r = s->type == SHT_GNU_VERDEF ? read_verdef(f, s->offset, s->size, s->info, strs->offset, strs->size)
                                      : read_verneed(f, s->offset, s->size, s->info, strs->offset, strs->size);
    if (r) return r;
  }
  for (u32 i = 0; i < n; i++) {
    Section* s = SECTION(f, i);
    if (s->type == SHT_REL) return ELF_UNSUPPORTED;
    if (s->type == SHT_RELR) {
      if (s->size % RELR_SIZE != 0) return ELF_BAD_RELOCATION;
      RelaTable* t = calloc(1, sizeof *t);
      t->kind = 3;
      t->offset = s->offset;
      t->words = (u32)(s->size / RELR_SIZE);
      t->count = relr_count(&f->bytes, s->offset, t->words);
      t->section = (i32)i;
      t->target = -1;
      t->symtab = 1;
      push(&f->relas, t);
      continue;
    }
    if (s->type != SHT_RELA) continue;
    if (s->size % RELA_SIZE != 0) return ELF_BAD_RELOCATION;
    RelaTable* t = calloc(1, sizeof *t);
    t->kind = 0;
    t->offset = s->offset;
    t->count = (u32)(s->size / RELA_SIZE);
    t->section = (i32)i;
    bool has_target = (s->flags & SHF_INFO_LINK) != 0 || f->type == 1;
    if (has_target && s->info >= n) { free(t); return ELF_BAD_RELOCATION; }
    t->target = has_target ? (i32)s->info : -1;
    if (s->link == 0) {
      t->symtab = 1;
    } else {
      Section* st = SECTION(f, s->link);
      if (st->type == SHT_SYMTAB) t->symtab = 0;
      else if (st->type == SHT_DYNSYM) t->symtab = 1;
      else { free(t); return ELF_BAD_RELOCATION; }
    }
    int r = check_rela_symbols(f, t);
    if (r) { free(t); return r; }
    push(&f->relas, t);
  }
  for (u32 i = 0; i < n; i++) {
    Section* s = SECTION(f, i);
    if (s->type == SHT_DYNAMIC && s->has_data) {
      f->dynamic_offset = (i64)s->offset;
      f->dynamic_count = (u32)(s->size / DYN_SIZE);
      break;
    }
  }
  int r = check_symbols(f);
  if (!r) build_version_words(f);
  return r;
}

// ---- notes, .eh_frame ------------------------------------------------------------------

static int scan_notes(ElfFile* f, u64 off, u64 size, u64 align) {
  const Bytes* b = &f->bytes;
  u64 a = align == 8 ? 8 : 4, p = 0;
  while (p + 12 <= size) {
    u64 namesz = b_u32(b, off + p), descsz = b_u32(b, off + p + 4);
    u32 type = b_u32(b, off + p + 8);
    u64 name_off = p + 12;
    u64 desc_off = (name_off + namesz + a - 1) & ~(a - 1);
    u64 end = (desc_off + descsz + a - 1) & ~(a - 1);
    if (namesz > size || descsz > size || desc_off + descsz > size || name_off + namesz > size) return ELF_BAD_NOTE;
    if (type == NT_GNU_BUILD_ID && namesz == 4 && b_u32(b, off + name_off) == 0x00554e47) {
      f->build_id = (i64)(off + desc_off);
      f->build_id_len = (u32)descsz;
      return 0;
    }
    p = end;
  }
  return 0;
}

static int find_build_id(ElfFile* f) {
  for (u32 i = 0; i < f->sections.length; i++) {
    Section* s = SECTION(f, i);
    if (s->type == SHT_NOTE && s->has_data) {
      int r = scan_notes(f, s->offset, s->size, s->align);
      if (r || f->build_id >= 0) return r;
    }
  }
  return 0;
}

static int find_eh_frame(ElfFile* f) {
  i32 e = section_by_name(f, ".eh_frame");
  if (e >= 0 && SECTION(f, e)->has_data) {
    Section* s = SECTION(f, e);
    f->eh_frame_addr = s->addr;
    f->eh_frame_offset = (i64)s->offset;
    f->eh_frame_size = s->size;
  }
  i32 h = section_by_name(f, ".eh_frame_hdr");
  if (h >= 0 && SECTION(f, h)->has_data) {
    Section* s = SECTION(f, h);
    f->eh_frame_hdr_addr = s->addr;
    f->eh_frame_hdr_offset = (i64)s->offset;
    f->eh_frame_hdr_size = s->size;
  }
  return 0;
}

static void elf_close(ElfFile* f) {
  free_all(&f->sections);
  free_all(&f->segments);
  free_all(&f->relas);
  free_all(&f->versions);
  for (u32 i = 0; i < f->nul_indexes.length; i++) free(((NulIndex*)f->nul_indexes.items[i])->nuls);
  free_all(&f->nul_indexes);
  for (int k = 0; k < 2; k++) {
    if (f->symtabs[k]) free(f->symtabs[k]->name_lens);
    free(f->symtabs[k]);
  }
  free(f->version_slot);
  free(f->version_words);
  free(f);
}

static ElfFile* elf_open(const u8* ptr, u64 len, int* code) {
  ElfFile* f = calloc(1, sizeof *f);
  f->bytes.base = ptr;
  f->bytes.length = len;
  f->dynamic_offset = -1;
  f->build_id = -1;
  f->eh_frame_offset = f->eh_frame_hdr_offset = -1;
  f->tls_segment = -1;
  f->scan_budget = 8 * len + (1 << 20);
  int r = read_header(f);
  if (!r) r = read_segments(f);
  if (!r && f->shoff == 0) r = ELF_UNSUPPORTED; // the dynamic-segment path is not mirrored
  if (!r) r = read_sections(f);
  if (!r) r = tables_from_sections(f);
  if (!r) r = find_build_id(f);
  if (!r) r = find_eh_frame(f);
  *code = r;
  if (r) {
    elf_close(f);
    return NULL;
  }
  return f;
}

// ---- elf_symbols: 48-byte records (docs/core-abi.md) ------------------------------------

static void elf_symbols(ElfFile* f, u32 table, u32 first, u32 count, u8* out) {
  SymTable* t = f->symtabs[table];
  const u8* base = f->bytes.base;
  const u8* syms = base + t->offset;
  const u8* versym = t->versym < 0 ? NULL : base + t->versym;
  const u8* xindex = t->shndx < 0 ? NULL : base + t->shndx;
  for (u32 i = 0; i < count; i++) {
    u32 idx = first + i;
    const u8* so = syms + (size_t)idx * SYM_SIZE;
    u8* o = out + (size_t)i * 48;
    u32 v32 = (u32)(uintptr_t)(base + t->str_offset + ld32(so)); // validated at open, its length measured then
    memcpy(o, &v32, 4);
    memcpy(o + 4, &t->name_lens[idx], 4);
    memcpy(o + 8, so + 8, 8);
    memcpy(o + 16, so + 16, 8);
    o[24] = so[4];
    o[25] = so[5];
    u16 vs = versym ? ld16(versym + (size_t)idx * 2) : VER_NDX_GLOBAL;
    memcpy(o + 26, &vs, 2);
    u16 raw = ld16(so + 6);
    u32 shndx = raw == SHN_XINDEX ? ld32(xindex + (size_t)idx * 4) : raw;
    memcpy(o + 28, &shndx, 4);
    u32 k = vs & 0x7fff;
    if (k > 1 && k * 4 < f->version_words_len) memcpy(o + 32, f->version_words + 4 * k, 16);
    else memset(o + 32, 0, 16);
  }
}

// ---- the benchmark -------------------------------------------------------------------------

enum { CHUNK = 4096 };

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

static double median(double* t, int n) {
  qsort(t, n, sizeof *t, cmp_double);
  return t[n / 2];
}

/** Reads every symbol record of both tables in chunks; returns a checksum of the records (not of their pointers). */
static u64 read_symbols(ElfFile* f, u8* out, u64* records) {
  u64 sum = 0;
  *records = 0;
  for (u32 table = 0; table < 2; table++) {
    SymTable* t = f->symtabs[table];
    if (!t) continue;
    for (u32 first = 0; first < t->count; first += CHUNK) {
      u32 n = t->count - first < CHUNK ? t->count - first : CHUNK;
      elf_symbols(f, table, first, n, out);
      for (u32 i = 0; i < n; i++) {
        const u8* o = out + (size_t)i * 48;
        u32 nl, sh, vl, fl;
        u64 val, size;
        u16 vs;
        memcpy(&nl, o + 4, 4); memcpy(&val, o + 8, 8); memcpy(&size, o + 16, 8); memcpy(&vs, o + 26, 2);
        memcpy(&sh, o + 28, 4); memcpy(&vl, o + 36, 4); memcpy(&fl, o + 44, 4);
        sum += nl + val + size + o[24] + o[25] + vs + sh + vl + fl;
      }
      *records += n;
    }
  }
  return sum;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: elf FILE RUNS\n");
    return 2;
  }
  int fd = open(argv[1], O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) { perror(argv[1]); return 2; }
  // Read into memory (as the Wasm core has its input in linear memory), not mmap'd lazily.
  u8* data = malloc(st.st_size);
  if (pread(fd, data, st.st_size, 0) != st.st_size) { perror("read"); return 2; }
  close(fd);
  int runs = atoi(argv[2]);
  if (runs < 1) runs = 1;
  double* t_open = malloc(sizeof(double) * runs);
  double* t_syms = malloc(sizeof(double) * runs);
  u8* out = malloc(CHUNK * 48);
  int code;
  ElfFile* f = NULL;
  u64 sum = 0, records = 0;
  for (int r = -1; r < runs; r++) { // r = -1: warm-up
    double s = now_ms();
    ElfFile* g = elf_open(data, st.st_size, &code);
    double e = now_ms();
    if (!g) { printf("{\"error\":%d}\n", code); return 1; }
    elf_close(g);
    if (r >= 0) t_open[r] = e - s;
  }
  f = elf_open(data, st.st_size, &code);
  for (int r = -1; r < runs; r++) {
    double s = now_ms();
    sum = read_symbols(f, out, &records);
    double e = now_ms();
    if (r >= 0) t_syms[r] = e - s;
  }
  printf("{\"open_ms\":%.6f,\"symbols_ms\":%.6f,\"sections\":%u,\"segments\":%u,\"symtab\":%u,\"dynsym\":%u,\"relas\":%u,\"versions\":%u,"
         "\"dynamic\":%u,\"build_id_len\":%u,\"records\":%llu,\"sum\":\"%llu\"}\n",
         median(t_open, runs), median(t_syms, runs), f->sections.length, f->segments.length, f->symtabs[0] ? f->symtabs[0]->count : 0,
         f->symtabs[1] ? f->symtabs[1]->count : 0, f->relas.length, f->versions.length, f->dynamic_count, f->build_id >= 0 ? f->build_id_len : 0,
         (unsigned long long)records, (unsigned long long)sum);
  elf_close(f);
  free(data);
  return 0;
}
