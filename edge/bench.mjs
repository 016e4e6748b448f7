#!/usr/bin/env node
// Decisions per second in Node (BENCHMARKS.md, "The policy in Node"), on the
// input set of the Rust decision benchmark (JSON Lines, written by
// `QUOTA_BENCH_DUMP_INPUTS=FILE cargo bench -p quota-benches --bench decision`):
//
//   jco       the transpiled component's `decide` alone, on inputs already
//             in jco's form (the analogue of the Rust `wasm` row without
//             its checks)
//   evaluate  Policy.evaluate: the input object read and checked, the call,
//             the contract's invariants, the cached usage key, the output
//   json      Policy.evaluateJson: the same from and to JSON text
//
// Each: 2 s of warm-up, then batches of one pass over the inputs for
// SECONDS; the median batch, per decision.
//
//   node edge/bench.mjs INPUTS.jsonl [SECONDS]

import { readFileSync } from 'node:fs';

import { instantiate } from './dist/reference/component.js';
import { load } from './dist/reference/index.js';
import { inputFromValue } from './dist/reference/input.js';
import { parseJson } from './dist/reference/json.js';

const [file, seconds = '5'] = process.argv.slice(2);
if (!file) {
  console.error('usage: node edge/bench.mjs INPUTS.jsonl [SECONDS]');
  process.exit(2);
}
const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean);
const values = lines.map(parseJson);
const objects = values.map(toPlain);
const jcoInputs = values.map(inputFromValue);

const policy = await load();
const core = await WebAssembly.compile(readFileSync(new URL('./dist/reference/component.core.wasm', import.meta.url)));
const { engine } = await instantiate(() => core, {});

// Every variant must decide every input the same way before anything is timed.
for (let i = 0; i < lines.length; i++) {
  const json = JSON.parse(policy.evaluateJson(lines[i]));
  const obj = policy.evaluate(objects[i]);
  if (json.status !== obj.status || json.status !== engine.decide(jcoInputs[i]).status.replace('-', '_')) {
    throw new Error(`input ${i + 1}: the variants disagree`);
  }
}

function measure(name, run) {
  const n = lines.length;
  const until = (ms) => performance.now() + ms;
  for (const end = until(2000); performance.now() < end; ) for (let i = 0; i < n; i++) run(i);
  const batches = [];
  for (const end = until(Number(seconds) * 1000); performance.now() < end; ) {
    const t = process.hrtime.bigint();
    for (let r = 0; r < 100; r++) for (let i = 0; i < n; i++) run(i);
    batches.push(Number(process.hrtime.bigint() - t) / (100 * n));
  }
  batches.sort((a, b) => a - b);
  const ns = batches[batches.length >> 1];
  console.log(`node_${name}\t${ns.toFixed(1)} ns\t${Math.round(1e9 / ns).toLocaleString('en')} decisions/s`);
  return ns;
}

measure('jco', (i) => engine.decide(jcoInputs[i]));
measure('evaluate', (i) => policy.evaluate(objects[i]));
measure('json', (i) => policy.evaluateJson(lines[i]));

/** A parsed input as the plain object a caller would pass (bigints kept). */
function toPlain(v) {
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [k, toPlain(x)]));
  if (v && typeof v === 'object' && 'value' in v) {
    const n = v.value;
    return typeof n === 'bigint' && n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
  }
  return v;
}
