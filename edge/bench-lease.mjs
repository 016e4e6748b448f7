#!/usr/bin/env node
// Decisions from a lease beside direct consumes, in one run against one
// `quota serve` on loopback (BENCHMARKS.md, "Decisions at the edge"):
//
//   lease     EdgeClient.decide, one unit at a time, from leases of 1,000
//             units (renewals included, as they come)
//   direct    POST /v1/usage/api.max, one unit at a time, one keep-alive
//             connection (Node's fetch)
//
// Each: 1 s of warm-up, then SECONDS of calls one after another; the
// median, p99 and mean of each call. Then the round trips a fresh client
// makes for 1,000 units at lease sizes 10, 100 and 1,000, its closing
// settle included. The service runs on a fresh SQLite database with the
// reference policy (`target/release/quota`).
//
//   node edge/bench-lease.mjs [SECONDS]

import { EdgeClient } from './src/client.js';
import { seed, startService } from './test/service.mjs';
import { reference } from './test/support.mjs';

const seconds = Number(process.argv[2] ?? '5');
const service = await startService();
try {
  const tokens = await seed(service, { limit: 1_000_000_000_000, users: ['alice'], nodes: { bench: 1_000_000 } });
  const alice = (await service.admin('POST', '/admin/users', { id: 'bob', plan_id: 'metered' })).token;
  const policy = await reference();

  const lease = new EdgeClient({ url: service.url, token: tokens.bench, policy, leaseUnits: 1000, settleEveryMs: 0 });
  const direct = async () => {
    const response = await fetch(`${service.url}/v1/usage/api.max`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' },
      body: '{"requested":1}',
    });
    if (response.status !== 200) throw new Error(`direct consume: ${response.status}`);
    await response.arrayBuffer();
  };
  const rows = {
    lease: await measure(async () => {
      const d = await lease.decide('alice', 'api.max');
      if (!d.admitted) throw new Error('the lease bench was refused');
    }),
    direct: await measure(direct),
  };
  await lease.close();
  for (const [name, r] of Object.entries(rows)) {
    console.log(
      `${name}\tmedian ${fmt(r.median)}\tp99 ${fmt(r.p99)}\tmean ${fmt(r.mean)}\t${Math.round(r.count / seconds).toLocaleString('en')}/s`,
    );
  }
  console.log(`direct / lease, median: ${(rows.direct.median / rows.lease.median).toFixed(0)}x`);

  for (const size of [10, 100, 1000]) {
    const client = new EdgeClient({ url: service.url, token: tokens.bench, policy, leaseUnits: size, settleEveryMs: 0 });
    for (let i = 0; i < 1000; i++) await client.decide('alice', 'api.max');
    await client.close();
    const trips = client.calls.grant + client.calls.settle + client.calls.consume;
    console.log(`lease size ${size}\t1,000 units\t${trips} round trips (bound 1000 / ${size} + 1 = ${1000 / size + 1})\t${JSON.stringify(client.calls)}`);
  }
} finally {
  await service.stop();
}

/** Times `call` one after another for `seconds` after 1 s of warm-up. */
async function measure(call) {
  for (const end = performance.now() + 1000; performance.now() < end; ) await call();
  const times = [];
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    const t = process.hrtime.bigint();
    await call();
    times.push(Number(process.hrtime.bigint() - t));
  }
  times.sort((a, b) => a - b);
  const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))];
  return { median: at(0.5), p99: at(0.99), mean: times.reduce((a, b) => a + b, 0) / times.length, count: times.length };
}

function fmt(ns) {
  return ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : `${(ns / 1e3).toFixed(2)} µs`;
}
