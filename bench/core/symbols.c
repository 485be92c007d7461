// The symbol index of assembly/match (symbols.ts, hash.ts, sort.ts) in C, for
// bench/core/symbols.ts: the same algorithm and the same data layout (16-byte name
// records with chained buckets, 16-byte meta records, the radix-sorted address table
// with `up` links), reading the same ELF file itself. Built with gcc -O2 at bench time.
//
//   symbols FILE TABLE QUERIES RUNS
//     TABLE    0 .symtab, 1 .dynsym, 2 .symtab if present else .dynsym
//     QUERIES  u32 nNames, u32 nAddrs, then nNames x (u32 len, bytes), then nAddrs x u64
//   prints one JSON line: medians in ms of building the index, of nNames finds and of
//   nAddrs address lookups, and checksums of the answers (compared with the Wasm core's).
#define _GNU_SOURCE
#include <elf.h>
#include <fcntl.h>
#include <malloc.h>
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

#define LD(T, p, off) (*(const T *)((const u8 *)(p) + (off)))
static inline u64 ld64(const void *p) { u64 v; memcpy(&v, p, 8); return v; }
static inline u32 ld32(const void *p) { u32 v; memcpy(&v, p, 4); return v; }
static inline u16 ld16(const void *p) { u16 v; memcpy(&v, p, 2); return v; }

// ---- hash.ts ----------------------------------------------------------------------
#define K 0x9e3779b97f4a7c15ull
#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
#define DOTS 0x2e2e2e2e2e2e2e2eull
#define ATS 0x4040404040404040ull

static inline u64 rotl64(u64 x, int r) { return (x << r) | (x >> (64 - r)); }
static inline u64 mix(u64 h, u64 w) { return (rotl64(h, 5) ^ w) * K; }
static inline u32 finish(u64 h, u64 len) { u64 x = mix(h, len); return (u32)x ^ (u32)(x >> 32); }
static inline u64 zero_bytes(u64 w) { return (w - ONES) & ~w & HIGHS; }

static inline u64 tail_word(const u8 *p, size_t rem) {
  if (rem >= 4) return (u64)ld32(p) | ((u64)ld32(p + rem - 4) << ((rem - 4) << 3));
  size_t mid = rem >> 1;
  return (u64)p[0] | ((u64)p[mid] << (mid << 3)) | ((u64)p[rem - 1] << ((rem - 1) << 3));
}

static u32 hash_name(const u8 *p, size_t len) {
  u64 h = 0;
  size_t i = 0;
  while (i + 8 <= len) { h = mix(h, ld64(p + i)); i += 8; }
  if (i < len) h = mix(h, tail_word(p + i, len - i));
  return finish(h, len);
}

static u32 scan_len;
static int scan_dot, scan_at;

static u32 scan_name(const u8 *p, const u8 *end) {
  u64 h = 0, dots = 0, ats = 0;
  const u8 *q = p;
  while (q + 8 <= end) {
    u64 w = ld64(q);
    u64 z = zero_bytes(w);
    dots |= zero_bytes(w ^ DOTS);
    ats |= zero_bytes(w ^ ATS);
    if (z) {
      size_t k = __builtin_ctzll(z) >> 3;
      if (k) h = mix(h, w & ((1ull << (k << 3)) - 1));
      size_t len = (size_t)(q - p) + k;
      scan_len = (u32)len;
      scan_dot = dots != 0;
      scan_at = ats != 0;
      return finish(h, len);
    }
    h = mix(h, w);
    q += 8;
  }
  u64 w = 0;
  size_t k = 0;
  while (q + k < end) {
    u8 c = q[k];
    if (!c) break;
    if (c == 0x2e) dots = 1;
    if (c == 0x40) ats = 1;
    w |= (u64)c << (k << 3);
    k++;
  }
  if (k) h = mix(h, w);
  size_t len = (size_t)(q - p) + k;
  scan_len = (u32)len;
  scan_dot = dots != 0;
  scan_at = ats != 0;
  return finish(h, len);
}

