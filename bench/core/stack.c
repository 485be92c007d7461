// The stack-scan analysis of assembly/stack in C, for bench/core/stack.ts: the same
// algorithms and data layouts (the .eh_frame_hdr table normalised to 16-byte
// {pc, FDE offset} entries, a one-entry CIE cache per module with its initial row,
// 440-byte rows, the DWARF expression stack machine, segment reads; the word scan's
// bounding-box filter and range search). Built with gcc -O2 at bench time.
//
//   stack unwind INPUT ITERATIONS RUNS   unwinds every thread of INPUT, ITERATIONS times
//   stack scan INPUT RUNS                conservative scan of INPUT's one big window
// Prints one JSON line: the median time in ms and checksums (compared with the Wasm core's).
//
// INPUT (written by stack.ts):
//   "PCSTKIN1" u32 nmodules { u64 eh_addr, u64 eh_len, u64 hdr_addr, u64 hdr_len, eh bytes, hdr bytes }
//   u32 nthreads { 216-byte user_regs_struct, u32 nsegs { u64 window_addr, u64 len, u64 map_lo, u64 map_hi, bytes } }
//   u64 sigreturn trampoline (0: none)   u32 nranges { u64 lo, u64 hi, u32 id }
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int64_t i64;
typedef int32_t i32;

static inline u64 ld64(const void *p) { u64 v; memcpy(&v, p, 8); return v; }
static inline u32 ld32(const void *p) { u32 v; memcpy(&v, p, 4); return v; }
static inline u16 ld16(const void *p) { u16 v; memcpy(&v, p, 2); return v; }

#define NREGS 17
#define REG_RSP 7
#define REG_RIP 16
static const u32 USER_REGS_OFF[NREGS] = {80, 96, 88, 40, 104, 112, 32, 152, 72, 64, 56, 48, 24, 16, 8, 0, 128};
static const u32 SIGCONTEXT_OFF[NREGS] = {144, 136, 152, 128, 112, 104, 120, 160, 40, 48, 56, 64, 72, 80, 88, 96, 168};

enum { RULE_UNSET, RULE_UNDEFINED, RULE_SAME, RULE_OFFSET, RULE_VAL_OFFSET, RULE_REGISTER, RULE_EXPRESSION, RULE_VAL_EXPRESSION };
enum { CFA_UNSET, CFA_REG_OFFSET, CFA_EXPRESSION };

// ---- cursor (cfi.ts Cursor) ---------------------------------------------------------
typedef struct { const u8 *base; u64 addr, pos, end; int ok; } Cursor;

static inline void cset(Cursor *c, const u8 *base, u64 addr, u64 pos, u64 end) { c->base = base; c->addr = addr; c->pos = pos; c->end = end; c->ok = 1; }
static inline int chas(Cursor *c, u64 n) { return c->pos <= c->end && n <= c->end - c->pos; }
static inline u32 cu8(Cursor *c) { if (c->pos >= c->end) { c->ok = 0; return 0; } return c->base[c->pos++]; }
static inline u64 cu16(Cursor *c) { if (!chas(c, 2)) { c->ok = 0; c->pos = c->end; return 0; } u64 v = ld16(c->base + c->pos); c->pos += 2; return v; }
static inline u64 cu32(Cursor *c) { if (!chas(c, 4)) { c->ok = 0; c->pos = c->end; return 0; } u64 v = ld32(c->base + c->pos); c->pos += 4; return v; }
static inline u64 cu64(Cursor *c) { if (!chas(c, 8)) { c->ok = 0; c->pos = c->end; return 0; } u64 v = ld64(c->base + c->pos); c->pos += 8; return v; }
static u64 culeb(Cursor *c) {
  u64 v = 0, shift = 0;
  while (c->pos < c->end) {
    u64 b = c->base[c->pos++];
    if (shift < 64) v |= (b & 0x7f) << shift;
    shift += 7;
    if (!(b & 0x80)) return v;
  }
  c->ok = 0;
  return 0;
}
static i64 csleb(Cursor *c) {
  u64 v = 0, shift = 0;
  while (c->pos < c->end) {
    u64 b = c->base[c->pos++];
    if (shift < 64) v |= (b & 0x7f) << shift;
    shift += 7;
    if (!(b & 0x80)) {
      if (shift < 64 && (b & 0x40)) v |= ~(u64)0 << shift;
      return (i64)v;
    }
  }
  c->ok = 0;
  return 0;
}
static u64 cencoded(Cursor *c, u32 enc, u64 dataBase) {
  if (enc == 0xff) { c->ok = 0; return 0; }
  u64 fieldAddr = c->addr + c->pos, v = 0;
  u32 app = enc & 0x70;
  if (app == 0x50) {
    u64 pad = (8 - (fieldAddr & 7)) & 7;
    if (!chas(c, pad)) { c->ok = 0; return 0; }
    c->pos += pad;
    return cu64(c);
  }
  switch (enc & 0x0f) {
    case 0x00: v = cu64(c); break;
    case 0x01: v = culeb(c); break;
    case 0x02: v = cu16(c); break;
    case 0x03: v = cu32(c); break;
    case 0x04: v = cu64(c); break;
    case 0x09: v = (u64)csleb(c); break;
    case 0x0a: v = (u64)(i64)(int16_t)cu16(c); break;
    case 0x0b: v = (u64)(i64)(int32_t)cu32(c); break;
    case 0x0c: v = cu64(c); break;
    default: c->ok = 0; return 0;
  }
  if (app == 0x10) v += fieldAddr;
  else if (app == 0x30) { if (!dataBase) { c->ok = 0; return 0; } v += dataBase; }
  else if (app != 0) { c->ok = 0; return 0; }
  if (enc & 0x80) { c->ok = 0; return 0; }
  return v;
}
static void cskip(Cursor *c, u32 enc) {
  if ((enc & 0x70) == 0x50) { u64 pad = (8 - ((c->addr + c->pos) & 7)) & 7; if (!chas(c, pad + 8)) { c->ok = 0; c->pos = c->end; return; } c->pos += pad + 8; return; }
  switch (enc & 0x0f) {
    case 0x00: case 0x04: case 0x0c: cu64(c); break;
    case 0x02: case 0x0a: cu16(c); break;
    case 0x03: case 0x0b: cu32(c); break;
    case 0x01: culeb(c); break;
    case 0x09: csleb(c); break;
    default: c->ok = 0;
  }
}

