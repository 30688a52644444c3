/**
 * quantize(): reads any model the loader reads, converts each weight to f32, reorders HF q/k rows into GGUF's
 * rotary order, encodes it as the type llama-quantize's rules pick, and writes a GGUF v3 file. Work goes in row
 * chunks, several at a time on the engine's worker threads, written in file order; the output appears only once
 * complete (a failure leaves no file).
 */
import * as fs from "node:fs";
import * as nodePath from "node:path";
import { InvalidArgumentError, LlamaNapiError, ModelFormatError } from "../errors";
import { parseModel } from "../formats/detect";
import { readGguf } from "../formats/gguf";
import { GgufWriter, type GgufTensorHeader } from "../formats/gguf-writer";
import { rowBytes, TENSOR_TYPE_LAYOUT } from "../formats/ggml-types";
import { expectedTensorShapes } from "../formats/llama-tensors";
import type { ModelDescriptor, TensorInfo, TensorType } from "../formats/types";
import { physicalCores } from "../native/engine";
import { checkOptionNames, type OptionNames } from "../option-names";
import { ropeFreqFactors } from "../native/rope";
import { buildGgufMetadata } from "./gguf-metadata";
import { interleaveRotaryRows } from "./rope-rows";
import { decodeRows, encodeRows } from "./tensor-codec";
import { chooseTensorType, fileType, mixBase, QUANTIZE_MIXES, QUANTIZE_TYPES, type QuantizeMix, type QuantizeType } from "./tensor-types";

export interface QuantizeProgress {
  /** The tensor just written. */
  tensor: string;
  tensorsDone: number;
  tensorsTotal: number;
  /** Tensor data bytes read from the input and written to the output so far. */
  bytesRead: number;
  bytesWritten: number;
}

export interface QuantizeOptions {
  /**
   * An engine type (q4_K: llama.cpp's Q4_K_S, q5_K: Q5_K_S, the others their own file type) or a file type by
   * llama-quantize's name (Q4_K_M, Q5_K_M, ...), written with llama-quantize's per-tensor rules.
   */
  type: QuantizeType;
  /** A llama.cpp mix on top of `type` (q4_K_M: q4_K with attn_v / ffn_down of some layers at q6_K). */
  mix?: QuantizeMix;
  /** Row chunks encoded at once on the engine's worker threads. Default: physical cores. */
  threads?: number;
  /** A tokenizer file, for formats that keep it apart (as loadModel's option). */
  tokenizer?: string;
  onProgress?: (progress: QuantizeProgress) => void;
}

export interface QuantizedTensor {
  name: string;
  type: TensorType;
  /** Outermost first. */
  shape: number[];
}

export interface QuantizeResult {
  path: string;
  fileType: number;
  tensors: QuantizedTensor[];
  /** Things worth telling the user: type fallbacks, requantized inputs. */
  notices: string[];
  bytesWritten: number;
}

/** Values per encoding job: bounds memory to a few of these per thread whatever the model size. */
const CHUNK_ELEMENTS = 1 << 22;
const ROPE_FREQS = "rope_freqs.weight";

/** One tensor of the output: where its values come from, and how they are written. */
interface TensorJob extends QuantizedTensor {
  source?: TensorInfo;
  /** Values computed here rather than read (rope_freqs.weight). */
  values?: Float32Array;
  /** HF q/k: rows are reordered per head of this size. */
  rotaryHeadDim?: number;
}

const QUANTIZE_OPTION_NAMES = {
  type: true, mix: true, threads: true, tokenizer: true, onProgress: true,
} as const satisfies OptionNames<QuantizeOptions>;

function checkOptions(options: QuantizeOptions): void {
  checkOptionNames(options, QUANTIZE_OPTION_NAMES, "quantize");
  if (!options || !(QUANTIZE_TYPES as readonly string[]).includes(options.type)) {
    throw new InvalidArgumentError(`quantize: type must be one of ${QUANTIZE_TYPES.join(", ")} (got ${String(options?.type)})`);
  }
  if (options.mix !== undefined) {
    if (!(QUANTIZE_MIXES as readonly string[]).includes(options.mix)) {
      throw new InvalidArgumentError(`quantize: mix must be one of ${QUANTIZE_MIXES.join(", ")} (got ${String(options.mix)})`);
    }
    if (mixBase(options.mix) !== options.type) {
      throw new InvalidArgumentError(`quantize: mix ${options.mix} is a ${mixBase(options.mix)} mix; pass type ${mixBase(options.mix)} (got ${options.type})`);
    }
  }
  const t = options.threads;
  if (t !== undefined && (!Number.isInteger(t) || t < 1)) throw new InvalidArgumentError(`quantize: threads must be a positive integer (got ${String(t)})`);
}

