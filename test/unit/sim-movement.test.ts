import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../src/config/load.js';
import { haversineMeters } from '../../src/geo/tiles.js';
import { loadPortoRoads, syntheticGrid, PORTO_BBOX, type RoadGraph } from '../../src/sim/roads.js';
import { RoadWalker } from '../../src/sim/walker.js';
import { SimVehicle, DEFAULT_VEHICLE_OPTIONS } from '../../src/sim/vehicle.js';
import { createRng } from '../../src/sim/rng.js';
import { parseBBox, parseInterval, buildFleetEntities } from '../../src/sim/setup.js';
import { loadDublinTraces, TraceVehicle } from '../../src/sim/trace.js';

const dataDir = process.env.SIM_DATA_DIR ?? join(projectRoot(), '..', 'shared', 'data');
const hasPorto = existsSync(join(dataDir, 'porto-roads', 'porto_roads.csv'));
const hasDublin = existsSync(join(dataDir, 'dublin-bus'));

function inside(g: RoadGraph, lat: number, lon: number): boolean {
  const [w, s, e, n] = g.bbox;
  return lon >= w - 1e-6 && lon <= e + 1e-6 && lat >= s - 1e-6 && lat <= n + 1e-6;
}

/** Drives 10 m at a time; the vehicle must never jump further than it drove. */
function driveAndCheck(g: RoadGraph, seed: number, steps: number): { maxJump: number; segments: number } {
  const w = new RoadWalker(g, createRng(seed));
  let prev = w.fix();
  let maxJump = 0;
  const seen = new Set<number>();
  for (let i = 0; i < steps; i++) {
    w.advance(10);
    const f = w.fix();
    assert.ok(inside(g, f.lat, f.lon), `left the area at ${f.lat},${f.lon}`);
    assert.ok(f.heading >= 0 && f.heading < 360);
    maxJump = Math.max(maxJump, haversineMeters(prev.lat, prev.lon, f.lat, f.lon));
    seen.add(w.segment);
    prev = f;
  }
  return { maxJump, segments: seen.size };
}

test('Porto road graph: loads every segment and its connections', { skip: hasPorto ? false : `no road data in ${dataDir}` }, () => {
  const g = loadPortoRoads(join(dataDir, 'porto-roads'))!;
  assert.ok(g.segments.length > 11_000, `segments: ${g.segments.length}`);
  assert.ok(g.next.reduce((n, l) => n + l.length, 0) > 25_000);
  const [w, s, e, n] = g.bbox;
  assert.ok(Math.abs(w - PORTO_BBOX[0]) < 0.01 && Math.abs(s - PORTO_BBOX[1]) < 0.01 && Math.abs(e - PORTO_BBOX[2]) < 0.01 && Math.abs(n - PORTO_BBOX[3]) < 0.01);
  for (const seg of g.segments.slice(0, 200)) assert.ok(seg.limit > 2 && seg.limit < 40, `limit ${seg.limit}`);
});

test('Porto: a walker follows the roads (no jumps) and covers many segments', { skip: hasPorto ? false : 'no road data' }, () => {
  const g = loadPortoRoads(join(dataDir, 'porto-roads'))!;
  for (const seed of [1, 2, 3]) {
    const r = driveAndCheck(g, seed, 2000); // 20 km
    assert.ok(r.maxJump <= 10.5, `jumped ${r.maxJump.toFixed(1)} m in a 10 m step`);
    assert.ok(r.segments > 30, `only ${r.segments} segments visited`);
  }
});

test('synthetic grid: stays in its bbox and moves along streets', () => {
  const g = syntheticGrid([2.30, 48.84, 2.38, 48.88]);
  const r = driveAndCheck(g, 9, 1500);
  assert.ok(r.maxJump <= 10.5);
  assert.ok(r.segments > 20);
});

