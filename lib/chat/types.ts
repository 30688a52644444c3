/** The chat API's shapes: messages in, a prompt (text and token ids) out. */

export interface ChatMessage {
  /** "tool": a tool's result, answering the call toolCallId names. */
  role: "system" | "user" | "assistant" | "tool";
  content: string;
  /** An assistant turn's tool calls (its content is then what it wrote besides them, often ""). */
  toolCalls?: ToolCall[];
  /** A tool message: the id of the call it answers. */
  toolCallId?: string;
}

/** A function the model may call (OpenAI's function tool). */
export interface ToolDefinition {
  /** Letters, digits, '_', '.' or '-', at most 64. */
  name: string;
  description?: string;
  /** JSON Schema of the arguments object. */
  parameters?: Record<string, unknown>;
}

/** A call the model made. */
export interface ToolCall {
  /** Unique per call ("call_…"); the tool message with the result names it. */
  id: string;
  name: string;
  /** The arguments object as JSON text. */
  arguments: string;
}

export interface ChatTemplateOptions {
  /** End with the header that opens the assistant's turn, so generation writes the reply (default true). */
  addGenerationPrompt?: boolean;
  /** Tools the model may call, rendered with the conversation (see ToolDefinition). */
  tools?: readonly ToolDefinition[];
}

/** A rendered conversation. It is itself a prompt: `model.generate(model.applyChatTemplate(messages))`. */
export interface ChatPrompt {
  text: string;
  tokens: number[];
}
