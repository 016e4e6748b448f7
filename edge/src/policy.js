// A quota policy component, transpiled by jco, behind the JSON of
// `quota policy eval`. The host's side of the contract lives here: the
// decision input is read and checked as the Rust host reads it, every
// decision must pass the contract's invariants (else the call fails closed
// with `policy_unavailable`), and an instance that traps is replaced.
// No Node built-ins: this module runs on every edge runtime.

import { errorValue, parseJson, splitInputs, writeJson } from './json.js';
import { InvalidInput, inputFromValue } from './input.js';

const UNLIMITED = -1n;
const MAX_REASON_BYTES = 1024;
const USAGE_KEY_CACHE_MAX = 1024;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const UTF8 = new TextEncoder();

/** The contract's names for jco's kebab-case enum cases. */
const snake = (s) => s.replaceAll('-', '_');

/** A bigint as a number when that is exact, else the bigint. */
const int = (n) => (n >= -MAX_SAFE && n <= MAX_SAFE ? Number(n) : n);

/** A host-side failure to run the policy: the decision is unknown. */
class Unavailable extends Error {}

/**
 * The checks every decision must pass, whatever policy made it: internally
 * consistent and true to its input (the Rust host's `check_invariants`,
 * with its messages). Returns what is broken, or null.
 */
function broken(input, d) {
  const over = d.limit !== UNLIMITED && d.projectedUsage > d.limit;
  const max = d.limit > d.usage ? d.limit : d.usage;
  const expectedOverage = over ? saturating(d.projectedUsage - max) : 0n;
  const sourceOverride = d.limitSource === 'override';
  if (d.usage !== input.usage || d.requested !== input.requested) return 'usage or requested not echoed';
  if (d.projectedUsage !== saturating(input.usage + input.requested)) {
    return 'projected_usage is not usage + requested';
  }
  if (d.limit < UNLIMITED) return 'limit below -1';
  if (d.status === 'allow' && over) return 'allow beyond the limit';
  if (d.status === 'warn-only' && (!over || d.enforced)) return 'warn_only within the limit or while enforced';
  if (
    d.status === 'allow-grace' &&
    !(over && d.enforced && d.overage > 0n && d.graceToConsume === d.overage)
  ) {
    return 'allow_grace within the limit, not enforced, or not consuming its overage as grace';
  }
  if (d.status === 'block' && !(over && d.enforced)) return 'block within the limit or while not enforced';
  if (d.overage !== expectedOverage) {
    return 'overage is not projected_usage - max(limit, usage) over a finite limit, 0 within it';
  }
  if (d.graceToConsume < 0n || d.graceRemaining < 0n) return 'negative grace';
  if (d.status !== 'allow-grace' && d.graceToConsume !== 0n) return 'grace to consume without allow_grace';
  if (d.overrideApplied !== sourceOverride) return 'override_applied disagrees with limit_source';
  if ((d.overrideApplied || d.overrideExpired) && input.override === undefined) {
    return 'an override applied or expired that the input does not have';
  }
  if (d.overrideApplied && d.overrideExpired) return 'an override both applied and expired';
  if (tooLong(d.reason)) return 'reason longer than 1024 bytes';
  return null;
}

/** Whether `text` is over 1 KiB in UTF-8 (a UTF-16 unit is at most 3 bytes). */
function tooLong(text) {
  return text.length * 3 > MAX_REASON_BYTES && UTF8.encode(text).length > MAX_REASON_BYTES;
}

/** i64 saturating: the sums the contract defines saturate at the bounds. */
function saturating(n) {
  const max = (1n << 63n) - 1n;
  const min = -(1n << 63n);
  return n > max ? max : n < min ? min : n;
}

/**
 * One policy: a live instance of the component, replaced after a trap.
 * Decisions come back in the JSON shape of `quota policy eval`: snake_case
 * fields, `-1` for unlimited, every integer a `number` when it is a safe
 * integer and a `bigint` otherwise; errors as `{error: {code, message}}`.
 */
export class Policy {
  /**
   * Instantiates a transpiled component. `instantiate` is the function
   * jco's `--instantiation async` output exports; `getCoreModule(path)`
   * returns (or resolves to) the compiled `WebAssembly.Module` of each of
   * its core modules.
   */
  static async create(instantiate, getCoreModule) {
    const policy = new Policy(instantiate);
    // The first instance compiles (or is given) each core module; they are
    // kept, so that an instance that traps is replaced at the next call
    // without compiling again.
    const root = await instantiate(async (path) => {
      const module = await getCoreModule(path);
      policy.#modules.set(path, module);
      return module;
    }, {});
    policy.#bind(root);
    return policy;
  }

  #instantiate;
  #modules = new Map();
  #engine = null;
  #usageKeys = new Map();

  /** Use `Policy.create`. */
  constructor(instantiate) {
    this.#instantiate = instantiate;
  }

