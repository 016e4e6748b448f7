// An edge client: decides a user's metered quota locally, from leases the
// quota service grants to this node, with the same policy component the
// service runs. The service counts a lease's units as used until they are
// settled, so nodes racing one user never admit more than the policy
// does, and a node that dies costs at most the units of its open leases
// (docs/leases.md). No Node built-ins: it runs wherever `fetch` does.

import { JsonFloat, JsonInt, parseJson } from './json.js';


/** A service answer that is not a success: its status and error body. */
export class ServiceError extends Error {
  constructor(status, body) {
    super(`quota service answered ${status}: ${body?.error?.message ?? JSON.stringify(body)}`);
    this.status = status;
    this.code = body?.error?.code;
    this.body = body;
  }
}

/**
 * A value of the JSON reader as a plain object, integers as bigints: a
 * lease's decision input, read exactly over the whole 64-bit range.
 */
function plain(value) {
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [k, plain(v)]));
  if (Array.isArray(value)) return value.map(plain);
  if (value instanceof JsonInt || value instanceof JsonFloat) return value.value;
  return value;
}

/** A random Idempotency-Key, so that a retried grant reserves once. */
function freshKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** A lease as this node holds it: spendable until its local deadline. */
class Lease {
  constructor(answer, sentAt, marginMs) {
    this.id = answer.id;
    this.seq = answer.seq;
    this.granted = answer.granted;
    this.input = answer.input;
    /** @type {((usage: bigint, graceUsed: bigint, requested: number) => object) | null} */
    this.decide = null;
    // Counted from when the request was sent: the service's clock started
    // before the answer left it.
    this.deadline = sentAt + answer.ttl_ms - marginMs;
    this.spent = 0;
    this.graceSpent = 0;
  }

  /** Units it may still spend at `now`. */
  left(now) {
    return now < this.deadline ? this.granted - this.spent : 0;
  }
}

/** One (user, entitlement) on this node. */
class Slot {
  constructor(userId, key) {
    this.userId = userId;
    this.key = key;
    /** @type {Lease | null} the lease decisions spend from */
    this.lease = null;
    /** @type {Promise<void> | null} a grant or settle in flight: spending waits for it */
    this.busy = null;
    /** Units the user had left (limit and grace) at the last answer; null: not known yet. */
    this.room = null;
  }
}

/**
 * Decides `requested` units of a user's metered entitlement on this node:
 * locally from a lease when it holds enough, else by asking the service.
 *
 * ```js
 * const client = new EdgeClient({ url, token, policy });
 * const d = await client.decide('alice', 'api.max');
 * if (!d.admitted) return new Response('quota exceeded', { status: 403 });
 * // ...
 * await client.close(); // settles what this node holds
 * ```
 */
export class EdgeClient {
  /**
   * @param {object} options
   * @param {string} options.url the quota service, e.g. `https://quota.internal`
   * @param {string} options.token this node's credential (`POST /admin/nodes`)
   * @param {{ prepare(input: object): Function | object }} options.policy the loaded policy
   *   (`load()` of the package): the component the service runs
   * @param {number} [options.leaseUnits=100] the most units one lease asks for
   * @param {number} [options.ttlMs] the lease time asked for (default: the service's most)
   * @param {number} [options.marginMs=250] spend nothing from a lease this long before it expires
   * @param {number} [options.settleEveryMs=1000] settle and renew on a timer this often,
   *   so that the service sees what was spent and this node sees admin changes; 0: never
   * @param {number} [options.perDecisionBelow=4] with fewer units than this left to the
   *   user, ask the service on every decision
   * @param {typeof fetch} [options.fetch] the fetch to use
   * @param {() => number} [options.now] a monotonic clock, ms (default `performance.now`)
   */
  constructor(options) {
    this.url = options.url.replace(/\/$/, '');
    this.token = options.token;
    this.policy = options.policy;
    this.leaseUnits = options.leaseUnits ?? 100;
    this.ttlMs = options.ttlMs;
    this.marginMs = options.marginMs ?? 250;
    this.perDecisionBelow = options.perDecisionBelow ?? 4;
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.now = options.now ?? (() => performance.now());
    /** @type {Map<string, Slot>} */
    this.slots = new Map();
    /** Requests sent to the service, by kind (retries included). */
    this.calls = { grant: 0, settle: 0, consume: 0 };
    this.closed = false;
    const every = options.settleEveryMs ?? 1000;
    this.timer = every > 0 ? setInterval(() => void this.settleAll(true), every) : null;
    if (this.timer && typeof this.timer.unref === 'function') this.timer.unref();
  }

