/** A minimal protobuf wire-format reader, enough for SentencePiece's ModelProto. Malformed input throws RangeError. */

export enum WireType {
  Varint = 0,
  Fixed64 = 1,
  LengthDelimited = 2,
  Fixed32 = 5,
}

export class ProtobufReader {
  private pos = 0;

  constructor(private readonly buf: Uint8Array) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  /** The next field's number and wire type. */
  tag(): { field: number; wireType: number } {
    const tag = this.uint();
    return { field: Math.floor(tag / 8), wireType: tag % 8 };
  }

  varint(): bigint {
    let value = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      const b = this.byte();
      value |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return value;
    }
    throw new RangeError("varint longer than 10 bytes");
  }

  uint(): number {
    const value = this.varint();
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`varint ${value} too large`);
    return Number(value);
  }

  /** An int32 field (negative values are sign-extended to 64 bits on the wire). */
  int32(): number {
    return Number(BigInt.asIntN(32, this.varint()));
  }

  float(): number {
    const view = new DataView(this.buf.buffer, this.buf.byteOffset + this.take(4), 4);
    return view.getFloat32(0, true);
  }

  bytes(): Uint8Array {
    const length = this.uint();
    const start = this.take(length);
    return this.buf.subarray(start, start + length);
  }

  skip(wireType: number): void {
    switch (wireType) {
      case WireType.Varint:
        this.varint();
        return;
      case WireType.Fixed64:
        this.take(8);
        return;
      case WireType.LengthDelimited:
        this.bytes();
        return;
      case WireType.Fixed32:
        this.take(4);
        return;
      default:
        throw new RangeError(`unsupported wire type ${wireType}`);
    }
  }

  private byte(): number {
    return this.buf[this.take(1)];
  }

  /** Advances past `n` bytes and returns where they start. */
  private take(n: number): number {
    if (this.pos + n > this.buf.length) throw new RangeError("truncated");
    const start = this.pos;
    this.pos += n;
    return start;
  }
}
