/**
 * What a server says about a file before we download it, read from a HEAD request the way huggingface_hub reads
 * it: X-Linked-Etag / X-Linked-Size (set by the Hub on the redirect of an LFS file: its sha256 and size) over the
 * final ETag / Content-Length, and X-Repo-Commit.
 */
import { type RequestContext, request } from "./http";

export interface RemoteFile {
  size: number | undefined;
  /** Identifies the content: a download is resumed only when the partial file was made from the same ETag. */
  etag: string | undefined;
  /** The commit a Hub revision resolved to. */
  commit: string | undefined;
  /** The content's sha256: the Hub's ETag of an LFS file. */
  sha256: string | undefined;
  /** The Hub's ETag of a file kept in git itself: its git blob id, sha1("blob SIZE\0" + content). */
  gitBlobId: string | undefined;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;
const SHA1_HEX = /^[0-9a-f]{40}$/;

/** `W/"abc"` → `abc`. */
function normalizeEtag(etag: string | null | undefined): string | undefined {
  return etag ? etag.replace(/^W\//, "").replace(/^"(.*)"$/, "$1") : undefined;
}

function parseSize(value: string | null | undefined): number | undefined {
  const n = Number(value);
  return value && Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

export async function probe(url: string, ctx: RequestContext): Promise<RemoteFile> {
  const exchange = await request(url, "HEAD", ctx);
  exchange.close();
  exchange.assertOk();
  const linkedEtag = normalizeEtag(exchange.chainHeader("x-linked-etag"));
  const etag = linkedEtag ?? normalizeEtag(exchange.response.headers.get("etag"));
  const commit = exchange.chainHeader("x-repo-commit");
  return {
    size: parseSize(exchange.chainHeader("x-linked-size") ?? exchange.response.headers.get("content-length")),
    etag,
    commit,
    sha256: linkedEtag !== undefined && SHA256_HEX.test(linkedEtag) ? linkedEtag : undefined,
    // Only a Hub answer (it carries X-Repo-Commit) makes a 40-hex ETag a git blob id; elsewhere it could be anything.
    gitBlobId: linkedEtag === undefined && commit !== undefined && etag !== undefined && SHA1_HEX.test(etag) ? etag : undefined,
  };
}