  /**
   * Decides `requested` units (default 1) of `key` for `userId`. Resolves
   * to `{ admitted, status, decision, via }`: `via` is `lease` (decided
   * here) or `service` (a direct consume, when no lease holds enough).
   * When the service cannot be reached and no lease holds enough, it
   * rejects: nothing is admitted without a lease or an answer.
   */
  async decide(userId, key, requested = 1) {
    if (this.closed) throw new Error('the client is closed');
    if (!Number.isSafeInteger(requested) || requested < 1) {
      throw new TypeError(`requested must be an integer of at least 1, got ${requested}`);
    }
    const slot = this.slot(userId, key);
    for (let attempt = 0; attempt < 3; attempt++) {
      while (slot.busy) await slot.busy;
      const local = this.fromLease(slot, requested);
      if (local) return local;
      if (slot.room !== null && slot.room < this.perDecisionBelow) break;
      await this.exclusive(slot, () =>
        slot.lease ? this.settle(slot, this.size(slot, requested)) : this.grant(slot, requested),
      );
      if (!slot.lease) break;
    }
    return this.consume(slot, requested);
  }

  /** Settles every lease this node holds (ending them), and stops the timer. */
  async close() {
    if (this.timer) clearInterval(this.timer);
    this.closed = true;
    await this.settleAll(false);
  }

  /**
   * Settles every lease this node holds. `renew`: renew each in place (the
   * timer: the service learns what was spent, this node learns of admin
   * changes); a lease with nothing spent and time left is left alone.
   */
  async settleAll(renew) {
    const work = [];
    for (const slot of this.slots.values()) {
      const lease = slot.lease;
      if (!lease || slot.busy) continue;
      const fresh = lease.spent === 0 && lease.deadline - this.now() > 4 * this.marginMs;
      if (renew && fresh) continue;
      work.push(this.exclusive(slot, () => this.settle(slot, renew ? this.size(slot, 1) : 0)).catch(() => {}));
    }
    await Promise.all(work);
  }

  slot(userId, key) {
    const id = `${userId}\u0000${key}`;
    let slot = this.slots.get(id);
    if (!slot) {
      slot = new Slot(userId, key);
      this.slots.set(id, slot);
    }
    return slot;
  }

  /** Runs `work` with the slot's spending paused until it is done. */
  exclusive(slot, work) {
    const done = (async () => {
      try {
        await work();
      } finally {
        slot.busy = null;
      }
    })();
    slot.busy = done;
    return done;
  }

  /** A decision from the slot's lease, or null when it holds too little. */
  fromLease(slot, requested) {
    const lease = slot.lease;
    if (!lease || lease.left(this.now()) < requested) return null;
    // The input is read once per lease; each decision changes three fields.
    lease.decide ??= this.policy.prepare(lease.input);
    if (typeof lease.decide !== 'function') return null;
    const output = lease.decide(
      BigInt(lease.input.usage) + BigInt(lease.spent),
      BigInt(lease.input.grace_used) + BigInt(lease.graceSpent),
      requested,
    );
    if (output.error || output.status === 'block') return null;
    lease.spent += requested;
    lease.graceSpent += Number(output.grace_to_consume);
    return { admitted: true, status: output.status, decision: output, via: 'lease' };
  }

