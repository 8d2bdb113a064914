import { readFileSync } from 'node:fs';
import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { createDecoder, createSigner, createVerifier as createJwtVerifier, TokenError, type Algorithm } from 'fast-jwt';
import { AppError } from '../errors/app-error.js';
import { ENTITY_ID_RE } from '../protocol/ping.js';

export const SCOPES = ['ingest', 'subscribe', 'query', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

/** Who is calling, from a verified token. */
export interface Principal {
  /** Entity id (drivers) or client id. */
  sub: string;
  tenant: string;
  scopes: ReadonlySet<Scope>;
  /** Token expiry, ms epoch. */
  exp: number;
  /** Fleet / sensor-gateway token (claim `fleet: true`): may publish any entity id of its tenant. */
  fleet: boolean;
  /** Entity ids this client may follow (claim `follow`: an array of ids); empty when absent. */
  follow: readonly string[];
}

export interface TokenVerifier {
  /**
   * The principal, or throws AppError(UNAUTHORIZED). Synchronous, so that a driver's WebSocket
   * upgrade is answered inside uWS's own upgrade callback (see gateway/ingest-socket.ts).
   */
  verifySync(token: string | undefined): Principal;
  /** The same as a promise (HTTP routes, the rooms' handshake). */
  verify(token: string | undefined): Promise<Principal>;
}

/** A verified token's claims, as fast-jwt returns them. */
type Claims = Record<string, unknown> & { sub?: string; exp?: number };

export const TENANT_RE = /^[A-Za-z0-9_-]{1,32}$/;

export function hasScope(p: Principal, scope: Scope): boolean {
  return p.scopes.has(scope) || p.scopes.has('admin');
}

export function requireScope(p: Principal, scope: Scope): void {
  if (!hasScope(p, scope)) throw new AppError('FORBIDDEN', `token lacks the '${scope}' scope`);
}

function principalOf(payload: Claims): Principal {
  const tenant = payload.tenant;
  if (typeof tenant !== 'string' || !TENANT_RE.test(tenant)) throw new AppError('UNAUTHORIZED', 'token has no valid tenant claim');
  if (typeof payload.sub !== 'string' || !ENTITY_ID_RE.test(payload.sub)) throw new AppError('UNAUTHORIZED', 'token has no valid sub claim');
  const scopes = new Set<Scope>();
  for (const s of String(payload.scope ?? '').split(' ')) if ((SCOPES as readonly string[]).includes(s)) scopes.add(s as Scope);
  const follow = Array.isArray(payload.follow) ? payload.follow.filter((x): x is string => typeof x === 'string') : [];
  return { sub: payload.sub, tenant, scopes, exp: (payload.exp ?? 0) * 1000, fleet: payload.fleet === true, follow };
}

/** Verified tokens kept per key (fast-jwt's LRU; an entry lives 10 minutes, never past its token's exp): reconnect storms verify once. */
const VERIFIED_CACHE_SIZE = 10_000;

type VerifyFn = (token: string) => Claims;

function keyVerifier(key: string | Buffer, issuer: string, algorithms: Algorithm[]): VerifyFn {
  return createJwtVerifier({ key, algorithms, allowedIss: issuer, requiredClaims: ['sub', 'exp'], cache: VERIFIED_CACHE_SIZE }) as VerifyFn;
}

function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  const expired = err instanceof TokenError && err.code === TokenError.codes.expired;
  return new AppError('UNAUTHORIZED', expired ? 'token expired' : 'invalid token');
}

function verifierWith(verifyToken: VerifyFn): TokenVerifier {
  const verifySync = (token: string | undefined): Principal => {
    if (!token) throw new AppError('UNAUTHORIZED', 'missing token');
    let claims: Claims;
    try {
      claims = verifyToken(token);
    } catch (err) {
      throw toAppError(err);
    }
    return principalOf(claims);
  };
  return {
    verifySync,
    verify: async (token) => verifySync(token),
  };
}

/** HS256 verification with a shared secret (JWT_SECRET), via fast-jwt. */
export function createHmacVerifier(secret: string, issuer: string): TokenVerifier {
  return verifierWith(keyVerifier(secret, issuer, ['HS256']));
}

