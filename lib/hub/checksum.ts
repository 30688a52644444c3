/** Hashes a download as it arrives and checks it against what the server said the content is. */
import { createHash, type Hash } from "node:crypto";
import type { RemoteFile } from "./remote-file";

export class ContentHasher {
  private readonly sha256: Hash = createHash("sha256");
  /** Git's blob id hashes a "blob SIZE\0" header first, so it needs the size up front. */
  private readonly gitBlob: Hash | undefined;

  constructor(private readonly remote: RemoteFile) {
    if (remote.gitBlobId !== undefined && remote.size !== undefined) {
      this.gitBlob = createHash("sha1").update(`blob ${remote.size}\0`);
    }
  }

  update(chunk: Uint8Array): void {
    this.sha256.update(chunk);
    this.gitBlob?.update(chunk);
  }

  /** The content's sha256, or an error message when the content is not what the server announced. */
  finish(): { sha256: string; mismatch?: string } {
    const sha256 = this.sha256.digest("hex");
    if (this.remote.sha256 !== undefined && sha256 !== this.remote.sha256) {
      return { sha256, mismatch: `sha256 ${sha256}, the server says ${this.remote.sha256}` };
    }
    const blobId = this.gitBlob?.digest("hex");
    if (blobId !== undefined && blobId !== this.remote.gitBlobId) {
      return { sha256, mismatch: `git blob id ${blobId}, the server says ${this.remote.gitBlobId}` };
    }
    return { sha256 };
  }
}
