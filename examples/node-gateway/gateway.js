#!/usr/bin/env node
// An example API gateway in front of a workflow engine: every trigger
// request carries an API key, and keygate's validator (the same WebAssembly
// component as the keygate host) decides, in process, from a signed snapshot
// file that this gateway reloads whenever it changes.
//
//   POST /projects/{project}/workflows/{workflow}/trigger
//   Authorization: Bearer kg_…
//
// 202: accepted. 401: no live, genuine key (missing, malformed, unknown,
// wrong secret, forged record). 403: a genuine key that may not do this
// (another organization, disabled, expired, not yet valid, not granted,
// unknown or deleted project). 503: the held snapshot is older than
// KEYGATE_MAX_AGE. GET /healthz tells the held sequence.
//
// Configuration (environment):
//   KEYGATE_SNAPSHOT         the snapshot file (`keygate snapshot write FILE`,
//                            or a delta written with --since over it)
//   KEYGATE_TRUSTED_ISSUER   a JSON file from `keygate --json issuer show`
//                            (one object, or an array of them)
//   HOST, PORT               where to listen (127.0.0.1, 8080; 0 picks a port)
//   KEYGATE_POLL_MS          how often the file is checked for a change (1000)
//   KEYGATE_MAX_AGE          refuse to decide (503) from a snapshot older than
//                            this many seconds (0: never)
import { createServer } from 'node:http';
import { readFileSync, statSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { Validator, SnapshotRefusedError, KeygateError } from '@keygate/validator';

const MAX_BODY = 1 << 20;
const ROUTE = /^\/projects\/([^/]+)\/workflows\/([^/]+)\/trigger$/;

function log(line) {
  process.stderr.write(`${new Date().toISOString()} ${line}\n`);
}

function fail(line) {
  process.stderr.write(`error: ${line}\n`);
  process.exit(2);
}

function env(name, fallback) {
  const v = process.env[name];
  if (v === undefined || v === '') {
    if (fallback === undefined) fail(`${name} is not set`);
    return fallback;
  }
  return v;
}

function whole(name, fallback) {
  const v = env(name, String(fallback));
  if (!/^\d+$/.test(v)) fail(`${name} must be a whole number, not ${JSON.stringify(v)}`);
  return Number(v);
}

function trustedIssuers(path) {
  let parsed;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    fail(`cannot read the trusted issuer file ${path}: ${e.message}`);
  }
  const list = Array.isArray(parsed) ? parsed : [parsed];
  return list.map((i) => ({ id: i?.issuer_key_id, publicKey: i?.public_key }));
}

/**
 * The snapshot file and the validator fed from it. A change of the file
 * (a new inode, size or time: `keygate snapshot write` replaces it by a
 * rename) is applied; a refused file (cut, forged, older, a delta on
 * another base) is logged and the validator keeps answering from what it
 * held.
 */
class SnapshotFile {
  #stamp = null;

  constructor(path, validator) {
    this.path = path;
    this.validator = validator;
  }

  #statStamp() {
    const s = statSync(this.path);
    return `${s.ino}:${s.size}:${s.mtimeMs}`;
  }

  /** Load the file if it changed; returns what was applied, or null. */
  poll() {
    let stamp;
    try {
      stamp = this.#statStamp();
    } catch (e) {
      if (this.#stamp !== 'missing') log(`cannot read ${this.path} (${e.code ?? e.message}); still answering from sequence ${this.validator.sequence}`);
      this.#stamp = 'missing';
      return null;
    }
    if (stamp === this.#stamp) return null;
    this.#stamp = stamp;
    let bytes;
    try {
      bytes = readFileSync(this.path);
    } catch (e) {
      log(`cannot read ${this.path} (${e.code ?? e.message}); still answering from sequence ${this.validator.sequence}`);
      return null;
    }
    try {
      const info = this.validator.apply(bytes);
      const kind = info.base === null ? 'snapshot' : `delta on ${info.base}`;
      log(`loaded ${kind}: sequence ${info.sequence}, ${info.keys} keys, ${info.projects} projects, ${info.tombstones} tombstones`);
      return info;
    } catch (e) {
      if (!(e instanceof SnapshotRefusedError)) throw e;
      log(`refused ${this.path}: ${e.message}; still answering from sequence ${this.validator.sequence}`);
      return null;
    }
  }
}

function send(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

function error(res, status, code, message, headers) {
  send(res, status, { error: { code, message } }, headers);
}

const CHALLENGE = 'Bearer realm="keygate"';

/** The bearer token of a request, or null (RFC 6750: scheme case-insensitive). */
function bearer(req) {
  const h = req.headers.authorization;
  if (typeof h !== 'string') return null;
  const m = /^bearer +([^\s]+) *$/i.exec(h);
  return m ? m[1] : null;
}

/** Read and drop the body (a real gateway forwards it), at most MAX_BODY bytes. */
function drain(req) {
  return new Promise((resolve) => {
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        resolve(false);
        req.removeAllListeners('data');
        req.resume();
      }
    });
    req.on('end', () => resolve(size <= MAX_BODY));
    req.on('error', () => resolve(false));
  });
}