// ---- rows (row.ts) ------------------------------------------------------------------
#define ROW_SIZE (32 + 24 * NREGS)
#define STATE_DEPTH 32
#define RULE(row, r) ((row) + 32 + (size_t)(r) * 24)
#define LD32(p, o) (*(u32 *)((p) + (o)))
#define LD64(p, o) (*(u64 *)((p) + (o)))

typedef struct {
  u64 off, codeAlign; i64 dataAlign; u32 raReg, fdeEnc; int hasZ, signal;
  u64 insStart, insEnd; u8 initRow[ROW_SIZE]; int initRowValid;
} Cie;
typedef struct { u64 off, cieOff, pcBegin, pcEnd, insStart, insEnd; } Fde;
typedef struct { const u8 *bytes; u64 len, addr; u8 *table; u32 count; u64 lo, hi; Cie cie; } Module;

static int fail(int code) { return code; }

// readHead
static int head_kind; static u64 head_next, head_cie;
static int readHead(Cursor *c, u64 len, u64 off) {
  c->pos = off; c->end = len;
  u64 l32 = cu32(c);
  if (!c->ok) return fail(500);
  if (l32 == 0) { head_kind = 3; head_next = c->pos; return 0; }
  u64 length = l32, idSize = 4;
  if (l32 == 0xffffffff) { length = cu64(c); idSize = 8; if (!c->ok) return fail(500); }
  u64 body = c->pos;
  if (!chas(c, length) || length < idSize) return fail(501);
  u64 end = body + length;
  u64 id = idSize == 4 ? cu32(c) : cu64(c);
  c->end = end;
  head_next = end;
  if (id == 0) { head_kind = 1; return 0; }
  if (id > body) return fail(502);
  head_kind = 2;
  head_cie = body - id;
  return 0;
}

static int validEncoding(u32 enc) {
  if (enc == 0xff) return 1;
  u32 f = enc & 0x0f;
  if (f != 0 && f != 1 && f != 2 && f != 3 && f != 4 && f != 9 && f != 0x0a && f != 0x0b && f != 0x0c) return 0;
  return (enc & 0x70) <= 0x50;
}

static int parseCie(Cursor *c, u64 len, u64 off, Cie *cie) {
  int r = readHead(c, len, off);
  if (r) return r;
  if (head_kind != 1) return fail(502);
  u32 version = cu8(c);
  if (version != 1 && version != 3 && version != 4) return fail(504);
  u64 augStart = c->pos;
  while (c->ok && cu8(c) != 0) {}
  if (!c->ok) return fail(500);
  u64 augEnd = c->pos - 1, a = augStart;
  int hasZ = 0, hasEh = 0;
  if (a < augEnd && c->base[a] == 'z') { hasZ = 1; a++; }
  else if (augEnd - augStart >= 2 && c->base[a] == 'e' && c->base[a + 1] == 'h') { hasEh = 1; a += 2; }
  if (hasEh) cu64(c);
  if (version == 4) { u32 asz = cu8(c), ssz = cu8(c); if (c->ok && (asz != 8 || ssz != 0)) return fail(504); }
  cie->off = off;
  cie->codeAlign = culeb(c);
  cie->dataAlign = csleb(c);
  if (version == 1) cie->raReg = cu8(c); else { u64 x = culeb(c); cie->raReg = x > 0xffffffff ? 0xffffffff : (u32)x; }
  cie->fdeEnc = 0; cie->hasZ = hasZ; cie->signal = 0; cie->initRowValid = 0;
  if (!c->ok) return fail(500);
  if (cie->raReg >= NREGS) return fail(505);
  if (hasZ) {
    u64 dataLen = culeb(c);
    if (!c->ok || !chas(c, dataLen)) return fail(500);
    u64 dataEnd = c->pos + dataLen, saveEnd = c->end;
    c->end = dataEnd;
    for (; a < augEnd; a++) {
      u8 ch = c->base[a];
      if (ch == 'R') { cie->fdeEnc = cu8(c); if (c->ok && !validEncoding(cie->fdeEnc)) return fail(506); }
      else if (ch == 'L') { u32 e = cu8(c); if (c->ok && !validEncoding(e)) return fail(506); }
      else if (ch == 'P') { u32 e = cu8(c); if (c->ok && !validEncoding(e)) return fail(506); if (e != 0xff) cskip(c, e); }
      else if (ch == 'S') cie->signal = 1;
      else if (ch == 'B' || ch == 'G') {}
      else break;
      if (!c->ok) return fail(500);
    }
    c->end = saveEnd;
    c->pos = dataEnd;
  } else if (a < augEnd) return fail(505);
  if (cie->fdeEnc == 0xff) return fail(506);
  cie->insStart = c->pos;
  cie->insEnd = head_next;
  return 0;
}