  #bind(root) {
    const engine = root.engine ?? root['quota:policy/engine@0.1.0'];
    if (!engine || typeof engine.decide !== 'function' || typeof engine.usageKey !== 'function') {
      throw new Error('the component does not export quota:policy/engine@0.1.0');
    }
    this.#engine = engine;
  }

  #renew() {
    const root = this.#instantiate(
      (path) => this.#modules.get(path),
      {},
      (module, imports) => new WebAssembly.Instance(module, imports),
    );
    this.#bind(root);
  }

  /** Calls into the instance; a trap discards it for a fresh one. */
  #call(f) {
    try {
      if (!this.#engine) this.#renew();
    } catch (e) {
      throw new Unavailable(`the policy could not be instantiated: ${e?.message ?? e}`);
    }
    try {
      return f(this.#engine);
    } catch (e) {
      // A result's error comes back as its payload (or wrapped in jco's
      // ComponentError); anything else is the instance failing.
      const payload = e?.payload ?? e;
      if (payload && typeof payload === 'object' && typeof payload.code === 'string' && 'message' in payload) {
        throw payload;
      }
      this.#engine = null;
      this.#usageKeys.clear();
      throw new Unavailable(`the policy trapped: ${e?.message ?? e}`);
    }
  }

  #usageKey(key) {
    let info = this.#usageKeys.get(key);
    if (!info) {
      info = this.#call((engine) => engine.usageKey(key));
      if (this.#usageKeys.size >= USAGE_KEY_CACHE_MAX) this.#usageKeys.clear();
      this.#usageKeys.set(key, info);
    }
    return info;
  }

  /** The decision for a component input, in the output's internal form. */
  #evaluateInput(input) {
    let d;
    try {
      d = this.#call((engine) => engine.decide(input));
    } catch (e) {
      if (e instanceof Unavailable) return errorValue('policy_unavailable', e.message);
      if (tooLong(String(e.message))) {
        return unavailable('error message longer than 1024 bytes');
      }
      return errorValue(snake(e.code), e.message);
    }
    const why = broken(input, d);
    if (why) return unavailable(why);
    let key;
    try {
      key = this.#usageKey(input.entitlementKey);
    } catch (e) {
      const message = e instanceof Unavailable ? e.message : `the policy failed: ${e?.message ?? e}`;
      return errorValue('policy_unavailable', message);
    }
    return {
      status: snake(d.status),
      limit: d.limit,
      limit_source: d.limitSource,
      override_applied: d.overrideApplied,
      override_expired: d.overrideExpired,
      usage: d.usage,
      requested: d.requested,
      projected_usage: d.projectedUsage,
      overage: d.overage,
      enforced: d.enforced,
      grace_to_consume: d.graceToConsume,
      grace_remaining: d.graceRemaining,
      usage_key: key.usageKey,
      usage_key_fallback: key.fallback,
      reason: d.reason,
    };
  }

  #evaluateValue(value) {
    let input;
    try {
      input = inputFromValue(value);
    } catch (e) {
      if (e instanceof InvalidInput) return errorValue('invalid_input', e.message);
      throw e;
    }
    return this.#evaluateInput(input);
  }

  /**
   * Decides one input given as a JavaScript object in the JSON shape
   * (snake_case; integers as safe-integer numbers or as bigints).
   */
  evaluate(input) {
    return toJs(this.#evaluateValue(input));
  }

  /**
   * Reads `input` (as `evaluate` would) once, for deciding it many times
   * with other `usage`, `grace_used` and `requested`: the local decisions
   * of a lease. Returns a function `(usage, graceUsed, requested)` giving
   * what `evaluate` gives for the input with those three replaced, or an
   * `{ error }` output when `evaluate` would refuse the input itself.
   */
  prepare(input) {
    let record;
    try {
      record = inputFromValue(input);
    } catch (e) {
      if (e instanceof InvalidInput) return errorValue('invalid_input', e.message);
      throw e;
    }
    return (usage, graceUsed, requested) =>
      toJs(
        this.#evaluateInput({
          ...record,
          usage: BigInt(usage),
          graceUsed: BigInt(graceUsed),
          requested: BigInt(requested),
        }),
      );
  }

  /** Decides one input given as JSON text; the output line's JSON text. */
  evaluateJson(text) {
    let value;
    try {
      value = parseJson(text);
    } catch (e) {
      return writeJson(errorValue('invalid_json', e.message));
    }
    return writeOutput(this.#evaluateValue(value));
  }

  /**
   * What `quota policy eval` prints for `bytes` (a Uint8Array: one JSON
   * input, or JSON Lines): one line per input, each ending in a newline.
   */
  evaluateText(bytes) {
    let out = '';
    for (const item of splitInputs(bytes)) {
      const output = item.error !== undefined ? errorValue('invalid_json', item.error) : this.#evaluateValue(item.value);
      out += `${writeOutput(output)}\n`;
    }
    return out;
  }
}

function unavailable(why) {
  return errorValue('policy_unavailable', `the policy returned an impossible decision: ${why}`);
}

/** An output's JSON text: a decision's fields in order, or the error. */
function writeOutput(o) {
  if (o.error) return writeJson(o);
  return (
    `{"status":"${o.status}","limit":${o.limit},"limit_source":"${o.limit_source}",` +
    `"override_applied":${o.override_applied},"override_expired":${o.override_expired},` +
    `"usage":${o.usage},"requested":${o.requested},"projected_usage":${o.projected_usage},` +
    `"overage":${o.overage},"enforced":${o.enforced},"grace_to_consume":${o.grace_to_consume},` +
    `"grace_remaining":${o.grace_remaining},"usage_key":${JSON.stringify(o.usage_key)},` +
    `"usage_key_fallback":${o.usage_key_fallback},"reason":${JSON.stringify(o.reason)}}`
  );
}

/** The output with its bigints as numbers where exact. */
function toJs(output) {
  if (output.error) return output;
  const out = {};
  for (const [k, v] of Object.entries(output)) out[k] = typeof v === 'bigint' ? int(v) : v;
  return out;
}