function stale(validator, maxAge) {
  if (maxAge === 0) return false;
  const made = validator.snapshotTime;
  return made === null || Math.floor(Date.now() / 1000) - made > maxAge;
}

function handler(validator, { maxAge = 0 } = {}) {
  return async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://gateway.invalid');
    if (url.pathname === '/healthz') {
      const made = validator.snapshotTime;
      const body = {
        sequence: validator.sequence,
        snapshot_time: made,
        age_seconds: made === null ? null : Math.floor(Date.now() / 1000) - made,
      };
      return send(res, stale(validator, maxAge) ? 503 : 200, body);
    }
    const route = ROUTE.exec(url.pathname);
    if (!route) return error(res, 404, 'not-found', 'no such route');
    if (req.method !== 'POST') return error(res, 405, 'method-not-allowed', 'use POST', { allow: 'POST' });
    let project;
    let workflow;
    try {
      project = decodeURIComponent(route[1]);
      workflow = decodeURIComponent(route[2]);
    } catch {
      return error(res, 400, 'bad-path', 'the path is not valid percent-encoding');
    }
    const key = bearer(req);
    if (key === null) {
      return error(res, 401, 'missing-credentials', 'send the API key as Authorization: Bearer <key>', {
        'www-authenticate': CHALLENGE,
      });
    }
    if (stale(validator, maxAge)) {
      return error(res, 503, 'snapshot-stale', 'the key snapshot is too old to decide from', { 'retry-after': '5' });
    }
    let answer;
    try {
      answer = validator.authorize(key, project);
    } catch (e) {
      if (!(e instanceof KeygateError)) throw e;
      return error(res, 400, e.code, e.message);
    }
    if (!answer.allow) {
      const status = answer.class === 'unauthenticated' ? 401 : 403;
      log(`deny ${status} ${answer.reason} project=${JSON.stringify(project)}`);
      const headers = status === 401 ? { 'www-authenticate': `${CHALLENGE}, error="invalid_token"` } : {};
      return error(res, status, answer.reason, answer.message, headers);
    }
    if (!(await drain(req))) return error(res, 413, 'body-too-large', `the body is over ${MAX_BODY} bytes`);
    const execution = randomUUID();
    log(`trigger accepted: workflow=${JSON.stringify(workflow)} project=${JSON.stringify(project)} key=${answer.keyId} execution=${execution}`);
    return send(res, 202, { execution_id: execution, project, workflow, key_id: answer.keyId });
  };
}

function main() {
  const path = env('KEYGATE_SNAPSHOT');
  const trusted = trustedIssuers(env('KEYGATE_TRUSTED_ISSUER'));
  const pollMs = whole('KEYGATE_POLL_MS', 1000);
  const maxAge = whole('KEYGATE_MAX_AGE', 0);
  let validator;
  try {
    validator = new Validator({ trustedIssuers: trusted });
  } catch (e) {
    fail(`the trusted issuer file: ${e.message}`);
  }
  const file = new SnapshotFile(path, validator);
  if (file.poll() === null) fail(`no usable snapshot in ${path}`);
  const timer = setInterval(() => file.poll(), Math.max(pollMs, 10));
  process.on('SIGHUP', () => file.poll());

  const server = createServer({ requestTimeout: 30_000, headersTimeout: 10_000 }, handler(validator, { maxAge }));
  server.maxHeadersCount = 100;
  server.listen(whole('PORT', 8080), env('HOST', '127.0.0.1'), () => {
    const { address, port } = server.address();
    process.stdout.write(`listening on http://${address}:${port}\n`);
  });
  const stop = () => {
    clearInterval(timer);
    server.close(() => process.exit(0));
    server.closeIdleConnections();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
