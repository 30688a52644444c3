/**
 * Encoding text with a SentencePiece tokenizer.model through the npm package sentencepiece-js (SentencePiece
 * itself, compiled to WebAssembly), so tokenizer.model files get SentencePiece's own normalization and encoding.
 */
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

export async function loadSentencePieceEncoder(path: string): Promise<FragmentEncoder> {
  const { SentencePieceProcessor } = require("sentencepiece-js") as SentencePieceJs;
  const sp = new SentencePieceProcessor();
  // The Emscripten runtime adds process listeners that rethrow every error (meant for a standalone program) on
  // each load; they would pile up and change the host's error handling, so the ones it adds are removed.
  const emitter: NodeJS.EventEmitter = process;
  const before = PROCESS_EVENTS.map((event) => new Set(emitter.listeners(event)));
  try {
    await sp.load(path);
  } catch (err) {
    throw new ModelFormatError(`${path}: cannot read tokenizer file: ${(err as Error).message}`, { cause: err });
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
  if (message !== "OK") throw new ModelFormatError(`${path}: SentencePiece cannot load it: ${message}`);
  return (text, out) => {
    for (const id of sp.encodeIds(text)) out.push(id);
  };
}
