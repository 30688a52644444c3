/**
 * Serialized models: one file holding a prepared model (model.saveSerialized), which loadModel maps as it is.
 *
 *   0   magic "LLAMA-NAPI-MODEL" (16 bytes)
 *   16  u32 format version            20  u32 manifest bytes
 *   24  u64 checked bytes: the manifest and the tokenizer tables after the header
 *   32  sha256 of those checked bytes (32 bytes)
 *   64  the manifest (JSON): engine version, backend, KV options, configuration, ids, chat template, the tokenizer's
 *       scalars and the place of each of its tables, every tensor's name, type, shape and place
 *   then, from the next multiple of 64: the tokenizer tables (typed arrays, each at a multiple of 8)
 *   then, from the next multiple of 64: the tensors, each at a multiple of 64, in the engine's run-time layout.
 *
 * The engine computes with the weights in their stored layout on both backends (the CUDA backend uploads the same
 * bytes), so the tensors are the source's bytes, whatever format it was; what loading saves is the parsing: of
 * tokenizer.json above all, of safetensors headers and GGUF metadata. The checksum covers what is parsed (manifest and
 * tables), not the weights, which are mapped and never read at load. Table offsets are from the tables' start and
 * tensor offsets from the tensors' start, so the manifest never holds its own length.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { InvalidArgumentError, LlamaNapiError, ModelFormatError, SerializedModelError, SerializedModelMismatchError } from "../errors";
import { KV_CACHE_TYPES, packageVersion } from "../native/binding";
import { TABLE_TYPES, type TableArray, type TokenizerTables, type TokenizerTablesMeta } from "../tokenizer/tables";
import { BinaryFile } from "./binary-file";
import { FieldChecker } from "./field-checker";
import { rowBytes, TENSOR_TYPE_LAYOUT } from "./ggml-types";
import { checkConfig, checkTensors } from "./llama-tensors";
import type { ModelConfig, ModelDescriptor, ModelFormat, PreparedFor, TensorInfo, TensorType } from "./types";

export const SERIALIZED_MAGIC = "LLAMA-NAPI-MODEL";
/** Raised whenever the layout above changes: a file of another version is refused, never misread. */
export const SERIALIZED_FORMAT_VERSION = 1;
const HEADER_BYTES = 64;
const SECTION_ALIGNMENT = 64;
const TABLE_ALIGNMENT = 8;
/** Each tensor starts at a multiple of this (cache lines; the CPU kernels' widest loads are 64 bytes). */
export const TENSOR_ALIGNMENT = 64;


/** The package version, which versions the engine and its run-time layouts. */
export const engineVersion = packageVersion;

const alignUp = (n: number, alignment: number): number => Math.ceil(n / alignment) * alignment;

interface TablePlace {
  type: "u8" | "i32" | "f32";
  offset: number;
  byteLength: number;
}

interface TensorPlace {
  name: string;
  type: TensorType;
  shape: number[];
  offset: number;
  byteLength: number;
}

/** The manifest's JSON form (ModelConfig's Float32Array as a list). */
interface Manifest {
  engineVersion: string;
  prepared: PreparedFor;
  source: { format: ModelFormat; path: string };
  config: Omit<ModelConfig, "ropeFreqFactors"> & { ropeFreqFactors?: number[] };
  bosId: number | null;
  eosIds: number[];
  weightType: TensorType;
  chatTemplate: { text: string; origin: string } | null;
  tokenizer: { meta: TokenizerTablesMeta; tables: Record<string, TablePlace> };
  tensors: TensorPlace[];
}

export interface SerializedModelParts {
  desc: ModelDescriptor;
  tokenizer: TokenizerTables;
  /** The model's own chat template; undefined when it has none (the loader then picks the built-in one again). */
  chatTemplate: { text: string; origin: string } | undefined;
  prepared: PreparedFor;
}

const COPY_CHUNK = 8 << 20;

/**
 * Writes the model to `path`: first to a temporary file beside it, renamed into place once complete, so that a
 * failure never leaves a partial file under the name. Returns the bytes written.
 */
