/**
 * OpenAI's response shapes for the two generation endpoints: `chat.completion` (and its `chat.completion.chunk`
 * stream) and the legacy `text_completion`, with their two logprobs formats; and a reply's text as it streams
 * (ChoiceText, HeldReply for tool calls), shared with the Responses API. Everything else about a request (running
 * it, streaming it) is the same for both and lives in completion-route.ts.
 */
import { mayBeToolCalls, parseToolCalls } from "../chat/tools";
import type { ToolCall } from "../chat/types";
import type { FinishReason, GeneratedToken, TokenLogprob } from "../generation/types";
import type { ToolCalling } from "./translate";

/** Why a choice ended: the generation's reason, or "tool_calls" when its reply was parsed into calls. */
export type ChoiceFinish = FinishReason | "tool_calls";

/** A generated token with its log-probability, as the responses report it. */
export interface ScoredToken {
  /** The token's own text. */
  text: string;
  logprob: number;
  top: TokenLogprob[];
  /** Where its text starts in the prompt's text followed by the choice's (the legacy format reports it). */
  offset: number;
}

/** What the two endpoints differ in. */
export interface ResponseFormat {
  /** Prefix of the response id. */
  idPrefix: string;
  object: string;
  chunkObject: string;
  /** A choice of a whole (non-streamed) response; toolCalls when its reply was calls (chat only). */
  choice(index: number, text: string, logprobs: ScoredToken[] | undefined, finishReason: ChoiceFinish, toolCalls?: ToolCall[]): object;
  /** The first chunk of a streamed choice, before any text, or undefined when the format has none. */
  openingChoice(index: number): object | undefined;
  /** A streamed piece of text with the logprobs of the tokens that released it. */
  deltaChoice(index: number, text: string, logprobs: ScoredToken[] | undefined): object;
  /** The last chunk of a streamed choice. */
  finishChoice(index: number, finishReason: ChoiceFinish): object;
  /** The chunks of a streamed tool call, the `position`th of its choice: its name and id, then its arguments (chat only). */
  toolCallChoices?(index: number, position: number, call: ToolCall): object[];
}

/** The tokens' bytes, which say what a piece of a multi-byte character is when its text cannot. */
function utf8Bytes(text: string): number[] {
  return [...Buffer.from(text, "utf8")];
}

function chatLogprobs(tokens: ScoredToken[] | undefined) {
  if (!tokens) return null;
  return {
    content: tokens.map((t) => ({
      token: t.text,
      logprob: t.logprob,
      bytes: utf8Bytes(t.text),
      top_logprobs: t.top.map((alt) => ({ token: alt.text, logprob: alt.logprob, bytes: utf8Bytes(alt.text) })),
    })),
    refusal: null,
  };
}

function legacyLogprobs(tokens: ScoredToken[] | undefined) {
  if (!tokens) return null;
  return {
    tokens: tokens.map((t) => t.text),
    token_logprobs: tokens.map((t) => t.logprob),
    // The sampled token is always among its alternatives, as in OpenAI's legacy API: up to logprobs + 1 entries.
    top_logprobs: tokens.map((t) => {
      const top = Object.fromEntries(t.top.map((alt) => [alt.text, alt.logprob]));
      if (!Object.hasOwn(top, t.text)) top[t.text] = t.logprob;
      return top;
    }),
    text_offset: tokens.map((t) => t.offset),
  };
}

/** OpenAI reports only why a generation ended normally; an abort never reaches a client (it left, or got an error). */
function finishReasonOf(reason: ChoiceFinish): "stop" | "length" | "tool_calls" {
  return reason === "length" || reason === "tool_calls" ? reason : "stop";
}

function toolCallObject(call: ToolCall) {
  return { id: call.id, type: "function", function: { name: call.name, arguments: call.arguments } };
}

