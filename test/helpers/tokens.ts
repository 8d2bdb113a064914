import { mintHmacToken, type Scope } from '../../src/auth/tokens.js';
import { DEV_JWT_SECRET } from '../../src/config/load.js';

export const TEST_JWT_SECRET = DEV_JWT_SECRET;

export function token(sub: string, scopes: Scope[], tenant = 'acme', ttlSeconds = 3600): Promise<string> {
  return mintHmacToken(TEST_JWT_SECRET, { sub, tenant, scopes, ttlSeconds, issuer: 'geoflux' });
}