static Cursor cur;
static int moduleFde(Module *m, u64 off, Fde *fde) {
  cset(&cur, m->bytes, m->addr, 0, m->len);
  int r = readHead(&cur, m->len, off);
  if (r) return r;
  if (head_kind != 2) return fail(503);
  fde->off = off; fde->cieOff = head_cie; fde->insEnd = head_next;
  u64 body = cur.pos, bodyEnd = cur.end;
  if (m->cie.off != fde->cieOff) {
    r = parseCie(&cur, m->len, fde->cieOff, &m->cie);
    if (r) { m->cie.off = (u64)-1; return r; }
  }
  cur.pos = body; cur.end = bodyEnd;
  Cie *cie = &m->cie;
  u64 begin = cencoded(&cur, cie->fdeEnc, 0);
  u64 range = cencoded(&cur, cie->fdeEnc & 0x0f, 0);
  if (!cur.ok) return fail(503);
  if (begin + range < begin) return fail(503);
  fde->pcBegin = begin; fde->pcEnd = begin + range;
  if (cie->hasZ) { u64 n = culeb(&cur); if (!cur.ok || !chas(&cur, n)) return fail(500); cur.pos += n; }
  fde->insStart = cur.pos;
  return 0;
}

static int hdrTable(Module *m, const u8 *hdr, u64 hdrLen, u64 hdrAddr) {
  Cursor c;
  cset(&c, hdr, hdrAddr, 0, hdrLen);
  u32 version = cu8(&c), ptrEnc = cu8(&c), countEnc = cu8(&c), tableEnc = cu8(&c);
  if (!c.ok || version != 1) return fail(509);
  u64 ehPtr = cencoded(&c, ptrEnc, hdrAddr);
  if (!c.ok || ehPtr != m->addr) return fail(509);
  u64 count = cencoded(&c, countEnc, hdrAddr);
  if (!c.ok || count > (hdrLen - c.pos) / 8) return fail(509);
  m->table = malloc(count * 16 + 16);
  u64 prev = 0;
  for (u64 i = 0; i < count; i++) {
    u64 pc = cencoded(&c, tableEnc, hdrAddr), fdeAddr = cencoded(&c, tableEnc, hdrAddr);
    if (!c.ok || fdeAddr < m->addr || fdeAddr - m->addr >= m->len || (i && pc < prev)) return fail(509);
    memcpy(m->table + i * 16, &pc, 8);
    u64 o = fdeAddr - m->addr;
    memcpy(m->table + i * 16 + 8, &o, 8);
    prev = pc;
  }
  m->count = (u32)count;
  return 0;
}

static inline i32 searchTable(const u8 *t, u32 n, u64 target) {
  i32 lo = 0, hi = (i32)n - 1, found = -1;
  while (lo <= hi) {
    i32 mid = (i32)((u32)(lo + hi) >> 1);
    if (ld64(t + (size_t)mid * 16) <= target) { found = mid; lo = mid + 1; } else hi = mid - 1;
  }
  return found;
}

// registry: modules sorted by lo
static Module *modules; static u32 nmodules;
static u64 *tramps; static u32 ntramps;
static int lastFindError;

static Module *moduleFor(u64 pc) {
  i32 lo = 0, hi = (i32)nmodules - 1, found = -1;
  while (lo <= hi) {
    i32 mid = (i32)((u32)(lo + hi) >> 1);
    if (modules[mid].lo <= pc) { found = mid; lo = mid + 1; } else hi = mid - 1;
  }
  if (found < 0) return NULL;
  if (pc >= modules[found].hi) return NULL;
  return &modules[found];
}

static Module *find(u64 pc, Fde *fde) {
  lastFindError = 0;
  Module *m = moduleFor(pc);
  if (!m) return NULL;
  i32 i = searchTable(m->table, m->count, pc);
  if (i < 0) return NULL;
  int r = moduleFde(m, ld64(m->table + (size_t)i * 16 + 8), fde);
  if (r) { lastFindError = r; return NULL; }
  if (pc < fde->pcBegin || pc >= fde->pcEnd) return NULL;
  return m;
}

static u8 stateStack[ROW_SIZE * STATE_DEPTH];
static Cursor prog;

// row header: 0 u32 cfa type, 4 u32 cfa reg, 8 i64 cfa offset, 16 u64 expr ptr, 24 u32 expr len, 28 u32 rule mask
static inline void setRule(u8 *row, u64 r, u32 type, i64 val, u64 len) {
  if (r >= NREGS) return;
  u8 *p = RULE(row, r);
  LD32(p, 0) = type; LD32(p, 4) = 0; *(i64 *)(p + 8) = val; LD64(p, 16) = len;
  u32 bit = 1u << r;
  LD32(row, 28) = type == RULE_UNSET ? LD32(row, 28) & ~bit : LD32(row, 28) | bit;
}
static inline void restoreReg(u8 *row, const u8 *init, u64 r) {
  if (r >= NREGS) return;
  if (!init) { setRule(row, r, RULE_UNSET, 0, 0); return; }
  memcpy(RULE(row, r), RULE(init, r), 24);
  u32 bit = 1u << r;
  LD32(row, 28) = LD32(RULE(init, r), 0) == RULE_UNSET ? LD32(row, 28) & ~bit : LD32(row, 28) | bit;
}

