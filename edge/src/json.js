// The JSON of `quota policy eval`, read and written exactly as the Rust
// host does (serde_json): integers are exact over the whole 64-bit range,
// an object keeps its keys in input order (the last of a repeated key wins),
// and what serde_json refuses is refused here too: a lone surrogate escape,
// a number out of the double range, nesting deeper than 127, trailing text.
// JSON.parse would round large integers and accept some of those, and the
// JSON libraries on npm differ on repeated keys and key order, so the reader
// is this file's own. No Node built-ins: it runs on every edge runtime.

// Brands rather than `instanceof`: two copies of this module (two packaged
// policies, say) must recognise each other's numbers.
const INT = Symbol.for('quota-policy.json-int');
const FLOAT = Symbol.for('quota-policy.json-float');

/** A JSON integer (no fraction, no exponent) that fits 64 bits. */
export class JsonInt {
  constructor(value) {
    this.value = value; // bigint
    this[INT] = true;
  }

  static [Symbol.hasInstance](v) {
    return v?.[INT] === true;
  }
}

/** Any other JSON number, with its source text. */
export class JsonFloat {
  constructor(value, text) {
    this.value = value; // number
    this.text = text;
    this[FLOAT] = true;
  }

  static [Symbol.hasInstance](v) {
    return v?.[FLOAT] === true;
  }
}

/** Why a text is not JSON; `offset` is where, in UTF-16 units. */
export class JsonSyntaxError extends Error {
  constructor(message, text, offset) {
    let line = 1;
    let column = 1;
    for (let i = 0; i < offset && i < text.length; i++) {
      if (text[i] === '\n') {
        line++;
        column = 1;
      } else {
        column++;
      }
    }
    super(`${message} at line ${line} column ${column}`);
  }
}

const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;
// serde_json refuses the 128th level of nesting.
const MAX_DEPTH = 127;
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const ESCAPES = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

/**
 * Reads one JSON value. Objects become `Map`s, integers `JsonInt`, other
 * numbers `JsonFloat`, arrays arrays; strings, booleans and null are
 * themselves. Throws `JsonSyntaxError`.
 */
