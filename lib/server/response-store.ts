/**
 * The Responses API's memory of past responses for `previous_response_id` (and items for `item_reference`): each
 * stored response keeps its conversation (input and output as chat messages, instructions excluded, as OpenAI's
 * API carries them over). It lives as long as the server and is bounded in entries and in characters; the least
 * recently used response goes first.
 */
import type { ChatMessage } from "../chat/types";

/** Responses kept at most. */
const MAX_RESPONSES = 256;
/** Characters of message content kept at most, over all responses: a few long conversations cannot fill memory. */
const MAX_CHARACTERS = 32 * 1024 * 1024;

interface StoredResponse {
  conversation: ChatMessage[];
  /** The output items' ids and the messages they stand for. */
  items: Map<string, ChatMessage>;
  characters: number;
}

export class ResponseStore {
  /** In use order: a Map iterates in insertion order, and a read re-inserts. */
  private readonly responses = new Map<string, StoredResponse>();
  private characters = 0;

  constructor(
    private readonly maxResponses = MAX_RESPONSES,
    private readonly maxCharacters = MAX_CHARACTERS,
  ) {}

  /** The conversation of a stored response (its input, then its output), or undefined when unknown or evicted. */
  conversation(id: string): ChatMessage[] | undefined {
    const stored = this.touch(id);
    return stored && [...stored.conversation];
  }

  /** The message an output item of a stored response stands for. */
  item(id: string): ChatMessage | undefined {
    for (const [responseId, stored] of this.responses) {
      const message = stored.items.get(id);
      if (message) {
        this.touch(responseId);
        return message;
      }
    }
    return undefined;
  }

  set(id: string, conversation: ChatMessage[], items: Map<string, ChatMessage>): void {
    const characters = conversation.reduce((n, m) => n + m.content.length + (m.toolCalls?.reduce((k, c) => k + c.arguments.length, 0) ?? 0), 0);
    if (characters > this.maxCharacters) return;
    this.responses.set(id, { conversation, items, characters });
    this.characters += characters;
    for (const [oldest, stored] of this.responses) {
      if (this.responses.size <= this.maxResponses && this.characters <= this.maxCharacters) break;
      this.responses.delete(oldest);
      this.characters -= stored.characters;
    }
  }

  private touch(id: string): StoredResponse | undefined {
    const stored = this.responses.get(id);
    if (stored) {
      this.responses.delete(id);
      this.responses.set(id, stored);
    }
    return stored;
  }
}