static int execute(Module *m, Cie *cie, u64 start, u64 end, u8 *row, const u8 *init, u64 loc, u64 target) {
  Cursor *c = &prog;
  cset(c, m->bytes, m->addr, start, end);
  const u8 *base = m->bytes;
  u64 codeAlign = cie->codeAlign;
  i64 dataAlign = cie->dataAlign;
  u32 depth = 0;
  u64 pos = start;
  while (pos < end) {
    // fast paths (row.ts): advance_loc, def_cfa_offset and offset with one-byte operands
    u32 op0 = base[pos];
    if ((op0 & 0xc0) == 0x40) {
      pos++;
      if (init) { u64 next = loc + (u64)(op0 & 0x3f) * codeAlign; if (next > target) return 0; loc = next; }
      continue;
    }
    if (op0 == 0x00) { pos++; continue; }
    if ((op0 & 0xc0) == 0xc0) { restoreReg(row, init, op0 & 0x3f); pos++; continue; }
    if (op0 == 0x0a) { if (depth >= STATE_DEPTH) return fail(508); memcpy(stateStack + depth * ROW_SIZE, row, ROW_SIZE); depth++; pos++; continue; }
    if (op0 == 0x0b) { if (!depth) return fail(507); depth--; memcpy(row, stateStack + depth * ROW_SIZE, ROW_SIZE); pos++; continue; }
    if (pos + 1 < end) {
      u32 b = base[pos + 1];
      if (op0 == 0x02) {
        pos += 2;
        if (init) { u64 next = loc + (u64)b * codeAlign; if (next > target) return 0; loc = next; }
        continue;
      }
      if (op0 == 0x0e && b >= 0x80 && pos + 2 < end) {
        u32 b2 = base[pos + 2];
        if (b2 < 0x80) { *(i64 *)(row + 8) = (i64)((b & 0x7f) | (b2 << 7)); pos += 3; continue; }
      }
      if (b < 0x80) {
        if (op0 == 0x0e) { *(i64 *)(row + 8) = (i64)b; pos += 2; continue; }
        if ((op0 & 0xc0) == 0x80) {
          if ((op0 & 0x3f) < NREGS) {
            u8 *p = RULE(row, op0 & 0x3f);
            LD32(p, 0) = RULE_OFFSET; LD32(p, 4) = 0; *(i64 *)(p + 8) = (i64)b * dataAlign; LD64(p, 16) = 0;
            LD32(row, 28) |= 1u << (op0 & 0x3f);
          }
          pos += 2;
          continue;
        }
      }
    }
    c->pos = pos;
    u32 op = cu8(c), hi = op & 0xc0;
    u64 next = loc; int advanced = 0;
    if (hi == 0x40) { next = loc + (u64)(op & 0x3f) * cie->codeAlign; advanced = 1; }
    else if (hi == 0x80) { i64 off = (i64)culeb(c) * cie->dataAlign; setRule(row, op & 0x3f, RULE_OFFSET, off, 0); }
    else if (hi == 0xc0) restoreReg(row, init, op & 0x3f);
    else {
      switch (op) {
        case 0x00: break;
        case 0x01: next = cencoded(c, cie->fdeEnc, 0); advanced = 1; break;
        case 0x02: next = loc + (u64)cu8(c) * cie->codeAlign; advanced = 1; break;
        case 0x03: next = loc + cu16(c) * cie->codeAlign; advanced = 1; break;
        case 0x04: next = loc + cu32(c) * cie->codeAlign; advanced = 1; break;
        case 0x05: { u64 r = culeb(c); setRule(row, r, RULE_OFFSET, (i64)culeb(c) * cie->dataAlign, 0); break; }
        case 0x06: restoreReg(row, init, culeb(c)); break;
        case 0x07: setRule(row, culeb(c), RULE_UNDEFINED, 0, 0); break;
        case 0x08: setRule(row, culeb(c), RULE_SAME, 0, 0); break;
        case 0x09: { u64 r = culeb(c), r2 = culeb(c); setRule(row, r, RULE_REGISTER, 0, 0); if (r < NREGS) LD32(RULE(row, r), 4) = r2 > 0xffffffff ? 0xffffffff : (u32)r2; break; }
        case 0x0a: if (depth >= STATE_DEPTH) return fail(508); memcpy(stateStack + depth * ROW_SIZE, row, ROW_SIZE); depth++; break;
        case 0x0b: if (!depth) return fail(507); depth--; memcpy(row, stateStack + depth * ROW_SIZE, ROW_SIZE); break;
        case 0x0c: { u64 r = culeb(c), off = culeb(c); LD32(row, 0) = CFA_REG_OFFSET; LD32(row, 4) = r > 0xffffffff ? 0xffffffff : (u32)r; *(i64 *)(row + 8) = (i64)off; break; }
        case 0x12: { u64 r = culeb(c); i64 off = csleb(c) * cie->dataAlign; LD32(row, 0) = CFA_REG_OFFSET; LD32(row, 4) = r > 0xffffffff ? 0xffffffff : (u32)r; *(i64 *)(row + 8) = off; break; }
        case 0x0d: { u64 r = culeb(c); LD32(row, 0) = CFA_REG_OFFSET; LD32(row, 4) = r > 0xffffffff ? 0xffffffff : (u32)r; break; }
        case 0x0e: *(i64 *)(row + 8) = (i64)culeb(c); break;
        case 0x13: *(i64 *)(row + 8) = csleb(c) * cie->dataAlign; break;
        case 0x0f: { u64 n = culeb(c); if (!c->ok || !chas(c, n)) return fail(500); LD32(row, 0) = CFA_EXPRESSION; LD64(row, 16) = (u64)(uintptr_t)(c->base + c->pos); LD32(row, 24) = (u32)n; c->pos += n; break; }
        case 0x10: case 0x16: { u64 r = culeb(c), n = culeb(c); if (!c->ok || !chas(c, n)) return fail(500); setRule(row, r, op == 0x10 ? RULE_EXPRESSION : RULE_VAL_EXPRESSION, (i64)(uintptr_t)(c->base + c->pos), n); c->pos += n; break; }
        case 0x11: { u64 r = culeb(c); setRule(row, r, RULE_OFFSET, csleb(c) * cie->dataAlign, 0); break; }
        case 0x14: { u64 r = culeb(c); setRule(row, r, RULE_VAL_OFFSET, (i64)culeb(c) * cie->dataAlign, 0); break; }
        case 0x15: { u64 r = culeb(c); setRule(row, r, RULE_VAL_OFFSET, csleb(c) * cie->dataAlign, 0); break; }
        case 0x2e: culeb(c); break;
        case 0x2f: { u64 r = culeb(c); setRule(row, r, RULE_OFFSET, -((i64)culeb(c) * cie->dataAlign), 0); break; }
        default: return fail(507);
      }
    }
    if (!c->ok) return fail(500);
    if (advanced && init) {
      if (next > target) return 0;
      loc = next;
    }
    pos = c->pos;
  }
  return 0;
}

