// Symbol names as gcc writes them, and what they tell.
//
// gcc numbers what it creates per translation unit, so the numbers move whenever
// anything earlier in the file changes:
//   - block-scope statics:        `calls.0`, `buf.12`
//   - clones of functions:        `foo.part.0`, `foo.isra.0`, `foo.constprop.1`, `foo.constprop.0.isra.0`
//     (gcc/cgraphclones.cc clone_function_name: `<name>.<suffix>.<n>`; also lto_priv,
//     localalias, specialized)
//   - cold pieces (hot/cold splitting, -freorder-blocks-and-partition, on at -O2):
//     `foo.cold` (gcc >= 8; `foo.cold.N` before), in `.text.unlikely.foo`
//   - compiler-made constants:   `.LC5` (strings, constants), `CSWTCH.11` (switch tables),
//     `__func__.3`, `__PRETTY_FUNCTION__.3` (assert's function name)
// A normalized name drops every `.<digits>` component, so `foo.constprop.0.isra.1` and
// `foo.constprop.3.isra.0` both read `foo.constprop.isra`, `calls.3` reads `calls`.
// C++ mangled names (`_ZN1A3getEi`) contain no dots; gcc appends the same suffixes.

/** Length of the normalized form of the name at [p, p+len), written to `out` when out != 0. */
export function normalize(p: usize, len: u32, out: usize): u32 {
  let n: u32 = 0;
  let i: u32 = 0;
  while (i < len) {
    const c = load<u8>(p + i);
    if (c == 0x2e /* . */ && i > 0) {
      // A `.digits` component (up to the next dot or the end) is dropped.
      let j = i + 1;
      while (j < len && isDigit(load<u8>(p + j))) j++;
      if (j > i + 1 && (j == len || load<u8>(p + j) == 0x2e)) {
        i = j;
        continue;
      }
    }
    if (out != 0) store<u8>(out + n, c);
    n++;
    i++;
  }
  return n;
}

@inline function isDigit(c: u8): bool {
  return c >= 0x30 && c <= 0x39;
}

/** Whether the name has a `.digits` component (a number gcc gave it). */
export function hasNumericSuffix(p: usize, len: u32): bool {
  return normalize(p, len, 0) != len;
}

/** Whether [p, p+len) holds component `.word` at position i (followed by the end or a dot). */
function componentAt(p: usize, len: u32, i: u32, word: string): bool {
  const w = <u32>word.length;
  if (i + 1 + w > len || load<u8>(p + i) != 0x2e) return false;
  for (let k: u32 = 0; k < w; k++) {
    if (<u32>load<u8>(p + i + 1 + k) != <u32>word.charCodeAt(k)) return false;
  }
  const e = i + 1 + w;
  return e == len || load<u8>(p + e) == 0x2e;
}

const CLONE_SUFFIXES: StaticArray<string> = ["isra", "constprop", "part", "lto_priv", "localalias", "specialized", "clone", "resolver"];

/** Kind of a function from its name (KIND_FUNCTION, KIND_CLONE, KIND_COLD); parentLen gets the parent's name length. */
export let parentLen: u32 = 0;

export function functionKind(p: usize, len: u32): u8 {
  // A cold piece: the last `.cold` component; its parent is everything before it
  // (which may itself be a clone: `foo.part.0.cold`).
  for (let i: i32 = <i32>len - 1; i > 0; i--) {
    if (componentAt(p, len, <u32>i, "cold")) {
      parentLen = <u32>i;
      return 2;
    }
  }
  for (let i: u32 = 1; i < len; i++) {
    if (load<u8>(p + i) != 0x2e) continue;
    for (let k = 0; k < CLONE_SUFFIXES.length; k++) {
      if (componentAt(p, len, i, unchecked(CLONE_SUFFIXES[k]))) {
        parentLen = i;
        return 1;
      }
    }
  }
  parentLen = len;
  return 0;
}

function startsWith(p: usize, len: u32, prefix: string): bool {
  const w = <u32>prefix.length;
  if (w > len) return false;
  for (let k: u32 = 0; k < w; k++) if (<u32>load<u8>(p + k) != <u32>prefix.charCodeAt(k)) return false;
  return true;
}

function contains(p: usize, len: u32, word: string): bool {
  const w = <u32>word.length;
  if (w > len) return false;
  for (let i: u32 = 0; i + w <= len; i++) {
    let k: u32 = 0;
    while (k < w && <u32>load<u8>(p + i + k) == <u32>word.charCodeAt(k)) k++;
    if (k == w) return true;
  }
  return false;
}

/**
 * Whether a local data symbol is one the compiler made for a function (compared by
 * content and moved with the code) rather than a named object of the program:
 * `.L*` labels, `CSWTCH.N` switch tables, `__func__.N`, `__FUNCTION__.N`,
 * `__PRETTY_FUNCTION__.N` and their C++ forms (`_ZZ1fvE8__func__`).
 */
export function isCompilerData(p: usize, len: u32): bool {
  if (startsWith(p, len, ".L")) return true;
  if (startsWith(p, len, "CSWTCH.")) return true;
  if (startsWith(p, len, "__func__.") || startsWith(p, len, "__FUNCTION__.") || startsWith(p, len, "__PRETTY_FUNCTION__.")) return true;
  if (startsWith(p, len, "_ZZ") && (contains(p, len, "E8__func__") || contains(p, len, "E12__FUNCTION__") || contains(p, len, "E19__PRETTY_FUNCTION__"))) return true;
  return false;
}

/** Whether a section name is one of the unsuffixed ones gcc leaves empty under -ffunction-sections/-fdata-sections. */
export function isPlainDataSection(p: usize, len: u32): bool {
  return eq(p, len, ".data") || eq(p, len, ".bss") || eq(p, len, ".rodata") || eq(p, len, ".tdata") || eq(p, len, ".tbss") ||
    eq(p, len, ".data.rel") || eq(p, len, ".data.rel.local") || eq(p, len, ".data.rel.ro") || eq(p, len, ".data.rel.ro.local") ||
    eq(p, len, ".lrodata") || eq(p, len, ".ldata") || eq(p, len, ".lbss");
}

export function eq(p: usize, len: u32, s: string): bool {
  return len == <u32>s.length && startsWith(p, len, s);
}

export function hasPrefix(p: usize, len: u32, s: string): bool {
  return startsWith(p, len, s);
}
