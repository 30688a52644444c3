/**
 * The SPM vocab from a llama2.c tokenizer.bin: int32 max_token_length, then per token f32 score, int32 length and
 * the bytes. The file stores no types and spells pieces as decoded text (" " for "▁", "\n<s>\n" for "<s>"), so both
 * are restored here to agree with the GGUF and tokenizer.model sources. It has no vocab size either: tokens run to
 * the end of the file.
 */
import { ModelFormatError } from "../errors";
import { readTokenizerFile } from "./read-file";
import { SPACE_SYMBOL, SpmTokenType, parseBytePiece, type SpmVocab } from "./spm-vocab";

/** How llama2.c's export writes the control tokens, and the pieces they are. */
const CONTROL_PIECES = new Map([
  ["\n<s>\n", "<s>"],
  ["\n</s>\n", "</s>"],
]);
const UNK_PIECE = "<unk>";

export async function readLlama2cVocab(path: string): Promise<SpmVocab> {
  const buf = await readTokenizerFile(path);
  const fail = (what: string): never => {
    throw new ModelFormatError(`${path}: not a llama2.c tokenizer file: ${what}`);
  };
  if (buf.length < 4 || buf.readInt32LE(0) <= 0) fail("bad max_token_length header");
  // ignoreBOM keeps U+FEFF: it is a piece of its own (30143 in Llama 2), not a byte-order mark.
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  const pieces: string[] = [];
  const scores: number[] = [];
  const types: SpmTokenType[] = [];
  for (let offset = 4; offset < buf.length; ) {
    if (offset + 8 > buf.length) fail(`token ${pieces.length} is truncated`);
    const score = buf.readFloatLE(offset);
    const length = buf.readInt32LE(offset + 4);
    offset += 8;
    if (length < 0 || offset + length > buf.length) fail(`token ${pieces.length} has length ${length}, past the end`);
    let text = "";
    try {
      text = decoder.decode(buf.subarray(offset, offset + length));
    } catch {
      fail(`token ${pieces.length} is not UTF-8`);
    }
    offset += length;
    const control = CONTROL_PIECES.get(text);
    if (control !== undefined) {
      pieces.push(control);
      types.push(SpmTokenType.Control);
    } else if (text === UNK_PIECE || parseBytePiece(text) !== undefined) {
      pieces.push(text);
      types.push(text === UNK_PIECE ? SpmTokenType.Unknown : SpmTokenType.Byte);
    } else {
      pieces.push(text.replaceAll(" ", SPACE_SYMBOL));
      types.push(SpmTokenType.Normal);
    }
    scores.push(score);
  }
  const idOf = (piece: string): number | undefined => {
    const id = pieces.indexOf(piece);
    return id < 0 ? undefined : id;
  };
  const eosId = idOf("</s>");
  return {
    origin: path,
    pieces,
    scores,
    types,
    bosId: idOf("<s>"),
    eosIds: eosId === undefined ? [] : [eosId],
    unkId: idOf(UNK_PIECE),
    // llama2.c's run.c always starts with BOS and always adds the dummy prefix.
    addBos: true,
    addDummyPrefix: true,
  };
}
