// Generated decision inputs for the differential runs: valid inputs around
// every limit and bound, and inputs the JSON layer or the policy refuses
// (wrong types, unknown and missing fields, numbers past 64 bits, invalid
// JSON, invalid UTF-8). Seeded, so a failure can be replayed.

const I64_MAX = (1n << 63n) - 1n;
const I64_MIN = -(1n << 63n);

/** A small seeded PRNG (mulberry32). */
export function prng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const below = (n) => Math.floor(next() * n);
  return { next, below, pick: (xs) => xs[below(xs.length)], chance: (p) => next() < p };
}

const IDS = ['alice', 'bob', 'user-04217', 'ü', 'emoji-😀', 'a"quote', 'back\\slash', 'ctl\u0001\u001f', 'tab\tnew\nline', 'x'.repeat(300), '', ' ', 'ключ', '\u2028'];
const KEYS = ['drafts.max', 'segments.max', 'collaborators.max', 'custom.max', 'custom', 'api.calls', 'x.max', '', 'k'.repeat(300) + '.max', 'a b.max', 'drafts.max\n', 'ключ.max', '.max', 'drafts.used'];
const PLANS = ['free', 'pro', 'enterprise', 'p', ''];

/** Mostly a plain value, sometimes an odd one. */
const some = (r, xs) => (r.chance(0.85) ? xs[r.below(3)] : r.pick(xs));

