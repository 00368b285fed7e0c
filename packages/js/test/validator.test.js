// The Node.js package against the shared vectors and against snapshots and
// deltas made by the keygate CLI during the test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { InvalidArgumentError, SnapshotRefusedError, Validator } from '../src/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..', '..');
const keygate = process.env.KEYGATE_BIN ?? join(repo, 'target', 'release', 'keygate');
const vectors = JSON.parse(readFileSync(join(repo, 'tests', 'vectors', 'policy-v2.json'), 'utf8'));
const hex = (s) => Uint8Array.from(Buffer.from(s, 'hex'));
const trustedIssuers = [{ id: vectors.issuer.key_id, publicKey: vectors.issuer.public_key }];

test('the package runs the exact component bytes the keygate host embeds', () => {
  const dir = mkdtempSync(join(tmpdir(), 'keygate-js-'));
  try {
    const out = execFileSync(keygate, ['module', 'write', join(dir, 'k.wasm')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const hostSha = out.split(/\s+/)[0];
    const ours = createHash('sha256').update(readFileSync(join(here, '..', 'gen', 'keygate.wasm'))).digest('hex');
    assert.equal(ours, hostSha);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the vector snapshot decides every validator case, and the delta disables its key', () => {
  const v = Validator.fromSnapshot(hex(vectors.snapshots[0].file), { trustedIssuers });
  assert.equal(v.sequence, 7);
  let compared = 0;
  for (const c of vectors.cases.filter((c) => c.validator)) {
    const q = c.request;
    const got = v.authorize(q.presented_key, q.project, { now: q.now });
    if (c.expect.allow) {
      assert.deepEqual(
        got,
        {
          allow: true,
          keyId: c.expect.allow.key_id,
          recordVersion: c.expect.allow.record_version,
          expiresAt: c.expect.allow.expires_at,
        },
        c.name,
      );
    } else {
      assert.deepEqual([got.allow, got.reason], [false, c.expect.deny], c.name);
    }
    compared += 1;
  }
  assert.equal(compared, 28);
  const info = v.apply(hex(vectors.snapshots[1].file));
  assert.deepEqual([info.sequence, info.base, info.keys], [9, 7, 1]);
  const key = vectors.keys[0].key;
  assert.deepEqual(v.authorize(key, 'prj_alpha', { now: 1800000001 }), {
    allow: false,
    reason: 'disabled',
    class: 'forbidden',
    message: 'key disabled',
  });
  assert.deepEqual(v.authorize('kg_nope', 'prj_alpha', { now: 1800000001 }), {
    allow: false,
    reason: 'malformed',
    class: 'unauthenticated',
    message: 'malformed key',
  });
});

test('bad snapshots are refused with a typed error and the validator keeps answering', () => {
  const full = hex(vectors.snapshots[0].file);
  const delta = hex(vectors.snapshots[1].file);
  const fresh = new Validator({ trustedIssuers });
  assert.throws(() => fresh.apply(delta), (e) => e instanceof SnapshotRefusedError && e.code === 'base-mismatch');
  const v = Validator.fromSnapshot(full, { trustedIssuers });
  const key = vectors.keys[0].key;
  const before = v.authorize(key, 'prj_alpha', { now: 1800000001 });
  assert.equal(before.allow, true);
  for (const pos of [0, 5, 40, full.length - 70, full.length - 1]) {
    const bad = full.slice();
    bad[pos] ^= 0x10;
    assert.throws(() => v.apply(bad), SnapshotRefusedError, `flip at ${pos}`);
  }
  const code = (bytes) => {
    try {
      v.apply(bytes);
      return 'applied';
    } catch (e) {
      assert.ok(e instanceof SnapshotRefusedError, String(e));
      return e.code;
    }
  };
  assert.deepEqual(
    [code(full.slice(0, 100)), code(full.slice(0, -1)), code(Uint8Array.from([...full, 0])), code(new Uint8Array())],
    ['not-canonical', 'not-canonical', 'not-canonical', 'not-canonical'],
  );
  assert.throws(() => v.apply(full), (e) => e.code === 'not-newer' && /not newer than the held sequence 7/.test(e.message));
  assert.deepEqual(v.authorize(key, 'prj_alpha', { now: 1800000001 }), before);
  const other = [{ id: 'ab'.repeat(8), publicKey: '00'.repeat(32) }];
  assert.throws(() => new Validator({ trustedIssuers: other }), InvalidArgumentError);
});

test('a snapshot copied into the component in pieces loads and refuses like the whole file', () => {
  const full = hex(vectors.snapshots[0].file);
  const delta = hex(vectors.snapshots[1].file);
  const key = vectors.keys[0].key;
  const whole = Validator.fromSnapshot(full, { trustedIssuers, snapshotPieceBytes: full.length });
  for (const snapshotPieceBytes of [1, 7, 1000]) {
    const v = Validator.fromSnapshot(full, { trustedIssuers, snapshotPieceBytes });
    assert.deepEqual([v.sequence, v.snapshotTime], [whole.sequence, whole.snapshotTime]);
    for (const c of vectors.cases.filter((c) => c.validator)) {
      const q = c.request;
      assert.deepEqual(v.authorize(q.presented_key, q.project, { now: q.now }), whole.authorize(q.presented_key, q.project, { now: q.now }), c.name);
    }
    const badSignature = delta.slice();
    badSignature[badSignature.length - 1] ^= 1;
    const badCount = delta.slice();
    badCount[48] ^= 0x10;
    assert.throws(() => v.apply(badSignature), (e) => e.code === 'signature-invalid');
    assert.throws(() => v.apply(badCount), (e) => e.code === 'not-canonical');
    assert.deepEqual(v.apply(delta).sequence, 9);
    assert.equal(v.authorize(key, 'prj_alpha', { now: 1800000001 }).reason, 'disabled');
  }
  for (const snapshotPieceBytes of [0, 1.5, '7']) {
    assert.throws(() => new Validator({ trustedIssuers, snapshotPieceBytes }), InvalidArgumentError);
  }
});

test('looksLikeKey asks the component', () => {
  const v = Validator.fromSnapshot(hex(vectors.snapshots[0].file), { trustedIssuers });
  const key = vectors.keys[0].key;
  assert.deepEqual(
    [key, key.slice(0, 14), key.slice(3, 50), 'prj_alpha', 'nightly-sync', 'deadbeef'.repeat(8)].map((t) => v.looksLikeKey(t)),
    [true, false, true, false, false, false], // a prefixed key id alone is no secret
  );
  assert.throws(() => v.looksLikeKey(42), InvalidArgumentError);
});

test('wrong types are errors, never a silently wrong decision', () => {
  const v = Validator.fromSnapshot(hex(vectors.snapshots[0].file), { trustedIssuers });
  const key = vectors.keys[0].key;
  for (const now of [-1, 1.5, NaN, '1800000001', new Date(NaN), -1n]) {
    assert.throws(() => v.authorize(key, 'prj_alpha', { now }), InvalidArgumentError, String(now));
  }
  assert.throws(() => v.apply(vectors.snapshots[0].file), InvalidArgumentError);
  assert.throws(() => v.authorize(key, 'prj_alpha', { action: 'delete-workflows' }), InvalidArgumentError);
  assert.equal(v.authorize(key, 'prj_alpha', { now: new Date(1800000001 * 1000) }).allow, true);
});

function cli(dir, args, input) {
  const r = spawnSync(keygate, ['--data-dir', dir, ...args], { input, encoding: 'utf8' });
  return r;
}

test('snapshots and deltas made by the CLI decide like keygate verify', () => {
  const dir = mkdtempSync(join(tmpdir(), 'keygate-js-store-'));
  try {
    const ok = (args) => {
      const r = cli(dir, args);
      assert.equal(r.status, 0, r.stderr);
      return r.stdout.trim();
    };
    ok(['org', 'create', 'acme']);
    ok(['org', 'create', 'globex']);
    const p = ok(['project', 'create', '--org', 'acme', 'P']);
    const g = ok(['project', 'create', '--org', 'globex', 'G']);
    const all = ok(['key', 'create', '--org', 'acme', '--name', 'all', '--all-projects', '--expires', 'never']);
    const proj = ok(['key', 'create', '--project', p, '--name', 'pk', '--expires', '30d']);
    const issuer = JSON.parse(ok(['--json', 'issuer', 'show']));
    const trusted = [{ id: issuer.issuer_key_id, publicKey: issuer.public_key }];
    ok(['snapshot', 'write', join(dir, 'full.kgs')]);
    const v = Validator.fromSnapshot(readFileSync(join(dir, 'full.kgs')), { trustedIssuers: trusted });
    // The vectors' snapshot, signed by another issuer, is foreign here.
    assert.throws(
      () => Validator.fromSnapshot(hex(vectors.snapshots[0].file), { trustedIssuers: trusted }),
      (e) => e instanceof SnapshotRefusedError && e.code === 'signature-invalid',
    );
    const verify = (key, project) => {
      const r = cli(dir, ['--json', 'verify', '--project', project], key);
      const j = JSON.parse(r.stdout);
      return j.decision === 'allow' ? true : [j.reason, j.class];
    };
    const pairs = [[all, p], [all, g], [proj, p], [proj, g], ['kg_nope', p]];
    for (const [key, project] of pairs) {
      const got = v.authorize(key, project);
      assert.deepEqual(got.allow ? true : [got.reason, got.class], verify(key, project), `${key.slice(0, 14)} on ${project}`);
    }
    const base = v.sequence;
    ok(['key', 'disable', all.slice(3, 14)]);
    ok(['snapshot', 'write', join(dir, 'delta.kgs'), '--since', String(base)]);
    const info = v.apply(readFileSync(join(dir, 'delta.kgs')));
    assert.equal(info.base, base);
    assert.deepEqual([v.authorize(all, p).reason, v.authorize(all, p).class], ['disabled', 'forbidden']);
    assert.deepEqual(verify(all, p), ['disabled', 'forbidden']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
