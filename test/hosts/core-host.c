// core-host: the Wasm core run by a C program, the ABI's second host.
//
// core-portable.wasm is translated to C by wasm2c (test/core-host-c.test.ts does it at
// test time: `wasm2c -n core`, so every export is Z_coreZ_<name>) and linked with this
// file and wasm2c's runtime. Everything goes through docs/core-abi.md's contract and
// nothing else: numbers, and pointers into the exported memory, buffers from `alloc`.
// The output is text, one fact per line; the test computes the same lines in Node through
// src/core and compares.
//
//   core-host [--image BASE] FILE [NAME...]
//
//   info ...                        the 96-byte info record
//   section I NAME type=.. ...      every section record
//   segment I type=.. ...           every segment record
//   symbols T count=N digest=H      every symbol record of table T (0 .symtab, 1 .dynsym)
//   sym T I NAME[@[@]VER] ...       the symbols called NAME (each NAME on the command line)
//   version I ...                   every version record
//   dynamic count=N digest=H; needed NAME; soname NAME
//   relatable I kind=.. count=N digest=H
//   ehframe ...                     the unwind-table record
//   index table=T symbols=N ...     a symbol index (sym_index_new, best table)
//   find NAME ids=A,B,...           sym_find / sym_find_next; then `get` (sym_get) of the
//                                   first, `at` (sym_at) inside it when it is a sized function
//   bind NAME[@VER] ...             sym_scope_find over a one-module scope (index over .dynsym)
//   slots NAME[@VER] n=N ...        sym_slots_find (a linked file's GOT/PLT slots)
//   reloc ... / ref ... / plan ...  an ET_REL object relocated (reloc_*): every undefined
//   layout ... / window ...         symbol bound to an address (TLS ones to a module), laid
//   placed ... / got ... / stub ... out from RELOC_BASE, applied; the window's digest, the
//   value ...                       placement, GOT slots, stubs and resolved symbol values
//   truncated CODE MESSAGE          elf_open of the first 63 bytes: the error path
//
// Digests are FNV-1a 64 over one text line per record ("name\tversion\tfile\tvalue..."),
// so both hosts hash the same bytes.
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "wasm-rt-impl.h"

#define CORE(name) Z_coreZ_##name

struct Z_env_instance_t {
  Z_core_instance_t* core;
};

static Z_core_instance_t core;
static struct Z_env_instance_t env = {&core};

// The memory may grow (and move) during any call: always go through mem().
static uint8_t* mem(void) { return CORE(memory)(&core)->data; }
static uint32_t u32at(uint32_t p) { uint32_t v; memcpy(&v, mem() + p, 4); return v; }
static int32_t i32at(uint32_t p) { int32_t v; memcpy(&v, mem() + p, 4); return v; }
static uint16_t u16at(uint32_t p) { uint16_t v; memcpy(&v, mem() + p, 2); return v; }
static uint64_t u64at(uint32_t p) { uint64_t v; memcpy(&v, mem() + p, 8); return v; }
static int64_t i64at(uint32_t p) { int64_t v; memcpy(&v, mem() + p, 8); return v; }

// env.abort(msg, file, line, column): AssemblyScript strings are UTF-16LE with their byte
// length at ptr-4. It must not return: print and exit.
static void print_as_string(uint32_t p) {
  if (p == 0 || p < 4) return;
  uint32_t len = u32at(p - 4);
  for (uint32_t i = 0; i + 1 < len; i += 2) putchar(mem()[p + i]);
}

void Z_envZ_abort(struct Z_env_instance_t* e, u32 msg, u32 file, u32 line, u32 col) {
  (void)e;
  printf("abort ");
  print_as_string(msg);
  printf(" at ");
  print_as_string(file);
  printf(":%u:%u\n", line, col);
  exit(70);
}

static void die(const char* what) {
  uint32_t p = CORE(core_error_message)(&core);
  uint32_t n = CORE(core_error_message_len)(&core);
  printf("error %s: %u %.*s\n", what, CORE(core_error_code)(&core), (int)n, (const char*)mem() + p);
  exit(1);
}

// ---- digests -------------------------------------------------------------------

