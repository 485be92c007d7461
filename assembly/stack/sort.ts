// Heapsort of fixed-size records in raw memory by the u64 key at their offset 0:
// no recursion, no allocation, O(n log n) on any input (the tables come from
// untrusted bytes). Sorted input, the usual case, is detected first and left alone.

export function sortByKey(t: usize, n: u32, size: usize): void {
  if (n < 2) return;
  let sorted = true;
  for (let i: u32 = 1; i < n; i++) {
    if (load<u64>(t + <usize>i * size) < load<u64>(t + <usize>(i - 1) * size)) { sorted = false; break; }
  }
  if (sorted) return;
  for (let i: i32 = <i32>(n / 2) - 1; i >= 0; i--) siftDown(t, <u32>i, n, size);
  for (let end: u32 = n - 1; end > 0; end--) {
    swap(t, 0, end, size);
    siftDown(t, 0, end, size);
  }
}

function swap(t: usize, a: u32, b: u32, size: usize): void {
  const pa = t + <usize>a * size;
  const pb = t + <usize>b * size;
  for (let k: usize = 0; k < size; k += 8) {
    const x = load<u64>(pa + k);
    store<u64>(pa + k, load<u64>(pb + k));
    store<u64>(pb + k, x);
  }
}

function siftDown(t: usize, start: u32, n: u32, size: usize): void {
  let root = start;
  while (true) {
    let child = root * 2 + 1;
    if (child >= n) return;
    if (child + 1 < n && load<u64>(t + <usize>(child + 1) * size) > load<u64>(t + <usize>child * size)) child++;
    if (load<u64>(t + <usize>root * size) >= load<u64>(t + <usize>child * size)) return;
    swap(t, root, child, size);
    root = child;
  }
}