static int computeRow(Module *m, Fde *fde, u64 target, u8 *row) {
  Cie *cie = &m->cie;
  if (!cie->initRowValid) {
    memset(cie->initRow, 0, ROW_SIZE);
    int r = execute(m, cie, cie->insStart, cie->insEnd, cie->initRow, NULL, 0, (u64)-1);
    if (r) return r;
    cie->initRowValid = 1;
  }
  memcpy(row, cie->initRow, ROW_SIZE);
  return execute(m, cie, fde->insStart, fde->insEnd, row, cie->initRow, fde->pcBegin, target);
}

// ---- memory (mem.ts) ----------------------------------------------------------------
typedef struct { const u8 *win; u64 len, addr, lo, hi; } Seg;
static Seg *segs; static u32 nsegs; static int memFault; static u64 needAddr;

static u64 readMem(u64 addr, u32 size) {
  u64 n = size;
  for (u32 i = 0; i < nsegs; i++) {
    Seg *s = &segs[i];
    if (addr < s->lo || s->hi < n || addr > s->hi - n) continue;
    if (addr >= s->addr && s->len >= n && addr - s->addr <= s->len - n) {
      const u8 *p = s->win + (addr - s->addr);
      switch (size) {
        case 8: return ld64(p);
        case 4: return ld32(p);
        case 2: return ld16(p);
        case 1: return *p;
        default: { u64 v = 0; for (u32 k = 0; k < size; k++) v |= (u64)p[k] << (k * 8); return v; }
      }
    }
    if (!memFault) { memFault = 1; needAddr = addr; }
    return 0;
  }
  if (!memFault) { memFault = 2; needAddr = addr; }
  return 0;
}

// ---- expressions (expr.ts) ----------------------------------------------------------
#define EXPR_STACK 64
#define EXPR_STEPS 4096
static u64 exprValue; static int exprMemFault;
static u64 estack[EXPR_STACK];

