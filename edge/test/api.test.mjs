// The package's API: which integers are numbers and which bigints, exact
// 64-bit values both ways, a trap replaced by a fresh instance, and no Node
// built-ins in what an edge runtime loads.

import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import test from 'node:test';

import { edge, hostileComponent, packaged, reference } from './support.mjs';

const I64_MAX = (1n << 63n) - 1n;
const base = {
  user_id: 'alice',
  plan_id: 'pro',
  entitlement_key: 'drafts.max',
  requested: 1,
  now_ms: 1_700_000_000_000,
  usage: 2,
  grace_used: 0,
  plan: { limit: 3, enforcement_enabled: true, grace_count: 1 },
};

test('safe integers come back as numbers, larger ones as exact bigints', async () => {
  const policy = await reference();
  const small = policy.evaluate(base);
  assert.equal(small.status, 'allow');
  assert.equal(small.limit, 3);
  assert.equal(typeof small.usage, 'number');
  const big = policy.evaluate({ ...base, usage: I64_MAX - 1n, override: { value: -1 } });
  assert.equal(big.status, 'allow');
  assert.equal(big.limit, -1);
  assert.equal(big.usage, I64_MAX - 1n);
  assert.equal(big.projected_usage, I64_MAX);
  assert.equal(typeof big.requested, 'number');
  const text = policy.evaluateJson(JSON.stringify({ ...base, override: { value: -1 } }).replace('"usage":2', `"usage":${I64_MAX}`));
  assert.match(text, /"usage":9223372036854775807,/);
});

test('a number past 2^53 is refused: it may have been rounded, pass a bigint', async () => {
  const policy = await reference();
  const out = policy.evaluate({ ...base, usage: 2 ** 60 });
  assert.deepEqual(out, {
    error: { code: 'invalid_input', message: '`usage` is not a safe integer: pass it as a bigint' },
  });
  assert.equal(policy.evaluate({ ...base, usage: 2n ** 60n }).usage, 2n ** 60n);
  assert.equal(policy.evaluate({ ...base, usage: 2n ** 63n }).error.message, '`usage` is larger than the 64-bit integer maximum');
  assert.equal(policy.evaluate({ ...base, usage: -(2n ** 63n) - 1n }).error.message, '`usage` is smaller than the 64-bit integer minimum');
  assert.equal(policy.evaluate({ ...base, usage: 1.5 }).error.message, '`usage` must be an integer, got a fractional number');
  assert.equal(policy.evaluate({ ...base, plan: { ...base.plan, limit: 2 ** 60 } }).error.message, '`plan.limit` is not a safe integer: pass it as a bigint');
  assert.equal(policy.evaluate({ ...base, extra: 1 }).error.message, 'unknown field `extra`');
});

test('a trapping policy fails closed, and the next call gets a fresh instance', async () => {
  const policy = await packaged(hostileComponent());
  const trap = policy.evaluate({ ...base, entitlement_key: 'hostile.trap' });
  assert.equal(trap.error.code, 'policy_unavailable');
  assert.match(trap.error.message, /^the policy trapped: /);
  const after = policy.evaluate(base);
  assert.equal(after.status, 'allow', JSON.stringify(after));
});

test('what an edge runtime loads imports no Node built-in', () => {
  const dir = join(edge, 'dist', 'reference');
  const files = readdirSync(dir).filter((f) => f.endsWith('.js'));
  assert.ok(files.includes('workers.js') && files.includes('component.js'), files.join(' '));
  for (const file of files) {
    const text = readFileSync(join(dir, file), 'utf8');
    assert.doesNotMatch(text, /['"]node:|require\(|\bprocess\.(?!env)|\bBuffer\b/, file);
  }
});

test('build.mjs replaces only a folder it made: a mistyped --out cannot wipe a project', async () => {
  const { buildPackage } = await import('../build.mjs');
  const { mkdtempSync, writeFileSync, existsSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'quota-edge-out-'));
  try {
    const component = readFileSync(join(edge, '..', 'target', 'guest', 'reference-policy.wasm'));
    writeFileSync(join(dir, 'worker.js'), '// the user\'s own code\n');
    await assert.rejects(buildPackage(component, dir), /is not empty and holds no package made by this script/);
    assert.ok(existsSync(join(dir, 'worker.js')));
    const out = join(dir, 'policy');
    await buildPackage(component, out);
    await buildPackage(component, out);
    assert.ok(existsSync(join(out, 'workers.js')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
