/**
 * The saved-session file: "LNSESSv2", a little-endian u32 header length, the header as JSON (model fingerprint,
 * tokens held by the KV cache, chat history, the KV rows' type), then the KV state of those tokens as the engine
 * reads it out. Version 1 files (written before the KV cache had types) hold f32 rows and are still read.
 * Written to a temporary file and renamed, so a failed save never leaves a half-written session behind.
 */
import fs from "node:fs/promises";
import { InvalidArgumentError, ModelFormatError } from "../errors";
import type { ChatMessage } from "../chat/types";
import { KV_CACHE_TYPES, type KvCacheType } from "../native/binding";
import type { LastTurn } from "./session";

const MAGIC = "LNSESSv2";
const MAGIC_V1 = "LNSESSv1";

export interface SessionFileHeader {
  /** ModelFingerprint of the model the cache was computed with. */
  model: string;
  contextSize: number;
  systemPrompt: string | undefined;
  tokens: number[];
  history: ChatMessage[];
  /** How the last turn ran, so that the next one continues its tokens. */
  lastTurn: LastTurn | undefined;
  /** The type of the KV state's rows (restoring into a model of another kvCacheType converts them). */
  kvCacheType: KvCacheType;
  stateBytes: number;
}

export async function writeSessionFile(path: string, header: SessionFileHeader, state: Uint8Array): Promise<void> {
  const json = Buffer.from(JSON.stringify(header), "utf8");
  const length = Buffer.alloc(4);
  length.writeUInt32LE(json.length);
  const temp = `${path}.${process.pid}.${Date.now()}.tmp`;
  try {
    await fs.writeFile(temp, Buffer.concat([Buffer.from(MAGIC, "latin1"), length, json, state]));
    await fs.rename(temp, path);
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw err;
  }
}

export async function readSessionFile(path: string): Promise<{ header: SessionFileHeader; state: Uint8Array }> {
  let data: Buffer;
  try {
    data = await fs.readFile(path);
  } catch (err) {
    throw new InvalidArgumentError(`cannot read the session file ${path}: ${(err as Error).message}`, { cause: err });
  }
  const bad = (why: string) => new ModelFormatError(`${path} is not a llama-napi session file: ${why}`);
  const magic = data.length < 12 ? "" : data.toString("latin1", 0, 8);
  if (magic !== MAGIC && magic !== MAGIC_V1) throw bad("wrong magic");
  const headerLength = data.readUInt32LE(8);
  if (12 + headerLength > data.length) throw bad("truncated header");
  let header: SessionFileHeader;
  try {
    header = JSON.parse(data.toString("utf8", 12, 12 + headerLength)) as SessionFileHeader;
  } catch {
    throw bad("the header is not valid JSON");
  }
  const valid =
    header && typeof header.model === "string" && Number.isInteger(header.contextSize) &&
    Array.isArray(header.tokens) && header.tokens.every((t) => Number.isInteger(t)) && Array.isArray(header.history) &&
    Number.isInteger(header.stateBytes);
  if (!valid) throw bad("the header lacks fields");
  if (magic === MAGIC_V1) header.kvCacheType = "f32";
  if (!KV_CACHE_TYPES.includes(header.kvCacheType)) throw bad(`unknown KV cache type ${String(header.kvCacheType)}`);
  if (data.length - 12 - headerLength !== header.stateBytes) {
    throw bad(`the KV state has ${data.length - 12 - headerLength} bytes, the header says ${header.stateBytes}`);
  }
  return { header, state: new Uint8Array(data.buffer, data.byteOffset + 12 + headerLength, header.stateBytes) };
}
