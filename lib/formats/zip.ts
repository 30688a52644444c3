/**
 * ZIP directory reader (as torch.save writes: stored entries, zip64 when large): finds every entry's data range
 * from the end-of-central-directory record, the central directory and the local headers. Reads no entry data.
 */
import { ModelFormatError } from "../errors";
import type { BinaryFile } from "./binary-file";

export interface ZipEntry {
  name: string;
  /** 0 = stored; anything else is compressed. */
  method: number;
  /** Absolute offset of the entry's data. */
  dataOffset: number;
  compressedSize: number;
  size: number;
}

const EOCD_SIGNATURE = 0x06054b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const ZIP64_EOCD_SIGNATURE = 0x06064b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const LOCAL_SIGNATURE = 0x04034b50;
const EOCD_BYTES = 22;
const MAX_COMMENT_BYTES = 0xffff;
const CENTRAL_HEADER_BYTES = 46;
const LOCAL_HEADER_BYTES = 30;
const ZIP64_EXTRA_ID = 0x0001;

/** Offset of the end-of-central-directory record: the last signature that leaves room for its comment. */
function findEocd(file: BinaryFile): { offset: number; record: Buffer } | undefined {
  if (file.size < EOCD_BYTES) return undefined;
  const tailStart = Math.max(0, file.size - EOCD_BYTES - MAX_COMMENT_BYTES);
  const tail = file.read(tailStart, file.size - tailStart, "end of central directory");
  for (let i = tail.length - EOCD_BYTES; i >= 0; i--) {
    if (tail.readUInt32LE(i) === EOCD_SIGNATURE && i + EOCD_BYTES + tail.readUInt16LE(i + 20) === tail.length) {
      return { offset: tailStart + i, record: tail.subarray(i, i + EOCD_BYTES) };
    }
  }
  return undefined;
}

/** Where the central directory is and how many entries it has, from the zip64 records when the classic ones overflow. */
function centralDirectory(file: BinaryFile, eocdOffset: number, eocd: Buffer): { offset: number; size: number; count: number } {
  const count = eocd.readUInt16LE(10);
  const size = eocd.readUInt32LE(12);
  const offset = eocd.readUInt32LE(16);
  if (count !== 0xffff && size !== 0xffffffff && offset !== 0xffffffff) return { offset, size, count };

  const locator = file.cursor(eocdOffset - 20);
  if (eocdOffset < 20 || locator.u32("zip64 locator") !== ZIP64_LOCATOR_SIGNATURE) {
    throw new ModelFormatError(`${file.path}: zip64 end-of-central-directory locator is missing`);
  }
  locator.u32("zip64 locator disk");
  const record = file.cursor(locator.u64Number("zip64 record offset"));
  if (record.u32("zip64 record") !== ZIP64_EOCD_SIGNATURE) throw new ModelFormatError(`${file.path}: zip64 end-of-central-directory record is corrupt`);
  record.position += 8 + 2 + 2 + 4 + 4 + 8; // record size, versions, disk numbers, entries on this disk
  return { count: record.u64Number("zip64 entry count"), size: record.u64Number("zip64 directory size"), offset: record.u64Number("zip64 directory offset") };
}

/** Reads the ZIP directory of `file`; undefined when the file is not a ZIP archive. */
export function readZipEntries(file: BinaryFile): Map<string, ZipEntry> | undefined {
  const eocd = findEocd(file);
  if (!eocd) return undefined;
  const dir = centralDirectory(file, eocd.offset, eocd.record);
  if (dir.count * CENTRAL_HEADER_BYTES > dir.size) {
    throw new ModelFormatError(`${file.path}: zip central directory of ${dir.size} bytes cannot hold ${dir.count} entries`);
  }
  const c = file.cursor(dir.offset);
  file.checkRange(dir.offset, dir.size, "zip central directory");
  const entries = new Map<string, ZipEntry>();
  for (let i = 0; i < dir.count; i++) {
    if (c.u32("zip central header") !== CENTRAL_SIGNATURE) throw new ModelFormatError(`${file.path}: zip central directory entry ${i} is corrupt`);
    c.position += 6; // versions, flags
    const method = c.u16("zip method");
    c.position += 8; // time, date, crc
    let compressedSize = c.u32("zip compressed size");
    let size = c.u32("zip size");
    const nameLength = c.u16("zip name length");
    const extraLength = c.u16("zip extra length");
    const commentLength = c.u16("zip comment length");
    c.position += 8; // disk, attributes
    let localOffset = c.u32("zip local header offset");
    const name = c.utf8(nameLength, "zip entry name");
    const extraEnd = c.position + extraLength;
    // The zip64 extra field holds, in order, only the values whose classic field is saturated.
    while (c.position + 4 <= extraEnd) {
      const id = c.u16("zip extra id");
      const length = c.u16("zip extra length");
      const fieldEnd = c.position + length;
      if (id === ZIP64_EXTRA_ID) {
        if (size === 0xffffffff) size = c.u64Number("zip64 size");
        if (compressedSize === 0xffffffff) compressedSize = c.u64Number("zip64 compressed size");
        if (localOffset === 0xffffffff) localOffset = c.u64Number("zip64 local header offset");
      }
      c.position = fieldEnd;
    }
    c.position = extraEnd + commentLength;

    const local = file.read(localOffset, LOCAL_HEADER_BYTES, `zip local header of ${name}`);
    if (local.readUInt32LE(0) !== LOCAL_SIGNATURE) throw new ModelFormatError(`${file.path}: zip local header of ${name} is corrupt`);
    const dataOffset = localOffset + LOCAL_HEADER_BYTES + local.readUInt16LE(26) + local.readUInt16LE(28);
    file.checkRange(dataOffset, compressedSize, `zip entry ${name}`);
    entries.set(name, { name, method, dataOffset, compressedSize, size });
  }
  return entries;
}

/** The data range of a stored entry; compressed entries are refused (torch.save never compresses). */
export function storedEntryRange(file: BinaryFile, entry: ZipEntry): { offset: number; length: number } {
  if (entry.method !== 0) {
    throw new ModelFormatError(`${file.path}: zip entry ${entry.name} is compressed (method ${entry.method}); only stored entries can be mapped`);
  }
  return { offset: entry.dataOffset, length: entry.size };
}
