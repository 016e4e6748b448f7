// The README's edge examples, run: the Cloudflare Worker in Cloudflare's own
// runtime (workerd, through Miniflare, on loopback), and the Deno handler
// under Node with the Web APIs only. Each decides with the packaged
// reference policy and must answer as `quota policy eval` does.

import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import test from 'node:test';

import { Miniflare } from 'miniflare';

import { buildPackage } from '../build.mjs';
import { differences, edge, quotaEval, root } from './support.mjs';

const INPUTS = [
  '{"user_id":"alice","plan_id":"free","entitlement_key":"drafts.max","requested":1,"now_ms":1700000000000,"usage":3,"grace_used":0,"plan":{"limit":3,"enforcement_enabled":true,"grace_count":1}}',
  '{"user_id":"alice","plan_id":"free","entitlement_key":"drafts.max","requested":1,"now_ms":1700000000000,"usage":9223372036854775807,"grace_used":1,"plan":{"limit":3,"enforcement_enabled":true,"grace_count":1}}',
  '{"user_id":"alice","plan_id":"free","entitlement_key":"drafts.max","requested":0,"now_ms":0,"usage":0,"grace_used":0}',
  '{"user_id":"alice","overide":null}',
  'not json',
  '\ufeff{"user_id":"a BOM is not JSON"}',
];

/** An example beside a freshly packaged reference policy in `policy/`. */
async function project(example) {
  const dir = mkdtempSync(join(tmpdir(), 'quota-edge-example-'));
  copyFileSync(join(edge, 'examples', example), join(dir, example));
  await buildPackage(readFileSync(join(root, 'target', 'guest', 'reference-policy.wasm')), join(dir, 'policy'));
  return dir;
}

/** Each input's expected status and body, from `quota policy eval`. */
function expected() {
  return INPUTS.map((input) => {
    const line = quotaEval(new TextEncoder().encode(`${input}\n`)).trimEnd();
    const status = line.startsWith('{"error"') ? 400 : 200;
    return { input, status, line };
  });
}

async function check(fetch) {
  for (const { input, status, line } of expected()) {
    const res = await fetch(new Request('http://localhost/decide', { method: 'POST', body: input }));
    assert.equal(res.status, status, input);
    assert.equal(res.headers.get('content-type'), 'application/json');
    assert.deepEqual(differences(`${await res.text()}\n`, `${line}\n`, { lineNumbers: false }), [], input);
  }
  const res = await fetch(new Request('http://localhost/other'));
  assert.equal(res.status, 404);
  assert.equal(JSON.parse(await res.text()).error.code, 'not_found');
}

test('the Cloudflare Worker example decides in workerd', async () => {
  const dir = await project('worker.js');
  const mf = new Miniflare({
    modules: true,
    scriptPath: join(dir, 'worker.js'),
    modulesRoot: dir,
    // As wrangler: `.js` files are ES modules, `.wasm` files compiled modules.
    modulesRules: [
      { type: 'ESModule', include: ['**/*.js'] },
      { type: 'CompiledWasm', include: ['**/*.wasm'] },
    ],
    compatibilityDate: '2025-07-01',
  });
  try {
    await check(async (request) => {
      const res = await mf.dispatchFetch(request.url, {
        method: request.method,
        body: request.method === 'POST' ? new Uint8Array(await request.arrayBuffer()) : undefined,
      });
      return new Response(await res.text(), { status: res.status, headers: res.headers });
    });
  } finally {
    await mf.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the Deno handler example decides with the Web APIs only', async () => {
  const dir = await project('deno.js');
  try {
    const { handler } = await import(pathToFileURL(join(dir, 'deno.js')).href);
    await check(handler);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the README shows the examples as they are tested', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  for (const example of ['worker.js', 'deno.js']) {
    const code = readFileSync(join(edge, 'examples', example), 'utf8');
    assert.ok(readme.includes(`\`\`\`js\n${code}\`\`\``), `README.md shows edge/examples/${example} as it is`);
  }
});
