// keygate's validator for Node.js: the very component the keygate host runs
// (transpiled by jco), behind a small API. Decisions come from the
// component; this file only converts arguments and answers.
import { policy } from '../gen/keygate.js';

/** Base class of every error this package throws. */
export class KeygateError extends Error {
  /**
   * @param {string} message
   * @param {string} code
   */
  constructor(message, code) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A snapshot or delta was refused; the validator keeps what it held. */
export class SnapshotRefusedError extends KeygateError {}

/** An argument of the wrong type or range (a negative time, a string for bytes...). */
export class InvalidArgumentError extends KeygateError {}

const REFUSALS = {
  'not-canonical': () => 'the bytes are not a canonical keygate snapshot',
  'signature-invalid': () => 'the snapshot signature does not verify against a trusted issuer key',
  'not-newer': (held) => `the snapshot is not newer than the held sequence ${held} (a rollback or a replay)`,
  'base-mismatch': (held) =>
    held === undefined
      ? 'a delta needs its base snapshot loaded first'
      : `the delta does not apply on the held sequence ${held}`,
};

function bytes(value, what) {
  if (!(value instanceof Uint8Array)) {
    throw new InvalidArgumentError(`${what} must be a Uint8Array (or a Buffer), not ${typeof value}`, 'bad-bytes');
  }
  return value;
}

function hexBytes(value, what) {
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'string' && /^([0-9a-f]{2})*$/i.test(value)) {
    return Uint8Array.from(Buffer.from(value, 'hex'));
  }
  throw new InvalidArgumentError(`${what} must be hex or a Uint8Array`, 'bad-bytes');
}

/** Seconds since the epoch from a Date or a whole, non-negative number of seconds. */
function seconds(now) {
  if (now instanceof Date) {
    const ms = now.getTime();
    if (!Number.isFinite(ms) || ms < 0) {
      throw new InvalidArgumentError('now must be a valid Date after 1970', 'bad-time');
    }
    return BigInt(Math.floor(ms / 1000));
  }
  if (typeof now === 'number' && Number.isSafeInteger(now) && now >= 0) return BigInt(now);
  if (typeof now === 'bigint' && now >= 0n && now < 2n ** 64n) return now;
  throw new InvalidArgumentError(
    'now must be a Date or a whole, non-negative number of seconds since 1970',
    'bad-time',
  );
}

function number(big) {
  return big === undefined ? null : Number(big);
}

function info(i) {
  return {
    sequence: Number(i.sequence),
    base: number(i.base),
    madeAt: Number(i.madeAt),
    organizations: i.organizations,
    keys: i.keys,
    projects: i.projects,
    tombstones: i.tombstones,
  };
}

// What the component says of each deny reason (its class and message),
// asked once per reason: the rule lives in the component, not here.
const denials = new Map();

function denial(reason) {
  let d = denials.get(reason);
  if (d === undefined) {
    d = Object.freeze({
      allow: false,
      reason,
      class: policy.classifyDeny(reason),
      message: policy.denyReasonText(reason).message,
    });
    denials.set(reason, d);
  }
  return d;
}

/** A snapshot file ends with its 64-byte ed25519 signature. */
const SIGNATURE_LENGTH = 64;
/** How much of a snapshot is copied into the component at a time. */
const SNAPSHOT_PIECE = 1 << 20;

/**
 * A validator fed by signed snapshots. Create it with
 * `Validator.fromSnapshot(bytes, { trustedIssuers })`.
 */
export class Validator {
  #inner;
  #piece;

  /**
   * @param {{ trustedIssuers: Array<{ id: string, publicKey: string | Uint8Array }>, snapshotPieceBytes?: number }} options
   */
  constructor({ trustedIssuers, snapshotPieceBytes = SNAPSHOT_PIECE } = {}) {
    if (!Number.isSafeInteger(snapshotPieceBytes) || snapshotPieceBytes < 1) {
      throw new InvalidArgumentError('snapshotPieceBytes must be a positive whole number', 'bad-argument');
    }
    this.#piece = snapshotPieceBytes;
    if (!Array.isArray(trustedIssuers) || trustedIssuers.length === 0) {
      throw new InvalidArgumentError('trustedIssuers must be a non-empty array of { id, publicKey }', 'bad-issuer');
    }
    const keys = trustedIssuers.map((t, i) => {
      const key = { id: String(t?.id ?? ''), publicKey: hexBytes(t?.publicKey, `trustedIssuers[${i}].publicKey`) };
      try {
        policy.checkIssuerKey(key);
      } catch (e) {
        throw new InvalidArgumentError(`trustedIssuers[${i}] is not a valid issuer key (${e.payload ?? e.message})`, 'bad-issuer');
      }
      return key;
    });
    this.#inner = new policy.Validator(keys);
  }

