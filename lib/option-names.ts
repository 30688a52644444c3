/**
 * Rejects options objects with keys a function does not take: in plain JavaScript a misspelled option
 * (`{ temprature: 0.1 }`) would otherwise be ignored without a word. Every public function with an options object
 * checks it here, against a table of its option names that TypeScript keeps equal to the options interface.
 */
import { InvalidArgumentError, UnknownOptionError } from "./errors";

/** The names of an options interface, exactly: `{ a: true, b: true } satisfies OptionNames<Options>`. */
export type OptionNames<T> = { readonly [K in keyof Required<T>]: true };

/**
 * Throws an UnknownOptionError for the first key of `options` that is not in `names`, suggesting the nearest valid
 * name. `undefined` and a missing object pass (a known key set to undefined is fine); a non-object is an
 * InvalidArgumentError.
 */
export function checkOptionNames(options: unknown, names: OptionNames<object>, where: string): void {
  if (options === undefined) return;
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new InvalidArgumentError(`${where}: options must be an object`);
  }
  for (const key of Object.keys(options)) {
    if (Object.hasOwn(names, key)) continue;
    const suggestion = nearestName(key, Object.keys(names));
    throw new UnknownOptionError(
      `${where}: unknown option "${key}"${suggestion ? ` (did you mean "${suggestion}"?)` : ` (valid options: ${Object.keys(names).join(", ")})`}`,
      key,
      suggestion,
    );
  }
}

/** The valid name nearest to `key` (case ignored), when it is within a third of the key's length (at least 2) edits. */
function nearestName(key: string, names: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(key.length / 3)) + 1;
  for (const name of names) {
    const d = editDistance(key.toLowerCase(), name.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [name, d];
  }
  return best;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours cost 1. */
function editDistance(a: string, b: string): number {
  // Three rows of the dynamic programme: two back (for swaps), one back, and the current one.
  let before = new Array<number>(b.length + 1).fill(0);
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, before[j - 2] + 1);
      current.push(d);
    }
    [before, previous] = [previous, current];
  }
  return previous[b.length];
}
