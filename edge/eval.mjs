#!/usr/bin/env node
// `quota policy eval` in Node: reads one JSON decision input, or JSON Lines,
// and prints one output line per input, the same bytes as the Rust CLI for
// every decision and every error the policy returns.
//
//   node edge/eval.mjs [--module FILE] [--input FILE|-]
//
// --module FILE: a policy component to transpile and run (default: the
// reference policy packaged in dist/reference by `make edge`).
// Exit status: 0 when every input was processed (error lines included);
// 2 for usage errors, unreadable input, or a module that is not a policy.

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

function usage(message) {
  console.error(`error: ${message}\n\nUsage: node edge/eval.mjs [--module FILE] [--input FILE|-]`);
  process.exit(2);
}

let args;
try {
  args = parseArgs({
    options: {
      module: { type: 'string' },
      input: { type: 'string', default: '-' },
      help: { type: 'boolean', short: 'h' },
    },
  }).values;
} catch (e) {
  usage(e.message);
}
if (args.help) {
  console.log(`Evaluates decision inputs with a policy, as \`quota policy eval\` does.

Usage: node edge/eval.mjs [--module FILE] [--input FILE|-]

  --module FILE   a policy component (.wasm) to run; default: the reference
                  policy packaged in dist/reference (make edge)
  --input FILE|-  one JSON decision input, or JSON Lines (one per line, blank
                  lines skipped); default: standard input`);
  process.exit(0);
}

let bytes;
try {
  if (args.input === '-') {
    const chunks = [];
    for await (const chunk of process.stdin) chunks.push(chunk);
    bytes = new Uint8Array(Buffer.concat(chunks));
  } else {
    bytes = new Uint8Array(await readFile(args.input));
  }
} catch (e) {
  usage(`cannot read ${args.input === '-' ? 'standard input' : args.input}: ${e.message}`);
}

let policy;
let scratch;
try {
  if (args.module === undefined) {
    const { load } = await import('./dist/reference/index.js').catch(() => {
      throw new Error('the reference policy is not packaged: run `make edge`');
    });
    policy = await load();
  } else {
    let component;
    try {
      component = await readFile(args.module);
    } catch (e) {
      throw new Error(`cannot read ${args.module}: ${e.message}`);
    }
    const { buildPackage } = await import('./build.mjs');
    scratch = await mkdtemp(join(tmpdir(), 'quota-eval-'));
    await buildPackage(component, scratch).catch((e) => {
      throw new Error(`${args.module} is not a policy component: ${e.message}`);
    });
    const { load } = await import(pathToFileURL(join(scratch, 'index.js')).href);
    policy = await load().catch((e) => {
      throw new Error(`${args.module} is not a policy component: ${e.message}`);
    });
  }
} catch (e) {
  if (scratch) await rm(scratch, { recursive: true, force: true });
  usage(e.message);
}
if (scratch) await rm(scratch, { recursive: true, force: true });

process.stdout.write(policy.evaluateText(bytes));