/** The output tensors in canonical order (embedding, norms, output, then layer by layer), with their types. */
function planTensors(desc: ModelDescriptor, options: QuantizeOptions, notices: string[]): TensorJob[] {
  const { config } = desc;
  const byName = new Map(desc.tensors.map((t) => [t.name, t]));
  const jobs: TensorJob[] = [];
  const factors = config.ropeFreqFactors ?? (config.ropeScaling?.type === "llama3" ? ropeFreqFactors(config) : undefined);
  if (factors) jobs.push({ name: ROPE_FREQS, type: "f32", shape: [factors.length], values: factors });
  for (const name of expectedTensorShapes(config).keys()) {
    const source = byName.get(name)!;
    const rule = { name, shape: source.shape, layers: config.layers, heads: config.heads, kvHeads: config.kvHeads, tiedEmbeddings: config.tiedEmbeddings };
    const choice = chooseTensorType(rule, options.type, options.mix);
    if (choice.fallbackFrom) {
      notices.push(`${name}: row length ${source.shape[source.shape.length - 1]} is not a whole number of ${choice.fallbackFrom} blocks; written as ${choice.type}`);
    }
    const isRotary = /^blk\.\d+\.attn_[qk]\.weight$/.test(name);
    jobs.push({ name, type: choice.type, shape: source.shape, source, rotaryHeadDim: isRotary && config.ropeLayout === "half" ? config.headDim : undefined });
  }
  const requantized = desc.tensors.filter((t) => TENSOR_TYPE_LAYOUT[t.type].blockSize > 1);
  if (requantized.length > 0) {
    notices.push(`the input holds ${requantized.length} block-quantized tensors (${requantized[0].type}, ...): requantizing them loses more quality than quantizing the original weights`);
  }
  return jobs;
}

function header(job: TensorJob): GgufTensorHeader {
  const cols = job.shape[job.shape.length - 1];
  const rows = job.shape.length > 1 ? job.shape[0] : 1;
  return { name: job.name, ggmlType: TENSOR_TYPE_LAYOUT[job.type].code, dims: [...job.shape].reverse(), byteLength: rows * rowBytes(job.type, cols)! };
}

/** Reads byte ranges of the model's files. */
class SourceFiles {
  private readonly handles = new Map<number, Promise<fs.promises.FileHandle>>();
  constructor(private readonly desc: ModelDescriptor) {}

  async read(t: TensorInfo, offset: number, length: number): Promise<Uint8Array> {
    const path = this.desc.files[t.file];
    let handle = this.handles.get(t.file);
    if (!handle) {
      handle = fs.promises.open(path, "r");
      this.handles.set(t.file, handle);
    }
    const buf = new Uint8Array(length);
    const { bytesRead } = await (await handle).read(buf, 0, length, t.offset + offset);
    if (bytesRead !== length) throw new ModelFormatError(`${path}: tensor ${t.name} is cut short (the file shrank?)`);
    return buf;
  }

  async close(): Promise<void> {
    await Promise.all([...this.handles.values()].map(async (h) => (await h.catch(() => undefined))?.close()));
  }
}

