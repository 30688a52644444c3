/**
 * The Hugging Face Hub: its endpoint (HF_ENDPOINT) and token (HF_TOKEN), the resolve URLs files are downloaded
 * from, the tree API that lists a repository, and which of its files make up a model directory.
 */
import { InvalidArgumentError } from "../errors";
import { DownloadError } from "./errors";
import { type RequestContext, request } from "./http";

const DEFAULT_ENDPOINT = "https://huggingface.co";

export function hubEndpoint(): string {
  const endpoint = (process.env.HF_ENDPOINT || DEFAULT_ENDPOINT).replace(/\/+$/, "");
  if (!URL.canParse(endpoint)) throw new InvalidArgumentError(`HF_ENDPOINT=${endpoint} is not a URL`);
  return endpoint;
}

export function hubToken(): string | undefined {
  return process.env.HF_TOKEN || undefined;
}

function encodePath(path: string): string {
  return path.split("/").map(encodeURIComponent).join("/");
}

/** `{endpoint}/{repo}/resolve/{revision}/{path}`: the file, or a redirect to it (LFS files live on a CDN). */
export function resolveUrl(repo: string, revision: string, path: string): string {
  return `${hubEndpoint()}/${repo}/resolve/${encodeURIComponent(revision)}/${encodePath(path)}`;
}

export interface RepoFile {
  path: string;
  size: number;
}

interface TreeEntry {
  type?: string;
  path?: string;
  size?: number;
  lfs?: { size?: number };
}

/**
 * The files at the top of a repository, from `{endpoint}/api/models/{repo}/tree/{revision}`, following the
 * `Link: <…>; rel="next"` pages as the Hub's own clients do.
 */
export async function listRepoFiles(repo: string, revision: string, ctx: RequestContext): Promise<RepoFile[]> {
  const files: RepoFile[] = [];
  let url: string | undefined = `${hubEndpoint()}/api/models/${repo}/tree/${encodeURIComponent(revision)}`;
  while (url !== undefined) {
    const exchange = await request(url, "GET", ctx, { accept: "application/json" });
    exchange.assertOk();
    const entries = await exchange.json();
    if (!Array.isArray(entries)) throw new DownloadError(`${ctx.what}: the Hub's file list (${url}) is not a list`);
    for (const entry of entries as TreeEntry[]) {
      if (entry?.type === "file" && typeof entry.path === "string") {
        files.push({ path: entry.path, size: entry.lfs?.size ?? entry.size ?? 0 });
      }
    }
    const next = /<([^>]+)>;\s*rel="next"/.exec(exchange.response.headers.get("link") ?? "")?.[1];
    url = next === undefined ? undefined : new URL(next, url).href;
  }
  return files;
}

/**
 * The files loadModel reads from an HF directory: config, safetensors weights (one file or shards with their
 * index), tokenizer and chat template. READMEs, other weight formats (.bin, .pth, .gguf, ONNX) are left out.
 */
const MODEL_DIRECTORY_FILES = new Set([
  "config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
  "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
]);
const WEIGHT_SHARD = /^model-\d+-of-\d+\.safetensors$/;

export function modelDirectoryFiles(files: RepoFile[], spec: string): RepoFile[] {
  const chosen = files.filter((f) => MODEL_DIRECTORY_FILES.has(f.path) || WEIGHT_SHARD.test(f.path));
  if (!chosen.some((f) => f.path === "config.json")) {
    const ggufs = files.filter((f) => f.path.endsWith(".gguf")).map((f) => `${spec}/${f.path}`);
    const hint = ggufs.length > 0 ? `name one of its GGUF files: ${ggufs.slice(0, 5).join(", ")}` : "name a file in it: hf:OWNER/REPO/PATH";
    throw new InvalidArgumentError(`${spec}: the repository has no config.json, so it is not a model directory; ${hint}`);
  }
  return chosen;
}
