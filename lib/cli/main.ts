#!/usr/bin/env node
/** The `llama-napi` command: dispatches to a subcommand; exit codes: 0 ok, 1 runtime error, 2 usage error. */
import { LlamaNapiError } from "../errors";
import { packageVersion } from "../native/binding";
import { helpText, UsageError, type CommandSpec } from "./args";
import { bench, benchCommand } from "./bench";
import { buildOpCommand, buildOpMain } from "./build-op";
import { chat, chatCommand } from "./chat";
import { convert, convertCommand } from "./convert";
import { info, infoCommand } from "./info";
import { ls, lsCommand } from "./ls";
import { perplexityCommand, perplexityMain } from "./perplexity";
import { pull, pullCommand } from "./pull";
import { quantizeCommand, quantizeMain } from "./quantize";
import { rm, rmCommand } from "./rm";
import { run, runCommand } from "./run";
import { serve, serveCommand } from "./serve";

const commands: Record<string, { spec: CommandSpec; main: (argv: string[]) => Promise<number> }> = {
  run: { spec: runCommand, main: run },
  chat: { spec: chatCommand, main: chat },
  bench: { spec: benchCommand, main: bench },
  convert: { spec: convertCommand, main: convert },
  quantize: { spec: quantizeCommand, main: quantizeMain },
  perplexity: { spec: perplexityCommand, main: perplexityMain },
  pull: { spec: pullCommand, main: pull },
  ls: { spec: lsCommand, main: ls },
  rm: { spec: rmCommand, main: rm },
  info: { spec: infoCommand, main: info },
  "build-op": { spec: buildOpCommand, main: buildOpMain },
  serve: { spec: serveCommand, main: serve },
};

function usage(): string {
  const rows = Object.values(commands).map((c) => `  ${c.spec.name.padEnd(10)} ${c.spec.summary}`);
  return `llama-napi: Llama-family LLM inference for Node.js\n\nUsage: llama-napi <command> [options] | --version\n\nCommands:\n${rows.join("\n")}\n\nRun "llama-napi <command> --help" for a command's options.\n`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  if (name === "--version") {
    process.stdout.write(`llama-napi ${packageVersion()}\n`);
    return 0;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(helpText(command.spec));
    return 0;
  }
  try {
    return await command.main(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`llama-napi ${name}: ${err.message}\n`);
      return 2;
    }
    if (err instanceof LlamaNapiError) {
      process.stderr.write(`llama-napi ${name}: ${err.name}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (err) => {
    process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
