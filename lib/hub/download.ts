/**
 * Downloads one file into its place in the cache. The bytes go to <file>.partial; a dropped connection is resumed
 * with a Range request (and so is an interrupted run, when the server still has the same ETag); the result is
 * checked against the server's size and checksum and only then renamed into place, so a file in the cache is
 * always whole. A lock file keeps two downloads of the same file from interleaving.
 */
import * as fs from "node:fs";
import * as nodePath from "node:path";
import type { FileRecord, Snapshot } from "./cache";
import { ContentHasher } from "./checksum";
import { DownloadError } from "./errors";
import { type Exchange, type RequestContext, request } from "./http";
import { withLock } from "./lock";
import { probe, type RemoteFile } from "./remote-file";
import { retrying } from "./retry";

export interface FileDownload {
  snapshot: Snapshot;
  /** Where the file goes inside the snapshot. */
  path: string;
  /** The spec that names this file alone, kept in its record. */
  spec: string;
  url: string;
  ctx: RequestContext;
  /** Ask the server whether a cached file is still current (same ETag), and download it again if not. */
  refresh: boolean;
  /** Bytes of the file on disk so far, and its size when known. */
  onBytes: (bytes: number, size: number | undefined) => void;
}

/** Makes the file complete in the cache and returns its record. */
export async function fetchFile(task: FileDownload): Promise<FileRecord> {
  const { snapshot, path } = task;
  const cached = task.refresh ? undefined : snapshot.completeRecord(path);
  if (cached) return cached;
  return withLock(snapshot.lock(path), task.ctx.signal, async () => {
    const current = snapshot.completeRecord(path);
    if (current && !task.refresh) return current; // completed by another process while this one waited for the lock
    const remote = await retrying(() => probe(task.url, task.ctx), task.ctx.signal);
    if (current && remote.etag !== undefined && current.etag === remote.etag) return current;
    return download(task, remote);
  });
}

async function download(task: FileDownload, remote: RemoteFile): Promise<FileRecord> {
  const { snapshot, path, ctx } = task;
  const partialPath = snapshot.partial(path);
  const previous = snapshot.readRecord(path);
  // A partial file is resumed only when it was made from the same content, which the ETag identifies.
  if (previous?.state !== "partial" || remote.etag === undefined || previous.etag !== remote.etag) {
    fs.rmSync(partialPath, { force: true });
  }
  const record: FileRecord = {
    spec: task.spec, url: task.url, state: "partial", size: remote.size, etag: remote.etag, commit: remote.commit,
    updatedAt: new Date().toISOString(),
  };
  snapshot.writeRecord(path, record);
  fs.mkdirSync(nodePath.dirname(partialPath), { recursive: true });

  const partial = await PartialFile.open(partialPath, remote);
  let result: { sha256: string; mismatch?: string };
  try {
    task.onBytes(partial.bytes, remote.size);
    await retrying(() => receive(task, remote, partial), ctx.signal, () => partial.bytes);
    result = partial.finish();
  } finally {
    await partial.close();
  }
  const mismatch =
    remote.size !== undefined && partial.bytes !== remote.size ? `${partial.bytes} bytes, the server says ${remote.size}` : result.mismatch;
  if (mismatch !== undefined) {
    snapshot.removeFile(path);
    throw new DownloadError(`${ctx.what}: the downloaded bytes do not match what the server announced (${mismatch}); they were deleted`);
  }
  fs.renameSync(partialPath, snapshot.file(path));
  const complete: FileRecord = {
    ...record, state: "complete", size: partial.bytes, sha256: result.sha256, updatedAt: new Date().toISOString(),
  };
  snapshot.writeRecord(path, complete);
  return complete;
}

/** One GET of the rest of the file, appended to the partial file; a dropped connection throws a transient error. */
async function receive(task: FileDownload, remote: RemoteFile, partial: PartialFile): Promise<void> {
  const from = partial.bytes;
  if (from > 0 && from === remote.size) return; // whole already: an earlier run stopped before the rename
  const exchange = await request(task.url, "GET", task.ctx, from > 0 ? { range: `bytes=${from}-` } : {});
  try {
    if (from > 0 && (exchange.response.status === 416 || (exchange.response.status === 206 && rangeStart(exchange) !== from))) {
      await partial.restart();
      throw new DownloadError(`${task.ctx.what}: the server would not resume at byte ${from}; starting over`, { transient: true });
    }
    exchange.assertOk();
    if (from > 0 && exchange.response.status !== 206) await partial.restart(); // Range ignored: this is the whole file
    for await (const chunk of exchange.chunks()) {
      await partial.append(chunk);
      task.onBytes(partial.bytes, remote.size);
    }
  } finally {
    exchange.close();
  }
  if (remote.size !== undefined && partial.bytes < remote.size) {
    throw new DownloadError(`${task.ctx.what}: the connection closed after ${partial.bytes} of ${remote.size} bytes`, { transient: true });
  }
}

/** The first byte a 206 answer holds, from its Content-Range (bytes FIRST-LAST/SIZE). */
function rangeStart(exchange: Exchange): number | undefined {
  const match = /^bytes (\d+)-/.exec(exchange.response.headers.get("content-range") ?? "");
  return match ? Number(match[1]) : undefined;
}

/** The <file>.partial being written: its length, and the hash of what it holds, kept up to date by append(). */
class PartialFile {
  private constructor(
    private readonly handle: fs.promises.FileHandle,
    private readonly remote: RemoteFile,
    private hasher: ContentHasher,
    public bytes: number,
  ) {}

  /** Opens (or creates) the file for appending and hashes what an earlier run left in it. */
  static async open(path: string, remote: RemoteFile): Promise<PartialFile> {
    // "a": every write lands at the end, also after restart() truncates.
    const handle = await fs.promises.open(path, "a");
    const hasher = new ContentHasher(remote);
    let bytes = 0;
    for await (const chunk of fs.createReadStream(path) as AsyncIterable<Buffer>) {
      hasher.update(chunk);
      bytes += chunk.length;
    }
    return new PartialFile(handle, remote, hasher, bytes);
  }

  async append(chunk: Uint8Array): Promise<void> {
    await this.handle.appendFile(chunk);
    this.hasher.update(chunk);
    this.bytes += chunk.length;
  }

  async restart(): Promise<void> {
    await this.handle.truncate(0);
    this.hasher = new ContentHasher(this.remote);
    this.bytes = 0;
  }

  finish(): { sha256: string; mismatch?: string } {
    return this.hasher.finish();
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}