static inline int same_bytes(const u8 *a, const u8 *b, size_t len) {
  size_t i = 0;
  while (i + 8 <= len) { if (ld64(a + i) != ld64(b + i)) return 0; i += 8; }
  if (i < len) return tail_word(a + i, len - i) == tail_word(b + i, len - i);
  return 1;
}

// ---- sort.ts ----------------------------------------------------------------------
static void insertion_sort16(u8 *recs, u32 n) {
  for (u32 i = 1; i < n; i++) {
    u64 k = ld64(recs + ((size_t)i << 4)), v = ld64(recs + ((size_t)i << 4) + 8);
    u32 j = i;
    while (j > 0 && ld64(recs + ((size_t)(j - 1) << 4)) > k) {
      memcpy(recs + ((size_t)j << 4), recs + ((size_t)(j - 1) << 4), 16);
      j--;
    }
    memcpy(recs + ((size_t)j << 4), &k, 8);
    memcpy(recs + ((size_t)j << 4) + 8, &v, 8);
  }
}

static void radix_sort16(u8 *recs, u8 *tmp, u32 *counts, u32 n) {
  if (n < 2) return;
  if (n <= 32) { insertion_sort16(recs, n); return; }
  u64 lo = ld64(recs), hi = lo;
  for (u32 i = 1; i < n; i++) {
    u64 k = ld64(recs + ((size_t)i << 4));
    if (k < lo) lo = k;
    if (k > hi) hi = k;
  }
  u64 span = hi - lo;
  if (!span) return;
  u32 bits = 64 - __builtin_clzll(span);
  u32 passes = (bits + 10) / 11;
  memset(counts, 0, (size_t)passes * 2048 * 4);
  for (u32 i = 0; i < n; i++) {
    u64 k = ld64(recs + ((size_t)i << 4)) - lo;
    for (u32 p = 0; p < passes; p++) counts[p * 2048 + ((k >> (p * 11)) & 2047)]++;
  }
  u8 *src = recs, *dst = tmp;
  for (u32 p = 0; p < passes; p++) {
    u32 *cp = counts + p * 2048, shift = p * 11, sum = 0;
    for (u32 d = 0; d < 2048; d++) { u32 v = cp[d]; cp[d] = sum; sum += v; }
    for (u32 i = 0; i < n; i++) {
      const u8 *s = src + ((size_t)i << 4);
      u64 k = ld64(s);
      u32 at = cp[((k - lo) >> shift) & 2047]++;
      memcpy(dst + ((size_t)at << 4), s, 16);
    }
    u8 *t = src; src = dst; dst = t;
  }
  if (src != recs) memcpy(recs, src, (size_t)n << 4);
}

// ---- ELF (only what the index reads) ----------------------------------------------
typedef struct {
  const u8 *base;
  size_t len;
  int is_rel;
  const Elf64_Shdr *sh;
  u32 nsec;
  const Elf64_Phdr *ph;
  u32 nseg;
  const u8 *syms;
  u32 nsym;
  const u8 *str;
  size_t strsize;
  const u32 *xindex;
} Elf;

static int elf_open(Elf *e, const u8 *b, size_t len, int table) {
  memset(e, 0, sizeof *e);
  e->base = b;
  e->len = len;
  const Elf64_Ehdr *h = (const Elf64_Ehdr *)b;
  if (len < sizeof *h || memcmp(h->e_ident, ELFMAG, 4)) return -1;
  e->is_rel = h->e_type == ET_REL;
  e->sh = (const Elf64_Shdr *)(b + h->e_shoff);
  e->nsec = h->e_shnum;
  e->ph = (const Elf64_Phdr *)(b + h->e_phoff);
  e->nseg = h->e_phnum;
  int want = table == 1 ? SHT_DYNSYM : SHT_SYMTAB;
  int found = -1;
  for (u32 i = 0; i < e->nsec; i++) if (e->sh[i].sh_type == (u32)want) found = (int)i;
  if (found < 0 && table == 2)
    for (u32 i = 0; i < e->nsec; i++) if (e->sh[i].sh_type == SHT_DYNSYM) found = (int)i;
  if (found < 0) return -1;
  const Elf64_Shdr *s = &e->sh[found];
  e->syms = b + s->sh_offset;
  e->nsym = (u32)(s->sh_size / 24);
  e->str = b + e->sh[s->sh_link].sh_offset;
  e->strsize = e->sh[s->sh_link].sh_size;
  for (u32 i = 0; i < e->nsec; i++)
    if (e->sh[i].sh_type == SHT_SYMTAB_SHNDX && e->sh[i].sh_link == (u32)found) e->xindex = (const u32 *)(b + e->sh[i].sh_offset);
  return 0;
}

