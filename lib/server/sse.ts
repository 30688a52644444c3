/**
 * A server-sent-events response as OpenAI streams it: `data: {json}` events, then `data: [DONE]` (chat and
 * completions), or named events `event: TYPE` + `data: {json}` ending with the last one (the Responses API). The
 * response starts with the first event, so an error before any output can still be an ordinary JSON error with its
 * status.
 */
import { PassThrough } from "node:stream";
import type { FastifyReply } from "fastify";

export class SseStream {
  private stream: PassThrough | undefined;

  constructor(private readonly reply: FastifyReply) {}

  /** Whether the 200 and the first event are out (errors from here on can only be events). */
  get opened(): boolean {
    return this.stream !== undefined;
  }

  send(data: unknown): void {
    this.write(`data: ${JSON.stringify(data)}\n\n`, false);
  }

  /** A named event; `last` ends the stream with it. */
  sendEvent(type: string, data: unknown, last = false): void {
    this.write(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`, last);
  }

  done(): void {
    this.write("data: [DONE]\n\n", true);
  }

  /** Ends a stream that failed after it began: the error as its last event and no [DONE], as OpenAI's does. */
  fail(error: unknown): void {
    this.write(`data: ${JSON.stringify(error)}\n\n`, true);
  }

  private write(text: string, last: boolean): void {
    const stream = this.open();
    // After a client disconnect the framework destroys the stream; what is left to say goes nowhere.
    if (!stream.writable) return;
    if (last) stream.end(text);
    else stream.write(text);
  }

  private open(): PassThrough {
    if (!this.stream) {
      this.stream = new PassThrough();
      this.reply
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .header("x-accel-buffering", "no") // proxies (nginx) must not hold events back
        .send(this.stream);
    }
    return this.stream;
  }
}
