/**
 * Checks the values read back from a serialized model (lib/formats/serialized.ts, lib/tokenizer/tables.ts) one field
 * at a time: a value of the wrong kind or out of range is a SerializedModelError naming the file and the field.
 */
import { SerializedModelError } from "../errors";

export class FieldChecker {
  constructor(
    /** The serialized model file. */
    readonly path: string,
    /** Put before every field's name ("tokenizer."). */
    private readonly prefix = "",
  ) {}

  fail(field: string, what: string): never {
    const name = this.prefix + field;
    throw new SerializedModelError(`${this.path}: corrupt serialized model: ${name} ${what}`, this.path, name);
  }

  object(field: string, value: unknown): Record<string, unknown> {
    if (value === null || typeof value !== "object" || Array.isArray(value)) this.fail(field, "is not an object");
    return value as Record<string, unknown>;
  }

  list(field: string, value: unknown): unknown[] {
    if (!Array.isArray(value)) this.fail(field, "is not a list");
    return value as unknown[];
  }

  /** An integer of at least `least` (a byte count, an offset, a size). */
  count(field: string, value: unknown, least = 0): number {
    if (!Number.isSafeInteger(value) || (value as number) < least) this.fail(field, `(${String(value)}) is not an integer of at least ${least}`);
    return value as number;
  }

  text(field: string, value: unknown): string {
    if (typeof value !== "string") this.fail(field, "is not a string");
    return value as string;
  }

  flag(field: string, value: unknown): boolean {
    if (typeof value !== "boolean") this.fail(field, "is not true or false");
    return value as boolean;
  }

  oneOf<T extends string>(field: string, value: unknown, allowed: readonly T[]): T {
    if (!allowed.includes(value as T)) this.fail(field, `(${String(value)}) is not one of ${allowed.join(", ")}`);
    return value as T;
  }

  tokenId(field: string, value: unknown, vocabSize: number): number {
    if (!Number.isInteger(value) || (value as number) < 0 || (value as number) >= vocabSize) this.fail(field, `(${String(value)}) is not a token id`);
    return value as number;
  }

  /** A token id, or undefined for null (none). */
  optionalTokenId(field: string, value: unknown, vocabSize: number): number | undefined {
    return value === null ? undefined : this.tokenId(field, value, vocabSize);
  }

  tokenIds(field: string, value: unknown, vocabSize: number): number[] {
    return this.list(field, value).map((id, i) => this.tokenId(`${field}[${i}]`, id, vocabSize));
  }
}