static int evalExpr(const u8 *ptr, u64 len, const u64 *regs, u32 valid, int push, u64 initial) {
  Cursor c;
  exprMemFault = 0;
  cset(&c, ptr, 0, 0, len);
  u32 sp = 0;
  if (push) { estack[0] = initial; sp = 1; }
  for (u32 steps = 0; c.pos < c.end; steps++) {
    if (steps >= EXPR_STEPS) return 523;
    u32 op = cu8(&c);
    u64 v = 0; int pushes = 1; u32 need = 0;
    if (op >= 0x30 && op < 0x50) v = op - 0x30;
    else if ((op >= 0x70 && op < 0x90) || op == 0x92) {
      u64 r = op == 0x92 ? culeb(&c) : (u64)(op - 0x70);
      i64 off = csleb(&c);
      if (!c.ok) return 523;
      if (r >= NREGS || !(valid & (1u << r))) return 522;
      v = regs[r] + (u64)off;
    } else {
      switch (op) {
        case 0x03: case 0x0e: case 0x0f: v = cu64(&c); break;
        case 0x08: v = cu8(&c); break;
        case 0x09: v = (u64)(i64)(int8_t)cu8(&c); break;
        case 0x0a: v = cu16(&c); break;
        case 0x0b: v = (u64)(i64)(int16_t)cu16(&c); break;
        case 0x0c: v = cu32(&c); break;
        case 0x0d: v = (u64)(i64)(int32_t)cu32(&c); break;
        case 0x10: v = culeb(&c); break;
        case 0x11: v = (u64)csleb(&c); break;
        case 0x96: pushes = 0; break;
        case 0x2f: case 0x28: {
          i64 d = (int16_t)cu16(&c);
          if (!c.ok) return 523;
          int take = 1;
          if (op == 0x28) { if (sp < 1) return 523; sp--; take = estack[sp] != 0; }
          if (take) { i64 t = (i64)c.pos + d; if (t < 0 || (u64)t > c.end) return 523; c.pos = (u64)t; }
          pushes = 0;
          break;
        }
        case 0x12: case 0x13: need = 1; break;
        case 0x14: case 0x16: need = 2; break;
        case 0x15: need = 0; break;
        case 0x17: need = 3; break;
        case 0x06: case 0x94: case 0x19: case 0x1f: case 0x20: case 0x23: need = 1; break;
        case 0x1a: case 0x1b: case 0x1c: case 0x1d: case 0x1e: case 0x21: case 0x22: case 0x24: case 0x25:
        case 0x26: case 0x27: case 0x29: case 0x2a: case 0x2b: case 0x2c: case 0x2d: case 0x2e: need = 2; break;
        default: return 523;
      }
      if (!c.ok) return 523;
      if (sp < need) return 523;
      if (need > 0) {
        u64 top = estack[sp - 1];
        switch (op) {
          case 0x12: v = top; break;
          case 0x13: sp--; pushes = 0; break;
          case 0x14: v = estack[sp - 2]; break;
          case 0x16: estack[sp - 1] = estack[sp - 2]; estack[sp - 2] = top; pushes = 0; break;
          case 0x17: { u64 b = estack[sp - 2], a = estack[sp - 3]; estack[sp - 3] = top; estack[sp - 2] = a; estack[sp - 1] = b; pushes = 0; break; }
          case 0x06: case 0x94: {
            u32 size = 8;
            if (op == 0x94) { size = cu8(&c); if (!c.ok) return 523; if (size < 1 || size > 8) return 523; }
            u64 mv = readMem(top, size);
            if (memFault) { exprMemFault = 1; return 524; }
            sp--; v = mv;
            break;
          }
          case 0x19: sp--; v = (i64)top < 0 ? (u64)(-(i64)top) : top; break;
          case 0x1f: sp--; v = (u64)(-(i64)top); break;
          case 0x20: sp--; v = ~top; break;
          case 0x23: { u64 k = culeb(&c); if (!c.ok) return 523; sp--; v = top + k; break; }
          default: {
            u64 s = estack[sp - 2];
            sp -= 2;
            switch (op) {
              case 0x1a: v = s & top; break;
              case 0x21: v = s | top; break;
              case 0x27: v = s ^ top; break;
              case 0x22: v = s + top; break;
              case 0x1c: v = s - top; break;
              case 0x1e: v = s * top; break;
              case 0x1b: if (!top) return 523; v = (i64)top == -1 ? (u64)(-(i64)s) : (u64)((i64)s / (i64)top); break;
              case 0x1d: if (!top) return 523; v = s % top; break;
              case 0x24: v = top >= 64 ? 0 : s << top; break;
              case 0x25: v = top >= 64 ? 0 : s >> top; break;
              case 0x26: v = top >= 64 ? ((i64)s < 0 ? (u64)-1 : 0) : (u64)((i64)s >> top); break;
              case 0x29: v = s == top; break;
              case 0x2e: v = s != top; break;
              case 0x2d: v = (i64)s < (i64)top; break;
              case 0x2c: v = (i64)s <= (i64)top; break;
              case 0x2b: v = (i64)s > (i64)top; break;
              case 0x2a: v = (i64)s >= (i64)top; break;
            }
          }
        }
      } else if (op == 0x15) {
        u32 k = cu8(&c);
        if (!c.ok) return 523;
        if (k >= sp) return 523;
        v = estack[sp - 1 - k];
      }
    }
    if (pushes) { if (sp >= EXPR_STACK) return 523; estack[sp++] = v; }
  }
  if (!sp) return 523;
  exprValue = estack[sp - 1];
  return 0;
}

// ---- unwinder (unwind.ts) -----------------------------------------------------------
static u64 regs[NREGS], nextRegs[NREGS];
static u32 valid;
static u8 row[ROW_SIZE];
static Fde fde;
static u64 stepCfa; static int stepSignal;
#define ALL_VALID ((1u << NREGS) - 1)

static int isTrampoline(u64 pc) { for (u32 i = 0; i < ntramps; i++) if (tramps[i] == pc) return 1; return 0; }

static int sigreturnStep(void) {
  u64 sp = regs[REG_RSP];
  for (u32 i = 0; i < NREGS; i++) { u64 v = readMem(sp + SIGCONTEXT_OFF[i], 8); if (memFault) return 524; nextRegs[i] = v; }
  stepCfa = nextRegs[REG_RSP];
  memcpy(regs, nextRegs, sizeof regs);
  valid = ALL_VALID;
  stepSignal = 1;
  return 0;
}

