import { readFile } from "node:fs/promises";
import { ModelFormatError } from "../errors";

/** Reads a whole tokenizer file (they are small); an unreadable file is a ModelFormatError naming it. */
export async function readTokenizerFile(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new ModelFormatError(`${path}: cannot read tokenizer file: ${(err as Error).message}`, { cause: err });
  }
}