test('a simulated vehicle: plausible speed, pings every 1–5 s, drops offline, changes status', () => {
  const g = syntheticGrid([-8.65, 41.14, -8.60, 41.17]);
  const v = new SimVehicle('car-1', 'car', new RoadWalker(g, createRng(1)), createRng(2), { ...DEFAULT_VEHICLE_OPTIONS, meanOnlineSeconds: 600 }, 0);
  const s = new SimVehicle('sc-1', 'scooter', new RoadWalker(g, createRng(3)), createRng(4), DEFAULT_VEHICLE_OPTIONS, 0);
  assert.ok(v.intervalMs >= 1000 && v.intervalMs <= 5000);
  let maxCar = 0, maxScooter = 0, offline = 0, wentBack = false, statuses = new Set<string>();
  let lastPing = -1, minGap = Infinity, maxGap = 0, moving = 0, stopped = 0;
  for (let now = 0; now <= 4 * 3600_000; now += 200) {
    v.step(now); s.step(now);
    maxCar = Math.max(maxCar, v.speed); maxScooter = Math.max(maxScooter, s.speed);
    if (!v.online) offline++;
    else if (offline > 0) wentBack = true;
    if (v.due(now)) {
      const p = v.ping(now);
      statuses.add(p.status!);
      assert.equal(p.kind, 'car');
      assert.equal(p.seq, v.seq);
      if (lastPing >= 0 && v.online) { minGap = Math.min(minGap, now - lastPing); maxGap = Math.max(maxGap, now - lastPing); }
      lastPing = now;
      if (p.speed! > 1) moving++; else stopped++;
    }
  }
  assert.ok(maxCar <= 50 / 3.6 * 1.1 + 0.01, `car max ${maxCar}`);
  assert.ok(maxCar > 5, `car never got going: ${maxCar}`);
  assert.ok(maxScooter <= 25 / 3.6 * 1.1 + 0.01, `scooter max ${maxScooter}`);
  assert.ok(offline > 0 && wentBack, 'went offline and came back');
  assert.deepEqual([...statuses].sort(), ['available', 'on_trip']);
  assert.ok(minGap >= 0.9 * v.intervalMs - 200, `gap ${minGap}`);
  assert.ok(moving > stopped, `moving ${moving} stopped ${stopped}`);
});

test('option parsing', () => {
  assert.deepEqual(parseInterval('1-5'), [1, 5]);
  assert.deepEqual(parseInterval('2'), [2, 2]);
  assert.equal(parseInterval('5-1'), undefined);
  assert.equal(parseInterval('x'), undefined);
  assert.deepEqual(parseBBox('-8.7,41.1,-8.5,41.2'), [-8.7, 41.1, -8.5, 41.2]);
  assert.equal(parseBBox('1,2,3'), undefined);
  assert.equal(parseBBox('5,1,4,2'), undefined);
});

test('fleet setup: falls back to a synthetic grid without data, unique ids, a mix of kinds', () => {
  const f = buildFleetEntities({
    city: 'porto', vehicles: 50, dataDir: '/nonexistent', seed: 1, intervalMs: [1000, 5000],
    meanOnlineSeconds: 300, offlineSeconds: [15, 90], speedup: 1,
  });
  assert.equal(f.source, 'grid');
  assert.equal(new Set(f.entities.map((e) => e.id)).size, 50);
  assert.ok(new Set(f.entities.map((e) => e.kind)).size >= 3);
  const p = f.entities[0]!.ping(Date.now());
  const [w, s, e, n] = PORTO_BBOX;
  assert.ok(p.lon >= w && p.lon <= e && p.lat >= s && p.lat <= n);
  assert.throws(() => buildFleetEntities({ city: 'atlantis', vehicles: 1, dataDir: '/nonexistent', seed: 1, intervalMs: [1000, 1000], meanOnlineSeconds: 0, offlineSeconds: [1, 1], speedup: 1 }), /unknown city/);
});

test('Dublin bus replay: sorted traces, real positions, a ping every interval between reports', { skip: hasDublin ? false : 'no Dublin data' }, () => {
  const traces = loadDublinTraces(join(dataDir, 'dublin-bus'))!;
  assert.ok(traces.length > 200, `traces: ${traces.length}`);
  for (const t of traces) for (let i = 1; i < t.points.length; i++) assert.ok(t.points[i]!.t > t.points[i - 1]!.t);
  const tr = traces[0]!;
  const bus = new TraceVehicle('bus-1', tr, 1, 0, 2000);
  const pings = [];
  for (let now = 0; now <= 120_000; now += 200) {
    bus.step(now);
    if (bus.due(now)) pings.push(bus.ping(now));
  }
  assert.ok(pings.length >= 59 && pings.length <= 61, `pings: ${pings.length}`);
  assert.equal(pings[0]!.lat, tr.points[0]!.lat);
  assert.ok(pings.every((p) => p.lat > 53 && p.lat < 54 && p.lon > -7 && p.lon < -6 && p.kind === 'bus'));
  // Consecutive pings 2 s apart never imply more than 30 m/s (plausible for a bus in real time).
  for (let i = 1; i < pings.length; i++) {
    const d = haversineMeters(pings[i - 1]!.lat, pings[i - 1]!.lon, pings[i]!.lat, pings[i]!.lon);
    assert.ok(d / 2 <= 30, `jump of ${d.toFixed(0)} m in 2 s`);
  }
  // Positions lie on the segments between reports: the first report after 20 s is reached.
  const at = tr.points.find((p) => p.t - tr.points[0]!.t >= 20_000)!;
  assert.ok(pings.some((p) => haversineMeters(p.lat, p.lon, at.lat, at.lon) < 200));
});