  /** Units to ask for: a quarter of the user's room, within bounds. */
  size(slot, requested) {
    const share = slot.room === null ? this.leaseUnits : Math.floor(slot.room / 4);
    return Math.max(requested, Math.min(this.leaseUnits, share));
  }

  /** Learns the user's room (limit and grace left) from a decision. */
  learn(slot, decision) {
    if (!decision) return;
    if (decision.limit === -1 || !decision.enforced) {
      slot.room = Infinity;
      return;
    }
    slot.room = decision.limit - decision.usage + decision.grace_remaining + decision.grace_to_consume;
  }

  async call(path, request, headers = {}) {
    const response = await this.fetch(`${this.url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify(request),
    });
    const text = await response.text();
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      return { status: response.status, body: { error: { code: 'not_json', message: text.slice(0, 200) } } };
    }
    if (body?.input) body.input = plain(parseJson(text).get('input'));
    return { status: response.status, body };
  }

  /** `call`, retried twice when the network fails (the request is idempotent). */
  async retried(kind, path, body, headers) {
    for (let attempt = 0; ; attempt++) {
      this.calls[kind]++;
      try {
        return await this.call(path, body, headers);
      } catch (e) {
        if (attempt >= 2) throw e;
      }
    }
  }

  /**
   * A fresh lease for the slot. When the first answer shows the user has
   * little room, the excess goes straight back (a small limit gets a small
   * lease, so that other nodes get their share).
   */
  async grant(slot, requested) {
    const body = { user_id: slot.userId, entitlement_key: slot.key, units: this.size(slot, requested) };
    if (this.ttlMs) body.ttl_ms = this.ttlMs;
    const sentAt = this.now();
    const answer = await this.retried('grant', '/v1/leases', body, { 'idempotency-key': freshKey() });
    if (answer.status !== 200 && answer.status !== 201) throw new ServiceError(answer.status, answer.body);
    this.take(slot, answer.body, sentAt);
    const wanted = this.size(slot, requested);
    if (slot.lease && slot.lease.granted > 2 * wanted) await this.settle(slot, wanted);
  }

  /**
   * Settles the slot's lease: what it spent becomes usage, the rest goes
   * back, and with `more` it is renewed in place on a fresh decision.
   * A retry sends the same seq and values, and counts once.
   */
  async settle(slot, more) {
    const lease = slot.lease;
    const body = { seq: lease.seq + 1, spent: lease.spent, more };
    if (this.ttlMs) body.ttl_ms = this.ttlMs;
    const sentAt = this.now();
    // Whatever happens next, nothing more is spent from this lease: a
    // settle the service applied returned its unspent units, even when
    // the answer was lost. Only the answer gives the node units again.
    slot.lease = null;
    const answer = await this.retried('settle', `/v1/leases/${lease.id}/settle`, body);
    if (answer.status === 409 && answer.body?.error?.code === 'lease_ended') return; // expired: counted as spent
    if (answer.status !== 200) throw new ServiceError(answer.status, answer.body);
    this.take(slot, answer.body, sentAt);
  }

  /** Takes a grant's or a settle's answer as the slot's lease. */
  take(slot, answer, sentAt) {
    this.learn(slot, answer.outcome?.decision);
    slot.lease = answer.granted > 0 ? new Lease(answer, sentAt, this.marginMs) : null;
  }

  /** A direct consume: the service decides and records it. */
  async consume(slot, requested) {
    this.calls.consume++;
    const answer = await this.call(`/v1/usage/${encodeURIComponent(slot.key)}`, {
      user_id: slot.userId,
      requested,
    });
    if (answer.status === 200) {
      const decision = answer.body.outcome.decision;
      this.learn(slot, decision);
      return { admitted: true, status: decision.status, decision, via: 'service' };
    }
    if (answer.status === 403 && answer.body?.error?.code === 'quota_exceeded') {
      slot.room = 0;
      return { admitted: false, status: 'block', decision: answer.body.error, via: 'service' };
    }
    throw new ServiceError(answer.status, answer.body);
  }
}
