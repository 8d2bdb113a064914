import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { DriverClient } from '../../src/clients/driver-client.js';
import { token } from '../helpers/tokens.js';
import { startIngestEnv, type IngestEnv } from './ingest-helpers.js';

/** Per-connection limits: token-bucket rate limit (4029), backpressure (4030), others unaffected. */
let env: IngestEnv;
let env2: IngestEnv;

before(async () => {
  [env, env2] = await Promise.all([
    startIngestEnv({ INGEST_RATE_PER_SECOND: '20', INGEST_RATE_BURST: '20', INGEST_RATE_ABUSE_PINGS: '100', INGEST_IDLE_TIMEOUT_SECONDS: '8' }),
    startIngestEnv({ INGEST_RATE_PER_SECOND: '1000000', INGEST_RATE_BURST: '1000000', INGEST_MAX_BUFFERED_BYTES: '4096', INGEST_MAX_BATCH: '500' }),
  ]);
});
after(async () => { await Promise.all([env?.stop(), env2?.stop()]); });

const pingsOf = (id: string, n: number, seq0: number) => Array.from({ length: n }, (_, k) => ({ id, lat: 52.52, lon: 13.405 + k * 1e-6, ts: Date.now() - 1000 + k, seq: seq0 + k }));

test('rate limit: pings beyond the burst get RATE_LIMITED (the first ones pass); sustained abuse closes with 4029', async () => {
  const c = await DriverClient.connect(env.gw.url, await token('rl-1', ['ingest']));
  const r = await c.send(pingsOf('rl-1', 30, 0));
  assert.equal(r.count, 20);
  assert.deepEqual(r.errors.map((e) => e.index), Array.from({ length: 10 }, (_, k) => 20 + k));
  assert.ok(r.errors.every((e) => e.code === 'RATE_LIMITED' && e.id === 'rl-1'));
  // Refill: after ~0.5 s about 10 tokens are back.
  await new Promise((res) => setTimeout(res, 600));
  const r2 = await c.send(pingsOf('rl-1', 5, 100));
  assert.equal(r2.count, 5);
  // Flood: debt grows past 100 refused pings → close 4029.
  const sends: Promise<unknown>[] = [];
  for (let k = 0; k < 10; k++) sends.push(c.send(pingsOf('rl-1', 40, 1000 + k * 40)).catch((e: unknown) => e));
  const closed = await c.closed;
  assert.equal(closed.code, 4029);
  await Promise.all(sends);
});

test('backpressure: a client that does not read its replies is closed with 4030; another client is not slowed', async () => {
  const slow = await DriverClient.connect(env2.gw.url, await token('bp-slow', ['ingest']));
  const fast = await DriverClient.connect(env2.gw.url, await token('bp-fast', ['ingest']));
  slow.pauseReading();
  // Each frame: 400 invalid pings → 400 error frames (~50 KB of replies).
  const junk = JSON.stringify(Array.from({ length: 400 }, (_, k) => ({ id: 'bp-slow', lat: 99, lon: 0, ts: Date.now(), seq: k })));
  let sent = 0;
  let slowClosed = false;
  void slow.closed.then(() => { slowClosed = true; });
  const t0 = Date.now();
  const latencies: number[] = [];
  while (sent < 600 && !slowClosed && Date.now() - t0 < 15_000) {
    for (let k = 0; k < 10; k++, sent++) slow.sendRaw(junk, false).catch(() => undefined);
    const t = Date.now();
    const r = await fast.send({ id: 'bp-fast', lat: 52.5, lon: 13.4, ts: Date.now(), seq: sent });
    latencies.push(Date.now() - t);
    assert.equal(r.count, 1);
    await new Promise((res) => setTimeout(res, 5));
  }
  // The gateway stopped answering the slow client long before all its frames were processed.
  const metrics = await (await fetch(`${env2.gw.url}/metrics`)).text();
  assert.match(metrics, /geoflux_ingest_closes_total\{code="4030"\} 1/);
  const answered = Number(/geoflux_pings_rejected_total\{code="INVALID_COORDINATES"\} (\d+)/.exec(metrics)?.[1]);
  assert.ok(answered < sent * 400, `answered ${answered} of ${sent * 400} bad pings`);
  slow.resumeReading();
  const closed = await Promise.race([slow.closed, new Promise<undefined>((res) => setTimeout(() => res(undefined), 10_000))]);
  assert.equal(closed?.code, 4030);
  latencies.sort((a, b) => a - b);
  // Two cores shared with the test process itself (which also builds the junk): a loose bound.
  assert.ok(latencies[Math.floor(latencies.length * 0.9)]! < 500, `fast client p90 ack ${latencies[Math.floor(latencies.length * 0.9)]} ms`);
  const after = await fast.send({ id: 'bp-fast', lat: 52.5, lon: 13.4, ts: Date.now(), seq: 100000 });
  assert.equal(after.count, 1);
  await fast.close();
});

test('idle timeout: a connected client that sends no data frame is closed with 4008', async () => {
  const c = await DriverClient.connect(env.gw.url, await token('idle-1', ['ingest']));
  const t0 = Date.now();
  const errs: string[] = [];
  c.on('errorFrame', (e) => errs.push(e.code));
  const closed = await c.closed;
  const after = Date.now() - t0;
  assert.equal(closed.code, 4008);
  assert.deepEqual(errs, ['IDLE_TIMEOUT']);
  assert.ok(after >= 7000 && after < 16000, `closed after ${after} ms`);
});
