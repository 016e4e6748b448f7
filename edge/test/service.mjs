// A `quota serve` of its own for a test: a fresh SQLite database in a
// scratch folder, on a loopback port, stopped (and the folder removed)
// by `stop()` or when the test process exits.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import { quota } from './support.mjs';

export const ADMIN = 'edge-test-admin-token-0123456789abcdef';

/** Starts the service with `args` (e.g. `--lease-max-ms 2000`); `{ url, admin, stop }`. */
export async function startService(args = []) {
  const dir = mkdtempSync(join(tmpdir(), 'quota-edge-service-'));
  const child = spawn(quota, ['serve', '--db', join(dir, 'quota.db'), '--addr', '127.0.0.1:0', ...args], {
    env: { ...process.env, QUOTA_ADMIN_TOKEN: ADMIN, RUST_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const stop = () => {
    child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', stop);
  const url = await new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    const timer = setTimeout(() => reject(new Error('the service did not start in 30 s')), 30_000);
    lines.on('line', (line) => {
      const found = /listening on (http:\/\/\S+)/.exec(line);
      if (found) {
        clearTimeout(timer);
        resolve(found[1]);
      }
    });
    child.once('exit', (code) => reject(new Error(`the service exited with ${code}`)));
  });
  const admin = async (method, path, body) => {
    const response = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await response.json();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(json)}`);
    return json;
  };
  return {
    url,
    admin,
    stop: async () => {
      process.removeListener('exit', stop);
      const exited = new Promise((resolve) => child.once('exit', resolve));
      stop();
      await exited;
    },
  };
}

/**
 * Plan `metered` (`api.max` = `limit`, grace `grace`, enforced), users
 * `users`, and node credentials `nodes` ({ id: max_outstanding }); the
 * node tokens by id.
 */
export async function seed(service, { limit, grace = 0, users = ['alice'], nodes = {} }) {
  await service.admin('PUT', '/admin/plans/metered', {
    limits: { 'api.max': limit },
    enforcement_enabled: true,
    grace_count: grace,
  });
  for (const id of users) await service.admin('POST', '/admin/users', { id, plan_id: 'metered' });
  const tokens = {};
  for (const [id, max] of Object.entries(nodes)) {
    tokens[id] = (await service.admin('POST', '/admin/nodes', { id, max_outstanding: max })).token;
  }
  return tokens;
}

/** A user's `api.used` and the units open leases hold, as the admin sees them. */
export async function counted(service, user = 'alice') {
  const view = await service.admin('GET', `/admin/users/${user}`);
  return {
    usage: view.usage['api.used'] ?? 0,
    reserved: view.leases.reduce((sum, lease) => sum + lease.reserved, 0),
  };
}
