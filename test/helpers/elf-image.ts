// An ELF file laid out as the loader maps it: the input elf_open_image expects (memory
// from the page of the first PT_LOAD to the end of the last), built from the file alone.
//
//   image[v - firstPage] = file[offset + (v - vaddr)]   for v in each PT_LOAD's file bytes
//   (whole pages from the file, as mmap maps them; p_memsz beyond p_filesz is zeroed: .bss)

export interface Load {
  offset: number;
  vaddr: number;
  filesz: number;
  memsz: number;
}

export function loads(file: Uint8Array): Load[] {
  const v = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const phoff = Number(v.getBigUint64(32, true));
  const phnum = v.getUint16(56, true);
  const r: Load[] = [];
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * 56;
    if (v.getUint32(o, true) !== 1) continue; // PT_LOAD
    r.push({ offset: Number(v.getBigUint64(o + 8, true)), vaddr: Number(v.getBigUint64(o + 16, true)), filesz: Number(v.getBigUint64(o + 32, true)), memsz: Number(v.getBigUint64(o + 40, true)) });
  }
  return r;
}

const PAGE = 0x1000;

/** The image of `file` and the link-time address of its first byte (a page boundary). */
export function imageOf(file: Uint8Array): { image: Uint8Array; firstVaddr: number } {
  const segs = loads(file);
  if (segs.length === 0) throw new Error("imageOf: no PT_LOAD");
  const firstVaddr = segs[0].vaddr & ~(PAGE - 1);
  const end = Math.max(...segs.map((s) => s.vaddr + s.memsz));
  const image = new Uint8Array(end - firstVaddr);
  for (const s of segs) {
    const pageIn = s.vaddr & (PAGE - 1);
    const from = s.offset - pageIn;
    const to = s.vaddr - pageIn - firstVaddr;
    const fileEnd = Math.min(s.offset + s.filesz, file.length);
    // Whole pages from the file up to p_filesz's page end, then zeros to p_memsz.
    const pageEnd = Math.min(file.length, (s.offset + s.filesz + PAGE - 1) & ~(PAGE - 1));
    image.set(file.subarray(from, pageEnd).subarray(0, image.length - to), to);
    image.fill(0, s.vaddr + (fileEnd - s.offset) - firstVaddr, Math.min(image.length, s.vaddr + s.memsz - firstVaddr));
  }
  return { image, firstVaddr };
}