export const CHAT_FORMAT: ResponseFormat = {
  idPrefix: "chatcmpl-",
  object: "chat.completion",
  chunkObject: "chat.completion.chunk",
  choice: (index, text, logprobs, finishReason, toolCalls) => ({
    index,
    message: toolCalls
      ? { role: "assistant", content: null, tool_calls: toolCalls.map(toolCallObject), refusal: null }
      : { role: "assistant", content: text, refusal: null },
    logprobs: chatLogprobs(logprobs),
    finish_reason: finishReasonOf(finishReason),
  }),
  openingChoice: (index) => ({ index, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }),
  deltaChoice: (index, text, logprobs) => ({ index, delta: { content: text }, logprobs: chatLogprobs(logprobs), finish_reason: null }),
  finishChoice: (index, finishReason) => ({ index, delta: {}, logprobs: null, finish_reason: finishReasonOf(finishReason) }),
  toolCallChoices: (index, position, call) => [
    { index, delta: { tool_calls: [{ index: position, id: call.id, type: "function", function: { name: call.name, arguments: "" } }] }, logprobs: null, finish_reason: null },
    { index, delta: { tool_calls: [{ index: position, function: { arguments: call.arguments } }] }, logprobs: null, finish_reason: null },
  ],
};

export const TEXT_FORMAT: ResponseFormat = {
  idPrefix: "cmpl-",
  object: "text_completion",
  chunkObject: "text_completion",
  choice: (index, text, logprobs, finishReason) => ({
    index,
    text,
    logprobs: legacyLogprobs(logprobs),
    finish_reason: finishReasonOf(finishReason),
  }),
  openingChoice: () => undefined,
  deltaChoice: (index, text, logprobs) => ({ index, text, logprobs: legacyLogprobs(logprobs), finish_reason: null }),
  finishChoice: (index, finishReason) => ({ index, text: "", logprobs: null, finish_reason: finishReasonOf(finishReason) }),
};

/**
 * One choice's text as it is generated, and the scored tokens not yet reported. A token can release no text (part
 * of a character, or held back as a possible stop string): its score waits for the next text to go out with.
 */
export class ChoiceText {
  text = "";
  private unreported: ScoredToken[] = [];

  constructor(
    /** Whether the request asked for logprobs. */
    private readonly scored: boolean,
    /** The length of the prompt's text, where the choice's text begins for the offsets. */
    private readonly textOffset = 0,
  ) {}

  add(token: GeneratedToken): void {
    // The end-of-sequence token may release held-back text; it is not part of the output, so it has no score.
    if (token.logprob !== undefined) {
      this.unreported.push({ text: token.piece ?? "", logprob: token.logprob, top: token.topLogprobs ?? [], offset: this.textOffset + this.text.length });
    }
    this.text += token.text;
  }

  /** The scored tokens since the last call, or undefined when logprobs were not asked for. */
  takeScores(): ScoredToken[] | undefined {
    if (!this.scored) return undefined;
    const scores = this.unreported;
    this.unreported = [];
    return scores;
  }

  get hasUnreported(): boolean {
    return this.unreported.length > 0;
  }
}

/** The tool calls a reply makes when the request offered tools and the reply is calls (the first only unless parallel). */
export function toolCallsOf(text: string, tools: ToolCalling | undefined): ToolCall[] | undefined {
  const calls = tools && parseToolCalls(text, tools.definitions);
  return calls && !tools.parallel ? calls.slice(0, 1) : calls;
}

/**
 * A reply's text as it streams: with tools offered, held back while it may still be tool calls (mayBeToolCalls),
 * then released as it comes once it cannot be; without tools, released as it comes.
 */
export class HeldReply {
  private held: string | undefined;

  constructor(
    tools: ToolCalling | undefined,
    private readonly release: (text: string) => void,
  ) {
    this.held = tools ? "" : undefined;
  }

  add(text: string): void {
    if (text === "") return;
    if (this.held === undefined) return this.release(text);
    this.held += text;
    if (mayBeToolCalls(this.held)) return;
    const held = this.held;
    this.held = undefined;
    this.release(held);
  }

  /** Whether the whole reply so far is held: at its end, it may be parsed as calls. */
  get holding(): boolean {
    return this.held !== undefined;
  }

  /** Releases what is held (a reply that turned out not to be calls). */
  flush(): void {
    const held = this.held;
    this.held = undefined;
    if (held) this.release(held);
  }
}
