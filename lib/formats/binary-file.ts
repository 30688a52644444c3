/**
 * The one little-endian range reader every format parser uses: reads byte ranges of a file by position (never the
 * whole file), checks every range against the file size, and turns 64-bit integers into safe numbers.
 */
import * as fs from "node:fs";
import { ModelFormatError } from "../errors";

export class BinaryFile {
  private constructor(
    readonly path: string,
    private readonly fd: number,
    readonly size: number,
  ) {}

  /** Opens `path` for reading; a missing or unreadable file is a ModelFormatError naming it. */
  static open(path: string): BinaryFile {
    let fd: number;
    try {
      fd = fs.openSync(path, "r");
    } catch (err) {
      throw new ModelFormatError(`${path}: cannot open: ${(err as Error).message}`, { cause: err });
    }
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) {
      fs.closeSync(fd);
      throw new ModelFormatError(`${path}: not a regular file`);
    }
    return new BinaryFile(path, fd, stat.size);
  }

  /** Runs `use` with the file open and closes it afterwards, whatever happens. */
  static with<T>(path: string, use: (file: BinaryFile) => T): T {
    const file = BinaryFile.open(path);
    try {
      return use(file);
    } finally {
      file.close();
    }
  }

  /** Throws unless [offset, offset + length) lies inside the file; `what` names the data for the message. */
  checkRange(offset: number, length: number, what: string): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new ModelFormatError(
        `${this.path}: truncated or corrupt: ${what} needs bytes ${offset}..${offset + length} but the file has ${this.size} bytes`,
      );
    }
  }

  read(offset: number, length: number, what: string): Buffer {
    this.checkRange(offset, length, what);
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const n = fs.readSync(this.fd, buf, done, length - done, offset + done);
      if (n === 0) throw new ModelFormatError(`${this.path}: file shrank while reading ${what}`);
      done += n;
    }
    return buf;
  }

  /** A sequential reader starting at `offset`. */
  cursor(offset: number): Cursor {
    return new Cursor(this, offset);
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

/** Checks that a 64-bit value fits a JS number exactly (sizes, counts and offsets must). */
export function safeNumber(value: bigint, what: string, path: string): number {
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ModelFormatError(`${path}: ${what} is ${value}, out of range`);
  }
  return Number(value);
}

const WINDOW_BYTES = 1 << 20;

/** Reads little-endian values one after another, fetching the file through a buffered window. */
export class Cursor {
  private window: Buffer = Buffer.alloc(0);
  private windowStart = 0;

  constructor(
    readonly file: BinaryFile,
    public position: number,
  ) {}

  /** Bytes left between the position and the end of the file. */
  get remaining(): number {
    return this.file.size - this.position;
  }

  /**
   * Returns the window offset of `length` bytes at the position and advances past them. It may replace the
   * window, so callers take() first and only then read this.window.
   */
  private take(length: number, what: string): number {
    const start = this.position - this.windowStart;
    if (start < 0 || start + length > this.window.length) {
      this.file.checkRange(this.position, length, what);
      const fetch = Math.min(Math.max(length, WINDOW_BYTES), this.file.size - this.position);
      this.window = this.file.read(this.position, fetch, what);
      this.windowStart = this.position;
    }
    const at = this.position - this.windowStart;
    this.position += length;
    return at;
  }

  u8(what: string): number {
    const at = this.take(1, what);
    return this.window.readUInt8(at);
  }
  i8(what: string): number {
    const at = this.take(1, what);
    return this.window.readInt8(at);
  }
  u16(what: string): number {
    const at = this.take(2, what);
    return this.window.readUInt16LE(at);
  }
  i16(what: string): number {
    const at = this.take(2, what);
    return this.window.readInt16LE(at);
  }
  u32(what: string): number {
    const at = this.take(4, what);
    return this.window.readUInt32LE(at);
  }
  i32(what: string): number {
    const at = this.take(4, what);
    return this.window.readInt32LE(at);
  }
  u64(what: string): bigint {
    const at = this.take(8, what);
    return this.window.readBigUInt64LE(at);
  }
  i64(what: string): bigint {
    const at = this.take(8, what);
    return this.window.readBigInt64LE(at);
  }
  /** A u64 that must fit a JS number (a size, count or offset). */
  u64Number(what: string): number {
    return safeNumber(this.u64(what), what, this.file.path);
  }
  f32(what: string): number {
    const at = this.take(4, what);
    return this.window.readFloatLE(at);
  }
  f64(what: string): number {
    const at = this.take(8, what);
    return this.window.readDoubleLE(at);
  }
  bytes(length: number, what: string): Buffer {
    const at = this.take(length, what);
    return this.window.subarray(at, at + length);
  }
  /** UTF-8 text of `length` bytes. */
  utf8(length: number, what: string): string {
    const at = this.take(length, what);
    return this.window.toString("utf8", at, at + length);
  }
}
