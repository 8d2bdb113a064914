/**
 * Dev command: mint a token.
 *   npm run token -- --sub driver-1 --tenant demo --scope "ingest" [--ttl 3600]
 *   npm run token -- --sub depot-gw --tenant demo --scope ingest --fleet          (publishes many ids)
 *   npm run token -- --sub car-1 --key private.pem --alg ES256 --kid k1            (JWKS deployments)
 * Without --key the token is HS256 with JWT_SECRET (config auth.jwtSecret).
 */
import { readFileSync } from 'node:fs';
import { createPrivateKey } from 'node:crypto';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { mintHmacToken, mintKeyToken, SCOPES, type Scope } from './tokens.js';

const { values } = parseArgs({
  options: {
    sub: { type: 'string', default: 'dev-client' },
    tenant: { type: 'string', default: 'demo' },
    scope: { type: 'string', default: 'ingest subscribe query' },
    ttl: { type: 'string', default: '86400' },
    fleet: { type: 'boolean', default: false },
    key: { type: 'string' },
    alg: { type: 'string', default: 'ES256' },
    kid: { type: 'string', default: '' },
  },
});
const scopes = values.scope!.split(/[ ,]+/).filter(Boolean);
const bad = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
if (bad.length) {
  process.stderr.write(`unknown scope(s): ${bad.join(', ')}; known: ${SCOPES.join(', ')}\n`);
  process.exit(2);
}
if (values.alg !== 'ES256' && values.alg !== 'RS256') {
  process.stderr.write(`--alg must be ES256 or RS256\n`);
  process.exit(2);
}
const cfg = loadConfig();
const opts = { sub: values.sub!, tenant: values.tenant!, scopes: scopes as Scope[], ttlSeconds: Number(values.ttl), issuer: cfg.auth.issuer, fleet: values.fleet === true };
const token = values.key
  ? await mintKeyToken(createPrivateKey(readFileSync(values.key)), values.alg, values.kid!, opts)
  : await mintHmacToken(cfg.auth.jwtSecret, opts);
process.stdout.write(token + '\n');
