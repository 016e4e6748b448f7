// A Deno handler that decides quotas (also Deno Deploy). Package the policy
// next to it first (`node edge/build.mjs --out policy`, from the
// repository), then `deno run --allow-net deno.js`. Deno compiles wasm at run
// time, so it uses the bundled build (`index.js`).
//
//   POST /decide   a decision input (JSON)  ->  200 the decision,
//                  400 invalid_json / invalid_input, 503 policy_unavailable
import { load } from './policy/index.js';

const policy = load();
// The body as serde_json reads it: UTF-8, a BOM kept (and refused).
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export async function handler(request) {
  const url = new URL(request.url);
  if (url.pathname !== '/decide' || request.method !== 'POST') {
    return json(404, '{"error":{"code":"not_found","message":"POST a decision input to /decide"}}');
  }
  let text;
  try {
    text = UTF8.decode(await request.arrayBuffer());
  } catch {
    return json(400, '{"error":{"code":"invalid_json","message":"the body is not UTF-8 text"}}');
  }
  const output = (await policy).evaluateJson(text);
  if (output.startsWith('{"error":{"code":"policy_unavailable"')) return json(503, output);
  return json(output.startsWith('{"error"') ? 400 : 200, output);
}

function json(status, body) {
  return new Response(body, { status, headers: { 'content-type': 'application/json' } });
}

if (globalThis.Deno) Deno.serve(handler);
