/**
 * GPT-2's byte-level alphabet: every byte is shown as one printable Unicode character, so that byte-level BPE vocabs
 * (tokenizer.json, GGUF "gpt2") can store arbitrary byte strings as text. Printable Latin-1 bytes stand for
 * themselves; the other 68 bytes take U+0100 onward, in byte order.
 */

/** BYTE_TO_CHAR[b] is the character that stands for byte b. */
export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();

/** CHAR_TO_BYTE[code] is the byte a character stands for, -1 for characters outside the alphabet. */
const CHAR_TO_BYTE = new Int16Array(0x100 + 68).fill(-1);
BYTE_TO_CHAR.forEach((ch, b) => (CHAR_TO_BYTE[ch.charCodeAt(0)] = b));

function buildByteToChar(): string[] {
  const isPrintable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const chars: string[] = [];
  let next = 0x100;
  for (let b = 0; b < 256; b++) chars.push(String.fromCharCode(isPrintable(b) ? b : next++));
  return chars;
}

/**
 * The bytes a byte-level token text stands for. Like the HF ByteLevel decoder, a token holding any character outside
 * the alphabet is taken as literal text (its UTF-8 bytes) instead.
 */
export function byteLevelToBytes(text: string): Buffer {
  const bytes = Buffer.allocUnsafe(text.length); // pooled: a vocab makes 100k+ of these; every byte is written below
  for (let i = 0; i < text.length; i++) {
    const b = CHAR_TO_BYTE[text.charCodeAt(i)] ?? -1;
    if (b < 0) return Buffer.from(text, "utf8");
    bytes[i] = b;
  }
  return bytes;
}