export interface JsonWebKeySet {
  keys: (JsonWebKey & { kid?: string; alg?: string; use?: string })[];
}

/** The algorithm a JWKS key verifies: ES256 for P-256 EC keys, RS256 for RSA keys; undefined for any other. */
function algorithmOf(jwk: JsonWebKeySet['keys'][number]): 'ES256' | 'RS256' | undefined {
  if (jwk.use !== undefined && jwk.use !== 'sig') return undefined;
  const alg = jwk.kty === 'EC' && jwk.crv === 'P-256' ? 'ES256' : jwk.kty === 'RSA' ? 'RS256' : undefined;
  return jwk.alg === undefined || jwk.alg === alg ? alg : undefined;
}

/**
 * Production: ES256/RS256 public keys from a JWKS file. The token's `kid` picks the key; a token
 * without `kid` is tried against every key of its algorithm.
 */
export function createJwksVerifier(jwks: JsonWebKeySet, issuer: string): TokenVerifier {
  const keys = jwks.keys.flatMap((jwk) => {
    const alg = algorithmOf(jwk);
    if (!alg) return [];
    const pem = (createPublicKey({ key: jwk, format: 'jwk' }) as KeyObject).export({ type: 'spki', format: 'pem' });
    return [{ kid: jwk.kid, alg, verify: keyVerifier(pem, issuer, [alg]) }];
  });
  if (keys.length === 0) throw new Error('no ES256 (P-256) or RS256 signing key in the JWKS');
  const decodeHeader = createDecoder({ complete: true }) as (token: string) => { header: { alg?: unknown; kid?: unknown } };
  return verifierWith((token) => {
    const { header } = decodeHeader(token);
    const candidates = keys.filter((k) => k.alg === header.alg && (header.kid === undefined || k.kid === header.kid));
    if (candidates.length === 0) throw new AppError('UNAUTHORIZED', 'invalid token');
    let last: unknown;
    for (const k of candidates) {
      try { return k.verify(token); } catch (err) { last = err; }
    }
    throw last;
  });
}

/** The verifier the config asks for: the JWKS file when `auth.jwksFile` is set, else HS256. */
export function createVerifier(auth: { jwtSecret: string; issuer: string; jwksFile: string }): TokenVerifier {
  if (auth.jwksFile) {
    const jwks = JSON.parse(readFileSync(auth.jwksFile, 'utf8')) as JsonWebKeySet;
    if (!Array.isArray(jwks.keys) || jwks.keys.length === 0) throw new Error(`${auth.jwksFile}: no keys in the JWKS`);
    return createJwksVerifier(jwks, auth.issuer);
  }
  return createHmacVerifier(auth.jwtSecret, auth.issuer);
}

export interface MintOptions {
  sub: string;
  tenant: string;
  scopes: readonly Scope[];
  /** Seconds until expiry. */
  ttlSeconds: number;
  issuer: string;
  /** Fleet / sensor-gateway token: may publish many ids of its tenant. */
  fleet?: boolean;
  /** Entity ids a map client may follow (claim `follow`). */
  follow?: readonly string[];
}

function claims(o: MintOptions): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return {
    tenant: o.tenant, scope: o.scopes.join(' '), ...(o.fleet ? { fleet: true } : {}), ...(o.follow?.length ? { follow: [...o.follow] } : {}),
    sub: o.sub, iss: o.issuer, iat: now, exp: now + o.ttlSeconds,
  };
}

/** HS256 with the shared secret (JWT_SECRET). */
export async function mintHmacToken(secret: string, o: MintOptions): Promise<string> {
  return createSigner({ key: secret, algorithm: 'HS256', noTimestamp: true })(claims(o));
}

/** Signs with a private key (ES256/RS256) for JWKS deployments; `kid` must match a JWKS key. */
export async function mintKeyToken(key: KeyObject | string, alg: 'ES256' | 'RS256', kid: string, o: MintOptions): Promise<string> {
  const pem = typeof key === 'string' ? key : key.export({ type: 'pkcs8', format: 'pem' });
  return createSigner({ key: pem, algorithm: alg, kid, noTimestamp: true })(claims(o));
}
