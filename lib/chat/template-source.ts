/**
 * Finds the chat template a model's files carry: GGUF's tokenizer.chat_template key; in a model directory,
 * tokenizer_config.json's chat_template (a string, or a list of {name, template} of which "default" is taken),
 * else the chat_template.jinja file newer transformers versions write beside it; a serialized model's manifest.
 */
import * as fs from "node:fs";
import * as nodePath from "node:path";
import { ModelFormatError } from "../errors";
import { JsonConfig } from "../formats/json-config";
import type { ModelDescriptor } from "../formats/types";

export interface TemplateSource {
  text: string;
  /** The file (and key) it came from, for error messages. */
  origin: string;
}

const GGUF_KEY = "tokenizer.chat_template";

export function findChatTemplate(desc: ModelDescriptor): TemplateSource | undefined {
  if (desc.format === "serialized") return desc.chatTemplate;
  if (desc.format === "gguf") {
    const text = desc.metadata[GGUF_KEY];
    if (text === undefined) return undefined;
    const origin = `${desc.files[0]}: metadata ${GGUF_KEY}`;
    if (typeof text !== "string") throw new ModelFormatError(`${origin} is not a string`);
    return { text, origin };
  }
  if (desc.format === "hf" || desc.format === "meta") return directoryTemplate(nodePath.dirname(desc.files[0]));
  return undefined;
}

function directoryTemplate(dir: string): TemplateSource | undefined {
  const configPath = nodePath.join(dir, "tokenizer_config.json");
  if (fs.existsSync(configPath)) {
    const fromConfig = configTemplate(JsonConfig.read(configPath));
    if (fromConfig !== undefined) return fromConfig;
  }
  const jinjaPath = nodePath.join(dir, "chat_template.jinja");
  return fs.existsSync(jinjaPath) ? { text: fs.readFileSync(jinjaPath, "utf8"), origin: jinjaPath } : undefined;
}

function configTemplate(config: JsonConfig): TemplateSource | undefined {
  const value = config.get("chat_template");
  const origin = `${config.path}: chat_template`;
  if (value === undefined || typeof value === "string") return value === undefined ? undefined : { text: value, origin };
  if (!Array.isArray(value)) throw new ModelFormatError(`${origin} is neither a string nor a list of {name, template}`);
  const named = value.find((t) => typeof t === "object" && t !== null && t.name === "default");
  if (typeof named?.template !== "string") {
    throw new ModelFormatError(`${origin} is a list of templates without a "default" one`);
  }
  return { text: named.template, origin: `${origin} (default)` };
}
