// The conformance corpus (tests/conformance/*.json, examples/cases.json) and
// the percent-grace example's cases through the package: every field a case
// expects must match, and every output line must equal `quota policy eval`'s.

import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import test from 'node:test';

import { JsonFloat, JsonInt, parseJson, writeJson } from '../src/json.js';
import { PERCENT_GRACE, differences, packaged, quotaEval, reference, root } from './support.mjs';

/** A case file's cases, read exactly (integers as bigints). */
function cases(file) {
  const parsed = parseJson(readFileSync(file, 'utf8'));
  return parsed.get('cases').map((c, i) => ({
    name: c.get('name') ?? `#${i + 1}`,
    input: c.get('input'),
    expect: c.get('expect'),
  }));
}

/** Whether an output value equals an expected one from a case file. */
function same(got, want) {
  if (want instanceof JsonInt) return (typeof got === 'number' || typeof got === 'bigint') && BigInt(got) === want.value;
  if (want instanceof JsonFloat) return got === want.value;
  if (want instanceof Map) {
    return got !== null && typeof got === 'object' && [...want].every(([k, v]) => same(got[k], v));
  }
  return got === want;
}

/** How the output differs from what the case expects (as `quota policy test`). */
function mismatches(expect, output) {
  const found = [];
  for (const [field, want] of expect) {
    if (field === 'error') {
      if (!output.error) found.push(`expected error ${writeJson(want)}, got a decision`);
      else if (typeof want === 'string' ? output.error.code !== want : !same(output.error, want)) {
        found.push(`error: expected ${writeJson(want)}, got ${JSON.stringify(output.error)}`);
      }
      continue;
    }
    if (output.error) return [...found, `expected a decision, got error ${JSON.stringify(output.error)}`];
    if (!(field in output)) found.push(`\`${field}\`: the output has no such field`);
    else if (!same(output[field], want)) found.push(`\`${field}\`: expected ${writeJson(want)}, got ${output[field]}`);
  }
  return found;
}

function run(policy, files, module) {
  let count = 0;
  const all = [];
  for (const file of files) {
    for (const c of cases(file)) {
      const output = policy.evaluate(c.input);
      assert.deepEqual(mismatches(c.expect, output), [], `${file}: ${c.name}`);
      all.push(writeJson(c.input));
      count++;
    }
  }
  const bytes = new TextEncoder().encode(`${all.join('\n')}\n`);
  assert.deepEqual(differences(policy.evaluateText(bytes), quotaEval(bytes, module)), []);
  return count;
}

test('the conformance corpus passes through the package, field for field', async () => {
  const dir = join(root, 'tests', 'conformance');
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => join(dir, f));
  files.push(join(root, 'examples', 'cases.json'));
  assert.ok(files.length >= 8, `${files.length} case files`);
  const count = run(await reference(), files);
  assert.ok(count >= 100, `${count} cases`);
});

test("the percent-grace example's cases pass through its package", async () => {
  const count = run(await packaged(PERCENT_GRACE), [join(root, 'examples', 'percent-grace', 'cases.json')], PERCENT_GRACE);
  assert.ok(count >= 10, `${count} cases`);
});
