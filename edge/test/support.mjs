// Shared by the Node tests: the `quota` binary, the packaged policies, and
// running `quota policy eval`.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const edge = join(dirname(fileURLToPath(import.meta.url)), '..');
export const root = join(edge, '..');

/** The `quota` binary the differential runs compare with (built by `make test`). */
export const quota = process.env.QUOTA_BIN ?? join(root, 'target', 'release', 'quota');

export const PERCENT_GRACE = join(root, 'target', 'guest', 'percent-grace.wasm');

function required(path, how) {
  if (!existsSync(path)) throw new Error(`${path} is missing: ${how}`);
  return path;
}

/** `quota policy eval` of `bytes`, with `module` (default: the reference). */
export function quotaEval(bytes, module) {
  required(quota, 'build it with `cargo build --release -p quota-cli` (or `make test`)');
  const dir = mkdtempSync(join(tmpdir(), 'quota-edge-'));
  try {
    const input = join(dir, 'input');
    writeFileSync(input, bytes);
    const args = ['policy', 'eval', '--input', input];
    if (module) args.push('--module', module);
    return execFileSync(quota, args, { maxBuffer: 1 << 30 }).toString('utf8');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The reference policy, packaged by `make edge`. */
export async function reference() {
  required(join(edge, 'dist', 'reference', 'index.js'), 'run `make edge`');
  const { load } = await import('../dist/reference/index.js');
  return load();
}

/** A component packaged into a scratch folder (removed at exit). */
export async function packaged(component) {
  const { buildPackage } = await import('../build.mjs');
  const dir = mkdtempSync(join(tmpdir(), 'quota-edge-pkg-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  await buildPackage(readFileSync(required(component, 'run `make policy` / `make test`')), dir);
  const { load } = await import(join(dir, 'index.js'));
  return load();
}

/** The hostile test policy (tests/guests/hostile), as the Rust tests build it. */
export function hostileComponent() {
  const build = join(root, 'target', 'release', 'build');
  const found = existsSync(build)
    ? readdirSync(build)
        .filter((d) => d.startsWith('quota-tests-'))
        .map((d) => join(build, d, 'out', 'hostile-policy.wasm'))
        .filter(existsSync)
        .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)
    : [];
  if (found.length === 0) {
    throw new Error('the hostile test policy is not built: run `cargo test --release -p quota-tests` (or `make test`)');
  }
  return found[0];
}

/**
 * Compares output lines: identical, but of two `invalid_json` messages only
 * the part before the first colon (`line N`) must be, or nothing with
 * `lineNumbers: false` (one JSON text has no line to name).
 */
export function differences(ours, theirs, { lineNumbers = true } = {}) {
  const a = ours.split('\n');
  const b = theirs.split('\n');
  const found = [];
  if (a.length !== b.length) found.push(`${a.length - 1} lines against ${b.length - 1}`);
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] === b[i]) continue;
    const code = (line) => /^\{"error":\{"code":"([a-z_]+)"/.exec(line)?.[1];
    const where = (line) => /"message":"([^:"]*)/.exec(line)?.[1];
    if (code(a[i]) === 'invalid_json' && code(b[i]) === 'invalid_json' && (!lineNumbers || where(a[i]) === where(b[i]))) continue;
    found.push(`line ${i + 1}:\n  node:  ${a[i]}\n  quota: ${b[i]}`);
    if (found.length >= 10) break;
  }
  return found;
}