// ---- symbols.ts -------------------------------------------------------------------
#define PIECE_WHOLE 0u
#define PIECE_COLD 1u
#define PIECE_PART 2u
#define PIECE_DOT 4u
#define NONE64 UINT64_MAX
#define REL_SHIFT 40

typedef struct {
  Elf *f;
  u32 n;
  int is_rel;
  const u8 *sym_base, *str_base, *str_end;
  u8 *names;  // n x 16
  u32 *buckets;
  u32 mask;
  u8 *meta;   // n x 16
  u32 m;
  u64 *keys;
  u8 *ents;   // m x 16
} Index;

static inline const u8 *sym(const Index *x, u32 id) { return x->sym_base + (size_t)id * 24; }
static inline u8 stype(const Index *x, u32 id) { return sym(x, id)[4] & 15; }
static inline u8 sbind(const Index *x, u32 id) { return sym(x, id)[4] >> 4; }
static inline u64 svalue(const Index *x, u32 id) { return ld64(sym(x, id) + 8); }
static inline u64 ssize(const Index *x, u32 id) { return ld64(sym(x, id) + 16); }
static inline u32 sshndx(const Index *x, u32 id) {
  u16 s = ld16(sym(x, id) + 6);
  if (s == SHN_XINDEX) return x->f->xindex[id];
  return s;
}
static inline const u8 *name_ptr(const Index *x, u32 id) { return x->str_base + ld32(x->names + ((size_t)id << 4) + 8); }
static inline u32 name_len(const Index *x, u32 id) { return ld32(x->names + ((size_t)id << 4) + 12); }
static inline u32 *meta32(const Index *x, u32 id, int field) { return (u32 *)(x->meta + ((size_t)id << 4) + field * 4); }

static void build_names(Index *x) {
  u32 n = x->n, nb = 16;
  while (nb < n && nb < 0x40000000) nb <<= 1;
  x->mask = nb - 1;
  x->buckets = calloc(nb, 4);
  x->names = malloc(n ? (size_t)n << 4 : 16);
  x->meta = calloc(n ? n : 1, 16);
  for (i32 i = (i32)n - 1; i >= 0; i--) {
    const u8 *s = x->sym_base + (size_t)i * 24;
    u32 off = ld32(s);
    const u8 *p = x->str_base + off;
    u8 *r = x->names + ((size_t)i << 4);
    u32 h = scan_name(p, x->str_end);
    u32 len = scan_len;
    u8 type = s[4] & 15;
    if (scan_at && type != STT_SECTION && type != STT_FILE) {
      for (u32 k = 1; k < len; k++)
        if (p[k] == 0x40) { len = k; h = hash_name(p, k); break; }
    }
    // The Wasm record holds a pointer into linear memory; here the string-table offset
    // (the same 4 bytes, the same loads).
    memcpy(r, &h, 4);
    memcpy(r + 8, &off, 4);
    memcpy(r + 12, &len, 4);
    if (len == 0 || type == STT_SECTION || type == STT_FILE) { memset(r + 4, 0, 4); continue; }
    if (scan_dot) *meta32(x, (u32)i, 3) = PIECE_DOT;
    u32 *b = &x->buckets[h & x->mask];
    memcpy(r + 4, b, 4);
    *b = (u32)i + 1;
  }
}

