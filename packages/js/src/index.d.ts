/** Base class of every error this package throws. */
export class KeygateError extends Error {
  readonly code: string;
}
/** A snapshot or delta was refused; the validator keeps what it held. */
export class SnapshotRefusedError extends KeygateError {}
/** An argument of the wrong type or range. */
export class InvalidArgumentError extends KeygateError {}

/** An issuer public key a validator trusts (from `keygate issuer show --json`). */
export interface TrustedIssuer {
  /** 16 lowercase hex characters. */
  id: string;
  /** The ed25519 public key: 64 hex characters or 32 bytes. */
  publicKey: string | Uint8Array;
}

/** What a snapshot or delta held. */
export interface SnapshotInfo {
  sequence: number;
  /** The base sequence of a delta; null for a full snapshot. */
  base: number | null;
  /** Seconds since 1970. */
  madeAt: number;
  organizations: number;
  keys: number;
  projects: number;
  tombstones: number;
}

export type DenyReason =
  | 'malformed'
  | 'bad-checksum'
  | 'unknown-key'
  | 'secret-mismatch'
  | 'record-signature-invalid'
  | 'unknown-project'
  | 'project-registration-invalid'
  | 'project-deleted'
  | 'wrong-organization'
  | 'unknown-organization'
  | 'organization-registration-invalid'
  | 'organization-deleted'
  | 'predates-organization'
  | 'disabled'
  | 'not-yet-valid'
  | 'expired'
  | 'lifetime-exceeds-policy'
  | 'scope-not-granted'
  | 'project-not-granted';

export type Authorization =
  | { allow: true; keyId: string; recordVersion: number; expiresAt: number | null }
  | {
      allow: false;
      reason: DenyReason;
      /** `unauthenticated`: answer 401 (no live, genuine key); `forbidden`: answer 403. */
      class: 'unauthenticated' | 'forbidden';
      /** One lowercase line for people, e.g. "key expired". */
      message: string;
    };

export interface ValidatorOptions {
  trustedIssuers: TrustedIssuer[];
  /**
   * How many bytes of a snapshot are copied into the component at a time
   * (default 1 MiB): the component's memory never shrinks, so it keeps
   * only this much of a file, never the whole of it.
   */
  snapshotPieceBytes?: number;
}

export class Validator {
  constructor(options: ValidatorOptions);
  static fromSnapshot(file: Uint8Array, options: ValidatorOptions): Validator;
  apply(file: Uint8Array): SnapshotInfo;
  authorize(
    key: string,
    project: string,
    options?: { action?: 'trigger-workflows'; now?: Date | number | bigint },
  ): Authorization;
  /** Whether `text` looks like an API key: never log or echo it. */
  looksLikeKey(text: string): boolean;
  readonly sequence: number | null;
  readonly snapshotTime: number | null;
}