export async function writeSerializedModel(path: string, parts: SerializedModelParts): Promise<number> {
  const { desc, tokenizer } = parts;
  const tables: Record<string, TablePlace> = {};
  const tableArrays: [number, TableArray][] = [];
  let tablesLength = 0;
  for (const [name, array] of Object.entries(tokenizer.arrays)) {
    tablesLength = alignUp(tablesLength, TABLE_ALIGNMENT);
    tables[name] = { type: TABLE_TYPES[name], offset: tablesLength, byteLength: array.byteLength };
    tableArrays.push([tablesLength, array]);
    tablesLength += array.byteLength;
  }
  const tensors: TensorPlace[] = [];
  let dataLength = 0;
  for (const t of desc.tensors) {
    dataLength = alignUp(dataLength, TENSOR_ALIGNMENT);
    tensors.push({ name: t.name, type: t.type, shape: t.shape, offset: dataLength, byteLength: t.byteLength });
    dataLength += t.byteLength;
  }
  // Factors as a list in the key's own place: key order is kept, so the config hashes alike (session fingerprints).
  const { ropeFreqFactors } = desc.config;
  const manifest: Manifest = {
    engineVersion: engineVersion(),
    prepared: parts.prepared,
    source: { format: desc.format, path: desc.files[0] },
    config: { ...desc.config, ropeFreqFactors: ropeFreqFactors && [...ropeFreqFactors] },
    bosId: desc.bosId ?? null,
    eosIds: desc.eosIds,
    weightType: desc.weightType,
    chatTemplate: parts.chatTemplate ?? null,
    tokenizer: { meta: tokenizer.meta, tables },
    tensors,
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest), "utf8");
  const tablesStart = alignUp(HEADER_BYTES + manifestBytes.length, SECTION_ALIGNMENT);
  const checked = Buffer.alloc(tablesStart + tablesLength - HEADER_BYTES);
  manifestBytes.copy(checked, 0);
  for (const [offset, array] of tableArrays) {
    checked.set(new Uint8Array(array.buffer, array.byteOffset, array.byteLength), tablesStart - HEADER_BYTES + offset);
  }
  const header = Buffer.alloc(HEADER_BYTES);
  header.write(SERIALIZED_MAGIC, 0, "latin1");
  header.writeUInt32LE(SERIALIZED_FORMAT_VERSION, 16);
  header.writeUInt32LE(manifestBytes.length, 20);
  header.writeBigUInt64LE(BigInt(checked.length), 24);
  createHash("sha256").update(checked).digest().copy(header, 32);
  const dataStart = alignUp(HEADER_BYTES + checked.length, SECTION_ALIGNMENT);

  const temporary = `${path}.${process.pid}.partial`;
  // The file system's failures (no such directory, no permission, disk full) name the file; the library's pass on.
  const cannotWrite = (err: unknown): never => {
    if (err instanceof LlamaNapiError) throw err;
    throw new InvalidArgumentError(`cannot write ${path}: ${(err as Error).message}`, { cause: err, option: "file" });
  };
  const out = await fs.promises.open(temporary, "w").catch(cannotWrite);
  try {
    await out.write(header, 0, header.length, 0);
    await out.write(checked, 0, checked.length, HEADER_BYTES);
    const sources = await Promise.all(desc.files.map((f) => fs.promises.open(f, "r")));
    try {
      const buffer = Buffer.allocUnsafe(COPY_CHUNK);
      for (const [i, t] of desc.tensors.entries()) {
        for (let done = 0; done < t.byteLength; ) {
          const want = Math.min(COPY_CHUNK, t.byteLength - done);
          const { bytesRead } = await sources[t.file].read(buffer, 0, want, t.offset + done);
          if (bytesRead === 0) throw new ModelFormatError(`${desc.files[t.file]}: tensor ${t.name} runs past the end of the file`);
          await out.write(buffer, 0, bytesRead, dataStart + tensors[i].offset + done);
          done += bytesRead;
        }
      }
    } finally {
      await Promise.all(sources.map((s) => s.close()));
    }
    await out.close();
    await fs.promises.rename(temporary, path);
  } catch (err) {
    await out.close().catch(() => {});
    await fs.promises.rm(temporary, { force: true });
    cannotWrite(err);
  }
  return dataStart + dataLength;
}

/** Whether the file starts with the serialized model magic. */
export function hasSerializedMagic(file: BinaryFile): boolean {
  return file.size >= SERIALIZED_MAGIC.length && file.read(0, SERIALIZED_MAGIC.length, "magic").toString("latin1") === SERIALIZED_MAGIC;
}

const TABLE_CONSTRUCTORS = { u8: Uint8Array, i32: Int32Array, f32: Float32Array } as const;
const BACKENDS = ["cpu", "cuda"] as const;

/**
 * Reads a serialized model's header, manifest and tokenizer tables (the weights stay on disk for the engine to map),
 * checking each: a truncated or corrupt file is a SerializedModelError naming the field; a file of another format
 * version or engine version is a SerializedModelMismatchError. The backend is checked by loadModel, which knows
 * the device.
 */
