// The edge client (src/client.js) against a real `quota serve` on
// loopback: a simulated fleet with a node killed mid-run, admin changes
// reaching nodes, lease sizing, round trips, and the fallbacks.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { EdgeClient } from '../src/client.js';
import { counted, seed, startService } from './service.mjs';
import { edge, reference } from './support.mjs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let policy;
before(async () => {
  policy = await reference();
});

/** A node process of the fleet; `admits` fills as it prints. */
function fleetNode(url, token) {
  const child = spawn(process.execPath, [join(edge, 'test', 'fleet-node.mjs'), '--url', url, '--token', token], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const node = { child, admits: [], done: null };
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (line.startsWith('admit ')) node.admits.push(Number(line.slice(6)));
    if (line.startsWith('done ')) node.done = JSON.parse(line.slice(5));
  });
  node.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return node;
}

test('three nodes race one user; one is killed; never more than limit + grace', { timeout: 60_000 }, async () => {
  const LIMIT = 2000;
  const GRACE = 5;
  const service = await startService(['--lease-max-ms', '2000']);
  after(() => service.stop());
  const tokens = await seed(service, { limit: LIMIT, grace: GRACE, nodes: { 'edge-0': 1000, 'edge-1': 1000, 'edge-2': 1000 } });
  const nodes = ['edge-0', 'edge-1', 'edge-2'].map((id) => fleetNode(service.url, tokens[id]));
  const [, , doomed] = nodes;
  while (doomed.admits.length < 100) {
    assert.equal(doomed.child.exitCode, null, 'the node to kill ended early');
    await sleep(10);
  }
  doomed.child.kill('SIGKILL');
  const killedAt = Date.now();
  assert.equal((await doomed.exited).signal, 'SIGKILL');
  // What the dead node holds is reserved until its lease expires.
  const { nodes: held } = await service.admin('GET', '/admin/nodes');
  const deadLease = held.find((n) => n.id === 'edge-2').outstanding;
  assert.ok(deadLease <= 20, `a lease is at most 20 units: ${deadLease}`);
  for (const node of nodes.slice(0, 2)) {
    const { code } = await node.exited;
    assert.equal(code, 0);
    assert.ok(node.done, 'the survivor settled and finished');
  }
  const survivors = nodes[0].admits.length + nodes[1].admits.length;
  const admitted = survivors + doomed.admits.length;
  const afterKill = nodes[0].admits.concat(nodes[1].admits).filter((t) => t > killedAt).length;
  assert.ok(afterKill > 0, 'the survivors went on after the kill');
  // The dead node's lease expired and counted as fully spent; every unit
  // any node admitted is in the usage, and the usage is the policy's
  // limit plus grace exactly: not one unit more.
  const { nodes: now } = await service.admin('GET', '/admin/nodes');
  assert.equal(now.find((n) => n.id === 'edge-2').outstanding, 0);
  const { usage, reserved } = await counted(service);
  assert.equal(reserved, 0);
  assert.equal(usage, LIMIT + GRACE);
  assert.ok(admitted <= usage, `admitted ${admitted} > usage ${usage}`);
  assert.ok(admitted >= usage - 20, `the dead node lost at most its lease: ${admitted} of ${usage}`);
});

test('a plan change or override reaches a node at its next renewal', { timeout: 60_000 }, async () => {
  const service = await startService();
  after(() => service.stop());
  const { node } = await seed(service, { limit: 1000, nodes: { node: 1000 } });
  const client = new EdgeClient({ url: service.url, token: node, policy, leaseUnits: 100, settleEveryMs: 100 });
  after(() => client.close());
  for (let i = 0; i < 10; i++) assert.equal((await client.decide('alice', 'api.max')).via, 'lease');
  // The override lowers alice's limit below what she has used.
  await service.admin('PUT', '/admin/users/alice/overrides/api.max', { value: 5 });
  const changedAt = performance.now();
  let admittedAfter = 0;
  let blocked = null;
  while (performance.now() - changedAt < 3000) {
    const decision = await client.decide('alice', 'api.max');
    if (!decision.admitted) {
      blocked = decision;
      break;
    }
    admittedAfter++;
    await sleep(5);
  }
  assert.ok(blocked, 'the node blocks once it has renewed');
  assert.equal(blocked.status, 'block');
  // Until its renewal the node spends only what its lease held, and the
  // service counts it all.
  assert.ok(admittedAfter <= 90, `${admittedAfter} admitted on the old lease`);
  await client.close();
  const { usage, reserved } = await counted(service);
  assert.equal(usage, 10 + admittedAfter);
  assert.equal(reserved, 0);
  // Raising the limit again: the next decision asks the service, which
  // admits, and leases start again.
  await service.admin('PUT', '/admin/users/alice/overrides/api.max', { value: 10_000 });
  const again = new EdgeClient({ url: service.url, token: node, policy, leaseUnits: 100, settleEveryMs: 0 });
  const first = await again.decide('alice', 'api.max');
  assert.ok(first.admitted);
  const second = await again.decide('alice', 'api.max');
  assert.equal(second.via, 'lease');
  await again.close();
});

