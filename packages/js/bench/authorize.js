// Time Validator.authorize on the vector snapshot: allowed and denied calls.
// Run: npm run bench (after npm test has built gen/).
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Validator } from '../src/index.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const v = JSON.parse(readFileSync(join(repo, 'tests', 'vectors', 'policy-v2.json'), 'utf8'));
const validator = Validator.fromSnapshot(Uint8Array.from(Buffer.from(v.snapshots[0].file, 'hex')), {
  trustedIssuers: [{ id: v.issuer.key_id, publicKey: v.issuer.public_key }],
});
const key = v.keys[0].key;
function time(label, project) {
  const n = 200_000;
  for (let i = 0; i < 20_000; i++) validator.authorize(key, project, { now: 1800000001 });
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) validator.authorize(key, project, { now: 1800000001 });
  const ns = Number(process.hrtime.bigint() - t0) / n;
  console.log(`${label}: ${(ns / 1000).toFixed(2)} µs per call`);
}
time('authorize, allowed', 'prj_alpha');
time('authorize, denied (unknown project)', 'prj_nowhere');
