import { readFileSync } from 'node:fs';
import { SignJWT, jwtVerify, createLocalJWKSet, errors as joseErrors, type JWTPayload, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
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
}

export interface TokenVerifier {
  /** Resolves the principal or throws AppError(UNAUTHORIZED). */
  verify(token: string | undefined): Promise<Principal>;
}

export const TENANT_RE = /^[A-Za-z0-9_-]{1,32}$/;

export function hasScope(p: Principal, scope: Scope): boolean {
  return p.scopes.has(scope) || p.scopes.has('admin');
}

export function requireScope(p: Principal, scope: Scope): void {
  if (!hasScope(p, scope)) throw new AppError('FORBIDDEN', `token lacks the '${scope}' scope`);
}

function principalOf(payload: JWTPayload): Principal {
  const tenant = payload.tenant;
  if (typeof tenant !== 'string' || !TENANT_RE.test(tenant)) throw new AppError('UNAUTHORIZED', 'token has no valid tenant claim');
  if (!payload.sub || !ENTITY_ID_RE.test(payload.sub)) throw new AppError('UNAUTHORIZED', 'token has no valid sub claim');
  const scopes = new Set<Scope>();
  for (const s of String(payload.scope ?? '').split(' ')) if ((SCOPES as readonly string[]).includes(s)) scopes.add(s as Scope);
  return { sub: payload.sub, tenant, scopes, exp: (payload.exp ?? 0) * 1000, fleet: payload.fleet === true };
}

function verifierWith(key: Uint8Array | JWTVerifyGetKey, issuer: string, algorithms: string[]): TokenVerifier {
  return {
    async verify(token) {
      if (!token) throw new AppError('UNAUTHORIZED', 'missing token');
      try {
        const { payload } = typeof key === 'function'
          ? await jwtVerify(token, key, { issuer, algorithms, requiredClaims: ['sub', 'exp'] })
          : await jwtVerify(token, key, { issuer, algorithms, requiredClaims: ['sub', 'exp'] });
        return principalOf(payload);
      } catch (err) {
        if (err instanceof AppError) throw err;
        const reason = err instanceof joseErrors.JWTExpired ? 'token expired' : 'invalid token';
        throw new AppError('UNAUTHORIZED', reason);
      }
    },
  };
}

/** HS256 verification with a shared secret (JWT_SECRET), via `jose`. */
export function createHmacVerifier(secret: string, issuer: string): TokenVerifier {
  return verifierWith(new TextEncoder().encode(secret), issuer, ['HS256']);
}

/** Production: ES256/RS256 public keys from a JWKS file (jose createLocalJWKSet); keys chosen by `kid`. */
export function createJwksVerifier(jwks: JSONWebKeySet, issuer: string): TokenVerifier {
  return verifierWith(createLocalJWKSet(jwks), issuer, ['ES256', 'RS256']);
}

/** The verifier the config asks for: the JWKS file when `auth.jwksFile` is set, else HS256. */
export function createVerifier(auth: { jwtSecret: string; issuer: string; jwksFile: string }): TokenVerifier {
  if (auth.jwksFile) {
    const jwks = JSON.parse(readFileSync(auth.jwksFile, 'utf8')) as JSONWebKeySet;
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
}

export async function mintHmacToken(secret: string, o: MintOptions): Promise<string> {
  return new SignJWT(claims(o))
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(o.sub)
    .setIssuer(o.issuer)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + o.ttlSeconds)
    .sign(new TextEncoder().encode(secret));
}

function claims(o: MintOptions): JWTPayload {
  return { tenant: o.tenant, scope: o.scopes.join(' '), ...(o.fleet ? { fleet: true } : {}) };
}

/** Signs with a private key (ES256/RS256) for JWKS deployments; `kid` must match a JWKS key. */
export async function mintKeyToken(key: Parameters<SignJWT['sign']>[0], alg: 'ES256' | 'RS256', kid: string, o: MintOptions): Promise<string> {
  return new SignJWT(claims(o))
    .setProtectedHeader({ alg, kid })
    .setSubject(o.sub)
    .setIssuer(o.issuer)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + o.ttlSeconds)
    .sign(key);
}