test('1,000 units cost at most 1,000 / lease size + 1 round trips, all counted', { timeout: 60_000 }, async () => {
  const service = await startService();
  after(() => service.stop());
  const { node } = await seed(service, { limit: 1_000_000, nodes: { node: 1000 } });
  const client = new EdgeClient({ url: service.url, token: node, policy, leaseUnits: 100, settleEveryMs: 0 });
  for (let i = 0; i < 1000; i++) {
    const decision = await client.decide('alice', 'api.max');
    assert.equal(decision.via, 'lease');
  }
  await client.close();
  const trips = client.calls.grant + client.calls.settle + client.calls.consume;
  assert.ok(trips <= 1000 / 100 + 1, JSON.stringify(client.calls));
  assert.deepEqual(await counted(service), { usage: 1000, reserved: 0 });
});

test('a small limit gets small leases, and near the limit every decision asks', { timeout: 60_000 }, async () => {
  const service = await startService();
  after(() => service.stop());
  const { node } = await seed(service, { limit: 12, grace: 2, users: ['alice', 'bob'], nodes: { node: 1000 } });
  const client = new EdgeClient({ url: service.url, token: node, policy, leaseUnits: 100, settleEveryMs: 0 });
  assert.ok((await client.decide('alice', 'api.max')).admitted);
  // The first answer showed 14 units of room: the node kept a quarter.
  const { leases } = await service.admin('GET', '/admin/users/alice');
  assert.equal(leases.length, 1);
  assert.ok(leases[0].reserved <= 3, JSON.stringify(leases));
  const statuses = [];
  for (let i = 0; i < 15; i++) statuses.push((await client.decide('alice', 'api.max')).status);
  assert.deepEqual(statuses.slice(11, 14), ['allow_grace', 'allow_grace', 'block']);
  assert.equal(statuses.filter((s) => s !== 'block').length, 13);
  assert.ok(client.calls.consume >= 3, JSON.stringify(client.calls));
  await client.close();
  assert.deepEqual(await counted(service), { usage: 14, reserved: 0 });
});

test('a node at its max_outstanding falls back to direct consumes', { timeout: 60_000 }, async () => {
  const service = await startService();
  after(() => service.stop());
  const { node } = await seed(service, { limit: 1000, users: ['alice', 'bob'], nodes: { node: 10 } });
  const client = new EdgeClient({ url: service.url, token: node, policy, leaseUnits: 10, settleEveryMs: 0 });
  assert.equal((await client.decide('alice', 'api.max')).via, 'lease');
  const bob = await client.decide('bob', 'api.max');
  assert.deepEqual([bob.admitted, bob.via], [true, 'service']);
  await client.close();
  assert.deepEqual(await counted(service, 'bob'), { usage: 1, reserved: 0 });
  assert.deepEqual(await counted(service, 'alice'), { usage: 1, reserved: 0 });
});

test('a service that cannot be reached admits nothing', { timeout: 60_000 }, async () => {
  const service = await startService();
  const { node } = await seed(service, { limit: 1000, nodes: { node: 1000 } });
  const url = service.url;
  await service.stop();
  const client = new EdgeClient({ url, token: node, policy, settleEveryMs: 0 });
  await assert.rejects(client.decide('alice', 'api.max'));
});