static void build_meta(Index *x) {
  u32 cur = 0;
  for (u32 i = 0; i < x->n; i++) {
    const u8 *s = sym(x, i);
    u8 type = s[4] & 15, bind = s[4] >> 4;
    if (bind != STB_LOCAL) continue;
    if (type == STT_FILE) { cur = i + 1; continue; }
    *meta32(x, i, 0) = cur;
    if (type == STT_SECTION) continue;
    const u8 *r = x->names + ((size_t)i << 4);
    u32 len = ld32(r + 12);
    if (!len || *meta32(x, i, 1)) continue;
    u32 h = ld32(r);
    const u8 *p = x->str_base + ld32(r + 8);
    u32 pos = 0, j = i + 1;
    while (j) {
      u32 id = j - 1;
      const u8 *q = x->names + ((size_t)id << 4);
      if (ld32(q) == h && ld32(q + 12) == len && sbind(x, id) == STB_LOCAL && same_bytes(x->str_base + ld32(q + 8), p, len))
        *meta32(x, id, 1) = ++pos;
      j = ld32(q + 4);
    }
  }
}

static u32 find_root(Index *x, u32 piece, const u8 *p, size_t len) {
  u32 h = hash_name(p, len), file = *meta32(x, piece, 0), global = 0, any = 0;
  u32 j = x->buckets[h & x->mask];
  while (j) {
    u32 id = j - 1;
    const u8 *q = x->names + ((size_t)id << 4);
    if (ld32(q) == h && ld32(q + 12) == len && same_bytes(x->str_base + ld32(q + 8), p, len)) {
      u8 t = stype(x, id);
      if ((t == STT_FUNC || t == STT_GNU_IFUNC) && sshndx(x, id) != SHN_UNDEF) {
        if (sbind(x, id) == STB_LOCAL) {
          if (file && *meta32(x, id, 0) == file) return j;
        } else if (!global) global = j;
        if (!any) any = j;
      }
    }
    j = ld32(q + 4);
  }
  return global ? global : any;
}

static void build_pieces(Index *x) {
  for (u32 i = 0; i < x->n; i++) {
    u32 *pw = meta32(x, i, 3);
    if (!(*pw & PIECE_DOT)) continue;
    if (stype(x, i) != STT_FUNC) { *pw = 0; continue; }
    const u8 *p = name_ptr(x, i);
    size_t len = name_len(x, i), first = 0;
    u32 kind = PIECE_WHOLE;
    for (size_t k = 1; k + 1 < len; k++) {
      if (p[k] != 0x2e) continue;
      size_t rest = len - k;
      if (rest >= 5 && ld32(p + k + 1) == 0x646c6f63 && (rest == 5 || p[k + 5] == 0x2e)) {
        kind = PIECE_COLD;
        if (!first) first = k;
      } else if (rest >= 7 && ld32(p + k + 1) == 0x74726170 && p[k + 5] == 0x2e && (u32)p[k + 6] - 0x30 < 10) {
        kind = PIECE_PART;
        if (!first) first = k;
      }
    }
    if (kind == PIECE_WHOLE) { *pw = 0; continue; }
    *pw = kind | ((u32)first << 3);
    *meta32(x, i, 2) = find_root(x, i, p, first);
  }
}

static int is_function(Index *x, u32 id) {
  u8 t = stype(x, id);
  if (t != STT_FUNC && t != STT_GNU_IFUNC) return 0;
  u16 raw = ld16(sym(x, id) + 6);
  if (raw == SHN_UNDEF || (raw >= SHN_LORESERVE && raw != SHN_XINDEX)) return 0;
  if (x->is_rel && sshndx(x, id) >= x->f->nsec) return 0;
  return 1;
}

static u64 key_of(Index *x, u32 id, u32 shndx) {
  u64 v = svalue(x, id);
  if (!x->is_rel) return v;
  if (v >= (1ull << REL_SHIFT)) return NONE64;
  return ((u64)shndx << REL_SHIFT) | v;
}

static u64 cap_of(Index *x, u32 id, u64 key) {
  Elf *f = x->f;
  u32 shndx = sshndx(x, id);
  if (x->is_rel) {
    u64 sz = f->sh[shndx].sh_size, lim = (1ull << REL_SHIFT) - 1;
    return (key & ~lim) + (sz < lim ? sz : lim);
  }
  if (f->nsec) {
    if (shndx >= f->nsec) return NONE64;
    const Elf64_Shdr *s = &f->sh[shndx];
    if (key >= s->sh_addr && key - s->sh_addr < s->sh_size) return s->sh_addr + s->sh_size;
    return NONE64;
  }
  for (u32 i = 0; i < f->nseg; i++) {
    const Elf64_Phdr *s = &f->ph[i];
    if (s->p_type == PT_LOAD && key >= s->p_vaddr && key - s->p_vaddr < s->p_memsz) return s->p_vaddr + s->p_memsz;
  }
  return NONE64;
}

