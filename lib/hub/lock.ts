/**
 * An exclusive lock file, so that two processes (or two calls in one process) never write the same download:
 * the second waits for the first and then finds the file complete.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as nodePath from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const POLL_MS = 200;
/** A lock file that cannot be read this long after it was made was left by a crash between create and write. */
const UNREADABLE_STALE_MS = 10_000;

interface LockHolder {
  pid: number;
  host: string;
}

export async function withLock<T>(lockPath: string, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
  await acquire(lockPath, signal);
  try {
    return await fn();
  } finally {
    fs.rmSync(lockPath, { force: true });
  }
}

async function acquire(lockPath: string, signal: AbortSignal | undefined): Promise<void> {
  fs.mkdirSync(nodePath.dirname(lockPath), { recursive: true });
  const holder: LockHolder = { pid: process.pid, host: os.hostname() };
  for (;;) {
    signal?.throwIfAborted();
    try {
      fs.writeFileSync(lockPath, JSON.stringify(holder), { flag: "wx" });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    // Two waiters may both judge a dead holder's lock stale; the window is a crash plus a race, and is accepted.
    if (isStale(lockPath)) fs.rmSync(lockPath, { force: true });
    else await sleep(POLL_MS, undefined, { signal });
  }
}

/** True when the process that made the lock is gone (only knowable on this host). */
function isStale(lockPath: string): boolean {
  let holder: LockHolder;
  try {
    holder = JSON.parse(fs.readFileSync(lockPath, "utf8")) as LockHolder;
  } catch {
    try {
      return Date.now() - fs.statSync(lockPath).mtimeMs > UNREADABLE_STALE_MS;
    } catch {
      return true; // released meanwhile
    }
  }
  if (holder.host !== os.hostname()) return false;
  try {
    process.kill(holder.pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH";
  }
}
