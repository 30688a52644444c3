/**
 * The chat templates used when a model's files carry none: Meta's own Llama 2 and Llama 3 formats, written as the
 * Jinja templates HF publishes with the chat models, so they run through the same renderer as a model's template.
 */
import type { Tokenizer } from "../tokenizer/types";
import { ChatTemplate } from "./template";

/** meta-llama/Llama-2-7b-chat-hf: `<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s>`. */
export const LLAMA2_CHAT_TEMPLATE =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}" +
  "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}" +
  "{% for message in loop_messages %}" +
  "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}" +
  "{% else %}{% set content = message['content'] %}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}" +
  "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}" +
  "{% endfor %}";

/** meta-llama/Meta-Llama-3-8B-Instruct: `<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>` per message. */
export const LLAMA3_CHAT_TEMPLATE =
  "{% set loop_messages = messages %}{% for message in loop_messages %}" +
  "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}" +
  "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

/** The built-in template that fits the tokenizer: Llama 3's when it has the header tokens, Llama 2's for SPM. */
export function builtinChatTemplate(tokenizer: Tokenizer): ChatTemplate | undefined {
  const header = tokenizer.tokenize("<|start_header_id|>", { special: true, addBos: false });
  if (header.length === 1 && tokenizer.isSpecial(header[0])) return new ChatTemplate(LLAMA3_CHAT_TEMPLATE, "built-in Llama 3 chat template", true);
  if (tokenizer.kind === "spm") return new ChatTemplate(LLAMA2_CHAT_TEMPLATE, "built-in Llama 2 chat template", true);
  return undefined;
}
