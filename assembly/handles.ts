// Handle tables: the host refers to core objects by small positive integers, never
// by pointers to managed objects. Managed objects stay reachable from these tables
// (globals), so the incremental GC cannot collect them and the host pins nothing.
// Handle 0 is never valid: it is the failure value of every constructor export.

export class HandleTable<T> {
  private items: Array<T | null> = [null];
  private freeList: Array<i32> = [];

  add(item: T): i32 {
    if (this.freeList.length > 0) {
      const h = this.freeList.pop();
      this.items[h] = item;
      return h;
    }
    this.items.push(item);
    return this.items.length - 1;
  }

  /** The object for a handle, or null when the handle is not live. */
  get(h: i32): T | null {
    if (h <= 0 || h >= this.items.length) return null;
    return this.items[h];
  }

  remove(h: i32): bool {
    if (h <= 0 || h >= this.items.length || this.items[h] === null) return false;
    this.items[h] = null;
    this.freeList.push(h);
    return true;
  }
}
