/**
 * Model specs: what a user may write wherever a model path goes. `hf:OWNER/REPO[@REVISION][/PATH]` names a file
 * of a Hugging Face Hub repository, or without PATH the repository as a model directory; `https://…` (or
 * `http://…`) a file anywhere; anything else is a local path.
 */
import { InvalidArgumentError } from "../errors";

export const DEFAULT_REVISION = "main";

export type ModelSource =
  /** `path` undefined: the repository's model directory (config, weights, tokenizer). */
  | { kind: "hf"; repo: string; revision: string; path?: string }
  | { kind: "url"; url: URL };

const HF_PREFIX = "hf:";
/** Owner, repository and revision names: they become directory names in the cache, so no "/", "." or "..". */
const NAME = /^\w[\w.-]*$/;
const HF_SYNTAX = "a Hub model is hf:OWNER/REPO[@REVISION][/PATH]";

/** The remote source a spec names, or undefined for a local path. Throws InvalidArgumentError for a malformed spec. */
export function parseModelSpec(spec: string): ModelSource | undefined {
  if (spec.startsWith(HF_PREFIX)) return parseHfSpec(spec);
  if (/^https?:\/\//i.test(spec)) {
    try {
      return { kind: "url", url: new URL(spec) };
    } catch {
      throw new InvalidArgumentError(`${spec}: not a valid URL`);
    }
  }
  return undefined;
}

function parseHfSpec(spec: string): ModelSource {
  const [owner = "", repoAt = "", ...path] = spec.slice(HF_PREFIX.length).split("/");
  const [repo = "", revision = DEFAULT_REVISION, ...extra] = repoAt.split("@");
  if (!NAME.test(owner) || !NAME.test(repo) || !NAME.test(revision) || extra.length > 0) {
    throw new InvalidArgumentError(`${spec}: ${HF_SYNTAX} (names of letters, digits, "-", "_", ".")`);
  }
  // The path becomes a path inside the cache: no empty, "." or ".." segments.
  if (path.some((segment) => segment === "" || segment === "." || segment === "..")) {
    throw new InvalidArgumentError(`${spec}: the file path has an empty, "." or ".." segment (${HF_SYNTAX})`);
  }
  return { kind: "hf", repo: `${owner}/${repo}`, revision, path: path.length > 0 ? path.join("/") : undefined };
}

/** The canonical spelling of a source (the default revision left out), as `ls` prints it and `rm` matches it. */
export function formatModelSpec(source: ModelSource): string {
  if (source.kind === "url") return source.url.href;
  const revision = source.revision === DEFAULT_REVISION ? "" : `@${source.revision}`;
  return `${HF_PREFIX}${source.repo}${revision}${source.path ? `/${source.path}` : ""}`;
}
