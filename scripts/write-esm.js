#!/usr/bin/env node
// Writes the ESM entry point: a thin re-export of the CommonJS build, so that `import` and `require`
// share one module instance (one native addon, one set of error classes for instanceof checks).
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const cjs = require(path.join(root, "dist/cjs/index.js"));
const names = Object.keys(cjs).filter((n) => n !== "default" && n !== "__esModule");
const esmDir = path.join(root, "dist/esm");
fs.mkdirSync(esmDir, { recursive: true });
fs.writeFileSync(
  path.join(esmDir, "index.mjs"),
  `import cjs from "../cjs/index.js";\nexport const { ${names.join(", ")} } = cjs;\nexport default cjs;\n`,
);
fs.writeFileSync(
  path.join(esmDir, "index.d.mts"),
  `export * from "../cjs/index.js";\nimport * as all from "../cjs/index.js";\nexport default all;\n`,
);
