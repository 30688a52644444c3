/** A JSON config file (config.json, params.json, ...) with typed, validated field access. */
import * as fs from "node:fs";
import { ModelFormatError } from "../errors";

/** Config files are small; anything bigger is not one. */
const MAX_CONFIG_BYTES = 16 << 20;

export class JsonConfig {
  constructor(
    readonly path: string,
    readonly fields: Record<string, unknown>,
  ) {}

  static read(path: string): JsonConfig {
    let text: string;
    try {
      if (fs.statSync(path).size > MAX_CONFIG_BYTES) throw new Error(`larger than ${MAX_CONFIG_BYTES} bytes`);
      text = fs.readFileSync(path, "utf8");
    } catch (err) {
      throw new ModelFormatError(`${path}: cannot read: ${(err as Error).message}`, { cause: err });
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new ModelFormatError(`${path}: not valid JSON: ${(err as Error).message}`, { cause: err });
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new ModelFormatError(`${path}: not a JSON object`);
    }
    return new JsonConfig(path, value as Record<string, unknown>);
  }

  /** The value under `key`; null counts as absent, as HF configs write null for "not set". */
  get(key: string): unknown {
    return this.fields[key] ?? undefined;
  }

  /** A finite number (or `fallback` when absent). */
  number(key: string, fallback?: number): number {
    const v = this.get(key) ?? fallback;
    if (v === undefined) throw new ModelFormatError(`${this.path}: required key "${key}" is missing`);
    if (typeof v !== "number" || !Number.isFinite(v)) throw new ModelFormatError(`${this.path}: "${key}" is not a number: ${JSON.stringify(v)}`);
    return v;
  }

  /** An integer (or `fallback` when absent). */
  integer(key: string, fallback?: number): number {
    const v = this.number(key, fallback);
    if (!Number.isSafeInteger(v)) throw new ModelFormatError(`${this.path}: "${key}" is not an integer: ${v}`);
    return v;
  }

  /** Token ids written as a number or a list of numbers; [] when absent. */
  tokenIds(key: string): number[] {
    const v = this.get(key);
    if (v === undefined) return [];
    const ids = Array.isArray(v) ? v : [v];
    if (!ids.every((id) => Number.isSafeInteger(id) && id >= 0)) {
      throw new ModelFormatError(`${this.path}: "${key}" is not a token id or a list of them: ${JSON.stringify(v)}`);
    }
    return ids as number[];
  }
}
