// The API of a packaged quota policy (edge/build.mjs). Integers: every
// integer of an output is a `number` when it is a safe integer
// (|n| <= 2^53 - 1) and a `bigint` otherwise; an input integer may be
// either, but a `number` must be a safe integer (a larger one may already
// have been rounded: pass a bigint).

/** A signed 64-bit integer. */
export type Int = number | bigint;

/** An admin override of one user's limit for one entitlement. */
export interface OverrideInfo {
  /** The limit the override sets: -1 (unlimited) or more. */
  value: Int;
  /** Unix ms at which the override stops applying; null: never. */
  expires_at_ms?: Int | null;
}

/** What the user's plan says about the entitlement. */
export interface PlanInfo {
  /** The plan's limit: -1 (unlimited) or more; null when the plan does not name the key. */
  limit?: Int | null;
  /** Off: warn only. */
  enforcement_enabled: boolean;
  /** Grace units over the limit before blocking. */
  grace_count: Int;
  /** Share of the plan's users (0 to 100) enforcement applies to; default 100. */
  rollout_percent?: Int | null;
}

/** One decision input: the JSON of `quota policy eval`. */
export interface DecisionInput {
  user_id: string;
  plan_id: string;
  entitlement_key: string;
  /** Units this action would use: 1 or more. */
  requested: Int;
  /** Unix time in milliseconds. */
  now_ms: Int;
  /** The usage counter's current value: 0 or more. */
  usage: Int;
  override?: OverrideInfo | null;
  /** null: the user has no plan record. */
  plan?: PlanInfo | null;
  /** The global default limit for the key: -1 or more. */
  default_limit?: Int | null;
  /** Grace already consumed for (user, plan, key). */
  grace_used: Int;
}

export type Status = 'allow' | 'allow_grace' | 'warn_only' | 'block';
export type LimitSource = 'override' | 'plan' | 'default' | 'none';

/** A decision, with the usage key the entitlement reads. */
export interface Decision {
  status: Status;
  /** The effective limit; -1 unlimited. */
  limit: Int;
  limit_source: LimitSource;
  override_applied: boolean;
  override_expired: boolean;
  usage: Int;
  requested: Int;
  projected_usage: Int;
  overage: Int;
  enforced: boolean;
  grace_to_consume: Int;
  grace_remaining: Int;
  usage_key: string;
  usage_key_fallback: boolean;
  reason: string;
}

/**
 * Why there is no decision: `invalid_input` (the input breaks the contract;
 * the message names the field), `invalid_json` (not JSON), or
 * `policy_unavailable` (the policy trapped or returned an impossible
 * decision: fail closed).
 */
export interface ErrorOutput {
  error: { code: 'invalid_input' | 'invalid_json' | 'policy_unavailable' | string; message: string };
}

export type Output = Decision | ErrorOutput;

/** One live instance of a policy component. */
export class Policy {
  /**
   * Instantiates a component transpiled by jco (`instantiation: async`):
   * `instantiate` is its export, `getCoreModule(path)` gives each compiled
   * core module.
   */
  static create(
    instantiate: unknown,
    getCoreModule: (path: string) => WebAssembly.Module | Promise<WebAssembly.Module>,
  ): Promise<Policy>;
  /** Decides one input given as an object. */
  evaluate(input: DecisionInput): Output;
  /**
   * Reads `input` once for deciding it many times with other `usage`,
   * `grace_used` and `requested` (a lease's local decisions): the function
   * gives what `evaluate` would; an `ErrorOutput` when the input itself is
   * refused.
   */
  prepare(input: DecisionInput): ((usage: Int, graceUsed: Int, requested: Int) => Output) | ErrorOutput;
  /** Decides one input given as JSON text; returns the output's JSON text. */
  evaluateJson(text: string): string;
  /**
   * What `quota policy eval` prints for this input text (one JSON value,
   * or JSON Lines): one line per input, each ending in "\n".
   */
  evaluateText(bytes: Uint8Array): string;
}

/** A new instance of this folder's policy. */
export function load(): Promise<Policy>;