static u64 preference(Index *x, u32 id) {
  u8 b = sbind(x, id);
  u64 bind_rank = b == STB_GLOBAL || b == STB_GNU_UNIQUE ? 2 : b == STB_WEAK ? 1 : 0;
  const u8 *p = name_ptr(x, id);
  u32 len = name_len(x, id), u = 0;
  while (u < len && u < 15 && p[u] == 0x5f) u++;
  u64 sized = ssize(x, id) != 0;
  return (sized << 44) | (bind_rank << 40) | ((u64)(15 - u) << 32) | (u64)(0xffffffffu - id);
}

static inline int before(u64 ea, u64 pa, u64 eb, u64 pb) { return ea > eb || (ea == eb && pa < pb); }

static inline void swap24(u8 *a, u8 *b) { u8 t[24]; memcpy(t, a, 24); memcpy(a, b, 24); memcpy(b, t, 24); }

static void sift_down(u8 *w, u32 start, u32 len) {
  u32 root = start;
  for (;;) {
    u32 child = root * 2 + 1;
    if (child >= len) break;
    u8 *c = w + (size_t)child * 24;
    if (child + 1 < len) {
      u8 *d = c + 24;
      if (before(ld64(c), ld64(c + 8), ld64(d), ld64(d + 8))) child++;
    }
    u8 *r = w + (size_t)root * 24, *xx = w + (size_t)child * 24;
    if (!before(ld64(r), ld64(r + 8), ld64(xx), ld64(xx + 8))) break;
    swap24(r, xx);
    root = child;
  }
}

static void sort_run(Index *x, u8 *recs, u64 *ends, u32 first, u32 len, u8 *w) {
  for (u32 i = 0; i < len; i++) {
    u32 id = (u32)ld64(recs + ((size_t)(first + i) << 4) + 8);
    u8 *o = w + (size_t)i * 24;
    u64 e = ends[first + i], p = preference(x, id), idd = id;
    memcpy(o, &e, 8); memcpy(o + 8, &p, 8); memcpy(o + 16, &idd, 8);
  }
  if (len <= 16) {
    for (u32 i = 1; i < len; i++) {
      u32 j = i;
      while (j > 0) {
        u8 *a = w + (size_t)(j - 1) * 24, *b = a + 24;
        if (!before(ld64(b), ld64(b + 8), ld64(a), ld64(a + 8))) break;
        swap24(a, b);
        j--;
      }
    }
  } else {
    for (i32 s = (i32)(len >> 1) - 1; s >= 0; s--) sift_down(w, (u32)s, len);
    for (u32 end = len - 1; end > 0; end--) { swap24(w, w + (size_t)end * 24); sift_down(w, 0, end); }
  }
  u64 key = ld64(recs + ((size_t)first << 4));
  for (u32 i = 0; i < len; i++) {
    u8 *o = w + (size_t)i * 24;
    ends[first + i] = ld64(o);
    u8 *r = recs + ((size_t)(first + i) << 4);
    memcpy(r, &key, 8);
    memcpy(r + 8, o + 16, 8);
  }
}

static void nest(Index *x, u32 *stack) {
  u32 sp = 0;
  for (u32 i = 0; i < x->m; i++) {
    u64 key = x->keys[i];
    while (sp > 0 && ld64(x->ents + ((size_t)stack[sp - 1] << 4)) <= key) sp--;
    u32 up = sp > 0 ? stack[sp - 1] + 1 : 0;
    memcpy(x->ents + ((size_t)i << 4) + 12, &up, 4);
    stack[sp++] = i;
  }
}

