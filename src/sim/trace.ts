/**
 * Replay of real GPS traces: the Dublin Bus SIRI sample (../shared/data/dublin-bus/, CC BY 4.0,
 * "Dublin City Council / Dublin Bus"). Each bus replays its own reports with their real gaps,
 * jitter and stops, time-compressed by `speedup`, stamped with the wall clock; the replay loops.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Ping } from '../protocol/ping.js';
import { haversineMeters } from '../geo/tiles.js';
import { bearing } from './walker.js';

export const DUBLIN_ATTRIBUTION = 'Dublin City Council / Dublin Bus (CC BY 4.0)';
export const DUBLIN_FILE = 'siri.20130131.sample.csv';

export interface TracePoint { t: number; lat: number; lon: number; atStop: boolean }
export interface Trace { vehicle: string; line: string; points: TracePoint[] }

/** Reads the SIRI sample (no header); one trace per vehicle_id, points sorted by time, duplicates dropped. */
export function loadDublinTraces(dir: string): Trace[] | undefined {
  const file = join(dir, DUBLIN_FILE);
  if (!existsSync(file)) return undefined;
  const byVehicle = new Map<string, Trace>();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const f = line.trim().split(',');
    if (f.length < 15) continue;
    const t = Math.round(Number(f[0]) / 1000);
    const lon = Number(f[8]), lat = Number(f[9]);
    if (!Number.isFinite(t) || !Number.isFinite(lat) || !Number.isFinite(lon) || lat === 0) continue;
    const vehicle = f[12]!;
    let tr = byVehicle.get(vehicle);
    if (!tr) byVehicle.set(vehicle, (tr = { vehicle, line: f[1]!, points: [] }));
    tr.points.push({ t, lat, lon, atStop: f[14] === '1' });
  }
  const out: Trace[] = [];
  for (const tr of byVehicle.values()) {
    tr.points.sort((a, b) => a.t - b.t);
    tr.points = tr.points.filter((p, i, a) => i === 0 || p.t !== a[i - 1]!.t);
    if (tr.points.length >= 2) out.push(tr);
  }
  return out.sort((a, b) => b.points.length - a.points.length);
}

/**
 * One bus replaying its own trace from its first report, in real time (`speedup` 1) or faster.
 * Between two reports it pings every `intervalMs` at the interpolated position, so a 20 s
 * report gap still gives a ping every few seconds. With speedup > 1 the implied speeds grow too
 * (the gateway rejects implausible jumps), so keep it small.
 */
export class TraceVehicle {
  readonly kind = 'bus';
  status: 'on_trip' | 'available' = 'on_trip';
  online = true;
  speed = 0;
  seq = 0;
  nextPingAt: number;
  private i = 0;
  private start: number;
  private heading: number | undefined;

  constructor(readonly id: string, private readonly trace: Trace, private readonly speedup: number, startWall: number, private readonly intervalMs = 3000) {
    this.start = startWall;
    this.nextPingAt = startWall;
  }

  private traceNow(now: number): number {
    return this.trace.points[0]!.t + (now - this.start) * this.speedup;
  }

  step(now: number): void {
    const pts = this.trace.points;
    const tn = this.traceNow(now);
    while (this.i + 1 < pts.length && pts[this.i + 1]!.t <= tn) this.i++;
    this.online = tn <= pts[pts.length - 1]!.t;
  }

  due(now: number): boolean {
    return this.online && now >= this.nextPingAt;
  }

  /** True once the whole trace was replayed. */
  get done(): boolean {
    return !this.online;
  }

  /** Starts the trace again from its first report. */
  restart(now: number): void {
    this.i = 0;
    this.start = now;
    this.nextPingAt = now;
    this.online = true;
  }

  ping(now: number): Ping {
    this.nextPingAt = now + this.intervalMs;
    const pts = this.trace.points;
    const a = pts[this.i]!;
    const b = pts[Math.min(this.i + 1, pts.length - 1)]!;
    const span = b.t - a.t;
    const f = span > 0 ? Math.min(1, Math.max(0, (this.traceNow(now) - a.t) / span)) : 0;
    const lat = a.lat + (b.lat - a.lat) * f;
    const lon = a.lon + (b.lon - a.lon) * f;
    const d = haversineMeters(a.lat, a.lon, b.lat, b.lon);
    this.speed = span > 0 ? Math.min(30, (d / (span / 1000)) * this.speedup) : 0;
    if (d > 3) this.heading = bearing(a.lat, a.lon, b.lat, b.lon);
    this.status = a.atStop && f < 0.5 ? 'available' : 'on_trip';
    return {
      id: this.id, lat: Math.round(lat * 1e7) / 1e7, lon: Math.round(lon * 1e7) / 1e7, ts: now, seq: ++this.seq,
      speed: Math.round(this.speed * 100) / 100, ...(this.heading !== undefined ? { heading: this.heading } : {}),
      kind: this.kind, status: this.status, meta: { line: this.trace.line },
    };
  }
}