/** The encoding work of one tensor, split into row chunks; each thunk yields the chunk's output bytes. */
function* chunkTasks(job: TensorJob, files: SourceFiles, counters: { bytesRead: number }): Generator<() => Promise<Uint8Array>> {
  const cols = job.shape[job.shape.length - 1];
  const rows = job.shape.length > 1 ? job.shape[0] : 1;
  if (job.values) {
    const values = job.values;
    yield () => encodeRows(job.type, values, rows, cols);
    return;
  }
  const source = job.source!;
  const sourceRowBytes = rowBytes(source.type, cols)!;
  const headDim = job.rotaryHeadDim;
  let chunkRows = Math.max(1, Math.floor(CHUNK_ELEMENTS / cols));
  if (headDim) chunkRows = Math.max(headDim, chunkRows - (chunkRows % headDim)); // permute whole heads
  for (let first = 0; first < rows; first += chunkRows) {
    const n = Math.min(chunkRows, rows - first);
    yield async () => {
      const bytes = await files.read(source, first * sourceRowBytes, n * sourceRowBytes);
      counters.bytesRead += bytes.byteLength;
      if (source.type === job.type && !headDim) return bytes; // same type, same order: copied exactly
      let values = await decodeRows(source.type, bytes, n, cols);
      if (headDim) values = interleaveRotaryRows(values, n, cols, headDim);
      return encodeRows(job.type, values, n, cols);
    };
  }
}

function openOutput(outPath: string, metadata: Awaited<ReturnType<typeof buildGgufMetadata>>, headers: GgufTensorHeader[]): GgufWriter {
  try {
    return GgufWriter.open(outPath, metadata, headers);
  } catch (err) {
    throw new InvalidArgumentError(`cannot write the output ${outPath}: ${(err as Error).message}`, { cause: err });
  }
}

/** Converts the model at `inPath` to a GGUF file at `outPath` with weights of `options.type`. */
export async function quantize(inPath: string, outPath: string, options: QuantizeOptions): Promise<QuantizeResult> {
  checkOptions(options);
  if (typeof inPath !== "string" || inPath === "") throw new InvalidArgumentError("quantize: the input path must be a non-empty string");
  if (typeof outPath !== "string" || outPath === "") throw new InvalidArgumentError("quantize: the output path must be a non-empty string");
  const output = nodePath.resolve(outPath);
  const desc = await parseModel(inPath, { tokenizer: options.tokenizer });
  if (desc.files.includes(output)) throw new InvalidArgumentError(`quantize: the output ${output} is the input file`);
  if (fs.existsSync(output) && fs.statSync(output).isDirectory()) throw new InvalidArgumentError(`cannot write the output ${output}: it is a directory`);

  const notices: string[] = [];
  const jobs = planTensors(desc, options, notices);
  const type = fileType(options.type, options.mix);
  const metadata = await buildGgufMetadata(desc, inPath, type, desc.format === "gguf" ? readGguf(desc.files[0]) : undefined);
  const headers = jobs.map(header);
  const threads = options.threads ?? physicalCores();

  const files = new SourceFiles(desc);
  const writer = openOutput(output, metadata, headers);
  const counters = { bytesRead: 0, bytesWritten: 0 };
  try {
    // Up to `threads` chunks in flight, written strictly in order. Each promise gets a no-op catch so that one
    // failing while an earlier one is awaited is not reported as unhandled; the await below rethrows it.
    const inFlight: { job: number; last: boolean; bytes: Promise<Uint8Array> }[] = [];
    const writeOldest = async () => {
      const { job, last, bytes } = inFlight.shift()!;
      const data = await bytes;
      writer.write(data);
      counters.bytesWritten += data.byteLength;
      if (last) {
        options.onProgress?.({ tensor: jobs[job].name, tensorsDone: job + 1, tensorsTotal: jobs.length, ...counters });
      }
    };
    for (let j = 0; j < jobs.length; j++) {
      const tasks = [...chunkTasks(jobs[j], files, counters)];
      for (let k = 0; k < tasks.length; k++) {
        const bytes = tasks[k]();
        bytes.catch(() => {});
        inFlight.push({ job: j, last: k === tasks.length - 1, bytes });
        if (inFlight.length >= threads) await writeOldest();
      }
    }
    while (inFlight.length > 0) await writeOldest();
    writer.commit();
  } catch (err) {
    writer.abort();
    if (err instanceof LlamaNapiError) throw err;
    throw new LlamaNapiError(`quantize ${inPath} → ${output} failed: ${(err as Error).message}`, { cause: err });
  } finally {
    await files.close();
  }
  return {
    path: output,
    fileType: type,
    tensors: jobs.map(({ name, type: t, shape }) => ({ name, type: t, shape })),
    notices,
    bytesWritten: counters.bytesWritten,
  };
}
