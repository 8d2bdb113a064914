/**
 * Dev command: mint a token.
 *   npm run token -- --sub driver-1 --tenant demo --scope "ingest" [--ttl 3600]
 *   npm run token -- --sub depot-gw --tenant demo --scope ingest --fleet          (publishes many ids)
 *   npm run token -- --sub car-1 --key private.pem --alg ES256 --kid k1            (JWKS deployments)
 * Without --key the token is HS256 with JWT_SECRET (config auth.jwtSecret).
 */
import { readFileSync } from 'node:fs';
import { createPrivateKey } from 'node:crypto';
import { parseCliArgs } from '../lifecycle/cli-args.js';
import { loadConfig } from '../config/load.js';
import { mintHmacToken, mintKeyToken, SCOPES, type Scope } from './tokens.js';

const USAGE = `npm run token -- [options]: mint a token (HS256 with JWT_SECRET, or --key for ES256/RS256)

  --sub ID          subject: the entity id a driver token may publish (default dev-client)
  --tenant T        tenant (default demo)
  --scope "S ..."   space- or comma-separated: ${SCOPES.join(', ')} (default "ingest subscribe query")
  --ttl SECONDS     lifetime (default 86400)
  --fleet           a fleet/sensor-gateway token: may publish many ids of its tenant
  --key FILE        PEM private key: sign with it instead of JWT_SECRET (JWKS deployments)
  --alg ES256|RS256 algorithm for --key (default ES256)
  --kid ID          key id for --key`;

const values = parseCliArgs(USAGE, {
  sub: { type: 'string', default: 'dev-client' },
  tenant: { type: 'string', default: 'demo' },
  scope: { type: 'string', default: 'ingest subscribe query' },
  ttl: { type: 'string', default: '86400' },
  fleet: { type: 'boolean', default: false },
  key: { type: 'string' },
  alg: { type: 'string', default: 'ES256' },
  kid: { type: 'string', default: '' },
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
const ttlSeconds = Number(values.ttl);
if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) {
  process.stderr.write(`--ttl must be a positive whole number of seconds (got ${values.ttl})\n`);
  process.exit(2);
}
const cfg = loadConfig();
const opts = { sub: values.sub!, tenant: values.tenant!, scopes: scopes as Scope[], ttlSeconds, issuer: cfg.auth.issuer, fleet: values.fleet === true };
let key: ReturnType<typeof createPrivateKey> | undefined;
if (values.key) {
  try {
    key = createPrivateKey(readFileSync(values.key));
  } catch (err) {
    process.stderr.write(`--key ${values.key}: ${(err as Error).message}\n`);
    process.exit(2);
  }
}
const token = key ? await mintKeyToken(key, values.alg, values.kid!, opts) : await mintHmacToken(cfg.auth.jwtSecret, opts);
process.stdout.write(token + '\n');
