"use strict";
// Argument checks the benchmark scripts share: a usage error prints the usage and exits 2.

/** Exits 2 with the message and the usage. */
function usageError(usage, message) {
  console.error(message ? `${message}\n${usage}` : usage);
  process.exit(2);
}

/** values[name] as a positive integer, or a usage error naming --name. */
function positiveOption(values, name, usage) {
  const n = Number(values[name]);
  if (!Number.isInteger(n) || n < 1) usageError(usage, `--${name} must be a positive integer`);
  return n;
}

module.exports = { usageError, positiveOption };