/** 0: unwound, -1: outermost, > 0: error. */
static int step(int exact) {
  stepSignal = 0;
  u64 pc = regs[REG_RIP];
  if (ntramps && isTrampoline(pc)) return sigreturnStep();
  u64 lookup = exact ? pc : pc - 1;
  Module *m = find(lookup, &fde);
  if (!m) return lastFindError ? lastFindError : 520;
  int r = computeRow(m, &fde, lookup, row);
  if (r) return r;
  u64 cfa;
  u32 cfaType = LD32(row, 0);
  if (cfaType == CFA_REG_OFFSET) {
    u32 cr = LD32(row, 4);
    if (cr >= NREGS || !(valid & (1u << cr))) return 522;
    cfa = regs[cr] + (u64)*(i64 *)(row + 8);
  } else if (cfaType == CFA_EXPRESSION) {
    r = evalExpr((const u8 *)(uintptr_t)LD64(row, 16), LD32(row, 24), regs, valid, 0, 0);
    if (r) return r;
    cfa = exprValue;
  } else return 522;
  stepCfa = cfa;
  u32 ra = m->cie.raReg;
  u32 raType = LD32(RULE(row, ra), 0);
  if (raType == RULE_UNDEFINED) return -1;
  if (raType == RULE_UNSET || raType == RULE_SAME) return 522;
  // registers without a rule keep their value (rsp: the CFA); only the mask's have work
  memcpy(nextRegs, regs, sizeof regs);
  u32 nvalid = valid;
  u32 mask = LD32(row, 28);
  if (!(mask & (1u << REG_RSP))) { nextRegs[REG_RSP] = cfa; nvalid |= 1u << REG_RSP; }
  while (mask) {
    u32 i = (u32)__builtin_ctz(mask);
    mask &= mask - 1;
    u8 *p = RULE(row, i);
    u32 t = LD32(p, 0);
    u64 v = regs[i];
    switch (t) {
      case RULE_SAME: if (i == REG_RSP) { v = cfa; nvalid |= 1u << i; } break;
      case RULE_UNDEFINED: nvalid &= ~(1u << i); break;
      case RULE_OFFSET: v = readMem(cfa + (u64)*(i64 *)(p + 8), 8); if (memFault) return 524; nvalid |= 1u << i; break;
      case RULE_VAL_OFFSET: v = cfa + (u64)*(i64 *)(p + 8); nvalid |= 1u << i; break;
      case RULE_REGISTER: { u32 src = LD32(p, 4); if (src >= NREGS || !(valid & (1u << src))) nvalid &= ~(1u << i); else { v = regs[src]; nvalid |= 1u << i; } break; }
      case RULE_EXPRESSION: case RULE_VAL_EXPRESSION:
        r = evalExpr((const u8 *)(uintptr_t)LD64(p, 8), LD64(p, 16), regs, valid, 1, cfa);
        if (r) return r;
        v = exprValue;
        if (t == RULE_EXPRESSION) { v = readMem(v, 8); if (memFault) return 524; }
        nvalid |= 1u << i;
        break;
    }
    nextRegs[i] = v;
  }
  if (ra != REG_RIP) { nextRegs[REG_RIP] = nextRegs[ra]; if (nvalid & (1u << ra)) nvalid |= 1u << REG_RIP; else nvalid &= ~(1u << REG_RIP); }
  if (!(nvalid & (1u << REG_RIP))) return 522;
  int signal = m->cie.signal;
  if (!signal && nextRegs[REG_RSP] <= regs[REG_RSP]) return 521;
  memcpy(regs, nextRegs, sizeof regs);
  valid = nvalid;
  stepSignal = signal;
  return 0;
}

/** scan.ts precise(), without forbidden ranges: returns frames, or -code. */
static int unwindThread(const u8 *userRegs, Seg *s, u32 n, u32 maxFrames) {
  for (u32 i = 0; i < NREGS; i++) regs[i] = ld64(userRegs + USER_REGS_OFF[i]);
  valid = ALL_VALID;
  segs = s; nsegs = n; memFault = 0; needAddr = 0;
  int exact = 1;
  u32 k = 0;
  for (;;) {
    if (k >= maxFrames) return -525;
    int r = step(exact);
    k++;
    if (r == -1) return (int)k;
    if (r) return -r;
    exact = stepSignal;
    if (regs[REG_RIP] == 0) return (int)k;
  }
}

// ---- the word scan (scan.ts) --------------------------------------------------------
typedef struct { u64 lo, hi, maxHi; u32 id, pad; } Range;
static Range *ranges; static u32 nranges;
static u32 rHits; static i32 rRange; static u64 rPc, rSlot;

static int cmpRange(const void *a, const void *b) { u64 x = ((const Range *)a)->lo, y = ((const Range *)b)->lo; return x < y ? -1 : x > y; }

static inline i32 findRange(u64 a) {
  i32 lo = 0, hi = (i32)nranges - 1, idx = -1;
  while (lo <= hi) {
    i32 mid = (i32)((u32)(lo + hi) >> 1);
    if (ranges[mid].lo <= a) { idx = mid; lo = mid + 1; } else hi = mid - 1;
  }
  for (i32 j = idx; j >= 0; j--) {
    if (ranges[j].maxHi <= a) return -1;
    if (a < ranges[j].hi) return j;
  }
  return -1;
}

// The box filter and the range search, one word at a time: gcc -O2 does not vectorise
// it (no unsigned 64-bit compare in SSE2, a call in the loop), and this plain form ran
// faster here than the core's 8-word block structure written in scalar C.
static void scanWords(const u8 *p, size_t n, u64 addr, u64 boxLo, u64 boxSpan) {
  const u64 lo1 = boxLo + 1;
  for (size_t i = 0; i < n; i++) {
    u64 w = ld64(p + i * 8);
    if (w - lo1 < boxSpan) {
      i32 r = findRange(w - 1);
      if (r >= 0) { rHits++; rRange = (i32)ranges[r].id; rPc = w; rSlot = addr + i * 8; }
    }
  }
}

// ---- input, timing ------------------------------------------------------------------
static const u8 *in; static size_t inLen, inPos;
static u64 rd64(void) { u64 v = ld64(in + inPos); inPos += 8; return v; }
static u32 rd32(void) { u32 v = ld32(in + inPos); inPos += 4; return v; }

typedef struct { const u8 *regs; Seg *segs; u32 nsegs; } Thread;
static Thread *threads; static u32 nthreads;

