// `node edge/eval.mjs`, run as a user runs it: standard input in, the same
// lines as `quota policy eval` out; usage errors exit 2.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import test from 'node:test';

import { inputLines } from './generate.mjs';
import { PERCENT_GRACE, differences, edge, quotaEval } from './support.mjs';

function evalMjs(args, input) {
  return spawnSync(process.execPath, [join(edge, 'eval.mjs'), ...args], { input, maxBuffer: 1 << 30 });
}

test('eval.mjs prints what quota policy eval prints, for standard input and with --module', () => {
  const bytes = inputLines(2_000, 7);
  const theirs = quotaEval(bytes);
  const fromStdin = evalMjs([], bytes);
  assert.equal(fromStdin.status, 0, fromStdin.stderr.toString());
  assert.deepEqual(differences(fromStdin.stdout.toString(), theirs), []);
  const withModule = evalMjs(['--module', PERCENT_GRACE], bytes);
  assert.equal(withModule.status, 0, withModule.stderr.toString());
  assert.deepEqual(differences(withModule.stdout.toString(), quotaEval(bytes, PERCENT_GRACE)), []);
});

test('usage errors exit 2 with a message and print nothing', () => {
  for (const [args, message] of [
    [['--modul', 'x'], /Unknown option/],
    [['--module', join(edge, 'package.json')], /is not a policy component/],
    [['--module', '/nonexistent.wasm'], /cannot read/],
    [['--input', '/nonexistent.jsonl'], /cannot read/],
  ]) {
    const run = evalMjs(args, '');
    assert.equal(run.status, 2, args.join(' '));
    assert.match(run.stderr.toString(), message);
    assert.equal(run.stdout.length, 0);
  }
});
