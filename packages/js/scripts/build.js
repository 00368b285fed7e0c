// Builds the package's generated code from the exact component bytes the
// keygate host embeds: `keygate module write`, then `jco transpile`.
//
// jco is pinned to 1.10.2: its output calls into the component without the
// per-call `process.env.JCO_DEBUG` lookup that later versions (1.35) add
// (about 12 µs per call on this project's machines).
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const repo = resolve(root, '..', '..');
const keygate = process.env.KEYGATE_BIN ?? join(repo, 'target', 'release', 'keygate');
const gen = join(root, 'gen');

rmSync(gen, { recursive: true, force: true });
mkdirSync(gen, { recursive: true });
const wasm = join(gen, 'keygate.wasm');
execFileSync(keygate, ['module', 'write', wasm], { stdio: ['ignore', 'ignore', 'inherit'] });
const sha256 = createHash('sha256').update(readFileSync(wasm)).digest('hex');
writeFileSync(join(gen, 'component.sha256'), `${sha256}\n`);
execFileSync(
  join(root, 'node_modules', '.bin', 'jco'),
  ['transpile', wasm, '-o', gen, '--name', 'keygate', '--quiet'],
  { stdio: 'inherit' },
);
console.log(`built gen/ from the keygate component ${sha256}`);
