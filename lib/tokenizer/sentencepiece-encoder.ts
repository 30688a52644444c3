/**
 * Encoding text with a SentencePiece tokenizer.model through the npm package sentencepiece-js (SentencePiece
 * itself, compiled to WebAssembly), so tokenizer.model files get SentencePiece's own normalization and encoding.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as nodePath from "node:path";
import { ModelFormatError } from "../errors";
import type { FragmentEncoder } from "./spm-encode";

/** The part of sentencepiece-js we use (the package ships no type declarations). */
interface SentencePieceJs {
  SentencePieceProcessor: new () => {
    load(path: string): Promise<void>;
    encodeIds(text: string): number[];
    /** The embind SentencePieceProcessor; status() says whether load() succeeded (load itself never says). */
    processor: { status(): { ToString(): string; delete(): void } };
  };
}

const PROCESS_EVENTS = ["uncaughtException", "unhandledRejection"];

/** `origin` names the model in errors when `path` is a copy of it (loadSentencePieceEncoderFromBytes). */
export async function loadSentencePieceEncoder(path: string, origin = path): Promise<FragmentEncoder> {
  const { SentencePieceProcessor } = require("sentencepiece-js") as SentencePieceJs;
  const sp = new SentencePieceProcessor();
  // The Emscripten runtime adds process listeners that rethrow every error (meant for a standalone program) on
  // each load; they would pile up and change the host's error handling, so the ones it adds are removed.
  const emitter: NodeJS.EventEmitter = process;
  const before = PROCESS_EVENTS.map((event) => new Set(emitter.listeners(event)));
  try {
    await sp.load(path);
  } catch (err) {
    throw new ModelFormatError(`${origin}: cannot read tokenizer file: ${(err as Error).message}`, { cause: err });
  } finally {
    PROCESS_EVENTS.forEach((event, i) => {
      for (const listener of emitter.listeners(event)) {
        if (!before[i].has(listener)) emitter.off(event, listener as (...args: unknown[]) => void);
      }
    });
  }
  const status = sp.processor.status();
  const message = status.ToString();
  status.delete();
  if (message !== "OK") throw new ModelFormatError(`${origin}: SentencePiece cannot load it: ${message}`);
  return (text, out) => {
    for (const id of sp.encodeIds(text)) out.push(id);
  };
}

/**
 * The encoder of a tokenizer.model held in memory (a serialized model carries its bytes). sentencepiece-js reads
 * models from files only, so the bytes go to a private temporary file for the load and are removed after it.
 */
export async function loadSentencePieceEncoderFromBytes(model: Uint8Array, origin: string): Promise<FragmentEncoder> {
  const dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), "llama-napi-spm-"));
  try {
    const path = nodePath.join(dir, "tokenizer.model");
    fs.writeFileSync(path, model);
    return await loadSentencePieceEncoder(path, origin);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
