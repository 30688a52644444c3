/**
 * Finds special-token strings ("<s>", "<|eot_id|>", ...) in text for `tokenize(text, { special: true })`, and BPE's
 * added tokens, which are cut out of text always: the text splits into plain fragments and token ids. At any
 * position the longest matching token wins, as in llama.cpp. Both tokenizers use it.
 */

/** A plain-text fragment (tokenized normally) or the id of a special token found in the text. */
export type TextPart = string | number;

export class SpecialTokenSplitter {
  private readonly ids: Map<string, number>;
  private readonly pattern: RegExp | undefined;

  /** `tokens`: [string, id] pairs; for a string given twice the first id is kept. */
  constructor(tokens: Iterable<readonly [string, number]>) {
    this.ids = new Map();
    for (const [text, id] of tokens) if (text !== "" && !this.ids.has(text)) this.ids.set(text, id);
    // Regex alternation takes the first alternative that matches, so listing longer strings first gives the longest match.
    const alternatives = [...this.ids.keys()].sort((a, b) => b.length - a.length).map(escapeRegExp);
    this.pattern = alternatives.length > 0 ? new RegExp(alternatives.join("|"), "g") : undefined;
  }

  split(text: string): TextPart[] {
    if (!this.pattern) return text === "" ? [] : [text];
    const parts: TextPart[] = [];
    let last = 0;
    for (const m of text.matchAll(this.pattern)) {
      if (m.index > last) parts.push(text.slice(last, m.index));
      parts.push(this.ids.get(m[0])!);
      last = m.index + m[0].length;
    }
    if (last < text.length) parts.push(text.slice(last));
    return parts;
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
