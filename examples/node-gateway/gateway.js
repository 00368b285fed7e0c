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
//   KEYGATE_MAX_SNAPSHOT_MB  largest snapshot file read (1024)
import { createServer } from 'node:http';
import { closeSync, constants, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { Validator, SnapshotRefusedError, KeygateError } from '@keygate/validator';

const MAX_BODY = 1 << 20;
const BODY_DEADLINE_MS = 10_000;
const ROUTE = /^\/projects\/([^/]+)\/workflows\/([^/]+)\/trigger$/;
// RFC 6750: the scheme is case-insensitive; the token is one run of visible
// characters (anything else in it is the validator's to refuse).
const BEARER = /^bearer +([^ \t]+)[ \t]*$/i;

// A log line that cannot be written (the reader of stderr went away) is
// dropped: it never takes a request or the process down.
process.stderr.on('error', () => {});
process.stdout.on('error', () => {});

function log(line) {
  try {
    process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  } catch {
    // dropped, see above
  }
}

function fail(line) {
  try {
    process.stderr.write(`error: ${line}\n`);
  } finally {
    process.exit(2);
  }
}

function env(name, fallback) {
  const v = process.env[name];
  if (v === undefined || v === '') {
    if (fallback === undefined) fail(`${name} is not set`);
    return fallback;
  }
  return v;
}

function whole(name, fallback, max) {
  const v = env(name, String(fallback));
  if (!/^\d+$/.test(v) || Number(v) > max) fail(`${name} must be a whole number from 0 to ${max}, not ${JSON.stringify(v)}`);
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
 * Read the snapshot file: a regular file (a symlink to one is fine; a
 * device, a FIFO or a directory is not), at most `limit` bytes. Opened
 * without blocking, so a FIFO planted under the name cannot stall the
 * process. Returns the file's identity and its bytes, or null bytes when
 * the identity is `known` (unchanged: not read again).
 */
function readSnapshot(path, limit, known) {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    const stamp = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    if (stamp === known) return { bytes: null, stamp };
    if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'ENOTREG' });
    if (st.size > limit) throw Object.assign(new Error(`larger than ${limit} bytes`), { code: 'ETOOBIG' });
    const bytes = Buffer.alloc(st.size);
    let at = 0;
    while (at < st.size) {
      const n = readSync(fd, bytes, at, st.size - at, at);
      if (n === 0) break;
      at += n;
    }
    return { bytes: bytes.subarray(0, at), stamp };
  } finally {
    closeSync(fd);
  }
}

/**
 * The snapshot file and the validator fed from it. A changed file (a new
 * inode, size or time: `keygate snapshot write` replaces it by a rename) is
 * applied; a refused file (cut, forged, older, a delta on another base) is
 * logged and the validator keeps answering from what it held. The file's
 * identity is remembered only once it was read, so a failed read is tried
 * again at the next poll.
 */
class SnapshotFile {
  #stamp = null;
  #failing = null;

  constructor(path, validator, limit) {
    this.path = path;
    this.validator = validator;
    this.limit = limit;
  }