export function parseJson(text) {
  let at = 0;
  const fail = (message, offset = at) => {
    throw new JsonSyntaxError(message, text, offset);
  };
  const space = () => {
    while (at < text.length) {
      const c = text.charCodeAt(at);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      at++;
    }
  };
  const literal = (word, value) => {
    if (text.startsWith(word, at)) {
      at += word.length;
      return value;
    }
    return fail('expected a value');
  };
  const hex4 = () => {
    const digits = text.slice(at, at + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(digits)) fail('invalid \\u escape');
    at += 4;
    return parseInt(digits, 16);
  };
  const string = () => {
    at++; // the opening quote
    let out = '';
    let run = at;
    for (;;) {
      if (at >= text.length) fail('end of input inside a string');
      const c = text.charCodeAt(at);
      if (c === 0x22) {
        out += text.slice(run, at);
        at++;
        return out;
      }
      if (c < 0x20) fail('control character inside a string');
      if (c !== 0x5c) {
        at++;
        continue;
      }
      out += text.slice(run, at);
      const e = text[at + 1];
      at += 2;
      if (e === 'u') {
        const unit = hex4();
        if (unit >= 0xdc00 && unit <= 0xdfff) fail('lone trailing surrogate in a \\u escape');
        if (unit >= 0xd800 && unit <= 0xdbff) {
          if (text[at] !== '\\' || text[at + 1] !== 'u') fail('lone leading surrogate in a \\u escape');
          at += 2;
          const low = hex4();
          if (low < 0xdc00 || low > 0xdfff) fail('lone leading surrogate in a \\u escape');
          out += String.fromCharCode(unit, low);
        } else {
          out += String.fromCharCode(unit);
        }
      } else if (e !== undefined && e in ESCAPES) {
        out += ESCAPES[e];
      } else {
        fail('invalid escape', at - 1);
      }
      run = at;
    }
  };
  const number = () => {
    NUMBER.lastIndex = at;
    const m = NUMBER.exec(text);
    if (!m || m[0] === '-') return fail('expected a value');
    const source = m[0];
    at += source.length;
    if (m[1] === undefined && m[2] === undefined) {
      const n = BigInt(source);
      // As serde_json: a negative zero is the float -0.0, and an integer
      // outside i64 ∪ u64 is read as a float.
      if (source !== '-0' && n >= I64_MIN && n <= U64_MAX) return new JsonInt(n);
    }
    const value = Number(source);
    if (!Number.isFinite(value)) fail('number out of range', at - source.length);
    return new JsonFloat(value, source);
  };
  const value = (depth) => {
    space();
    if (at >= text.length) fail('end of input while parsing a value');
    const c = text[at];
    if (c === '{' || c === '[') {
      if (depth >= MAX_DEPTH) fail('recursion limit exceeded');
      at++;
      space();
      const close = c === '{' ? '}' : ']';
      const items = c === '{' ? new Map() : [];
      if (text[at] === close) {
        at++;
        return items;
      }
      for (;;) {
        if (c === '{') {
          space();
          if (text[at] !== '"') fail('expected a key in double quotes');
          const key = string();
          space();
          if (text[at] !== ':') fail("expected ':'");
          at++;
          const v = value(depth + 1);
          // A repeated key keeps its first place and its last value.
          items.set(key, v);
        } else {
          items.push(value(depth + 1));
        }
        space();
        if (text[at] === ',') {
          at++;
          space();
          if (text[at] === close) fail('trailing comma');
          continue;
        }
        if (text[at] === close) {
          at++;
          return items;
        }
        fail(`expected ',' or '${close}'`);
      }
    }
    if (c === '"') return string();
    if (c === 't') return literal('true', true);
    if (c === 'f') return literal('false', false);
    if (c === 'n') return literal('null', null);
    return number();
  };
  const result = value(0);
  space();
  if (at < text.length) fail('trailing characters');
  return result;
}

/**
 * Writes a value of the shapes `parseJson` returns (and plain objects,
 * bigints and safe-integer numbers) as compact JSON, keys in order.
 */
export function writeJson(v) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') return Object.is(v, -0) ? '-0.0' : String(v);
  if (v instanceof JsonInt) return v.value.toString();
  if (v instanceof JsonFloat) return v.text;
  if (Array.isArray(v)) return `[${v.map(writeJson).join(',')}]`;
  const entries = v instanceof Map ? [...v] : Object.entries(v);
  return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${writeJson(x)}`).join(',')}}`;
}

/** `{"error":{"code":…,"message":…}}` as a value. */
export function errorValue(code, message) {
  return { error: { code, message } };
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function isBlank(bytes) {
  // Rust's u8::is_ascii_whitespace: space, tab, LF, form feed, CR.
  return bytes.every((b) => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0c || b === 0x0d);
}

/**
 * The inputs in `bytes` (a Uint8Array), as `quota policy eval` reads them:
 * the whole text as one JSON value if it is one, else one value per line
 * (blank lines skipped). Each item is `{value}` or `{error}` (a message for
 * an `invalid_json` error: the line is not UTF-8 or not JSON).
 */
export function splitInputs(bytes) {
  if (isBlank(bytes)) return [];
  try {
    return [{ value: parseJson(UTF8.decode(bytes)) }];
  } catch {
    // Not one JSON text: JSON Lines.
  }
  const items = [];
  let start = 0;
  let line = 0;
  while (start <= bytes.length) {
    let end = bytes.indexOf(0x0a, start);
    if (end < 0) end = bytes.length;
    line++;
    const raw = bytes.subarray(start, end);
    start = end + 1;
    if (isBlank(raw)) continue;
    let text;
    try {
      text = UTF8.decode(raw);
    } catch (e) {
      items.push({ error: `line ${line}: not UTF-8 text: ${e.message}` });
      continue;
    }
    try {
      items.push({ value: parseJson(text) });
    } catch (e) {
      items.push({ error: `line ${line}: ${e.message}` });
    }
  }
  return items;
}
