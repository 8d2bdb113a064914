import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { pack } from 'msgpackr';
import { DriverClient, type SendResult } from '../../src/clients/driver-client.js';
import { decodeAccepted } from '../../src/store/redis/codec.js';
import { cellOf } from '../../src/geo/tiles.js';
import { token } from '../helpers/tokens.js';
import { startIngestEnv, prng, type IngestEnv } from './ingest-helpers.js';

/**
 * Fuzz: thousands of random and malformed frames (seeded, bounded) at a live gateway over one
 * connection. It stays up, answers each bad frame with at least one error frame and an ack, and
 * every good ping sent between them is acked and in Redis (entity state and cell stream).
 */
const SEED = Number(process.env.FUZZ_SEED ?? 424242);
const FRAMES = Number(process.env.FUZZ_FRAMES ?? 3000);
const rand = prng(SEED);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
let env: IngestEnv;

before(async () => {
  env = await startIngestEnv({ INGEST_RATE_PER_SECOND: '1000000', INGEST_RATE_BURST: '1000000', INGEST_MAX_BATCH: '50', INGEST_MAX_PAYLOAD_BYTES: '16384' });
});
after(async () => { await env?.stop(); });

const ID = 'fuzz-1';
const good = (seq: number) => ({ id: ID, lat: 38.7223 + seq * 1e-7, lon: -9.1393, ts: Date.now() - 60_000 + seq, seq, speed: 3, status: 'available' });

/** Mutations that each make a ping invalid. */
const MUTATIONS: ((p: Record<string, unknown>) => void)[] = [
  (p) => { p.lat = 91 + rand() * 1000; }, (p) => { p.lat = -85.06; }, (p) => { p.lat = 'north'; }, (p) => { p.lat = null; },
  (p) => { p.lon = 180.0001 + rand() * 100; }, (p) => { p.lon = [1, 2]; }, (p) => { p.ts = -5; }, (p) => { p.ts = 1.5; },
  (p) => { p.ts = 'now'; }, (p) => { p.ts = Date.now() + 1e9; }, (p) => { p.ts = 1000; }, (p) => { p.id = ''; }, (p) => { p.id = 'a'.repeat(65); },
  (p) => { p.id = 'bad id!'; }, (p) => { p.id = 123; }, (p) => { p.id = 'not-mine'; }, (p) => { p.seq = -1; }, (p) => { p.seq = 1.5; },
  (p) => { p.speed = -1; }, (p) => { p.speed = 1000; }, (p) => { p.heading = 361; }, (p) => { p.accuracy = -3; },
  (p) => { p.meta = { x: { nested: 1 } }; }, (p) => { p.meta = { x: 'y'.repeat(300) }; }, (p) => { p.meta = 'meta'; },
  (p) => { p.extra = true; }, (p) => { delete p.id; }, (p) => { delete p.lat; }, (p) => { delete p.lon; }, (p) => { delete p.ts; },
  (p) => { p.kind = 'k'.repeat(33); }, (p) => { p.status = 7; }, (p) => { p.__proto__x = 1; },
];

function randomValue(depth = 0): unknown {
  switch (Math.floor(rand() * (depth > 2 ? 5 : 7))) {
    case 0: return rand() * 1e6 - 5e5;
    case 1: return Math.floor(rand() * 1e9);
    case 2: return String.fromCharCode(...Array.from({ length: Math.floor(rand() * 20) }, () => 32 + Math.floor(rand() * 0x2fff)));
    case 3: return rand() < 0.5;
    case 4: return null;
    case 5: return Array.from({ length: Math.floor(rand() * 5) }, () => randomValue(depth + 1));
    default: return Object.fromEntries(Array.from({ length: Math.floor(rand() * 5) }, () => [pick(['id', 'lat', 'lon', 'ts', 'seq', 'x', 'meta', '']), randomValue(depth + 1)]));
  }
}

type Frame = { data: string | Uint8Array; binary: boolean };