static void build_addresses(Index *x) {
  u32 n = x->n, m0 = 0;
  u8 *recs = malloc(n ? (size_t)n << 4 : 16);
  u8 *tmp = malloc(n ? (size_t)n << 4 : 16);
  u32 *counts = malloc(6 * 2048 * 4);
  u32 k = 0;
  for (u32 i = 0; i < n; i++) {
    if (!is_function(x, i)) continue;
    u64 key = key_of(x, i, x->is_rel ? sshndx(x, i) : 0);
    if (key == NONE64) continue;
    u8 *r = recs + ((size_t)k << 4);
    u64 id = i;
    memcpy(r, &key, 8);
    memcpy(r + 8, &id, 8);
    k++;
  }
  m0 = k;
  radix_sort16(recs, tmp, counts, m0);
  free(counts);
  u64 *ends = (u64 *)tmp, next = NONE64;
  for (i32 j = (i32)m0 - 1; j >= 0; j--) {
    u8 *r = recs + ((size_t)j << 4);
    u64 key = ld64(r);
    if (j + 1 < (i32)m0) {
      u64 nk = ld64(recs + ((size_t)(j + 1) << 4));
      if (nk > key) next = nk;
    }
    u32 id = (u32)ld64(r + 8);
    u64 size = ssize(x, id), end;
    if (size) {
      end = key + size;
      if (end < key) end = NONE64;
    } else {
      u64 cap = cap_of(x, id, key);
      end = next < cap ? next : cap;
      if (end == NONE64) end = key;
      if (x->is_rel && (end >> REL_SHIFT) != (key >> REL_SHIFT)) end = key;
    }
    ends[j] = end;
  }
  u32 longest = 1, run = 1;
  for (u32 i = 1; i < m0; i++) {
    run = ld64(recs + ((size_t)i << 4)) == ld64(recs + ((size_t)(i - 1) << 4)) ? run + 1 : 1;
    if (run > longest) longest = run;
  }
  if (longest > 1) {
    u8 *w = malloc((size_t)longest * 24);
    u32 j = 0;
    while (j < m0) {
      u64 key = ld64(recs + ((size_t)j << 4));
      u32 e = j + 1;
      while (e < m0 && ld64(recs + ((size_t)e << 4)) == key) e++;
      if (e - j > 1) sort_run(x, recs, ends, j, e - j, w);
      j = e;
    }
    free(w);
  }
  u32 m = 0;
  for (u32 i = 0; i < m0; i++) if (ends[i] > ld64(recs + ((size_t)i << 4))) m++;
  x->m = m;
  x->keys = malloc(m ? (size_t)m << 3 : 8);
  x->ents = malloc(m ? (size_t)m << 4 : 16);
  u32 o = 0;
  for (u32 i = 0; i < m0; i++) {
    u64 key = ld64(recs + ((size_t)i << 4)), end = ends[i];
    if (end <= key) continue;
    x->keys[o] = key;
    u8 *en = x->ents + ((size_t)o << 4);
    u32 id = (u32)ld64(recs + ((size_t)i << 4) + 8);
    memcpy(en, &end, 8);
    memcpy(en + 8, &id, 4);
    o++;
  }
  free(recs);
  nest(x, (u32 *)tmp);
  free(tmp);
}

static void index_build(Index *x, Elf *f) {
  memset(x, 0, sizeof *x);
  x->f = f;
  x->n = f->nsym;
  x->is_rel = f->is_rel;
  x->sym_base = f->syms;
  x->str_base = f->str;
  x->str_end = f->str + f->strsize;
  build_names(x);
  build_meta(x);
  build_pieces(x);
  build_addresses(x);
}

static void index_free(Index *x) {
  free(x->names); free(x->buckets); free(x->meta); free(x->keys); free(x->ents);
}

static i32 find(const Index *x, const u8 *p, u32 len) {
  u32 h = hash_name(p, len);
  u32 j = x->buckets[h & x->mask];
  while (j) {
    const u8 *q = x->names + ((size_t)(j - 1) << 4);
    if (ld32(q) == h && ld32(q + 12) == len && same_bytes(x->str_base + ld32(q + 8), p, len)) return (i32)j - 1;
    j = ld32(q + 4);
  }
  return -1;
}

