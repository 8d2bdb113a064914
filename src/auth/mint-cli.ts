/**
 * Dev command: mint a token signed with JWT_SECRET.
 *   npm run token -- --sub driver-1 --tenant demo --scope "ingest" [--ttl 3600]
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { mintHmacToken, SCOPES, type Scope } from './tokens.js';

const { values } = parseArgs({
  options: {
    sub: { type: 'string', default: 'dev-client' },
    tenant: { type: 'string', default: 'demo' },
    scope: { type: 'string', default: 'ingest subscribe query' },
    ttl: { type: 'string', default: '86400' },
  },
});
const scopes = values.scope!.split(/[ ,]+/).filter(Boolean);
const bad = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
if (bad.length) {
  process.stderr.write(`unknown scope(s): ${bad.join(', ')}; known: ${SCOPES.join(', ')}\n`);
  process.exit(2);
}
const cfg = loadConfig();
const token = await mintHmacToken(cfg.auth.jwtSecret, {
  sub: values.sub!, tenant: values.tenant!, scopes: scopes as Scope[], ttlSeconds: Number(values.ttl), issuer: cfg.auth.issuer,
});
process.stdout.write(token + '\n');