typedef struct { uint64_t h; } digest_t;
static void dg_init(digest_t* d) { d->h = 14695981039346656037ull; }
static void dg_bytes(digest_t* d, const void* p, size_t n) {
  const uint8_t* b = p;
  for (size_t i = 0; i < n; i++) d->h = (d->h ^ b[i]) * 1099511628211ull;
}
static void dg_printf(digest_t* d, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static void dg_printf(digest_t* d, const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  dg_bytes(d, buf, n < (int)sizeof buf ? (size_t)n : sizeof buf - 1);
}
// A string of core memory, hashed as its bytes (names are bytes, not text).
static void dg_mem(digest_t* d, uint32_t ptr, uint32_t len) { if (len) dg_bytes(d, mem() + ptr, len); }

// ---- the ELF reader through the ABI ----------------------------------------------

static uint32_t handle;
static uint32_t out; // scratch buffer for records
static uint32_t out_size;

static void need_out(uint32_t size) {
  if (size <= out_size) return;
  if (out) CORE(free)(&core, out);
  out = CORE(alloc)(&core, size);
  out_size = size;
}

static void print_mem(uint32_t ptr, uint32_t len) { fwrite(mem() + ptr, 1, len, stdout); }

static const char* const table_names[] = {".symtab", ".dynsym"};

// Symbol record (48 bytes), see docs/core-abi.md.
static void symbol_line(uint32_t table, uint32_t index, uint32_t o) {
  uint32_t vlen = u32at(o + 36), flen = u32at(o + 44);
  uint16_t versym = u16at(o + 26);
  printf("sym %u %u ", table, index);
  print_mem(u32at(o), u32at(o + 4));
  if (vlen) {
    printf((versym & 0x8000) || flen ? "@" : "@@");
    print_mem(u32at(o + 32), vlen);
  }
  if (flen) { printf(" file="); print_mem(u32at(o + 40), flen); }
  printf(" value=0x%" PRIx64 " size=%" PRIu64 " info=%u other=%u versym=%u shndx=%u\n", u64at(o + 8), u64at(o + 16), mem()[o + 24],
         mem()[o + 25], versym, u32at(o + 28));
}

static void symbols(uint32_t table, uint32_t count, int nnames, char** names) {
  enum { CHUNK = 1024 };
  digest_t d;
  dg_init(&d);
  need_out(CHUNK * 48);
  for (uint32_t first = 0; first < count; first += CHUNK) {
    uint32_t n = count - first < CHUNK ? count - first : CHUNK;
    if ((int32_t)CORE(elf_symbols)(&core, handle, table, first, n, out) != (int32_t)n) die("elf_symbols");
    for (uint32_t i = 0; i < n; i++) {
      uint32_t o = out + i * 48;
      uint32_t name = u32at(o), len = u32at(o + 4);
      dg_mem(&d, name, len);
      dg_printf(&d, "\t");
      dg_mem(&d, u32at(o + 32), u32at(o + 36));
      dg_printf(&d, "\t");
      dg_mem(&d, u32at(o + 40), u32at(o + 44));
      dg_printf(&d, "\t%" PRIx64 "\t%" PRIu64 "\t%u\t%u\t%u\t%u\n", u64at(o + 8), u64at(o + 16), mem()[o + 24], mem()[o + 25], u16at(o + 26),
                u32at(o + 28));
      for (int k = 0; k < nnames; k++) {
        if (strlen(names[k]) == len && memcmp(mem() + name, names[k], len) == 0) symbol_line(table, first + i, o);
      }
    }
  }
  printf("symbols %u %s count=%u digest=%016" PRIx64 "\n", table, table_names[table], count, d.h);
}

static const char* const rela_kinds[] = {"section", "dyn", "plt", "relr"};

static void relocations(uint32_t ntables) {
  enum { CHUNK = 4096 };
  need_out(ntables * 24 > CHUNK * 24 ? ntables * 24 : CHUNK * 24);
  for (uint32_t t = 0; t < ntables; t++) {
    if ((int32_t)CORE(elf_rela_tables)(&core, handle, t, 1, out) != 1) die("elf_rela_tables");
    uint32_t kind = u32at(out), count = u32at(out + 4), symtab = u32at(out + 16);
    int32_t section = i32at(out + 8), target = i32at(out + 12);
    digest_t d;
    dg_init(&d);
    for (uint32_t first = 0; first < count; first += CHUNK) {
      uint32_t n = count - first < CHUNK ? count - first : CHUNK;
      if ((int32_t)CORE(elf_relas)(&core, handle, t, first, n, out) != (int32_t)n) die("elf_relas");
      for (uint32_t i = 0; i < n; i++) {
        uint32_t o = out + i * 24;
        dg_printf(&d, "%" PRIx64 "\t%u\t%u\t%" PRId64 "\n", u64at(o), u32at(o + 8), u32at(o + 12), i64at(o + 16));
      }
    }
    printf("relatable %u kind=%s count=%u section=%d target=%d symtab=%u digest=%016" PRIx64 "\n", t, kind < 4 ? rela_kinds[kind] : "?", count,
           section, target, symtab, d.h);
  }
}

static void dynstr_line(const char* what, uint64_t offset) {
  uint32_t p = CORE(elf_dynstr)(&core, handle, (uint32_t)offset, out);
  if (p == 0) die("elf_dynstr");
  printf("%s ", what);
  print_mem(p, u32at(out));
  printf("\n");
}

// ---- the symbol index through the ABI ---------------------------------------------

static const uint64_t SCOPE_BIAS = 0x7f0000000000ull;

/** Copies a string into core memory (0 for an empty one); the caller frees it. */
static uint32_t core_str(const char* s, size_t n) {
  if (n == 0) return 0;
  uint32_t p = CORE(alloc)(&core, (uint32_t)n);
  memcpy(mem() + p, s, n);
  return p;
}

static void lookup_failed(const char* what) {
  if (CORE(core_error_code)(&core) != 0) die(what);
}

static void symbol_index(uint32_t elf, uint32_t has_dynsym, uint32_t is_rel, int nnames, char** names) {
  uint32_t idx = CORE(sym_index_new)(&core, elf, 2); // .symtab if present, else .dynsym
  if (idx == 0) die("sym_index_new");
  uint32_t dyn = has_dynsym ? CORE(sym_index_new)(&core, elf, 1) : 0;
  if (has_dynsym && dyn == 0) die("sym_index_new .dynsym");
  need_out(64);
  if (CORE(sym_index_info)(&core, idx, out) != 0) die("sym_index_info");
  printf("index table=%u symbols=%u functions=%u flags=%u\n", u32at(out + 4), u32at(out), u32at(out + 8), u32at(out + 20));
  for (int k = 0; k < nnames; k++) {
    const char* ref = names[k];
    const char* at = strchr(ref, '@');
    size_t nlen = at ? (size_t)(at - ref) : strlen(ref);
    const char* ver = at ? at + 1 + (at[1] == '@') : "";
    uint32_t np = core_str(ref, nlen), vp = core_str(ver, strlen(ver));
    if (!at) {
      printf("find %s ids=", ref);
      int32_t first = CORE(sym_find)(&core, idx, np, (uint32_t)nlen);
      if (first < 0) lookup_failed("sym_find");
      for (int32_t id = first, n = 0; id >= 0; id = CORE(sym_find_next)(&core, idx, (uint32_t)id), n++) printf(n ? ",%d" : "%d", id);
      lookup_failed("sym_find_next");
      printf("\n");
      if (first >= 0) {
        if (CORE(sym_get)(&core, idx, (uint32_t)first, out) != 0) die("sym_get");
        uint64_t value = u64at(out + 16), size = u64at(out + 24);
        uint32_t type = mem()[out + 32] & 15, shndx = u32at(out + 36);
        printf("get %d name=", first);
        print_mem(u32at(out + 4), u32at(out + 8));
        printf(" flags=%u value=0x%" PRIx64 " size=%" PRIu64 " info=%u versym=%u shndx=%u file=%d sympos=%u piece=%u root=%d rootlen=%u baselen=%u\n",
               u32at(out + 12), value, size, mem()[out + 32], u16at(out + 34), shndx, i32at(out + 40), u32at(out + 44), u32at(out + 48), i32at(out + 52),
               u32at(out + 56), u32at(out + 60));
        if ((type == 2 || type == 10) && size > 1) {
          uint64_t addr = value + size / 2;
          int32_t id = CORE(sym_at)(&core, idx, addr, is_rel ? shndx : 0, out);
          if (id < 0) lookup_failed("sym_at");
          printf("at 0x%" PRIx64 " id=%d", addr, id);
          if (id >= 0) printf(" start=0x%" PRIx64 " end=0x%" PRIx64 " root=%d piece=%u flags=%u", u64at(out), u64at(out + 8), i32at(out + 20), u32at(out + 24), u32at(out + 28));
          printf("\n");
        }
      }
    }
    if (dyn) {
      // A scope of one module (scope entry: index handle u32, reserved u32, load bias u64).
      uint32_t scope = CORE(alloc)(&core, 16);
      memcpy(mem() + scope, &dyn, 4);
      memset(mem() + scope + 4, 0, 4);
      memcpy(mem() + scope + 8, &SCOPE_BIAS, 8);
      need_out(48);
      int32_t pos = CORE(sym_scope_find)(&core, scope, 1, np, (uint32_t)nlen, vp, (uint32_t)strlen(ver), 0, out);
      if (pos < 0) lookup_failed("sym_scope_find");
      printf("bind %s pos=%d", ref, pos);
      if (pos >= 0)
        printf(" id=%u kind=%u flags=%u address=0x%" PRIx64 " value=0x%" PRIx64 " size=%" PRIu64 " resolver=0x%" PRIx64, u32at(out + 4), u32at(out + 8),
               u32at(out + 12), u64at(out + 16), u64at(out + 24), u64at(out + 32), u64at(out + 40));
      printf("\n");
      CORE(free)(&core, scope);
      if (!is_rel) {
        enum { MAX = 16 };
        need_out(40 * MAX);
        int32_t n = CORE(sym_slots_find)(&core, dyn, np, (uint32_t)nlen, vp, (uint32_t)strlen(ver), out, MAX);
        if (n < 0) die("sym_slots_find");
        printf("slots %s n=%d", ref, n);
        for (int32_t i = 0; i < n && i < MAX; i++) {
          uint32_t o = out + 40 * i;
          printf(" [0x%" PRIx64 " plt=0x%" PRIx64 " addend=%" PRId64 " type=%u sym=%d pltsec=%u]", u64at(o), u64at(o + 8), i64at(o + 16), u32at(o + 24), i32at(o + 28),
                 u32at(o + 32));
        }
        printf("\n");
      }
    }
    if (np) CORE(free)(&core, np);
    if (vp) CORE(free)(&core, vp);
  }
  if (dyn && CORE(sym_index_close)(&core, dyn) != 0) die("sym_index_close");
  if (CORE(sym_index_close)(&core, idx) != 0) die("sym_index_close");
}

// ---- the relocation engine through the ABI -------------------------------------------

static const uint64_t RELOC_BASE = 0x400000;            // where the object is laid out
static const uint64_t EXTERN_BASE = 0x7f0000000000ull;  // undefined symbol i is at EXTERN_BASE + 0x1000 * (i + 1)

static void relocate(uint32_t elf, uint32_t nsec) {
  uint32_t h = CORE(reloc_open)(&core, elf);
  if (h == 0) die("reloc_open");
  need_out(64);
  if (CORE(reloc_info)(&core, h, out) != 0) die("reloc_info");
  uint32_t nref = u32at(out + 8), iflags = u32at(out + 12);
  printf("reloc relocations=%u tables=%u refs=%u flags=%u sections=%u stubcandidates=%u maxalign=%" PRIu64 "\n", u32at(out), u32at(out + 4), nref, iflags,
         u32at(out + 16), u32at(out + 20), u64at(out + 24));
  need_out(32 * nref + 64);
  if ((int32_t)CORE(reloc_refs)(&core, h, 0, nref, out) != (int32_t)nref) die("reloc_refs");
  uint8_t* refs = malloc(32 * nref + 1);
  memcpy(refs, mem() + out, 32 * nref);
  for (uint32_t i = 0; i < nref; i++) {
    uint32_t o = out + 32 * i;
    uint32_t sym = u32at(o);
    uint16_t flags = u16at(o + 22);
    printf("ref %u ", sym);
    print_mem(u32at(o + 8), u32at(o + 12));
    printf(" refs=%u shndx=%u info=%u flags=%u value=0x%" PRIx64 "\n", u32at(o + 4), u32at(o + 16), mem()[o + 20], flags, u64at(o + 24));
  }
  for (uint32_t i = 0; i < nref; i++) {
    uint32_t sym, flags16 = 0;
    memcpy(&sym, refs + 32 * i, 4);
    memcpy(&flags16, refs + 32 * i + 22, 2);
    if (flags16 & 8) continue;        // _GLOBAL_OFFSET_TABLE_: the engine's
    if (!(flags16 & 1)) continue;     // defined: its placed section
    if (flags16 & 4) {                // thread-local: module 2, static TLS
      if (CORE(reloc_bind_tls)(&core, h, sym, 2, 0x10 * (uint64_t)i, (uint64_t)-0x200, 1) != 0) die("reloc_bind_tls");
    } else if (CORE(reloc_bind_addr)(&core, h, sym, EXTERN_BASE + 0x1000 * (uint64_t)(i + 1)) != 0) {
      die("reloc_bind_addr");
    }
  }
  need_out(64);
  if (CORE(reloc_plan)(&core, h, out) != 0) die("reloc_plan");
  uint32_t nslots = u32at(out + 16), nstubs = u32at(out + 20);
  printf("plan gotsize=%" PRIu64 " stubsize=%" PRIu64 " slots=%u stubs=%u flags=%u below=0x%" PRIx64 " near=0x%" PRIx64 "..0x%" PRIx64 " maxalign=%" PRIu64 "\n",
         u64at(out), u64at(out + 8), nslots, nstubs, u32at(out + 24), u64at(out + 32), u64at(out + 40), u64at(out + 48), u64at(out + 56));
  int64_t size = (int64_t)CORE(reloc_layout)(&core, h, RELOC_BASE, 1);
  if (size < 0) die("reloc_layout");
  int64_t tls = (int64_t)CORE(reloc_tls_image)(&core, h);
  printf("layout base=0x%" PRIx64 " size=%" PRId64 " tls=%" PRId64 "\n", RELOC_BASE, size, tls);
  if (tls >= 0 && CORE(reloc_set_tls)(&core, h, 1, (uint64_t)tls, (uint64_t)-0x100, 1) != 0) die("reloc_set_tls");
  uint32_t win = CORE(alloc)(&core, (uint32_t)size);
  memset(mem() + win, 0, (size_t)size);
  if (CORE(reloc_apply)(&core, h, win, (uint32_t)size, RELOC_BASE, 0) != 0) die("reloc_apply");
  digest_t d;
  dg_init(&d);
  dg_mem(&d, win, (uint32_t)size);
  printf("window size=%" PRId64 " digest=%016" PRIx64 "\n", size, d.h);
  CORE(free)(&core, win);
  for (uint32_t sec = 0; sec < nsec; sec++) {
    int64_t a = (int64_t)CORE(reloc_section_addr)(&core, h, sec);
    if (a >= 0) printf("placed %u 0x%" PRIx64 "\n", sec, (uint64_t)a);
  }
  printf("areas got=%" PRId64 " stubs=%" PRId64 "\n", (int64_t)CORE(reloc_area_addr)(&core, h, 0), (int64_t)CORE(reloc_area_addr)(&core, h, 1));
  need_out(32 * (nslots + nstubs) + 64);
  if ((int32_t)CORE(reloc_got_slots)(&core, h, 0, nslots, out) != (int32_t)nslots) die("reloc_got_slots");
  for (uint32_t i = 0; i < nslots; i++) {
    uint32_t o = out + 32 * i;
    printf("got 0x%" PRIx64 " value=0x%" PRIx64 " sym=%u kind=%u\n", u64at(o), u64at(o + 8), u32at(o + 16), u32at(o + 20));
  }
  if ((int32_t)CORE(reloc_stubs)(&core, h, 0, nstubs, out) != (int32_t)nstubs) die("reloc_stubs");
  for (uint32_t i = 0; i < nstubs; i++) {
    uint32_t o = out + 32 * i;
    printf("stub 0x%" PRIx64 " target=0x%" PRIx64 " sym=%u flags=%u addend=%" PRId64 "\n", u64at(o), u64at(o + 8), u32at(o + 16), u32at(o + 20), i64at(o + 24));
  }
  for (uint32_t i = 0; i < nref; i++) {
    uint32_t sym;
    memcpy(&sym, refs + 32 * i, 4);
    if (CORE(reloc_symbol_value)(&core, h, sym, out) != 0) die("reloc_symbol_value");
    printf("value %u 0x%" PRIx64 "\n", sym, u64at(out));
  }
  free(refs);
  if (CORE(reloc_close)(&core, h) != 0) die("reloc_close");
}

static uint8_t* read_file(const char* path, size_t* len) {
  FILE* f = fopen(path, "rb");
  if (!f) { perror(path); exit(2); }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t* b = malloc(n ? n : 1);
  if (fread(b, 1, n, f) != (size_t)n) { perror(path); exit(2); }
  fclose(f);
  *len = n;
  return b;
}

int main(int argc, char** argv) {
  int a = 1;
  int image = 0;
  uint64_t base = 0;
  if (a + 1 < argc && strcmp(argv[a], "--image") == 0) {
    image = 1;
    base = strtoull(argv[a + 1], NULL, 0);
    a += 2;
  }
  if (a >= argc) {
    fprintf(stderr, "usage: core-host [--image BASE] FILE [NAME...]\n");
    return 2;
  }
  size_t len;
  uint8_t* data = read_file(argv[a], &len);

  wasm_rt_init();
  Z_core_init_module();
  // A trap anywhere below (instantiation runs the module's start function) lands here.
  wasm_rt_trap_t trap = wasm_rt_impl_try();
  if (trap != WASM_RT_TRAP_NONE) {
    printf("trap %s\n", wasm_rt_strerror(trap));
    return 3;
  }
  Z_core_instantiate(&core, &env);
  printf("abi %u\n", CORE(core_abi_version)(&core));

  // The input lives in core memory, from alloc, until elf_close.
  uint32_t input = CORE(alloc)(&core, (uint32_t)len);
  memcpy(mem() + input, data, len);
  handle = image ? CORE(elf_open_image)(&core, input, (uint32_t)len, base) : CORE(elf_open)(&core, input, (uint32_t)len);
  if (handle == 0) die("elf_open");

  need_out(96);
  if (CORE(elf_info)(&core, handle, out) != 0) die("elf_info");
  uint32_t nsec = u32at(out + 16), nseg = u32at(out + 20), nsymtab = u32at(out + 24), ndynsym = u32at(out + 28);
  uint32_t nrela = u32at(out + 32), nver = u32at(out + 36), ndyn = u32at(out + 40), idlen = u32at(out + 44), idptr = u32at(out + 48);
  uint32_t flags = u32at(out + 52);
  uint16_t etype = u16at(out);
  printf("info type=%u machine=%u flags=0x%x entry=0x%" PRIx64 " sections=%u segments=%u symtab=%u dynsym=%u relatables=%u versions=%u dynamic=%u",
         u16at(out), u16at(out + 2), flags, u64at(out + 8), nsec, nseg, nsymtab, ndynsym, nrela, nver, ndyn);
  printf(" firstvaddr=0x%" PRIx64 " base=0x%" PRIx64 " tls=%d buildid=", u64at(out + 56), u64at(out + 64), i32at(out + 72));
  for (uint32_t i = 0; i < idlen; i++) printf("%02x", mem()[idptr + i]);
  printf("\n");

  need_out(nsec * 72 + 72);
  if ((int32_t)CORE(elf_sections)(&core, handle, 0, nsec, out) != (int32_t)nsec) die("elf_sections");
  for (uint32_t i = 0; i < nsec; i++) {
    uint32_t o = out + i * 72;
    printf("section %u ", i);
    print_mem(u32at(o), u32at(o + 4));
    printf(" type=%u link=%u flags=0x%" PRIx64 " addr=0x%" PRIx64 " offset=0x%" PRIx64 " size=0x%" PRIx64 " info=%u data=%u\n", u32at(o + 8),
           u32at(o + 12), u64at(o + 16), u64at(o + 24), u64at(o + 32), u64at(o + 40), u32at(o + 48), u32at(o + 52));
  }
  need_out(nseg * 56 + 56);
  if ((int32_t)CORE(elf_segments)(&core, handle, 0, nseg, out) != (int32_t)nseg) die("elf_segments");
  for (uint32_t i = 0; i < nseg; i++) {
    uint32_t o = out + i * 56;
    printf("segment %u type=0x%x flags=%u offset=0x%" PRIx64 " vaddr=0x%" PRIx64 " filesz=0x%" PRIx64 " memsz=0x%" PRIx64 "\n", i, u32at(o),
           u32at(o + 4), u64at(o + 8), u64at(o + 16), u64at(o + 32), u64at(o + 40));
  }

  int nnames = argc - a - 1;
  char** names = argv + a + 1;
  if (flags & 2) symbols(0, nsymtab, nnames, names);
  if (flags & 4) symbols(1, ndynsym, nnames, names);

  need_out(nver * 24 + 24);
  if ((int32_t)CORE(elf_versions)(&core, handle, 0, nver, out) != (int32_t)nver) die("elf_versions");
  for (uint32_t i = 0; i < nver; i++) {
    uint32_t o = out + i * 24;
    printf("version %u index=%u def=%u base=%u name=", i, u16at(o), mem()[o + 2], mem()[o + 3]);
    print_mem(u32at(o + 4), u32at(o + 8));
    printf(" file=");
    print_mem(u32at(o + 12), u32at(o + 16));
    printf("\n");
  }

  need_out(ndyn * 16 + 16);
  if ((int32_t)CORE(elf_dynamic)(&core, handle, 0, ndyn, out) != (int32_t)ndyn) die("elf_dynamic");
  digest_t d;
  dg_init(&d);
  // Copy the entries out: elf_dynstr below reuses `out`.
  int64_t* dyn = malloc(ndyn * 16 + 16);
  memcpy(dyn, mem() + out, ndyn * 16);
  for (uint32_t i = 0; i < ndyn; i++) dg_printf(&d, "%" PRId64 "\t%" PRIx64 "\n", dyn[2 * i], (uint64_t)dyn[2 * i + 1]);
  printf("dynamic count=%u digest=%016" PRIx64 "\n", ndyn, d.h);
  for (uint32_t i = 0; i < ndyn; i++) {
    if (dyn[2 * i] == 1) dynstr_line("needed", (uint64_t)dyn[2 * i + 1]);   // DT_NEEDED
    if (dyn[2 * i] == 14) dynstr_line("soname", (uint64_t)dyn[2 * i + 1]);  // DT_SONAME
  }
  free(dyn);

  relocations(nrela);

  need_out(48);
  if (CORE(elf_eh_frame)(&core, handle, out) != 0) die("elf_eh_frame");
  printf("ehframe addr=0x%" PRIx64 " offset=%" PRId64 " size=0x%" PRIx64 " hdr=0x%" PRIx64 " hdroffset=%" PRId64 " hdrsize=0x%" PRIx64 "\n",
         u64at(out), i64at(out + 8), u64at(out + 16), u64at(out + 24), i64at(out + 32), u64at(out + 40));

  symbol_index(handle, flags & 4, etype == 1 /* ET_REL */, nnames, names);
  if (etype == 1) relocate(handle, nsec);

  if (CORE(elf_close)(&core, handle) != 0) die("elf_close");
  printf("closed %d\n", CORE(elf_close)(&core, handle) == 1 /* BAD_HANDLE the second time */);

  // The error path: the same bytes cut short of the ELF header.
  uint32_t h = CORE(elf_open)(&core, input, len < 63 ? (uint32_t)len : 63);
  if (h != 0) {
    printf("truncated opened?\n");
  } else {
    uint32_t p = CORE(core_error_message)(&core), n = CORE(core_error_message_len)(&core);
    printf("truncated %u ", CORE(core_error_code)(&core));
    print_mem(p, n);
    printf("\n");
  }
  CORE(free)(&core, input);
  CORE(free)(&core, out);

  Z_core_free(&core);
  wasm_rt_free();
  free(data);
  return 0;
}