static i32 entry_at(const Index *x, u64 key) {
  u32 m = x->m;
  if (!m || key == NONE64 || x->keys[0] > key) return -1;
  u32 base = 0, len = m;
  while (len > 1) {
    u32 half = len >> 1;
    u32 le = x->keys[base + half] <= key;
    base += half & (0 - le);
    len -= half;
  }
  u32 e = base + 1;
  while (e) {
    const u8 *en = x->ents + ((size_t)(e - 1) << 4);
    if (key < ld64(en)) return (i32)e - 1;
    e = ld32(en + 12);
  }
  return -1;
}

static i32 at(const Index *x, u64 addr) {
  i32 e = entry_at(x, addr);
  return e < 0 ? -1 : (i32)ld32(x->ents + ((size_t)e << 4) + 8);
}

// ---- driver ------------------------------------------------------------------------
// CPU time of the process, not wall time: on a shared machine a preempted run would
// otherwise count other processes' time (bench/core/symbols.ts measures the same way).
static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *t, int n) {
  qsort(t, n, sizeof *t, cmp_double);
  return t[n / 2];
}

static void *map_file(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) { perror(path); exit(1); }
  struct stat st;
  fstat(fd, &st);
  *len = st.st_size;
  void *p = mmap(NULL, *len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  close(fd);
  if (p == MAP_FAILED) { perror("mmap"); exit(1); }
  return p;
}

int main(int argc, char **argv) {
  if (argc != 5) { fprintf(stderr, "usage: symbols FILE TABLE QUERIES RUNS\n"); return 2; }
  // Keep freed memory in the process, as the Wasm core's allocator does: otherwise
  // glibc unmaps the large tables after each build and the next build faults them in
  // again (about 2000 page faults per build of node's index), timing the kernel.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  size_t len, qlen;
  const u8 *file = map_file(argv[1], &len);
  const u8 *qs = map_file(argv[3], &qlen);
  int runs = atoi(argv[4]);
  if (runs < 1 || runs > 100) runs = 5;
  Elf f;
  if (elf_open(&f, file, len, atoi(argv[2]))) { fprintf(stderr, "%s: no such symbol table\n", argv[1]); return 1; }
  u32 nn = ld32(qs), na = ld32(qs + 4);
  const u8 **np = malloc(sizeof *np * (nn ? nn : 1));
  u32 *nl = malloc(4 * (nn ? nn : 1));
  const u8 *q = qs + 8;
  for (u32 i = 0; i < nn; i++) { nl[i] = ld32(q); np[i] = q + 4; q += 4 + nl[i]; }
  const u64 *addrs = (const u64 *)q;

  double t[101];
  Index x;
  // Build: one warm-up, then `runs` timed builds (each freed), like bench/table.ts timeMs.
  index_build(&x, &f);
  index_free(&x);
  for (int r = 0; r < runs; r++) {
    double s = now_ms();
    index_build(&x, &f);
    t[r] = now_ms() - s;
    index_free(&x);
  }
  double build = median(t, runs);
  index_build(&x, &f);
  i32 *out = malloc(4 * ((nn > na ? nn : na) + 1));
  u64 sum_find = 0, sum_at = 0;
  for (int r = 0; r <= runs; r++) {
    double s = now_ms();
    for (u32 i = 0; i < nn; i++) out[i] = find(&x, np[i], nl[i]);
    if (r) t[r - 1] = now_ms() - s;
  }
  for (u32 i = 0; i < nn; i++) sum_find += (u64)(out[i] + 1);
  double tf = median(t, runs);
  for (int r = 0; r <= runs; r++) {
    double s = now_ms();
    for (u32 i = 0; i < na; i++) {
      u64 a;
      memcpy(&a, addrs + i, 8);
      out[i] = at(&x, a);
    }
    if (r) t[r - 1] = now_ms() - s;
  }
  for (u32 i = 0; i < na; i++) sum_at += (u64)(out[i] + 1);
  double ta = median(t, runs);
  printf("{\"build_ms\":%.4f,\"find_ms\":%.4f,\"at_ms\":%.4f,\"symbols\":%u,\"functions\":%u,\"sum_find\":%llu,\"sum_at\":%llu}\n",
         build, tf, ta, x.n, x.m, (unsigned long long)sum_find, (unsigned long long)sum_at);
  index_free(&x);
  return 0;
}
