/**
 * Writes GGUF v3 files: metadata, tensor infos, aligned tensor data. Tensor data is appended piece by piece in file
 * order (GgufWriter), so a multi-gigabyte model is never held in memory. The file is written to a temporary name and
 * renamed at the end, so a failed write never leaves a half-written file at the destination.
 */
import fs from "node:fs";

export type GgufValue =
  | { type: "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "u64" | "i64" | "f32" | "f64"; value: number }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "array"; itemType: "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "u64" | "i64" | "f32" | "f64"; value: ArrayLike<number> }
  | { type: "array"; itemType: "string"; value: readonly string[] }
  | { type: "array"; itemType: "bool"; value: readonly boolean[] };

type Scalar = "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "u64" | "i64" | "f32" | "f64" | "bool" | "string";

/** GGUF metadata value type codes (gguf_type). */
const VALUE_TYPE: Record<Scalar | "array", number> = {
  u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12,
};

/** A tensor's header record: what the file says about it before its data. */
export interface GgufTensorHeader {
  name: string;
  /** ggml type code (0 = F32, 1 = F16, 30 = BF16, ...). */
  ggmlType: number;
  /** GGUF order: ne[0] (the contiguous row length) first. */
  dims: number[];
  byteLength: number;
}

export interface GgufTensorToWrite extends GgufTensorHeader {
  /** Produces the tensor's bytes; called once, in file order. */
  data: () => Uint8Array;
}

export interface GgufToWrite {
  metadata: ReadonlyArray<readonly [string, GgufValue]>;
  tensors: readonly GgufTensorToWrite[];
  alignment?: number;
}

class ByteWriter {
  private chunks: Buffer[] = [];
  length = 0;
  private push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  u64(v: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  string(s: string): void {
    const bytes = Buffer.from(s, "utf8");
    this.u64(bytes.length);
    this.push(bytes);
  }
  scalar(type: Scalar, v: number | boolean | string): void {
    const b = Buffer.alloc({ u8: 1, i8: 1, bool: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, u64: 8, i64: 8, f64: 8, string: 0 }[type]);
    switch (type) {
      case "string": return this.string(v as string);
      case "bool": b.writeUInt8(v ? 1 : 0); break;
      case "u8": b.writeUInt8(v as number); break;
      case "i8": b.writeInt8(v as number); break;
      case "u16": b.writeUInt16LE(v as number); break;
      case "i16": b.writeInt16LE(v as number); break;
      case "u32": b.writeUInt32LE(v as number); break;
      case "i32": b.writeInt32LE(v as number); break;
      case "f32": b.writeFloatLE(v as number); break;
      case "u64": b.writeBigUInt64LE(BigInt(v as number)); break;
      case "i64": b.writeBigInt64LE(BigInt(v as number)); break;
      case "f64": b.writeDoubleLE(v as number); break;
    }
    this.push(b);
  }
  padTo(alignment: number): void {
    const pad = (alignment - (this.length % alignment)) % alignment;
    if (pad) this.push(Buffer.alloc(pad));
  }
  toBuffer(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

function encodeHeader(metadata: GgufToWrite["metadata"], tensors: readonly GgufTensorHeader[], alignment: number): Buffer {
  const head = new ByteWriter();
  head.u32(0x46554747); // "GGUF"
  head.u32(3);
  head.u64(tensors.length);
  head.u64(metadata.length);
  for (const [key, v] of metadata) {
    head.string(key);
    head.u32(VALUE_TYPE[v.type]);
    if (v.type === "array") {
      head.u32(VALUE_TYPE[v.itemType]);
      head.u64(v.value.length);
      for (let i = 0; i < v.value.length; i++) head.scalar(v.itemType, v.value[i]);
    } else {
      head.scalar(v.type, v.value);
    }
  }
  let offset = 0;
  for (const t of tensors) {
    head.string(t.name);
    head.u32(t.dims.length);
    for (const d of t.dims) head.u64(d);
    head.u32(t.ggmlType);
    head.u64(offset);
    offset = alignUp(offset + t.byteLength, alignment);
  }
  head.padTo(alignment);
  return head.toBuffer();
}

/**
 * A GGUF file being written: the header goes out on open, then write() appends tensor data in file order (any
 * number of pieces per tensor; the padding between tensors is added here). commit() checks that every tensor got
 * exactly its bytes and moves the file into place; abort() removes it.
 */
export class GgufWriter {
  private readonly tmp: string;
  private fd: number | undefined;
  private tensor = 0;
  private tensorBytes = 0;

  private constructor(
    private readonly path: string,
    private readonly tensors: readonly GgufTensorHeader[],
    private readonly alignment: number,
  ) {
    this.tmp = `${path}.tmp-${process.pid}`;
  }

  /** Opens the temporary file and writes the header; fs errors name `path`'s temporary file. */
  static open(path: string, metadata: GgufToWrite["metadata"], tensors: readonly GgufTensorHeader[], alignment = 32): GgufWriter {
    const w = new GgufWriter(path, tensors, alignment);
    const head = encodeHeader(metadata, tensors, alignment);
    w.fd = fs.openSync(w.tmp, "w");
    try {
      fs.writeSync(w.fd, head);
    } catch (err) {
      w.abort();
      throw err;
    }
    return w;
  }

  /** Appends the next bytes of tensor data. */
  write(data: Uint8Array): void {
    while (this.tensor < this.tensors.length && this.tensors[this.tensor].byteLength === this.tensorBytes) this.nextTensor();
    const t = this.tensors[this.tensor];
    if (!t || this.tensorBytes + data.byteLength > t.byteLength) {
      throw new Error(`tensor ${t?.name ?? "(none left)"}: more data than its ${t?.byteLength ?? 0} bytes`);
    }
    fs.writeSync(this.fd!, data);
    this.tensorBytes += data.byteLength;
  }

  commit(): void {
    while (this.tensor < this.tensors.length && this.tensors[this.tensor].byteLength === this.tensorBytes) this.nextTensor();
    if (this.tensor < this.tensors.length) {
      const t = this.tensors[this.tensor];
      throw new Error(`tensor ${t.name}: produced ${this.tensorBytes} bytes, expected ${t.byteLength}`);
    }
    fs.closeSync(this.fd!);
    this.fd = undefined;
    fs.renameSync(this.tmp, this.path);
  }

  /** Closes and removes the temporary file (idempotent; the destination is never touched). */
  abort(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
    fs.rmSync(this.tmp, { force: true });
  }

  private nextTensor(): void {
    const t = this.tensors[this.tensor];
    this.tensor++;
    this.tensorBytes = 0;
    const pad = alignUp(t.byteLength, this.alignment) - t.byteLength;
    if (pad && this.tensor < this.tensors.length) fs.writeSync(this.fd!, Buffer.alloc(pad));
  }
}

/** Writes a whole GGUF file whose tensors produce their bytes synchronously. */
export function writeGguf(path: string, file: GgufToWrite): void {
  const w = GgufWriter.open(path, file.metadata, file.tensors, file.alignment);
  try {
    for (const t of file.tensors) {
      const data = t.data();
      if (data.byteLength !== t.byteLength) throw new Error(`tensor ${t.name}: produced ${data.byteLength} bytes, expected ${t.byteLength}`);
      w.write(data);
    }
    w.commit();
  } catch (err) {
    w.abort();
    throw err;
  }
}
