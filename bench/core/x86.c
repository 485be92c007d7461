/* bench/core/x86.c: the x86-64 length decoder of assembly/x86/decode.ts in C, with the
 * same algorithm and the same tables (read from a file the bench writes from the core's
 * x86_table exports: 15 maps x 256 u32 entries, then the validity records), for the
 * "x86" section of bench/core. Built by bench/core/x86.ts with gcc -O2.
 *
 *   x86-c TABLES CODE PC        decodes CODE (raw bytes running at PC) linearly in sweep
 *                               mode into 16-byte records, once untimed and once timed
 *                               (CLOCK_PROCESS_CPUTIME_ID); prints JSON: ms, records,
 *                               errors, checksum (the same as the bench computes over
 *                               the core's records).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { IMM_NONE, IMM_B, IMM_W, IMM_Z, IMM_V, IMM_MOFFS, IMM_ENTER, IMM_JB, IMM_JZ, IMM_F6, IMM_F7, IMM_Q };
enum { E_MODRM = 0x10, E_REGONLY = 0x20, E_INVALID = 0x40, E_SPECIAL = 0x80 };
enum { KH_NONE, KH_JCC, KH_JMP, KH_CALL, KH_RET, KH_INT3, KH_INT, KH_SYSCALL, KH_UD, KH_HLT, KH_NOP90, KH_GRP5, KH_0F1E, KH_0F1F, KH_C7 };
enum { SP_PREFIX = 1, SP_REX, SP_0F, SP_VEX3, SP_VEX2, SP_EVEX, SP_8F };
enum { M_1BYTE, M_0F, M_0F38, M_0F3A, M_VEX, M_EVEX = 7, M_XOP = 12 };
enum { K_OTHER, K_JMP, K_JCC, K_CALL, K_JMP_IND, K_CALL_IND, K_RET, K_SYSCALL, K_INT3, K_UD, K_ENDBR64, K_NOP, K_INT, K_HLT };
enum { F_RIP_REL = 1, F_OPSIZE = 2, F_ADDRSIZE = 4, F_LOCK = 8, F_REP = 16, F_REPNE = 32, F_REX_W = 64, F_VEX = 128 };
enum { X86_TRUNCATED = 400, X86_UNKNOWN_OPCODE, X86_AMBIGUOUS_ENCODING, X86_TOO_LONG };

static uint32_t tables[15 * 256];
static uint64_t *groups;
static uint32_t e8f; /* the 8F entry as POP r/m (not in the table, which holds the XOP entry) */

static uint32_t insn_kind, insn_flags, insn_status;
static uint64_t insn_target;

#define ENTRY(map, op) tables[((map) << 8) | (op)]

static inline uint32_t fail_len(const uint8_t *start, const uint8_t *p) {
  insn_status = p - start >= 15 ? X86_TOO_LONG : X86_TRUNCATED;
  return 0;
}

