// The decision input in its JSON form (docs/contract.md §2.1), read as the
// Rust host reads it (quota-policy-core's json module): every problem names
// its field, unknown fields are refused, nullable fields may be omitted, and
// `plan.rollout_percent` omitted means 100. Ranges (`requested >= 1`, ...)
// are the policy's to check, not this reader's.

import { JsonFloat, JsonInt } from './json.js';

const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

/** An input the reader refuses: an `invalid_input` error. */
export class InvalidInput extends Error {}

const INPUT_FIELDS = [
  'user_id',
  'plan_id',
  'entitlement_key',
  'requested',
  'now_ms',
  'usage',
  'override',
  'plan',
  'default_limit',
  'grace_used',
];
const OVERRIDE_FIELDS = ['value', 'expires_at_ms'];
const PLAN_FIELDS = ['limit', 'enforcement_enabled', 'grace_count', 'rollout_percent'];

/** Whether `v` is an object of the input: a Map (from the JSON reader) or a plain object. */
function isObject(v) {
  return v instanceof Map || (v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof JsonInt) && !(v instanceof JsonFloat));
}

/** What a value is, in the words of the Rust reader's messages. */
function kind(v) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'boolean') return 'a boolean';
  if (typeof v === 'string') return 'a string';
  if (typeof v === 'bigint' || v instanceof JsonInt) return 'an integer';
  if (typeof v === 'number') return Number.isInteger(v) && !Object.is(v, -0) ? 'an integer' : 'a fractional number';
  if (v instanceof JsonFloat) return 'a fractional number';
  if (Array.isArray(v)) return 'an array';
  return 'an object';
}

/**
 * The fields of one object of the input. It reads the JSON reader's shapes
 * (Map, JsonInt, JsonFloat) and plain JavaScript values alike: a bigint or
 * an integral number is an integer, any other number a fraction. A number
 * beyond ±(2^53 - 1) is refused: it may already have been rounded, so such
 * a value must come as a bigint.
 */
class Fields {
  constructor(prefix, value, known) {
    if (!isObject(value)) {
      const what = prefix === '' ? 'the decision input' : `\`${prefix.slice(0, -1)}\``;
      throw new InvalidInput(`${what} must be a JSON object, got ${kind(value)}`);
    }
    for (const key of value instanceof Map ? value.keys() : Object.keys(value)) {
      if (!known.includes(key)) throw new InvalidInput(`unknown field \`${prefix}${key}\``);
    }
    this.prefix = prefix;
    this.value = value;
  }

  /** The field, undefined when missing or null. */
  get(field) {
    const v = this.value instanceof Map ? this.value.get(field) : this.value[field];
    return v === null ? undefined : v;
  }

  required(field) {
    const v = this.get(field);
    if (v === undefined) throw new InvalidInput(`missing field \`${this.prefix}${field}\``);
    return v;
  }

  string(field) {
    const v = this.required(field);
    if (typeof v !== 'string') {
      throw new InvalidInput(`\`${this.prefix}${field}\` must be a string, got ${kind(v)}`);
    }
    return v;
  }

  int(field) {
    return this.asInt(field, this.required(field));
  }

  optInt(field) {
    const v = this.get(field);
    return v === undefined ? undefined : this.asInt(field, v);
  }

  asInt(field, v) {
    const name = `\`${this.prefix}${field}\``;
    if (typeof v === 'number' && Number.isInteger(v)) {
      if (!Number.isSafeInteger(v)) throw new InvalidInput(`${name} is not a safe integer: pass it as a bigint`);
      return BigInt(v);
    }
    const n = typeof v === 'bigint' ? v : v instanceof JsonInt ? v.value : undefined;
    if (n !== undefined) {
      if (n > I64_MAX) throw new InvalidInput(`${name} is larger than the 64-bit integer maximum`);
      if (n < I64_MIN) throw new InvalidInput(`${name} is smaller than the 64-bit integer minimum`);
      return n;
    }
    // `-0` is a JSON integer, but serde_json reads it as the float -0.0.
    if (v instanceof JsonFloat && Object.is(v.value, -0)) return 0n;
    throw new InvalidInput(`${name} must be an integer, got ${kind(v)}`);
  }

  bool(field) {
    const v = this.required(field);
    if (typeof v !== 'boolean') {
      throw new InvalidInput(`\`${this.prefix}${field}\` must be true or false, got ${kind(v)}`);
    }
    return v;
  }
}

/**
 * The component's input (jco's camelCase record, bigints) from a value in
 * the JSON reader's shapes or a plain object. Throws `InvalidInput`.
 */
export function inputFromValue(value) {
  const f = new Fields('', value, INPUT_FIELDS);
  let override;
  const o = f.get('override');
  if (o !== undefined) {
    const of = new Fields('override.', o, OVERRIDE_FIELDS);
    override = { value: of.int('value'), expiresAtMs: of.optInt('expires_at_ms') };
  }
  let plan;
  const p = f.get('plan');
  if (p !== undefined) {
    const pf = new Fields('plan.', p, PLAN_FIELDS);
    plan = {
      limit: pf.optInt('limit'),
      enforcementEnabled: pf.bool('enforcement_enabled'),
      graceCount: pf.int('grace_count'),
      rolloutPercent: pf.optInt('rollout_percent') ?? 100n,
    };
  }
  return {
    userId: f.string('user_id'),
    planId: f.string('plan_id'),
    entitlementKey: f.string('entitlement_key'),
    requested: f.int('requested'),
    nowMs: f.int('now_ms'),
    usage: f.int('usage'),
    override,
    plan,
    defaultLimit: f.optInt('default_limit'),
    graceUsed: f.int('grace_used'),
  };
}
