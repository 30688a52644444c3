/**
 * The SPM vocab from a SentencePiece tokenizer.model (protobuf ModelProto), parsed here because sentencepiece-js
 * exposes no piece/score/type tables. Used fields: ModelProto {1: pieces, 2: trainer_spec, 3: normalizer_spec};
 * SentencePiece {1: piece, 2: score, 3: type}; TrainerSpec {40: unk_id, 41: bos_id, 42: eos_id};
 * NormalizerSpec {3: add_dummy_prefix}. Defaults are the proto's.
 */
import { ModelFormatError } from "../errors";
import { ProtobufReader, WireType } from "./protobuf-reader";
import { readTokenizerFile } from "./read-file";
import { SpmTokenType, type SpmVocab } from "./spm-vocab";

/** A known field: the wire type it must have, and what reads its value. */
type FieldReader = [WireType, (reader: ProtobufReader) => void];

export async function readSentencePieceVocab(path: string): Promise<SpmVocab> {
  const buf = await readTokenizerFile(path);
  try {
    return parseModelProto(buf, path);
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    throw new ModelFormatError(`${path}: not a SentencePiece model: ${err.message}`, { cause: err });
  }
}

function parseModelProto(buf: Uint8Array, path: string): SpmVocab {
  const pieces: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  const ids = { unk: 0, bos: 1, eos: 2 };
  let addDummyPrefix = true;

  const { Varint, Fixed32, LengthDelimited } = WireType;
  readMessage(buf, {
    1: [
      LengthDelimited,
      (r) => {
        let piece: string | undefined;
        let score = 0;
        let type = SpmTokenType.Normal;
        readMessage(r.bytes(), {
          1: [LengthDelimited, (p) => (piece = decodeUtf8(p.bytes()))],
          2: [Fixed32, (p) => (score = p.float())],
          3: [Varint, (p) => (type = p.int32())],
        });
        if (piece === undefined) throw new RangeError(`piece ${pieces.length} has no text`);
        pieces.push(piece);
        scores.push(score);
        types.push(type);
      },
    ],
    2: [
      LengthDelimited,
      (r) =>
        readMessage(r.bytes(), {
          40: [Varint, (t) => (ids.unk = t.int32())],
          41: [Varint, (t) => (ids.bos = t.int32())],
          42: [Varint, (t) => (ids.eos = t.int32())],
        }),
    ],
    3: [LengthDelimited, (r) => readMessage(r.bytes(), { 3: [Varint, (n) => (addDummyPrefix = n.uint() !== 0)] })],
  });
  if (pieces.length === 0) throw new RangeError("no pieces");

  const id = (value: number): number | undefined => (value < 0 ? undefined : value);
  const eosId = id(ids.eos);
  return {
    origin: path,
    pieces,
    scores,
    types,
    bosId: id(ids.bos),
    eosIds: eosId === undefined ? [] : [eosId],
    unkId: id(ids.unk),
    addBos: true,
    addDummyPrefix,
  };
}

/** Reads every field of a message, handing the known ones to their readers and skipping the rest. */
function readMessage(buf: Uint8Array, fields: Record<number, FieldReader>): void {
  const reader = new ProtobufReader(buf);
  while (!reader.done) {
    const { field, wireType } = reader.tag();
    const known = fields[field];
    if (known === undefined) {
      reader.skip(wireType);
      continue;
    }
    if (wireType !== known[0]) throw new RangeError(`field ${field} has wire type ${wireType}, expected ${known[0]}`);
    known[1](reader);
  }
}

// ignoreBOM keeps U+FEFF: it is a piece of its own (30143 in Llama 2), not a byte-order mark.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function decodeUtf8(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new RangeError("a piece is not UTF-8");
  }
}
