/**
 * Reads a HF tokenizers tokenizer.json of model type "BPE" with a byte-level pre-tokenizer (Llama 3), plus the
 * tokenizer_config.json beside it for bos/eos/add_bos_token.
 */
import { readFile } from "node:fs/promises";
import { ModelFormatError, UnsupportedModelError } from "../errors";
import { preTokenizerForSplitPatterns, type PreTokenizer } from "./bpe-pretokenizer";
import { BEGIN_OF_TEXT, collectEosIds } from "./bpe-special";
import type { AddedToken, BpeSpec } from "./bpe-tokenizer";
import { buildTextVocab, splitMerge } from "./bpe-vocab";

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

async function readJson(path: string): Promise<Json> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new ModelFormatError(`${path}: cannot read: ${(err as Error).message}`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ModelFormatError(`${path}: malformed JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!isObject(json)) throw new ModelFormatError(`${path}: not a JSON object`);
  return json;
}

/** The vocab of a tokenizer.json as the file writes it: token texts by id, added tokens, merges (by priority). */
export interface HfBpeTables {
  texts: (string | undefined)[];
  added: AddedToken[];
  merges: [string, string][];
}

export async function loadHfBpeSpec(path: string, configPath?: string): Promise<BpeSpec> {
  return (await loadHfBpe(path, configPath)).spec;
}

/** The runnable spec plus the file's own tables (GGUF conversion writes those back as they are). */
export async function loadHfBpe(path: string, configPath?: string): Promise<{ spec: BpeSpec; tables: HfBpeTables }> {
  const json = await readJson(path);
  const config = configPath === undefined ? {} : await readJson(configPath);
  const model = json.model;
  if (!isObject(model)) throw new ModelFormatError(`${path}: no "model" object`);
  if (model.type !== "BPE") {
    throw new UnsupportedModelError(`${path}: tokenizer model type ${JSON.stringify(model.type)} is not supported (BPE only)`);
  }
  if (json.normalizer != null) throw new UnsupportedModelError(`${path}: normalizers are not supported`);
  if (!isObject(json.decoder) || json.decoder.type !== "ByteLevel") {
    throw new UnsupportedModelError(`${path}: only the ByteLevel decoder is supported`);
  }
  const preTokenizer = readPreTokenizer(path, json.pre_tokenizer);

  if (!isObject(model.vocab)) throw new ModelFormatError(`${path}: model.vocab is not an object`);
  const vocabEntries = Object.entries(model.vocab);
  const added = readAddedTokens(path, json.added_tokens);
  // Ids run from 0 without gaps, so none reaches the number of entries: a bound checked before the id is used.
  const idLimit = vocabEntries.length + added.length;
  const texts: (string | undefined)[] = [];
  const setText = (id: unknown, text: string) => {
    if (!Number.isSafeInteger(id) || (id as number) < 0 || (id as number) >= idLimit) {
      throw new ModelFormatError(`${path}: token "${text}" has bad id ${String(id)} (the file has ${idLimit} tokens)`);
    }
    texts[id as number] = text;
  };
  for (const [text, id] of vocabEntries) setText(id, text);
  for (const t of added) setText(t.id, t.text);
  const merges = readMerges(path, model.merges);
  const vocab = buildTextVocab(path, texts, added, merges);

  const idOfConfigToken = (key: string): number | undefined => {
    const v = config[key];
    const text = typeof v === "string" ? v : isObject(v) && typeof v.content === "string" ? v.content : undefined;
    if (text === undefined) return undefined;
    const id = vocab.idOf(text);
    if (id === undefined) throw new ModelFormatError(`${configPath}: ${key} "${text}" is not in ${path}`);
    return id;
  };
  const templateBos = templateBosText(json.post_processor);
  const bosId = idOfConfigToken("bos_token") ?? vocab.idOf(templateBos || BEGIN_OF_TEXT);
  // add_bos_token when the config says; else whether the post-processor template adds it; else Llama's habit: yes.
  const addBosDefault =
    typeof config.add_bos_token === "boolean" ? config.add_bos_token : templateBos !== undefined ? templateBos !== "" : true;
  const spec: BpeSpec = {
    origin: path,
    ...vocab,
    preTokenizer,
    ignoreMerges: model.ignore_merges === true,
    bosId,
    eosIds: collectEosIds([idOfConfigToken("eos_token")], vocab.idOf),
    addBosDefault,
  };
  return { spec, tables: { texts, added, merges } };
}

/** Accepts Split(regex, Isolated) steps we know followed by a ByteLevel step that adds no regex or prefix space. */
function readPreTokenizer(path: string, spec: unknown): PreTokenizer {
  const steps = isObject(spec) && spec.type === "Sequence" && Array.isArray(spec.pretokenizers) ? spec.pretokenizers : [spec];
  const patterns: string[] = [];
  let byteLevel = false;
  for (const step of steps) {
    if (!isObject(step)) throw new UnsupportedModelError(`${path}: pre_tokenizer ${JSON.stringify(step)} is not supported`);
    const pattern = isObject(step.pattern) ? step.pattern.Regex : undefined;
    if (step.type === "Split" && typeof pattern === "string" && step.behavior === "Isolated" && !step.invert) {
      patterns.push(pattern);
    } else if (step.type === "ByteLevel" && !step.add_prefix_space && !step.use_regex) {
      byteLevel = true;
    } else {
      throw new UnsupportedModelError(`${path}: pre_tokenizer step ${String(step.type)} with these options is not supported`);
    }
  }
  const preTokenizer = byteLevel ? preTokenizerForSplitPatterns(patterns) : undefined;
  if (preTokenizer === undefined) {
    throw new UnsupportedModelError(`${path}: pre-tokenizer ${JSON.stringify(patterns)} is not supported (Llama 3's byte-level split only)`);
  }
  return preTokenizer;
}

function readAddedTokens(path: string, list: unknown): AddedToken[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw new ModelFormatError(`${path}: added_tokens is not an array`);
  return list.map((t, i) => {
    if (!isObject(t) || typeof t.content !== "string" || typeof t.id !== "number") {
      throw new ModelFormatError(`${path}: added_tokens[${i}] has no content or id`);
    }
    return { id: t.id, text: t.content, special: t.special === true };
  });
}

/** Merges are "left right" strings (older files) or [left, right] pairs (newer ones). */
function readMerges(path: string, merges: unknown): [string, string][] {
  if (!Array.isArray(merges)) throw new ModelFormatError(`${path}: model.merges is not an array`);
  return merges.map((m, i) => {
    const pair: unknown = typeof m === "string" ? splitMerge(m) : m;
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string" || typeof pair[1] !== "string") {
      throw new ModelFormatError(`${path}: merge ${i} is not a pair of tokens: ${JSON.stringify(m)}`);
    }
    return pair as [string, string];
  });
}

/**
 * The text of the special token a TemplateProcessing post-processor puts first ("" when it starts with the
 * sequence itself); undefined when there is no such post-processor.
 */
function templateBosText(processor: unknown): string | undefined {
  const candidates = isObject(processor) && processor.type === "Sequence" && Array.isArray(processor.processors) ? processor.processors : [processor];
  const template = candidates.find((p): p is Json => isObject(p) && p.type === "TemplateProcessing");
  if (template === undefined) return undefined;
  const first = Array.isArray(template.single) ? template.single[0] : undefined;
  const special = isObject(first) && isObject(first.SpecialToken) ? first.SpecialToken.id : undefined;
  return typeof special === "string" ? special : "";
}