static void readInput(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) { perror(path); exit(2); }
  fseek(f, 0, SEEK_END);
  inLen = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  u8 *b = malloc(inLen);
  if (fread(b, 1, inLen, f) != inLen) exit(2);
  fclose(f);
  in = b;
  if (memcmp(in, "PCSTKIN1", 8)) exit(2);
  inPos = 8;
  nmodules = rd32();
  modules = calloc(nmodules, sizeof(Module));
  for (u32 i = 0; i < nmodules; i++) {
    Module *m = &modules[i];
    u64 ehAddr = rd64(), ehLen = rd64(), hdrAddr = rd64(), hdrLen = rd64();
    m->bytes = in + inPos; inPos += ehLen;
    const u8 *hdr = in + inPos; inPos += hdrLen;
    m->len = ehLen; m->addr = ehAddr; m->cie.off = (u64)-1;
    if (hdrTable(m, hdr, hdrLen, hdrAddr)) { fprintf(stderr, "module %u: bad header\n", i); exit(2); }
    m->lo = ld64(m->table);
    u64 hi = ld64(m->table + (size_t)(m->count - 1) * 16);
    Fde f;
    if (moduleFde(m, ld64(m->table + (size_t)(m->count - 1) * 16 + 8), &f)) exit(2);
    m->hi = f.pcEnd > hi ? f.pcEnd : hi;
  }
  // sort modules by lo (insertion, as the core's index)
  for (u32 i = 1; i < nmodules; i++) for (u32 j = i; j > 0 && modules[j - 1].lo > modules[j].lo; j--) { Module t = modules[j]; modules[j] = modules[j - 1]; modules[j - 1] = t; }
  nthreads = rd32();
  threads = calloc(nthreads, sizeof(Thread));
  for (u32 i = 0; i < nthreads; i++) {
    threads[i].regs = in + inPos; inPos += 216;
    threads[i].nsegs = rd32();
    threads[i].segs = calloc(threads[i].nsegs, sizeof(Seg));
    for (u32 k = 0; k < threads[i].nsegs; k++) {
      Seg *s = &threads[i].segs[k];
      s->addr = rd64(); s->len = rd64(); s->lo = rd64(); s->hi = rd64();
      s->win = in + inPos; inPos += s->len;
    }
  }
  u64 t = rd64();
  if (t) { tramps = malloc(8); tramps[0] = t; ntramps = 1; }
  nranges = rd32();
  ranges = calloc(nranges + 1, sizeof(Range));
  for (u32 i = 0; i < nranges; i++) { ranges[i].lo = rd64(); ranges[i].hi = rd64(); ranges[i].id = rd32(); }
  qsort(ranges, nranges, sizeof(Range), cmpRange);
  u64 mx = 0;
  for (u32 i = 0; i < nranges; i++) { if (ranges[i].hi > mx) mx = ranges[i].hi; ranges[i].maxHi = mx; }
}

static double nowMs(void) { struct timespec ts; clock_gettime(getenv("STACK_CPU_TIME") ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts); return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6; }
static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: stack unwind INPUT ITERATIONS RUNS | stack scan INPUT RUNS\n"); return 2; }
  readInput(argv[2]);
  double t[64];
  if (!strcmp(argv[1], "unwind")) {
    int iters = atoi(argv[3]), runs = argc > 4 ? atoi(argv[4]) : 11;
    if (runs > 64) runs = 64;
    u64 frames = 0, sum = 0;
    for (int w = 0; w < 3; w++) for (u32 i = 0; i < nthreads; i++) unwindThread(threads[i].regs, threads[i].segs, threads[i].nsegs, 65536);
    for (int r = 0; r < runs; r++) {
      double s = nowMs();
      frames = 0; sum = 0;
      for (int it = 0; it < iters; it++)
        for (u32 i = 0; i < nthreads; i++) {
          int n = unwindThread(threads[i].regs, threads[i].segs, threads[i].nsegs, 65536);
          frames += n > 0 ? (u64)n : 0;
          sum += regs[REG_RIP] + (u64)n;
        }
      t[r] = nowMs() - s;
    }
    qsort(t, runs, sizeof t[0], cmpd);
    printf("{\"ms\": %.4f, \"min_ms\": %.4f, \"frames\": %llu, \"sum\": \"%llu\"}\n", t[runs / 2], t[0], (unsigned long long)frames, (unsigned long long)sum);
  } else {
    int runs = atoi(argv[3]);
    if (runs > 64) runs = 64;
    Seg *s = &threads[0].segs[0];
    u64 rsp = ld64(threads[0].regs + 152);
    u64 from = (rsp + 7) & ~(u64)7, to = s->hi & ~(u64)7;
    u64 boxLo = nranges ? ranges[0].lo : 0, boxHi = nranges ? ranges[nranges - 1].maxHi : 0;
    for (int r = 0; r < runs; r++) {
      rHits = 0; rRange = -1; rPc = 0; rSlot = 0;
      double st = nowMs();
      scanWords(s->win + (from - s->addr), (size_t)((to - from) >> 3), from, boxLo, boxHi - boxLo);
      t[r] = nowMs() - st;
    }
    qsort(t, runs, sizeof t[0], cmpd);
    printf("{\"ms\": %.4f, \"min_ms\": %.4f, \"bytes\": %llu, \"hits\": %u, \"range\": %d, \"slot\": \"%llu\"}\n", t[runs / 2], t[0], (unsigned long long)(to - from), rHits, rRange, (unsigned long long)rSlot);
  }
  return 0;
}
