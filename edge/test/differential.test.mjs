// The package against `quota policy eval`: the same bytes for every line,
// over generated inputs (errors included), for the reference policy, the
// percent-grace example and the hostile test policy's impossible decisions.

import assert from 'node:assert/strict';
import test from 'node:test';

import { inputLines } from './generate.mjs';
import { PERCENT_GRACE, differences, hostileComponent, packaged, quotaEval, reference } from './support.mjs';

const SEED = Number(process.env.QUOTA_EDGE_SEED ?? 20261130);

test('12,000 generated inputs give the same lines as quota policy eval', async () => {
  const policy = await reference();
  const bytes = inputLines(12_000, SEED);
  const ours = policy.evaluateText(bytes);
  const theirs = quotaEval(bytes);
  const lines = theirs.split('\n').length - 1;
  assert.ok(lines >= 11_500, `${lines} output lines`);
  for (const code of ['invalid_json', 'invalid_input']) {
    assert.ok(theirs.includes(`"code":"${code}"`), `the inputs include ${code}`);
  }
  for (const status of ['allow', 'allow_grace', 'warn_only', 'block']) {
    assert.ok(theirs.includes(`{"status":"${status}"`), `the inputs reach ${status}`);
  }
  assert.deepEqual(differences(ours, theirs), [], `seed ${SEED}`);
});

test('the percent-grace example, packaged the same way, agrees too', async () => {
  const policy = await packaged(PERCENT_GRACE);
  const bytes = inputLines(3_000, SEED + 1);
  assert.deepEqual(differences(policy.evaluateText(bytes), quotaEval(bytes, PERCENT_GRACE)), []);
});

test('a whole pretty-printed document is one input, and empty input gives nothing', async () => {
  const policy = await reference();
  const doc = new TextEncoder().encode(
    '{\n  "user_id": "u",\n  "plan_id": "p",\n  "entitlement_key": "drafts.max",\n  "requested": 1,\n  "now_ms": 0,\n  "usage": 3,\n  "grace_used": 0,\n  "plan": {"limit": 3, "enforcement_enabled": true, "grace_count": 0}\n}\n',
  );
  const ours = policy.evaluateText(doc);
  assert.equal(ours, quotaEval(doc));
  assert.match(ours, /^\{"status":"block"/);
  assert.equal(ours.split('\n').length, 2);
  for (const blank of ['', ' \n\t\r\n']) {
    const bytes = new TextEncoder().encode(blank);
    assert.equal(policy.evaluateText(bytes), '');
    assert.equal(quotaEval(bytes), '');
  }
});

test('impossible decisions fail closed with the same error as the Rust host', async () => {
  const component = hostileComponent();
  const policy = await packaged(component);
  const lies = ['grace', 'allow', 'warn', 'free-grace', 'no-overage', 'override', 'echo', 'long-reason'];
  const lines = [];
  for (const lie of lies) {
    for (const usage of [0, 5]) {
      lines.push(
        JSON.stringify({
          user_id: `liar-${lie}`,
          plan_id: 'p',
          entitlement_key: 'drafts.max',
          requested: 1,
          now_ms: 0,
          usage,
          grace_used: 0,
          plan: { limit: 3, enforcement_enabled: true, grace_count: 0 },
        }),
      );
    }
  }
  const bytes = new TextEncoder().encode(`${lines.join('\n')}\n`);
  const theirs = quotaEval(bytes, component);
  assert.ok(theirs.includes('impossible decision'), theirs);
  assert.deepEqual(differences(policy.evaluateText(bytes), theirs), []);
});