static uint32_t decode_one(const uint8_t *start, const uint8_t *end, uint64_t pc) {
  const uint8_t *lim = end - start > 15 ? start + 15 : end;
  const uint8_t *p = start;
  uint32_t flags = 0, rex = 0, rep = 0, e, op, map = M_1BYTE, cls = 0;
  insn_status = 0;
  insn_target = 0;
  for (;;) {
    if (p >= lim) return fail_len(start, p);
    op = *p;
    e = tables[op];
    if (!(e & E_SPECIAL)) break;
    uint32_t sp = (e >> 8) & 15;
    if (sp == SP_REX) { rex = op; p++; continue; }
    if (sp != SP_PREFIX) break;
    rex = 0;
    if (op == 0x66) flags |= F_OPSIZE;
    else if (op == 0x67) flags |= F_ADDRSIZE;
    else if (op == 0xf0) flags |= F_LOCK;
    else if (op == 0xf2 || op == 0xf3) rep = op;
    p++;
  }
  if (rep == 0xf3) { flags |= F_REP; cls = 2; }
  else if (rep == 0xf2) { flags |= F_REPNE; cls = 3; }
  else if (flags & F_OPSIZE) cls = 1;
  if (rex & 8) flags |= F_REX_W;
  p++;
  if (e & E_SPECIAL) {
    uint32_t sp = (e >> 8) & 15;
    if (sp == SP_0F) {
      if (p >= lim) return fail_len(start, p);
      op = *p++;
      if (op == 0x38 || op == 0x3a) {
        map = op == 0x38 ? M_0F38 : M_0F3A;
        if (p >= lim) return fail_len(start, p);
        op = *p++;
      } else {
        map = M_0F;
      }
      e = ENTRY(map, op);
    } else if (sp == SP_8F && (p >= lim || (*p & 0x1f) < 8)) {
      e = e8f;
    } else {
      if ((flags & (F_OPSIZE | F_LOCK)) || rep || rex) { insn_status = X86_UNKNOWN_OPCODE; return 0; }
      flags |= F_VEX;
      uint32_t mm, pbyte;
      if (sp == SP_VEX2) {
        if (p >= lim) return fail_len(start, p);
        pbyte = *p++;
        map = M_VEX;
      } else if (sp == SP_EVEX) {
        if (lim - p < 3) return fail_len(start, lim);
        uint32_t p0 = p[0];
        pbyte = p[1];
        p += 3;
        mm = p0 & 7;
        if ((p0 & 8) || !(pbyte & 4) || mm == 0 || mm == 4 || mm == 7) { insn_status = X86_UNKNOWN_OPCODE; return 0; }
        map = mm <= 3 ? M_EVEX + mm - 1 : M_EVEX + mm - 2;
      } else {
        if (lim - p < 2) return fail_len(start, lim);
        mm = p[0] & 0x1f;
        pbyte = p[1];
        p += 2;
        if (sp == SP_VEX3) {
          if (mm < 1 || mm > 3) { insn_status = X86_UNKNOWN_OPCODE; return 0; }
          map = M_VEX + mm - 1;
        } else {
          if (mm > 10) { insn_status = X86_UNKNOWN_OPCODE; return 0; }
          map = M_XOP + mm - 8;
        }
      }
      if ((pbyte & 0x80) && sp != SP_VEX2) flags |= F_REX_W;
      cls = pbyte & 3;
      if (p >= lim) return fail_len(start, p);
      op = *p++;
      e = ENTRY(map, op);
    }
  }
  if (e & E_INVALID) { insn_status = X86_UNKNOWN_OPCODE; return 0; }
  uint32_t modrm = 0, disp = 0, rip_rel = 0, grp = e >> 16;
  if (e & E_MODRM) {
    if (p >= lim) return fail_len(start, p);
    modrm = *p++;
    if (grp) {
      const uint64_t *rec = groups + (grp - 1) * 8 + cls * 2;
      uint64_t ok = modrm >= 0xc0 ? (rec[1] >> (modrm & 63)) & 1 : (rec[0] >> ((modrm >> 3) & 7)) & 1;
      if (!ok) { insn_status = X86_UNKNOWN_OPCODE; return 0; }
    }
    if (modrm < 0xc0 && !(e & E_REGONLY)) {
      uint32_t mod = modrm >> 6, rm = modrm & 7;
      if (rm == 4) {
        if (p >= lim) return fail_len(start, p);
        uint32_t sib = *p++;
        if (mod == 0 && (sib & 7) == 5) disp = 4;
      } else if (mod == 0 && rm == 5) {
        disp = 4;
        rip_rel = 1;
      }
      if (mod == 1) disp = 1;
      else if (mod == 2) disp = 4;
    }
  } else if (grp) {
    if ((uint8_t)groups[(grp - 1) * 8 + cls * 2] == 0) { insn_status = X86_UNKNOWN_OPCODE; return 0; }
  }
  uint32_t imm = 0, rel = 0;
  switch (e & 15) {
    case IMM_NONE: break;
    case IMM_B: imm = 1; break;
    case IMM_W: imm = 2; break;
    case IMM_Z: imm = (flags & F_OPSIZE) && !(rex & 8) ? 2 : 4; break;
    case IMM_V: imm = (rex & 8) ? 8 : (flags & F_OPSIZE) ? 2 : 4; break;
    case IMM_MOFFS: imm = (flags & F_ADDRSIZE) ? 4 : 8; break;
    case IMM_ENTER: imm = 3; break;
    case IMM_JB: imm = 1; rel = 1; break;
    case IMM_JZ: imm = 4; rel = 1; break;
    case IMM_F6: imm = (modrm & 0x30) == 0 ? 1 : 0; break;
    case IMM_F7: imm = (modrm & 0x30) == 0 ? ((flags & F_OPSIZE) && !(rex & 8) ? 2 : 4) : 0; break;
    case IMM_Q: imm = cls == 1 || cls == 3 ? 2 : 0; break;
  }
  uint32_t disp_at = p - start, len = disp_at + disp + imm;
  if (len > 15) { insn_status = X86_TOO_LONG; return 0; }
  if ((uint64_t)len > (uint64_t)(end - start)) { insn_status = X86_TRUNCATED; return 0; }
  uint64_t next = pc + len;
  uint32_t kind = K_OTHER, hint = (e >> 8) & 15;
  if (hint != KH_NONE) {
    switch (hint) {
      case KH_JCC: kind = K_JCC; break;
      case KH_JMP: kind = K_JMP; break;
      case KH_CALL: kind = K_CALL; break;
      case KH_RET: kind = K_RET; break;
      case KH_INT3: kind = K_INT3; break;
      case KH_INT: kind = K_INT; break;
      case KH_SYSCALL: kind = K_SYSCALL; break;
      case KH_UD: kind = K_UD; break;
      case KH_HLT: kind = K_HLT; break;
      case KH_NOP90: if (!(rex & 1) && rep != 0xf3) kind = K_NOP; break;
      case KH_GRP5: {
        uint32_t reg = (modrm >> 3) & 7;
        if (reg == 2 || reg == 3) kind = K_CALL_IND;
        else if (reg == 4 || reg == 5) kind = K_JMP_IND;
        break;
      }
      case KH_0F1E: if (rep == 0xf3 && modrm == 0xfa) kind = K_ENDBR64; break;
      case KH_0F1F: if ((modrm & 0x38) == 0 && rep == 0) kind = K_NOP; break;
      case KH_C7: if (modrm == 0xf8) { kind = K_JCC; rel = 1; } break;
    }
  }
  if (rel) {
    if ((flags & F_OPSIZE) && !(rex & 8)) { insn_status = X86_AMBIGUOUS_ENCODING; return 0; }
    const uint8_t *at = start + disp_at + disp;
    int64_t d;
    if (imm == 1) d = (int8_t)*at;
    else { int32_t v; memcpy(&v, at, 4); d = v; }
    insn_target = next + (uint64_t)d;
  } else if (rip_rel) {
    flags |= F_RIP_REL;
    int32_t v;
    memcpy(&v, start + disp_at, 4);
    uint64_t t = next + (uint64_t)(int64_t)v;
    insn_target = (flags & F_ADDRSIZE) ? t & 0xffffffffu : t;
  }
  insn_kind = kind;
  insn_flags = flags;
  return len;
}