export function parseSerializedModel(path: string): ModelDescriptor {
  const m = new FieldChecker(path);
  const { header, checked, fileSize } = BinaryFile.with(path, (file) => {
    if (file.size < HEADER_BYTES) m.fail("header", `needs ${HEADER_BYTES} bytes but the file has ${file.size} (truncated)`);
    const header = file.read(0, HEADER_BYTES, "header");
    const version = header.readUInt32LE(16);
    if (version !== SERIALIZED_FORMAT_VERSION) {
      throw new SerializedModelMismatchError(
        `${path}: serialized model format version ${version}, but this engine reads version ${SERIALIZED_FORMAT_VERSION}: save it again from the original model`,
        path, "formatVersion", SERIALIZED_FORMAT_VERSION, version,
      );
    }
    const checkedLength = header.readBigUInt64LE(24);
    if (checkedLength > BigInt(file.size - HEADER_BYTES)) {
      m.fail("manifest", `and tokenizer tables need ${checkedLength} bytes after the header but the file has ${file.size - HEADER_BYTES} (truncated)`);
    }
    // A copy of its own (offset 0 of its buffer), so that the tables' 8-byte alignment holds for typed-array views.
    const checked = new Uint8Array(file.read(HEADER_BYTES, Number(checkedLength), "manifest"));
    return { header, checked, fileSize: file.size };
  });
  const digest = createHash("sha256").update(checked).digest();
  if (!digest.equals(header.subarray(32, 64))) m.fail("checksum", "does not match the manifest and tokenizer tables: the file is corrupt");
  const manifestLength = header.readUInt32LE(20);
  if (manifestLength > checked.length) m.fail("manifest", `length ${manifestLength} runs past the checked bytes`);
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(checked.buffer, 0, manifestLength).toString("utf8"));
  } catch (err) {
    m.fail("manifest", `is not JSON: ${(err as Error).message}`);
  }
  const manifest = m.object("manifest", json);
  const version = m.text("engineVersion", manifest.engineVersion);
  if (version !== engineVersion()) {
    throw new SerializedModelMismatchError(
      `${path}: serialized by llama-napi ${version}, but this is ${engineVersion()}, whose run-time layouts may differ: save it again from the original model`,
      path, "engineVersion", engineVersion(), version,
    );
  }
  const prepared = m.object("prepared", manifest.prepared);
  const preparedFor: PreparedFor = {
    backend: m.oneOf("prepared.backend", prepared.backend, BACKENDS),
    kvCacheType: m.oneOf("prepared.kvCacheType", prepared.kvCacheType, KV_CACHE_TYPES),
    // loadModel checks it against the model's context as it does an option given.
    contextSize: m.count("prepared.contextSize", prepared.contextSize, 1),
  };
  const source = m.object("source", manifest.source);
  const config = readConfig(m, manifest.config);
  const tablesStart = alignUp(HEADER_BYTES + manifestLength, SECTION_ALIGNMENT);
  const tokenizer = readTokenizerTables(m, manifest.tokenizer, checked, tablesStart - HEADER_BYTES);
  const dataStart = alignUp(HEADER_BYTES + checked.length, SECTION_ALIGNMENT);
  const tensors = m.list("tensors", manifest.tensors).map((value, i) => readTensor(m, `tensors[${i}]`, value, dataStart, fileSize));
  // The rules every format's config and tensors meet, with the field named.
  for (const [field, check] of [["config", () => checkConfig(path, config)], ["tensors", () => checkTensors(path, config, tensors)]] as const) {
    try {
      check();
    } catch (err) {
      if (err instanceof ModelFormatError) throw new SerializedModelError(err.message, path, field, { cause: err });
      throw err;
    }
  }
  const chatTemplate = manifest.chatTemplate === null ? undefined : m.object("chatTemplate", manifest.chatTemplate);
  const bosId = m.optionalTokenId("bosId", manifest.bosId, config.vocabSize);
  return {
    format: "serialized",
    files: [path],
    config,
    tensors,
    tokenizer: { kind: "serialized", path, tables: tokenizer },
    bosId,
    eosIds: m.tokenIds("eosIds", manifest.eosIds, config.vocabSize),
    weightType: m.oneOf("weightType", manifest.weightType, Object.keys(TENSOR_TYPE_LAYOUT) as TensorType[]),
    metadata: { sourceFormat: m.text("source.format", source.format), sourcePath: m.text("source.path", source.path), engineVersion: version },
    chatTemplate: chatTemplate && {
      text: m.text("chatTemplate.text", chatTemplate.text),
      origin: `${path} (from ${m.text("chatTemplate.origin", chatTemplate.origin)})`,
    },
    prepared: preparedFor,
  };
}