  /** Load the file if it changed (or always, with `force`); what was applied, or null. */
  poll(force = false) {
    let read;
    try {
      read = readSnapshot(this.path, this.limit, force ? null : this.#stamp);
    } catch (e) {
      const why = e.code ?? e.message;
      if (this.#failing !== why) {
        log(`cannot read ${this.path} (${why}); still answering from sequence ${this.validator.sequence}`);
      }
      this.#failing = why;
      return null;
    }
    this.#failing = null;
    if (read.bytes === null) return null;
    try {
      const info = this.validator.apply(read.bytes);
      this.#stamp = read.stamp;
      const kind = info.base === null ? 'snapshot' : `delta on ${info.base}`;
      log(`loaded ${kind}: sequence ${info.sequence}, ${info.keys} keys, ${info.projects} projects, ${info.tombstones} tombstones`);
      return info;
    } catch (e) {
      this.#stamp = read.stamp;
      const why = e instanceof SnapshotRefusedError ? e.message : `unexpected error: ${e?.message ?? e}`;
      log(`refused ${this.path}: ${why}; still answering from sequence ${this.validator.sequence}`);
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

/** The bearer token of a request, or null. */
function bearer(req) {
  const h = req.headers.authorization;
  if (typeof h !== 'string') return null;
  const m = BEARER.exec(h);
  return m ? m[1] : null;
}

/**
 * Read the body (a real gateway forwards it), at most MAX_BODY bytes and
 * BODY_DEADLINE_MS in all: 'ok', 'too-large' or 'too-slow'.
 */
function readBody(req) {
  return new Promise((resolve) => {
    let size = 0;
    let settled = false;
    const finish = (outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(outcome);
    };
    const timer = setTimeout(() => finish('too-slow'), BODY_DEADLINE_MS);
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) finish('too-large');
    });
    req.on('end', () => finish('ok'));
    req.on('error', () => finish('too-slow'));
  });
}

function stale(validator, maxAge) {
  if (maxAge === 0) return false;
  const made = validator.snapshotTime;
  return made === null || Math.floor(Date.now() / 1000) - made > maxAge;
}

/** Percent-decoding, or null when the path is not valid UTF-8 escapes. */
function decode(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}

function handler(validator, { maxAge }) {
  const deny = (res, answer, project) => {
    const status = answer.class === 'unauthenticated' ? 401 : 403;
    log(`deny ${status} ${answer.reason} project=${JSON.stringify(project)}`);
    const headers = status === 401 ? { 'www-authenticate': `${CHALLENGE}, error="invalid_token"` } : {};
    return error(res, status, answer.reason, answer.message, headers);
  };

  return async (req, res) => {
    // The raw path: no URL parsing, no normalisation (a `..` or a `//` is
    // not a route).
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      if (req.method !== 'GET') return error(res, 405, 'method-not-allowed', 'use GET', { allow: 'GET' });
      const made = validator.snapshotTime;
      const body = {
        sequence: validator.sequence,
        snapshot_time: made,
        age_seconds: made === null ? null : Math.floor(Date.now() / 1000) - made,
      };
      return send(res, stale(validator, maxAge) ? 503 : 200, body);
    }
    const route = ROUTE.exec(path);
    if (!route) return error(res, 404, 'not-found', 'no such route');
    if (req.method !== 'POST') return error(res, 405, 'method-not-allowed', 'use POST', { allow: 'POST' });
    const project = decode(route[1]);
    const workflow = decode(route[2]);
    if (project === null || workflow === null) {
      return error(res, 400, 'bad-path', 'the path is not valid percent-encoding');
    }
    // A key never belongs in a URL: refused, and never logged or echoed.
    if (validator.looksLikeKey(project) || validator.looksLikeKey(workflow)) {
      log('refused a request with a key in its path (not logged)');
      return error(res, 400, 'key-in-path', 'the path holds an API key: send keys only in the Authorization header');
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
    let answer = validator.authorize(key, project);
    if (!answer.allow) return deny(res, answer, project);
    const body = await readBody(req);
    if (body === 'too-large') return error(res, 413, 'body-too-large', `the body is over ${MAX_BODY} bytes`, { connection: 'close' });
    if (body === 'too-slow') return error(res, 408, 'body-too-slow', 'the body did not arrive in time', { connection: 'close' });
    // Decide again now that the body is in: a key disabled while it was
    // arriving is refused.
    answer = validator.authorize(key, project);
    if (!answer.allow) return deny(res, answer, project);
    const execution = randomUUID();
    log(`trigger accepted: workflow=${JSON.stringify(workflow)} project=${JSON.stringify(project)} key=${answer.keyId} execution=${execution}`);
    return send(res, 202, { execution_id: execution, project, workflow, key_id: answer.keyId });
  };
}

function main() {
  const path = env('KEYGATE_SNAPSHOT');
  const trusted = trustedIssuers(env('KEYGATE_TRUSTED_ISSUER'));
  const pollMs = Math.max(whole('KEYGATE_POLL_MS', 1000, 3_600_000), 10);
  const maxAge = whole('KEYGATE_MAX_AGE', 0, 10 * 365 * 86_400);
  const limit = whole('KEYGATE_MAX_SNAPSHOT_MB', 1024, 65_536) * 1024 * 1024;
  const port = whole('PORT', 8080, 65_535);
  let validator;
  try {
    validator = new Validator({ trustedIssuers: trusted });
  } catch (e) {
    fail(`the trusted issuer file: ${e.message}`);
  }
  const file = new SnapshotFile(path, validator, limit);
  if (file.poll() === null) fail(`no usable snapshot in ${path}`);
  const timer = setInterval(() => file.poll(), pollMs);
  process.on('SIGHUP', () => file.poll(true));

  const handle = handler(validator, { maxAge });
  const server = createServer({ requestTimeout: 30_000, headersTimeout: 10_000 }, (req, res) => {
    handle(req, res).catch((e) => {
      if (!(e instanceof KeygateError)) log(`unexpected error: ${e?.message ?? e}`);
      if (!res.headersSent) error(res, 500, 'internal', 'the request failed');
      else res.destroy();
    });
  });
  server.maxHeadersCount = 100;
  server.on('clientError', (err, socket) => {
    if (!socket.writable) return socket.destroy();
    const body = JSON.stringify({ error: { code: 'bad-request', message: 'the request could not be parsed' } });
    socket.end(
      `HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  });
  server.on('error', (e) => fail(`cannot listen: ${e.message}`));
  server.listen(port, env('HOST', '127.0.0.1'), () => {
    const { address, port: bound } = server.address();
    process.stdout.write(`listening on http://${address}:${bound}\n`);
  });
  const stop = () => {
    clearInterval(timer);
    server.close(() => process.exit(0));
    server.closeIdleConnections();
    // In-flight requests get a few seconds; a client that never finishes
    // its request does not hold the process.
    setTimeout(() => {
      server.closeAllConnections();
      process.exit(0);
    }, 5_000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