/* The records of decode.ts decodeRange, mode 1 (sweep). */
static uint32_t decode_range(const uint8_t *base, uint64_t len, uint64_t pc, uint8_t *out, uint32_t cap) {
  const uint8_t *end = base + len;
  uint64_t off = 0;
  uint32_t n = 0;
  while (off < len && n < cap) {
    uint32_t l = decode_one(base + off, end, pc + off);
    uint8_t *r = out + (size_t)n * 16;
    if (l) {
      memcpy(r, &insn_target, 8);
      uint32_t o = (uint32_t)off;
      memcpy(r + 8, &o, 4);
      r[12] = (uint8_t)l;
      r[13] = (uint8_t)insn_kind;
      r[14] = (uint8_t)insn_flags;
      r[15] = 0;
      off += l;
    } else {
      memset(r, 0, 8);
      uint32_t o = (uint32_t)off;
      memcpy(r + 8, &o, 4);
      uint32_t w = (insn_status - 399) << 24;
      memcpy(r + 12, &w, 4);
      off += 1;
    }
    n++;
  }
  return n;
}

static void *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) { perror(path); exit(1); }
  fseek(f, 0, SEEK_END);
  *len = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  void *b = malloc(*len ? *len : 1);
  if (fread(b, 1, *len, f) != *len) { perror(path); exit(1); }
  fclose(f);
  return b;
}

static double cpu_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
  if (argc != 5) { fprintf(stderr, "usage: %s TABLES CODE PC E8F\n", argv[0]); return 2; }
  size_t tlen, clen;
  uint8_t *t = read_file(argv[1], &tlen);
  if (tlen < sizeof tables) { fprintf(stderr, "tables: short\n"); return 1; }
  memcpy(tables, t, sizeof tables);
  groups = (uint64_t *)(t + sizeof tables);
  uint8_t *code = read_file(argv[2], &clen);
  uint64_t pc = strtoull(argv[3], 0, 0);
  e8f = (uint32_t)strtoul(argv[4], 0, 0);
  uint8_t *out = malloc(clen * 16 + 16);
  memset(out, 0, clen * 16 + 16); /* touch the pages before timing */
  decode_range(code, clen, pc, out, (uint32_t)clen);
  double t0 = cpu_ms();
  uint32_t n = decode_range(code, clen, pc, out, (uint32_t)clen);
  double ms = cpu_ms() - t0;
  uint64_t sum = 0, errors = 0;
  for (uint32_t i = 0; i < n; i++) {
    const uint8_t *r = out + (size_t)i * 16;
    uint64_t target, w;
    memcpy(&target, r, 8);
    memcpy(&w, r + 8, 8);
    sum = sum * 1099511628211ull + (target ^ w);
    if (r[15]) errors++;
  }
  printf("{\"ms\": %.4f, \"records\": %u, \"errors\": %llu, \"checksum\": \"%llu\"}\n", ms, n, (unsigned long long)errors, (unsigned long long)sum);
  return 0;
}