/** The configuration; its numbers are checked by checkConfig, their types here. */
function readConfig(m: FieldChecker, value: unknown): ModelConfig {
  const c = m.object("config", value);
  const numbers = ["dim", "hiddenDim", "layers", "heads", "kvHeads", "headDim", "vocabSize", "contextLength", "normEps", "ropeTheta"] as const;
  for (const key of numbers) if (typeof c[key] !== "number") m.fail(`config.${key}`, "is not a number");
  if (c.architecture !== "llama") m.fail("config.architecture", `(${String(c.architecture)}) is not "llama"`);
  m.oneOf("config.ropeLayout", c.ropeLayout, ["interleaved", "half"]);
  if (typeof c.tiedEmbeddings !== "boolean") m.fail("config.tiedEmbeddings", "is not true or false");
  const config = { ...c } as unknown as ModelConfig;
  if (c.ropeScaling !== undefined) {
    const s = m.object("config.ropeScaling", c.ropeScaling);
    m.oneOf("config.ropeScaling.type", s.type, ["llama3", "linear"]);
    const keys = s.type === "linear" ? ["factor"] : ["factor", "lowFreqFactor", "highFreqFactor", "originalContextLength"];
    for (const key of keys) if (typeof s[key] !== "number" || !Number.isFinite(s[key])) m.fail(`config.ropeScaling.${key}`, "is not a number");
  }
  if (c.ropeFreqFactors !== undefined) {
    const factors = m.list("config.ropeFreqFactors", c.ropeFreqFactors);
    if (factors.length !== (c.headDim as number) / 2 || !factors.every((f) => typeof f === "number" && f > 0 && Number.isFinite(f))) {
      m.fail("config.ropeFreqFactors", `is not headDim / 2 positive numbers`);
    }
    config.ropeFreqFactors = Float32Array.from(factors as number[]);
  }
  return config;
}

/** The tokenizer's tables: views into `checked` (never copies), each inside the tables and of its element type. */
function readTokenizerTables(m: FieldChecker, value: unknown, checked: Uint8Array<ArrayBuffer>, tablesStart: number): TokenizerTables {
  const t = m.object("tokenizer", value);
  const meta = m.object("tokenizer.meta", t.meta) as unknown as TokenizerTablesMeta;
  const arrays: Record<string, TableArray> = {};
  for (const [name, placeValue] of Object.entries(m.object("tokenizer.tables", t.tables))) {
    const field = `tokenizer.tables.${name}`;
    const place = m.object(field, placeValue);
    const type = m.oneOf(`${field}.type`, place.type, ["u8", "i32", "f32"] as const);
    if (TABLE_TYPES[name] !== type) m.fail(field, `is not a table of this version (or not of type ${type})`);
    const offset = m.count(`${field}.offset`, place.offset);
    const byteLength = m.count(`${field}.byteLength`, place.byteLength);
    const Type = TABLE_CONSTRUCTORS[type];
    const start = tablesStart + offset;
    if (start % Type.BYTES_PER_ELEMENT !== 0 || byteLength % Type.BYTES_PER_ELEMENT !== 0) m.fail(field, "is misaligned");
    if (start + byteLength > checked.length) m.fail(field, `(bytes ${offset}..${offset + byteLength} of the tables) runs past them`);
    arrays[name] = new Type(checked.buffer, checked.byteOffset + start, byteLength / Type.BYTES_PER_ELEMENT);
  }
  return { meta, arrays };
}

function readTensor(m: FieldChecker, field: string, value: unknown, dataStart: number, fileSize: number): TensorInfo {
  const t = m.object(field, value);
  const name = m.text(`${field}.name`, t.name);
  const type = m.oneOf(`${field}.type`, t.type, Object.keys(TENSOR_TYPE_LAYOUT) as TensorType[]);
  const shape = m.list(`${field}.shape`, t.shape);
  if (shape.length < 1 || shape.length > 2 || !shape.every((d) => Number.isSafeInteger(d) && (d as number) > 0)) {
    m.fail(`${field}.shape`, "is not one or two positive sizes");
  }
  const [rows, cols] = shape.length === 2 ? (shape as number[]) : [1, shape[0] as number];
  const offset = dataStart + m.count(`${field}.offset`, t.offset);
  const byteLength = m.count(`${field}.byteLength`, t.byteLength);
  const row = rowBytes(type, cols);
  if (row === undefined || rows * row !== byteLength) m.fail(`${field}.byteLength`, `(${byteLength}) is not what ${name}'s type ${type} and shape take`);
  if (offset % TENSOR_ALIGNMENT !== 0) m.fail(`${field}.offset`, `is not a multiple of ${TENSOR_ALIGNMENT}`);
  if (offset + byteLength > fileSize) {
    m.fail(`${field}`, `(${name}) needs bytes ${offset}..${offset + byteLength} but the file has ${fileSize} (truncated)`);
  }
  return { name, file: 0, offset, byteLength, type, shape: shape as number[] };
}
