/** Llama 3's special-token conventions, shared by the loaders. */

export const BEGIN_OF_TEXT = "<|begin_of_text|>";
const END_OF_TEXT = "<|end_of_text|>";
const END_OF_TURN = "<|eot_id|>";

/** Meta's tokenizer.model holds only the ranks; tokenizer.py appends these 256 tokens after them, in this order. */
export function llama3SpecialTokenTexts(): string[] {
  const named = [
    BEGIN_OF_TEXT,
    END_OF_TEXT,
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|reserved_special_token_2|>",
    "<|reserved_special_token_3|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|reserved_special_token_4|>",
    END_OF_TURN,
  ];
  const reserved = Array.from({ length: 256 - named.length }, (_, i) => `<|reserved_special_token_${i + 5}|>`);
  return [...named, ...reserved];
}

/**
 * End-of-sequence ids: those the source declares plus Llama 3's end-of-text and end-of-turn tokens when the vocab
 * has them (chat models end a turn with <|eot_id|> even where the file declares only <|end_of_text|>).
 */
export function collectEosIds(declared: (number | undefined)[], idOf: (text: string) => number | undefined): number[] {
  const ids = [...declared, idOf(END_OF_TEXT), idOf(END_OF_TURN)].filter((id): id is number => id !== undefined);
  return [...new Set(ids)];
}
