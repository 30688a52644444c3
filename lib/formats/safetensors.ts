/**
 * safetensors header reader: an 8-byte little-endian header length, a JSON header, then the tensor bytes.
 * Only the header is read; every tensor's range and byte size is checked against the file.
 */
import { ModelFormatError } from "../errors";
import { BinaryFile } from "./binary-file";

export interface SafetensorsTensor {
  name: string;
  /** As written in the file: "BF16", "F16", "F32", "I64", ... */
  dtype: string;
  shape: number[];
  /** Absolute byte offset in the file. */
  offset: number;
  byteLength: number;
}

export interface SafetensorsFile {
  path: string;
  tensors: SafetensorsTensor[];
  /** The optional "__metadata__" string map. */
  metadata: Record<string, string>;
}

const DTYPE_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, U64: 8, I32: 4, U32: 4, I16: 2, U16: 2, I8: 1, U8: 1, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1,
};

/** The safetensors reference implementation refuses headers over 100 MB; so do we. */
const MAX_HEADER_BYTES = 100_000_000;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

export function readSafetensors(path: string): SafetensorsFile {
  return BinaryFile.with(path, (file) => {
    const headerLength = file.cursor(0).u64Number("header length");
    if (headerLength > MAX_HEADER_BYTES || 8 + headerLength > file.size) {
      throw new ModelFormatError(`${path}: safetensors header length ${headerLength} does not fit the file (${file.size} bytes)`);
    }
    let header: unknown;
    try {
      header = JSON.parse(file.read(8, headerLength, "header").toString("utf8"));
    } catch (err) {
      throw new ModelFormatError(`${path}: safetensors header is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
    if (!isRecord(header)) throw new ModelFormatError(`${path}: safetensors header is not a JSON object`);

    const dataStart = 8 + headerLength;
    const tensors: SafetensorsTensor[] = [];
    let metadata: Record<string, string> = {};
    for (const [name, entry] of Object.entries(header)) {
      if (name === "__metadata__") {
        if (isRecord(entry)) metadata = entry as Record<string, string>;
        continue;
      }
      const bad = (what: string) => new ModelFormatError(`${path}: tensor ${name}: ${what}`);
      if (!isRecord(entry)) throw bad("header entry is not an object");
      const { dtype, shape, data_offsets: offsets } = entry;
      if (typeof dtype !== "string") throw bad("dtype is missing");
      if (!Array.isArray(shape) || !shape.every(isCount)) throw bad(`shape ${JSON.stringify(shape)} is not a list of sizes`);
      if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
        throw bad(`data_offsets ${JSON.stringify(offsets)} are not [begin, end]`);
      }
      const [begin, end] = offsets as [number, number];
      const elementBytes = DTYPE_BYTES[dtype];
      if (elementBytes === undefined) throw bad(`unknown dtype ${dtype}`);
      const expected = (shape as number[]).reduce((a, b) => a * b, elementBytes);
      if (expected !== end - begin) throw bad(`holds ${end - begin} bytes, but shape [${shape.join(", ")}] of ${dtype} needs ${expected}`);
      file.checkRange(dataStart + begin, end - begin, `tensor ${name} data`);
      tensors.push({ name, dtype, shape: shape as number[], offset: dataStart + begin, byteLength: end - begin });
    }
    return { path, tensors, metadata };
  });
}