function badFrame(): Frame {
  const binary = rand() < 0.5;
  const enc = (v: unknown): Frame => ({ data: binary ? pack(v) : JSON.stringify(v), binary });
  switch (Math.floor(rand() * 7)) {
    case 0: return { data: Uint8Array.from({ length: 1 + Math.floor(rand() * 200) }, () => Math.floor(rand() * 256)), binary: true }; // random bytes
    case 1: return { data: Array.from({ length: 1 + Math.floor(rand() * 100) }, () => String.fromCharCode(32 + Math.floor(rand() * 95))).join(''), binary: false }; // random text
    case 2: { const v = randomValue(); return enc(v !== null && typeof v === 'object' && !Array.isArray(v) ? v : [v]); }
    case 3: { const p: Record<string, unknown> = good(0); pick(MUTATIONS)(p); return enc(p); }
    case 4: { // a batch where every ping is broken
      const n = 1 + Math.floor(rand() * 10);
      return enc(Array.from({ length: n }, () => { const p: Record<string, unknown> = good(0); pick(MUTATIONS)(p); return p; }));
    }
    case 5: return enc(Array.from({ length: 51 + Math.floor(rand() * 20) }, () => good(0))); // batch too large
    default: return binary ? { data: pack(good(0)).subarray(0, 5 + Math.floor(rand() * 10)), binary: true } : { data: JSON.stringify(good(0)).slice(0, 10 + Math.floor(rand() * 30)), binary: false }; // truncated
  }
}

test(`fuzz: ${FRAMES} random/malformed frames (seed ${SEED}) with good pings interleaved`, async () => {
  const c = await DriverClient.connect(env.gw.url, await token(ID, ['ingest']));
  const goodSeqs: number[] = [];
  const results: Promise<{ r: SendResult; good: boolean }>[] = [];
  let seq = 0;
  const t0 = Date.now();
  for (let i = 0; i < FRAMES && Date.now() - t0 < 45_000; i++) {
    let f: Frame;
    let isGood = false;
    if (i % 10 === 5) {
      seq++;
      goodSeqs.push(seq);
      const p = good(seq);
      const binary = rand() < 0.5;
      f = { data: binary ? pack(p) : JSON.stringify(p), binary };
      isGood = true;
    } else f = badFrame();
    results.push(c.sendRaw(f.data, f.binary).then((r) => ({ r, good: isGood })));
    if (results.length % 100 === 0) await results[results.length - 50]; // bounded window
  }
  const all = await Promise.all(results);
  assert.equal(all.length >= FRAMES * 0.5, true);
  for (const [k, { r, good: isGood }] of all.entries()) {
    if (isGood) {
      assert.equal(r.count, 1, `good frame ${k} acked`);
      assert.deepEqual(r.errors, [], `good frame ${k} has no errors`);
    } else {
      assert.equal(r.count, 0, `bad frame ${k} stored nothing`);
      assert.ok(r.errors.length >= 1, `bad frame ${k} got an error frame`);
    }
  }
  // Still up: health, a fresh connection, and the connection itself.
  assert.equal((await fetch(`${env.gw.url}/healthz`)).status, 200);
  const last = await c.send(good(++seq));
  goodSeqs.push(seq);
  assert.equal(last.count, 1);
  await c.close();
  // Every good ping is in Redis: latest state and the cell stream (each exactly once).
  const state = await env.redis.hgetBuffer(env.keys.entity('acme', ID), 'p');
  assert.equal(decodeAccepted(state!).seq, seq);
  const entries = await env.redis.xrangeBuffer(env.keys.cell('acme', cellOf(-9.1393, 38.7223, 13)).stream, '-', '+');
  const streamed = entries.map(([, f]) => decodeAccepted(f[1]!)).filter((p) => p.id === ID).map((p) => p.seq!);
  assert.deepEqual(streamed, goodSeqs);
  assert.equal(env.gw.proc.exitCode, null);
});
