/** Retrying what failed transiently (a dropped connection, a 5xx): a bounded number of times, with backoff. */
import { setTimeout as sleep } from "node:timers/promises";
import { DownloadError } from "./errors";

/** Consecutive failures (without progress in between) before giving up. */
export const MAX_ATTEMPTS = 5;
const FIRST_DELAY_MS = 250;
const MAX_DELAY_MS = 4000;

/**
 * Runs `attempt` until it succeeds or fails for good. `progress` (bytes so far, say) restarts the count when it
 * moved since the last failure, so a long download survives any number of drops as long as each one gets further.
 */
export async function retrying<T>(attempt: () => Promise<T>, signal: AbortSignal | undefined, progress?: () => number): Promise<T> {
  let failures = 0;
  let mark = progress?.();
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      if (!(err instanceof DownloadError) || !err.transient) throw err;
      const now = progress?.();
      if (now !== mark) {
        failures = 0;
        mark = now;
      }
      if (++failures >= MAX_ATTEMPTS) {
        throw new DownloadError(`${err.message} (gave up after ${MAX_ATTEMPTS} attempts)`, { status: err.status, cause: err });
      }
      await sleep(Math.min(FIRST_DELAY_MS * 2 ** (failures - 1), MAX_DELAY_MS), undefined, { signal });
    }
  }
}