  /** A validator holding the snapshot `file`. */
  static fromSnapshot(file, options) {
    const v = new Validator(options);
    v.apply(file);
    return v;
  }

  /**
   * Load a full snapshot (replacing everything held) or apply a delta (on
   * exactly its base). Throws SnapshotRefusedError and keeps what it held
   * when the file is refused.
   */
  apply(file) {
    const data = bytes(file, 'the snapshot');
    try {
      return info(this.#load(data));
    } catch (e) {
      if (e instanceof KeygateError) throw e;
      const payload = e?.payload;
      const tag = typeof payload === 'string' ? payload : payload?.tag;
      const explain = REFUSALS[tag];
      if (!explain) throw e;
      throw new SnapshotRefusedError(`snapshot refused: ${explain(number(payload?.val))}`, tag);
    }
  }

  /**
   * Hand the file to the component in pieces (a megabyte by default): its memory
   * never shrinks, so a whole copy of a large snapshot would stay in it for
   * the validator's life.
   */
  #load(data) {
    if (data.length < SIGNATURE_LENGTH) {
      return this.#inner.loadSnapshot(data);
    }
    const body = data.subarray(0, data.length - SIGNATURE_LENGTH);
    const stream = this.#inner.beginSnapshot(data.subarray(body.length));
    try {
      for (let at = 0; at < body.length; at += this.#piece) {
        stream.feed(body.subarray(at, at + this.#piece));
      }
    } catch (e) {
      // (jco names the destructor Symbol.for('dispose') where Node has no
      // Symbol.dispose.)
      stream[Symbol.dispose ?? Symbol.for('dispose')]?.();
      throw e;
    }
    return this.#inner.finishSnapshot(stream);
  }

  /**
   * May `key` perform `action` on `project` at `now`? The organization comes
   * from the project's signed registration.
   * A deny carries its `class`: `unauthenticated` (answer 401: no live,
   * genuine key) or `forbidden` (403), and a one-line `message`.
   * @returns {{ allow: true, keyId: string, recordVersion: number, expiresAt: number | null }
   *   | { allow: false, reason: string, class: string, message: string }}
   */
  authorize(key, project, { action = 'trigger-workflows', now = new Date() } = {}) {
    if (typeof key !== 'string' || typeof project !== 'string') {
      throw new InvalidArgumentError('key and project must be strings', 'bad-argument');
    }
    if (action !== 'trigger-workflows') {
      throw new InvalidArgumentError(`unknown action ${JSON.stringify(action)} (known: trigger-workflows)`, 'bad-argument');
    }
    const answer = this.#inner.authorize(key, project, action, seconds(now));
    if (answer.tag === 'allow') {
      const a = answer.val;
      return { allow: true, keyId: a.keyId, recordVersion: Number(a.recordVersion), expiresAt: number(a.expiresAt) };
    }
    return denial(answer.val);
  }

  /**
   * Whether `text` looks like an API key (a whole key, a prefixed key id,
   * or a long mixed-case run of letters and digits): text that must never
   * be logged or echoed. The component's own rule.
   */
  looksLikeKey(text) {
    if (typeof text !== 'string') {
      throw new InvalidArgumentError('text must be a string', 'bad-argument');
    }
    return policy.looksLikeKey(text, undefined);
  }

  /** The sequence of the last snapshot or delta applied, or null. */
  get sequence() {
    return number(this.#inner.sequence());
  }

  /** When the last snapshot or delta applied was made (seconds), or null. */
  get snapshotTime() {
    return number(this.#inner.snapshotTime());
  }
}
