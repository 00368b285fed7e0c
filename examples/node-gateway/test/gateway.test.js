// Starts the example gateway against a store made by the keygate CLI, sends
// allowed and denied triggers, then replaces its snapshot file: a delta that
// disables a key, a rollback, garbage, and a newer full snapshot.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..', '..');
const keygate = process.env.KEYGATE_BIN ?? join(repo, 'target', 'release', 'keygate');
const gateway = join(here, '..', 'gateway.js');

function until(what, check, ms = 10_000) {
  const start = Date.now();
  return new Promise((resolvePromise, reject) => {
    const tick = async () => {
      try {
        if (await check()) return resolvePromise();
      } catch {
        // not yet
      }
      if (Date.now() - start > ms) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

test('the gateway answers 202/401/403 and follows its snapshot file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'keygate-node-gateway-'));
  const store = join(dir, 'store');
  const ok = (args, input) => {
    const r = spawnSync(keygate, ['--data-dir', store, ...args], { input, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim();
  };
  let child;
  try {
    ok(['org', 'create', 'acme']);
    ok(['org', 'create', 'globex']);
    const p = ok(['project', 'create', '--org', 'acme', 'billing']);
    const p2 = ok(['project', 'create', '--org', 'acme', 'web']);
    const g = ok(['project', 'create', '--org', 'globex', 'crm']);
    const all = ok(['key', 'create', '--org', 'acme', '--name', 'crm-sync', '--all-projects', '--expires', '30d']);
    const pk = ok(['key', 'create', '--project', p, '--name', 'billing-only', '--expires', '30d']);
    const gone = ok(['key', 'create', '--org', 'acme', '--name', 'gone', '--all-projects', '--expires', 'never']);
    ok(['key', 'delete', gone.slice(3, 14), '--yes']);
    writeFileSync(join(dir, 'issuer.json'), ok(['--json', 'issuer', 'show']));
    const snap = join(dir, 'current.kgs');
    const first = JSON.parse(ok(['--json', 'snapshot', 'write', snap]));
    const original = readFileSync(snap);

    child = spawn(process.execPath, [gateway], {
      env: {
        ...process.env,
        KEYGATE_SNAPSHOT: snap,
        KEYGATE_TRUSTED_ISSUER: join(dir, 'issuer.json'),
        PORT: '0',
        KEYGATE_POLL_MS: '50',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    await until('the gateway to listen', () => /listening on (\S+)/.test(stdout));
    const base = /listening on (\S+)/.exec(stdout)[1];

    const trigger = async (key, project, { method = 'POST', auth } = {}) => {
      const headers = auth ?? (key === null ? {} : { authorization: `Bearer ${key}` });
      const r = await fetch(`${base}/projects/${encodeURIComponent(project)}/workflows/nightly-sync/trigger`, {
        method,
        headers,
        body: method === 'POST' ? '{"input":1}' : undefined,
      });
      return { status: r.status, body: await r.json(), challenge: r.headers.get('www-authenticate') };
    };
    const health = async () => (await fetch(`${base}/healthz`)).json();
    const reason = async (key, project, opts) => {
      const r = await trigger(key, project, opts);
      return [r.status, r.body.error?.code ?? r.body.key_id];
    };

    const allowed = await trigger(all, p);
    assert.equal(allowed.status, 202);
    assert.equal(allowed.body.key_id, all.slice(3, 14));
    assert.equal(allowed.body.project, p);
    assert.equal(allowed.body.workflow, 'nightly-sync');
    assert.match(allowed.body.execution_id, /^[0-9a-f-]{36}$/);
    assert.deepEqual(await reason(all, p2), [202, all.slice(3, 14)]);
    assert.deepEqual(await reason(pk, p), [202, pk.slice(3, 14)]);

    const missing = await trigger(null, p);
    assert.deepEqual([missing.status, missing.body.error.code], [401, 'missing-credentials']);
    assert.equal(missing.challenge, 'Bearer realm="keygate"');
    assert.deepEqual(await reason(null, p, { auth: { authorization: `Basic ${all}` } }), [401, 'missing-credentials']);
    const malformed = await trigger('kg_nope', p);
    assert.deepEqual(malformed.body, { error: { code: 'malformed', message: 'malformed key' } });
    assert.equal(malformed.status, 401);
    assert.equal(malformed.challenge, 'Bearer realm="keygate", error="invalid_token"');
    assert.deepEqual(await reason(gone, p), [401, 'unknown-key']);
    assert.deepEqual(await reason(all, g), [403, 'wrong-organization']);
    assert.deepEqual(await reason(pk, p2), [403, 'project-not-granted']);
    assert.deepEqual(await reason(all, 'prj_nosuchproject'), [403, 'unknown-project']);
    assert.deepEqual(await reason(all, p, { method: 'GET' }), [405, 'method-not-allowed']);
    assert.deepEqual(await health().then((h) => h.sequence), first.sequence);

    // A delta that disables the org key, written over the file.
    ok(['key', 'disable', all.slice(3, 14)]);
    const delta = JSON.parse(ok(['--json', 'snapshot', 'write', snap, '--since', String(first.sequence)]));
    await until('the delta', async () => (await health()).sequence === delta.sequence);
    assert.deepEqual(await reason(all, p), [403, 'disabled']);
    assert.deepEqual(await reason(pk, p), [202, pk.slice(3, 14)]);

    // A rollback to the first snapshot is refused; the disable holds.
    writeFileSync(`${snap}.tmp`, original);
    renameSync(`${snap}.tmp`, snap);
    await until('the rollback refusal', () => /refused .*not newer than the held sequence/.test(stderr));
    assert.equal((await health()).sequence, delta.sequence);
    assert.deepEqual(await reason(all, p), [403, 'disabled']);

    // Garbage is refused too.
    writeFileSync(`${snap}.tmp`, 'not a snapshot');
    renameSync(`${snap}.tmp`, snap);
    await until('the garbage refusal', () => /refused .*not a canonical keygate snapshot/.test(stderr));
    assert.deepEqual(await reason(all, p), [403, 'disabled']);

    // A newer full snapshot replaces everything: the key is enabled again.
    ok(['key', 'enable', all.slice(3, 14)]);
    const full = JSON.parse(ok(['--json', 'snapshot', 'write', snap]));
    await until('the newer snapshot', async () => (await health()).sequence === full.sequence);
    assert.deepEqual(await reason(all, p), [202, all.slice(3, 14)]);

    // Hostile input: an unparseable URL target, a key in the path, a FIFO
    // or a device under the snapshot's name. The gateway stays up.
    const raw = (text) =>
      new Promise((resolveRaw) => {
        const u = new URL(base);
        const sock = connect(Number(u.port), u.hostname, () => sock.end(text));
        let got = '';
        sock.on('data', (d) => (got += d));
        sock.on('close', () => resolveRaw(got));
        sock.on('error', () => resolveRaw(got));
      });
    const crash = await raw('GET //x:99999/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.match(crash, /^HTTP\/1.1 404 /);
    const inPath = await trigger(all, all);
    assert.deepEqual([inPath.status, inPath.body.error.code], [400, 'key-in-path']);
    spawnSync('mkfifo', [`${snap}.fifo`]);
    renameSync(`${snap}.fifo`, snap);
    await until('the FIFO refusal', () => /cannot read .*\(ENOTREG\)/.test(stderr));
    symlinkSync('/dev/zero', `${snap}.zero`);
    renameSync(`${snap}.zero`, snap);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(await reason(all, p), [202, all.slice(3, 14)]);
    assert.equal((await health()).sequence, full.sequence);

    // A key disabled while its request's body is arriving is refused.
    const slow = await new Promise((resolveSlow) => {
      const u = new URL(base);
      const sock = connect(Number(u.port), u.hostname, () => {
        sock.write(
          `POST /projects/${p}/workflows/w/trigger HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${all}\r\n` +
            'Content-Type: application/json\r\nContent-Length: 10\r\nConnection: close\r\n\r\n{"a":',
        );
        resolveSlow(sock);
      });
    });
    let slowAnswer = '';
    slow.on('data', (d) => (slowAnswer += d));
    const closed = new Promise((r) => slow.on('close', r));
    ok(['key', 'disable', all.slice(3, 14)]);
    const last = JSON.parse(ok(['--json', 'snapshot', 'write', snap]));
    await until('the disable', async () => (await health()).sequence === last.sequence);
    slow.end('1}   ');
    await closed;
    assert.match(slowAnswer, /^HTTP\/1.1 403 /);
    assert.match(slowAnswer, /"code":"disabled"/);

    // No key, nor its secret, is ever logged.
    for (const k of [all, pk, gone]) {
      assert.ok(!stderr.includes(k.slice(14)) && !stdout.includes(k.slice(14)), 'a secret reached the log');
    }
    assert.match(stderr, new RegExp(`trigger accepted: workflow="nightly-sync" project="${p}" key=${all.slice(3, 14)}`));

    const exited = new Promise((r) => child.on('exit', (code) => r(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    child = null;
  } finally {
    if (child) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the gateway refuses to start without a usable snapshot or a valid issuer', () => {
  const dir = mkdtempSync(join(tmpdir(), 'keygate-node-gateway-'));
  try {
    const r0 = spawnSync(keygate, ['--data-dir', join(dir, 'store'), '--json', 'issuer', 'show'], { encoding: 'utf8' });
    assert.equal(r0.status, 2, 'issuer show needs a store');
    spawnSync(keygate, ['--data-dir', join(dir, 'store'), 'init'], { encoding: 'utf8' });
    const issuer = spawnSync(keygate, ['--data-dir', join(dir, 'store'), '--json', 'issuer', 'show'], { encoding: 'utf8' });
    writeFileSync(join(dir, 'issuer.json'), issuer.stdout);
    writeFileSync(join(dir, 'bad.kgs'), 'garbage');
    const start = (issuerFile) =>
      spawnSync(process.execPath, [gateway], {
        env: { ...process.env, KEYGATE_SNAPSHOT: join(dir, 'bad.kgs'), KEYGATE_TRUSTED_ISSUER: issuerFile, PORT: '0' },
        encoding: 'utf8',
        timeout: 10_000,
      });
    const r = start(join(dir, 'issuer.json'));
    assert.equal(r.status, 2);
    assert.equal(r.stdout, '');
    assert.ok(r.stderr.endsWith(`error: no usable snapshot in ${join(dir, 'bad.kgs')}\n`), r.stderr);
    assert.match(r.stderr, /refused .*bad\.kgs: snapshot refused: the bytes are not a canonical keygate snapshot/);

    const wrong = JSON.parse(issuer.stdout);
    wrong.issuer_key_id = 'ab'.repeat(8);
    writeFileSync(join(dir, 'wrong.json'), JSON.stringify(wrong));
    const w = start(join(dir, 'wrong.json'));
    assert.equal(w.status, 2);
    assert.match(w.stderr, /^error: the trusted issuer file: trustedIssuers\[0\] is not a valid issuer key/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