function int(r) {
  switch (r.below(8)) {
    case 0:
      return BigInt(r.below(6));
    case 1:
      return BigInt(r.below(200));
    case 2:
      return r.pick([-1n, -2n, -100n]);
    case 3:
      return r.pick([I64_MAX, I64_MAX - 1n, I64_MIN, I64_MIN + 1n]);
    case 4:
      return r.pick([(1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, 1n << 62n]);
    case 5:
      return BigInt(r.below(2 ** 31)) * BigInt(r.below(2 ** 31));
    default:
      return BigInt(r.below(20));
  }
}

/** The JSON text of a number or of something that is not a valid integer. */
function number(r, value) {
  if (!r.chance(0.04)) return value.toString();
  return r.pick([
    '1.0',
    '1e2',
    '-0',
    '-0.0',
    '0.5',
    '18446744073709551615',
    '18446744073709551616',
    '9223372036854775808',
    '-9223372036854775809',
    '1e400',
    '-1e-400',
    '"5"',
    'true',
    '[]',
    '{}',
    '1E+2',
    `${value}.000`,
  ]);
}

const str = (s) => JSON.stringify(s);

/** One input line: JSON text (usually an object). */
function object(r) {
  const now = 1_700_000_000_000n + BigInt(r.below(1_000_000));
  const fields = [
    ['user_id', str(some(r, IDS))],
    ['plan_id', str(some(r, PLANS))],
    ['entitlement_key', str(some(r, KEYS))],
    ['requested', number(r, r.chance(0.8) ? BigInt(1 + r.below(3)) : int(r))],
    ['now_ms', number(r, r.chance(0.8) ? now : int(r))],
    ['usage', number(r, r.chance(0.8) ? BigInt(r.below(14)) : int(r))],
    ['grace_used', number(r, r.chance(0.7) ? BigInt(r.below(6)) : int(r))],
  ];
  if (r.chance(0.6)) {
    const o = [['value', number(r, r.chance(0.7) ? BigInt(r.below(10)) - 1n : int(r))]];
    if (r.chance(0.6)) {
      const at = r.pick([now, now - 1n, now + 1n, now - 3_600_000n, int(r)]);
      o.push(['expires_at_ms', r.chance(0.1) ? 'null' : number(r, at)]);
    }
    fields.push(['override', render(r, o)]);
  } else if (r.chance(0.3)) {
    fields.push(['override', 'null']);
  }
  if (r.chance(0.8)) {
    const p = [
      ['enforcement_enabled', r.chance(0.97) ? String(r.chance(0.7)) : r.pick(['1', '"true"', 'null'])],
      ['grace_count', number(r, r.chance(0.8) ? BigInt(r.below(6)) : int(r))],
    ];
    if (r.chance(0.85)) p.push(['limit', r.chance(0.1) ? 'null' : number(r, r.chance(0.8) ? BigInt(r.below(12)) - 1n : int(r))]);
    if (r.chance(0.6)) p.push(['rollout_percent', number(r, r.chance(0.85) ? BigInt(r.pick([0, 1, 30, 50, 99, 100])) : int(r))]);
    fields.push(['plan', render(r, p)]);
  } else if (r.chance(0.3)) {
    fields.push(['plan', 'null']);
  }
  if (r.chance(0.5)) fields.push(['default_limit', r.chance(0.2) ? 'null' : number(r, r.chance(0.8) ? BigInt(r.below(12)) - 1n : int(r))]);
  mutate(r, fields);
  return render(r, fields);
}

/** Sometimes breaks the object: a field missing, unknown, repeated or of the wrong type. */
function mutate(r, fields) {
  if (!r.chance(0.25)) return;
  const i = r.below(fields.length);
  switch (r.below(7)) {
    case 0:
      fields.splice(i, 1);
      break;
    case 1:
      fields.splice(i, 0, [r.pick(['overide', 'extra', '1', '__proto__', 'User_id', 'plan.limit']), r.pick(['null', '1', '{}'])]);
      break;
    case 2:
      fields[i] = [fields[i][0], r.pick(['null', '"x"', '1', '-1', 'false', '[1]', '{}', '2.5', '-0', '1e2', '18446744073709551615'])];
      break;
    case 3:
      fields.push([fields[i][0], r.pick(['null', '"dup"', '7', fields[i][1]])]);
      break;
    case 4:
      fields.push(['plan', render(r, [['enforcement_enabled', 'true'], ['grace_count', '1'], [r.pick(['grace', 'limits', '0']), '1']])]);
      break;
    case 5:
      fields.push(['override', render(r, [['expires_at_ms', '5']])]);
      break;
    default:
      fields.push(['7', '1'], ['zz', '2']);
  }
}

function render(r, fields) {
  const f = [...fields];
  if (r.chance(0.2)) f.sort(() => r.next() - 0.5);
  const sep = r.chance(0.1) ? ' , ' : ',';
  return `{${f.map(([k, v]) => `${str(k)}:${v}`).join(sep)}}`;
}

const BROKEN = [
  '',
  '{',
  '{"user_id":"u",}',
  "{'user_id':'u'}",
  '{"user_id":"\\ud800"}',
  '{"user_id":"\\udc00x"}',
  '{"user_id":"\\ud83d\\ude00","plan_id":"p","entitlement_key":"drafts.max","requested":1,"now_ms":0,"usage":0,"grace_used":0}',
  '{"user_id":"\\u00e9\\/\\b\\f\\n\\r\\t","plan_id":"p","entitlement_key":"drafts.max","requested":1,"now_ms":0,"usage":0,"grace_used":0}',
  '{"user_id":"\\x"}',
  '{"user_id":"raw\ttab"}',
  '\ufeff{"user_id":"bom"}',
  'NaN',
  '01',
  '+1',
  '.5',
  '1.',
  '-',
  'tru',
  'null',
  '1',
  '"text"',
  '[]',
  '[1,2]',
  '{"a":1} {"b":2}',
  '{"a":1}x',
  `${'['.repeat(127)}${']'.repeat(127)}`,
  `${'['.repeat(128)}${']'.repeat(128)}`,
  `{"user_id":${'['.repeat(126)}${']'.repeat(126)}}`,
  `{"user_id":${'['.repeat(127)}${']'.repeat(127)}}`,
  '\f',
  '{"user_id":"u"}\r',
];

/**
 * `n` input lines as one Uint8Array of JSON Lines: mostly objects, some
 * broken JSON, blank lines, and lines that are not UTF-8.
 */
export function inputLines(n, seed) {
  const r = prng(seed);
  const enc = new TextEncoder();
  const parts = [];
  for (let i = 0; i < n; i++) {
    const roll = r.next();
    if (roll < 0.01) parts.push(Uint8Array.of(0x7b, 0xff, 0xfe, 0x7d));
    else if (roll < 0.02) parts.push(enc.encode(r.pick(['', '   ', '\t'])));
    else if (roll < 0.07) parts.push(enc.encode(r.pick(BROKEN)));
    else parts.push(enc.encode(object(r)));
  }
  const total = parts.reduce((sum, p) => sum + p.length + 1, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
    out[at++] = 0x0a;
  }
  return out;
}
