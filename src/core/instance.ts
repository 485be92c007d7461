// Loads core.wasm and gives typed access to its memory and error exports.
// Pure: no Node-only API, so it runs in any JavaScript host. Reading the .wasm
// file is the caller's job (src/node/core-file.ts does it for Node).

/** Raw exports of core.wasm. Each area's wrapper declares the part it uses. */
export interface CoreExports {
  memory: WebAssembly.Memory;
  alloc(size: number): number;
  free(ptr: number): void;
  core_error_code(): number;
  core_error_message(): number;
  core_error_message_len(): number;
  core_abi_version(): number;
  [name: string]: unknown;
}

/** A failure reported by the core: its numeric code (assembly/error.ts) and message. */
export class CoreError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = "CoreError";
  }
}

const decoder = new TextDecoder();

export class Core {
  readonly exports: CoreExports;

  constructor(instance: WebAssembly.Instance) {
    this.exports = instance.exports as unknown as CoreExports;
  }

  /** A fresh view: memory.grow() detaches earlier ones. */
  get bytes(): Uint8Array {
    return new Uint8Array(this.exports.memory.buffer);
  }

  get view(): DataView {
    return new DataView(this.exports.memory.buffer);
  }

  /** Copies bytes into newly allocated core memory; the caller frees the pointer. */
  copyIn(data: Uint8Array): number {
    const ptr = this.exports.alloc(data.length);
    this.bytes.set(data, ptr);
    return ptr;
  }

  copyOut(ptr: number, len: number): Uint8Array {
    return this.bytes.slice(ptr, ptr + len);
  }

  string(ptr: number, len: number): string {
    return decoder.decode(this.bytes.subarray(ptr, ptr + len));
  }

  /** The last failure as a CoreError, with `context` (a file name, say) in front of the message. */
  lastError(context?: string): CoreError {
    const e = this.exports;
    const msg = this.string(e.core_error_message(), e.core_error_message_len());
    return new CoreError(e.core_error_code(), context ? `${context}: ${msg}` : msg);
  }

  /** Runs fn with `data` copied into core memory, freeing it afterwards. */
  withBytes<T>(data: Uint8Array, fn: (ptr: number, len: number) => T): T {
    const ptr = this.copyIn(data);
    try {
      return fn(ptr, data.length);
    } finally {
      this.exports.free(ptr);
    }
  }
}

function abortImport(memory: () => WebAssembly.Memory) {
  return (msgPtr: number, filePtr: number, line: number, col: number): never => {
    const str = (p: number): string => {
      if (!p) return "";
      const mem = new Uint8Array(memory().buffer);
      const view = new DataView(memory().buffer);
      const len = view.getUint32(p - 4, true); // AssemblyScript string: byte length before the data
      let s = "";
      for (let i = 0; i < len; i += 2) s += String.fromCharCode(mem[p + i] | (mem[p + i + 1] << 8));
      return s;
    };
    throw new CoreError(1, `core.wasm aborted: ${str(msgPtr)} at ${str(filePtr)}:${line}:${col}`);
  };
}

/** Instantiates core.wasm from its bytes. Its only import is env.abort. */
export async function loadCore(wasm: BufferSource): Promise<Core> {
  let mem: WebAssembly.Memory | undefined;
  const { instance } = await WebAssembly.instantiate(wasm, {
    env: { abort: abortImport(() => mem!) },
  });
  mem = instance.exports.memory as WebAssembly.Memory;
  return new Core(instance);
}

/** Synchronous variant for hosts that already hold a compiled module. */
export function loadCoreSync(module: WebAssembly.Module): Core {
  let mem: WebAssembly.Memory | undefined;
  const instance = new WebAssembly.Instance(module, { env: { abort: abortImport(() => mem!) } });
  mem = instance.exports.memory as WebAssembly.Memory;
  return new Core(instance);
}
