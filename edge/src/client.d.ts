// The edge client (client.js): local decisions from leases of the quota
// service, with the same policy component it runs.

import type { Policy } from './index.js';

/** What the client needs of a loaded policy (`load()` of the package). */
export type LeasePolicy = Pick<Policy, 'prepare'>;

export interface EdgeClientOptions {
  /** The quota service, e.g. `https://quota.internal`. */
  url: string;
  /** This node's credential (`POST /admin/nodes`). */
  token: string;
  /** The loaded policy: the component the service runs. */
  policy: LeasePolicy;
  /** The most units one lease asks for (default 100). */
  leaseUnits?: number;
  /** The lease time asked for, ms (default: the service's most). */
  ttlMs?: number;
  /** Spend nothing from a lease this long before it expires, ms (default 250). */
  marginMs?: number;
  /** Settle and renew on a timer this often, ms (default 1000; 0: never). */
  settleEveryMs?: number;
  /** With fewer units than this left to the user, ask the service on every decision (default 4). */
  perDecisionBelow?: number;
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
  /** A monotonic clock, ms (default `performance.now`). */
  now?: () => number;
}

/** One decision. */
export interface EdgeDecision {
  /** Whether the action may happen. */
  admitted: boolean;
  /** `allow`, `allow_grace`, `warn_only` or `block`. */
  status: 'allow' | 'allow_grace' | 'warn_only' | 'block';
  /** The policy's decision (from a lease), the service's (a direct consume), or its `quota_exceeded` error. */
  decision: Record<string, unknown>;
  /** `lease`: decided here; `service`: a direct consume. */
  via: 'lease' | 'service';
}

/** A service answer that is not a success. */
export class ServiceError extends Error {
  status: number;
  code?: string;
  body: unknown;
}

export class EdgeClient {
  constructor(options: EdgeClientOptions);
  /** Requests sent to the service, by kind (retries included). */
  readonly calls: { grant: number; settle: number; consume: number };
  /** Decides `requested` units (default 1) of `key` for `userId`. */
  decide(userId: string, key: string, requested?: number): Promise<EdgeDecision>;
  /** Settles every lease; `renew`: renew each in place, else end them. */
  settleAll(renew: boolean): Promise<void>;
  /** Stops the timer and settles (ends) every lease this node holds. */
  close(): Promise<void>;
}
