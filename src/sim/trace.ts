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

/** One bus replaying its trace. `t0` is the trace time that maps to `startWall`. */
export class TraceVehicle {
  readonly kind = 'bus';
  status: 'on_trip' | 'available' = 'on_trip';
  online = false;
  speed = 0;
  seq = 0;
  private i = 0;
  private start: number;

  constructor(readonly id: string, private readonly trace: Trace, private readonly t0: number, private readonly speedup: number, startWall: number) {
    this.start = startWall;
  }

  private traceNow(now: number): number {
    return this.t0 + (now - this.start) * this.speedup;
  }

  step(now: number): void {
    const pts = this.trace.points;
    const tn = this.traceNow(now);
    this.online = tn >= pts[0]!.t && this.i < pts.length;
  }

  due(now: number): boolean {
    return this.i < this.trace.points.length && this.traceNow(now) >= this.trace.points[this.i]!.t;
  }

  /** True once every point was replayed. */
  get done(): boolean {
    return this.i >= this.trace.points.length;
  }

  /** Starts the trace again from the beginning, `t0` mapped to `now`. */
  restart(now: number): void {
    this.i = 0;
    this.start = now;
  }

  ping(now: number): Ping {
    const pts = this.trace.points;
    // Skip reports that are already past (a slow tick): send the latest one due.
    while (this.i + 1 < pts.length && this.traceNow(now) >= pts[this.i + 1]!.t) this.i++;
    const p = pts[this.i]!;
    const prev = this.i > 0 ? pts[this.i - 1] : undefined;
    this.i++;
    let heading: number | undefined;
    if (prev) {
      const d = haversineMeters(prev.lat, prev.lon, p.lat, p.lon);
      this.speed = Math.min(30, d / Math.max(1, (p.t - prev.t) / 1000));
      if (d > 3) heading = bearing(prev.lat, prev.lon, p.lat, p.lon);
    }
    this.status = p.atStop ? 'available' : 'on_trip';
    return {
      id: this.id, lat: p.lat, lon: p.lon, ts: now, seq: ++this.seq,
      speed: Math.round(this.speed * 100) / 100, ...(heading !== undefined ? { heading } : {}),
      kind: this.kind, status: this.status, meta: { line: this.trace.line },
    };
  }
}
