"use strict";
// The native test programs (kernel_tests, cuda_kernel_tests), built beside the addon only on request
// (LLAMA_NAPI_BUILD_TESTS=1, `npm run build:tests`). Where one was not built, its test is reported as skipped with
// the reason; in CI (CI=true, which .ci/run builds them for) it runs and fails on the missing program.
const fs = require("node:fs");
const path = require("node:path");

const RELEASE_DIR = path.resolve(__dirname, "..", "..", "build", "Release");

/** The program's path, and the options for its test: skipped, with the reason, where it is absent outside CI. */
function testProgram(name) {
  const file = path.join(RELEASE_DIR, name);
  const absent = !fs.existsSync(file) && process.env.CI !== "true";
  return { file, options: { skip: absent && `not built: ${file} (npm run build:tests builds the test programs)` } };
}

module.exports = { testProgram };
