// Threshold events delivered by a running `quota serve` to a receiver on
// loopback, verified with the Standard Webhooks reference library (npm
// `standardwebhooks`), an implementation this project did not write. The
// receiver fails the first two attempts; the third carries the same id.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { test } from 'node:test';

import { Webhook, WebhookVerificationError } from 'standardwebhooks';

import { startService } from './service.mjs';

/** A receiver answering 500 to the first `failures` requests, then 204. */
async function receiver(failures) {
  const received = [];
  const server = createServer((request, response) => {
    const chunks = [];
    request.on('data', (chunk) => chunks.push(chunk));
    request.on('end', () => {
      received.push({ headers: request.headers, body: Buffer.concat(chunks).toString('utf8') });
      response.statusCode = received.length <= failures ? 500 : 204;
      response.end();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, received, url: `http://127.0.0.1:${server.address().port}/hook` };
}

async function until(check, ms) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

test('a threshold event arrives signed per Standard Webhooks, the third attempt with the same id', async (t) => {
  const hook = await receiver(2);
  const service = await startService(['--webhooks-allow-private']);
  t.after(async () => {
    await service.stop();
    hook.server.close();
  });
  await service.admin('PUT', '/admin/plans/metered', {
    limits: { 'api.max': 10 },
    enforcement_enabled: true,
    thresholds: { 'api.max': [80] },
  });
  const alice = await service.admin('POST', '/admin/users', { id: 'alice', plan_id: 'metered' });
  const created = await service.admin('POST', '/admin/webhooks', { url: hook.url, events: ['threshold.reached'] });

  const consumed = await fetch(`${service.url}/v1/usage/api.max`, {
    method: 'POST',
    headers: { authorization: `Bearer ${alice.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ requested: 8 }),
  });
  assert.equal(consumed.status, 200);

  // Retries 1 s and 5 s (±20%) apart, on a one-second sweep.
  await until(() => hook.received.length >= 3, 30_000);
  const verifier = new Webhook(created.secret);
  const ids = new Set();
  for (const { headers, body } of hook.received) {
    const payload = verifier.verify(body, headers);
    assert.equal(payload.type, 'threshold.reached');
    assert.equal(payload.data.threshold, 80);
    assert.equal(payload.data.usage, 8);
    assert.equal(payload.data.user_id, 'alice');
    ids.add(headers['webhook-id']);
  }
  assert.equal(ids.size, 1, 'one id across attempts');
  const [id] = ids;
  assert.equal(JSON.parse(hook.received[2].body).data.event_id, id);

  // A changed body, or another key, does not verify.
  const { headers, body } = hook.received[2];
  assert.throws(() => verifier.verify(body.replace('"usage":8', '"usage":9'), headers), WebhookVerificationError);
  const other = new Webhook(`whsec_${Buffer.alloc(32, 7).toString('base64')}`);
  assert.throws(() => other.verify(body, headers), WebhookVerificationError);

  const deliveries = await service.admin('GET', `/admin/events/${id}`);
  assert.equal(deliveries.deliveries[0].state, 'delivered');
  assert.deepEqual(
    deliveries.deliveries[0].attempts.map((a) => a.status),
    [500, 500, 204],
  );
});
