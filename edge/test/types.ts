// Compiled by `tsc -p edge` in `make test`: the package's types, used as a
// TypeScript author would. It fails to compile if the types drift.
import { load, type Decision, type DecisionInput, type Output } from 'quota-policy';
import { load as loadForWorkers } from 'quota-policy/workers';
import { EdgeClient, ServiceError, type EdgeDecision } from 'quota-policy/client';

const input: DecisionInput = {
  user_id: 'alice',
  plan_id: 'pro',
  entitlement_key: 'drafts.max',
  requested: 1,
  now_ms: 1_700_000_000_000,
  usage: 9_223_372_036_854_775_807n,
  plan: { limit: 3, enforcement_enabled: true, grace_count: 1 },
  grace_used: 0,
};

export async function decide(): Promise<string> {
  const policy = await load();
  const out: Output = policy.evaluate(input);
  if ('error' in out) return out.error.code;
  const decision: Decision = out;
  const limit: number | bigint = decision.limit;
  const line: string = policy.evaluateJson(JSON.stringify({ ...input, usage: 0 }));
  const lines: string = policy.evaluateText(new TextEncoder().encode(line));
  return `${decision.status} ${limit} ${lines.length}`;
}

export const forWorkers: () => Promise<unknown> = loadForWorkers;

export async function atTheEdge(token: string): Promise<string> {
  const client = new EdgeClient({ url: 'http://127.0.0.1:8080', token, policy: await load(), leaseUnits: 50 });
  try {
    const d: EdgeDecision = await client.decide('alice', 'api.max', 2);
    return `${d.admitted} ${d.status} ${d.via} ${client.calls.grant}`;
  } catch (e) {
    return e instanceof ServiceError ? `${e.status} ${e.code}` : 'unreachable';
  } finally {
    await client.close();
  }
}
