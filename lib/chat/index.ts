/** Chat templates: the model's own (GGUF key, tokenizer_config.json) or a built-in Llama 2 / Llama 3 one. */
import type { ModelDescriptor } from "../formats/types";
import type { Tokenizer } from "../tokenizer/types";
import { builtinChatTemplate } from "./builtin-templates";
import type { ChatTemplateLimits } from "./limits";
import { ChatTemplate } from "./template";
import { findChatTemplate } from "./template-source";

export { applyChatTemplate, renderChat } from "./apply";
export { ChatTemplate } from "./template";
export { resolveChatTemplateLimits, type ChatTemplateLimits } from "./limits";
export type { ChatMessage, ChatPrompt, ChatTemplateOptions, ToolCall, ToolDefinition } from "./types";

/**
 * The template a model's conversations are rendered with, compiled (so a broken one fails the load): the model's
 * own (rendered within `limits`), else the built-in one that fits its tokenizer; undefined when neither exists.
 */
export function loadChatTemplate(desc: ModelDescriptor, tokenizer: Tokenizer, limits: Readonly<ChatTemplateLimits>): ChatTemplate | undefined {
  const own = findChatTemplate(desc);
  return own ? new ChatTemplate(own.text, own.origin, false, limits) : builtinChatTemplate(tokenizer);
}
