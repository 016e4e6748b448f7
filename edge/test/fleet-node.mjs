// One node of the simulated fleet (client.test.mjs): decides alice's
// `api.max` with an EdgeClient as fast as it can, pacing itself by
// `--pace-ms`, and prints `admit <ms>` for each admitted unit as it
// happens (a pipe's writes are synchronous, so a killed node has printed
// every unit it admitted). It stops once blocked for `--idle-ms`, settles,
// and prints `done <calls>`.

import { parseArgs } from 'node:util';

import { EdgeClient } from '../src/client.js';
import { reference } from './support.mjs';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    'lease-units': { type: 'string', default: '20' },
    'ttl-ms': { type: 'string', default: '2000' },
    'pace-ms': { type: 'string', default: '2' },
    'idle-ms': { type: 'string', default: '4000' },
  },
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const client = new EdgeClient({
  url: values.url,
  token: values.token,
  policy: await reference(),
  leaseUnits: Number(values['lease-units']),
  ttlMs: Number(values['ttl-ms']),
  settleEveryMs: 500,
});
let blockedSince = null;
for (;;) {
  const decision = await client.decide('alice', 'api.max');
  if (decision.admitted) {
    process.stdout.write(`admit ${Date.now()}\n`);
    blockedSince = null;
  } else {
    blockedSince ??= Date.now();
    if (Date.now() - blockedSince > Number(values['idle-ms'])) break;
    await sleep(50);
  }
  await sleep(Number(values['pace-ms']));
}
await client.close();
process.stdout.write(`done ${JSON.stringify(client.calls)}\n`);
