import { SignJWT, jwtVerify, errors as joseErrors } from 'jose';
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

/** HS256 verification with a shared secret (JWT_SECRET), via `jose`. */
export function createHmacVerifier(secret: string, issuer: string): TokenVerifier {
  const key = new TextEncoder().encode(secret);
  return {
    async verify(token) {
      if (!token) throw new AppError('UNAUTHORIZED', 'missing token');
      try {
        const { payload } = await jwtVerify(token, key, { issuer, algorithms: ['HS256'], requiredClaims: ['sub', 'exp'] });
        const tenant = payload.tenant;
        if (typeof tenant !== 'string' || !TENANT_RE.test(tenant)) throw new AppError('UNAUTHORIZED', 'token has no valid tenant claim');
        if (!payload.sub || !ENTITY_ID_RE.test(payload.sub)) throw new AppError('UNAUTHORIZED', 'token has no valid sub claim');
        const scopes = new Set<Scope>();
        for (const s of String(payload.scope ?? '').split(' ')) if ((SCOPES as readonly string[]).includes(s)) scopes.add(s as Scope);
        return { sub: payload.sub, tenant, scopes, exp: (payload.exp ?? 0) * 1000 };
      } catch (err) {
        if (err instanceof AppError) throw err;
        const reason = err instanceof joseErrors.JWTExpired ? 'token expired' : 'invalid token';
        throw new AppError('UNAUTHORIZED', reason);
      }
    },
  };
}

export interface MintOptions {
  sub: string;
  tenant: string;
  scopes: readonly Scope[];
  /** Seconds until expiry. */
  ttlSeconds: number;
  issuer: string;
}

export async function mintHmacToken(secret: string, o: MintOptions): Promise<string> {
  return new SignJWT({ tenant: o.tenant, scope: o.scopes.join(' ') })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(o.sub)
    .setIssuer(o.issuer)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + o.ttlSeconds)
    .sign(new TextEncoder().encode(secret));
}
