/**
 * Pre-tokenizers: the regex splits applied to text before byte-level BPE. Merges never cross a piece boundary.
 * Each known scheme is written once as JavaScript regexes and looked up by the names and patterns files use.
 */

/** Splits text into pieces whose concatenation is the text. */
export interface PreTokenizer {
  split(text: string): string[];
}

/**
 * Llama 3's split pattern as tokenizer.json, tiktoken and Meta's tokenizer.py write it (Oniguruma / fancy-regex
 * syntax). Used to recognise the scheme in a tokenizer.json; the JS form below is what runs.
 */
const LLAMA3_SPLIT_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// Oniguruma's and Rust's \s is Unicode White_Space (which has U+0085 and lacks U+FEFF, unlike JS \s), so spell it out.
const S = "\\p{White_Space}";
const NOT_S = "\\P{White_Space}";

/** LLAMA3_SPLIT_PATTERN in JS: Node 20 lacks inline (?i:...) groups, so the contractions spell out both cases. */
const LLAMA3_REGEX = new RegExp(
  [
    "'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])",
    "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+",
    "\\p{N}{1,3}",
    ` ?[^${S}\\p{L}\\p{N}]+[\\r\\n]*`,
    `${S}*[\\r\\n]+`,
    `${S}+(?!${NOT_S})`,
    `${S}+`,
  ].join("|"),
  "gu",
);

/** llama.cpp's deepseek-coder pre-tokenizer: several regexes applied in turn, each splitting the previous pieces. */
const DEEPSEEK_CODER_REGEXES = [
  /[\r\n]/gu,
  /\p{White_Space}?\p{L}+/gu,
  /\p{White_Space}?\p{P}+/gu,
  /[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+/gu,
  /\p{N}/gu,
];

/**
 * Splits by each regex in turn (HF Split with behavior "Isolated"): every piece becomes its matches plus the
 * unmatched stretches between them.
 */
class RegexSequencePreTokenizer implements PreTokenizer {
  constructor(private readonly regexes: RegExp[]) {}

  split(text: string): string[] {
    let pieces = [text];
    for (const regex of this.regexes) {
      const next: string[] = [];
      for (const piece of pieces) splitIsolated(piece, regex, next);
      pieces = next;
    }
    return pieces;
  }
}

function splitIsolated(text: string, regex: RegExp, out: string[]): void {
  let start = 0;
  regex.lastIndex = 0;
  for (let m = regex.exec(text); m !== null; m = regex.exec(text)) {
    const end = m.index + m[0].length;
    if (end === m.index) {
      regex.lastIndex++; // an empty match splits nothing; step past it
      continue;
    }
    if (m.index > start) out.push(text.slice(start, m.index));
    out.push(m[0]);
    start = end;
  }
  if (start < text.length) out.push(text.slice(start));
}

export const llama3PreTokenizer: PreTokenizer = new RegexSequencePreTokenizer([LLAMA3_REGEX]);
const deepseekCoderPreTokenizer: PreTokenizer = new RegexSequencePreTokenizer(DEEPSEEK_CODER_REGEXES);

/** Every pre-tokenizer by one name of its own: a serialized model records the name and looks the scheme up again. */
const NAMED_PRE_TOKENIZERS = new Map<string, PreTokenizer>([
  ["llama3", llama3PreTokenizer],
  ["deepseek-coder", deepseekCoderPreTokenizer],
]);

/** The name of one of the pre-tokenizers here (undefined for any other object). */
export function preTokenizerName(preTokenizer: PreTokenizer): string | undefined {
  for (const [name, p] of NAMED_PRE_TOKENIZERS) if (p === preTokenizer) return name;
  return undefined;
}

/** The pre-tokenizer preTokenizerName gave `name` to. */
export function preTokenizerByName(name: string): PreTokenizer | undefined {
  return NAMED_PRE_TOKENIZERS.get(name);
}

/** GGUF tokenizer.ggml.pre values we run, with llama.cpp's meaning. */
const GGUF_PRE_TOKENIZERS = new Map<string, PreTokenizer>([
  ["llama-bpe", llama3PreTokenizer],
  ...NAMED_PRE_TOKENIZERS,
]);

export function preTokenizerForGguf(pre: string): PreTokenizer | undefined {
  return GGUF_PRE_TOKENIZERS.get(pre);
}

/** The pre-tokenizer for a tokenizer.json's Split regexes (in order), when it is one we know. */
export function preTokenizerForSplitPatterns(patterns: string[]): PreTokenizer | undefined {
  return patterns.length === 1 && patterns[0] === LLAMA3_SPLIT_PATTERN ? llama3PreTokenizer : undefined;
}
