// A Cloudflare Worker that decides quotas at the edge. Package the policy
// next to it first (`node edge/build.mjs --out src/policy`, from the
// repository), then `wrangler deploy`. wrangler imports `*.wasm` as compiled
// modules, which Workers need: they cannot compile wasm at run time.
//
//   POST /decide   a decision input (JSON)  ->  200 the decision,
//                  400 invalid_json / invalid_input, 503 policy_unavailable
import { load } from './policy/workers.js';

// One instance per isolate, made at the first request.
let policy;

// The body as serde_json reads it: UTF-8, a BOM kept (and refused).
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname !== '/decide' || request.method !== 'POST') {
      return json(404, '{"error":{"code":"not_found","message":"POST a decision input to /decide"}}');
    }
    // A failed load is not kept: the next request tries again.
    policy ??= load().catch((e) => {
      policy = undefined;
      throw e;
    });
    let text;
    try {
      text = UTF8.decode(await request.arrayBuffer());
    } catch {
      return json(400, '{"error":{"code":"invalid_json","message":"the body is not UTF-8 text"}}');
    }
    const output = (await policy).evaluateJson(text);
    if (output.startsWith('{"error":{"code":"policy_unavailable"')) return json(503, output);
    return json(output.startsWith('{"error"') ? 400 : 200, output);
  },
};

function json(status, body) {
  return new Response(body, { status, headers: { 'content-type': 'application/json' } });
}
