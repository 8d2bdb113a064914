import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { DriverClient } from '../../src/clients/driver-client.js';
import { startIngestEnv, type IngestEnv } from './ingest-helpers.js';
import { mintHmacToken } from '../../src/auth/tokens.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';

/**
 * Admission control: with more pings waiting for Redis than INGEST_MAX_PENDING_PINGS, frames are
 * refused at once with OVERLOADED (count 0) instead of queueing without bound; every frame still
 * gets exactly one ack, nothing refused is stored, and the gateway accepts again once drained.
 */
let env: IngestEnv;

before(async () => {
  env = await startIngestEnv({ INGEST_MAX_PENDING_PINGS: '100', INGEST_RATE_BURST: '100000', INGEST_RATE_PER_SECOND: '100000' });
});
after(async () => { await env?.stop(); });

test('frames beyond the pending-pings cap get OVERLOADED; the rest are stored; recovery after', async () => {
  const fleet = await mintHmacToken(TEST_JWT_SECRET, { sub: 'depot', tenant: 'acme', scopes: ['ingest'], ttlSeconds: 600, issuer: 'geoflux', fleet: true });
  const c = await DriverClient.connect(env.gw.url.replace('http', 'ws'), fleet, { encoding: 'msgpack' });
  const frames = 40, perFrame = 100;
  const t0 = Date.now() - 60_000;
  // Sent back to back: they reach the gateway within one or a few event-loop turns, before
  // the first Redis write returns, so the cap is hit.
  const results = await Promise.all(Array.from({ length: frames }, (_, f) => c.send(Array.from({ length: perFrame }, (_, i) => ({
    id: `v-${f}-${i}`, lat: 41.15 + i * 1e-4, lon: -8.61 + f * 1e-4, ts: t0 + f, seq: 1,
  })))));
  const overloaded = results.filter((r) => r.errors.some((e) => e.code === 'OVERLOADED'));
  const accepted = results.reduce((n, r) => n + r.count, 0);
  assert.ok(overloaded.length > 0, 'some frames were refused');
  assert.ok(accepted >= perFrame, 'the first frames were stored');
  for (const r of overloaded) {
    assert.equal(r.count, 0);
    assert.equal(r.errors.length, 1);
  }
  assert.equal(accepted + overloaded.length * perFrame, frames * perFrame, 'every ping either stored or refused with its frame');
  assert.deepEqual(results.map((r) => r.frame), Array.from({ length: frames }, (_, i) => i + 1), 'one ack per frame, in order');

  // Nothing of a refused frame reached Redis; everything acked did.
  const stored = new Set<string>();
  for (const r of results) if (r.count > 0) for (let i = 0; i < perFrame; i++) stored.add(`v-${(r.frame ?? 0) - 1}-${i}`);
  const pipe = env.redis.pipeline();
  for (let f = 0; f < frames; f++) pipe.exists(env.keys.entity('acme', `v-${f}-0`));
  const exists = (await pipe.exec())!.map(([, v]) => v === 1);
  exists.forEach((e, f) => assert.equal(e, stored.has(`v-${f}-0`), `frame ${f + 1}`));

  // Drained: the next frame is accepted again.
  const again = await c.send({ id: 'v-late', lat: 41.15, lon: -8.61, ts: Date.now(), seq: 2 });
  assert.equal(again.count, 1);
  assert.deepEqual(again.errors, []);
  await c.close();

  const metrics = await (await fetch(`${env.gw.url}/metrics`)).text();
  assert.match(metrics, /geoflux_pings_rejected_total\{code="OVERLOADED"\} [1-9]/);
});
