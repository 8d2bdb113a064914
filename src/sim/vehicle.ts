/**
 * One simulated vehicle, without I/O: how it drives (speed towards the road's limit, stops at
 * lights, waits for riders), when it pings, when its app drops offline and comes back, and
 * when it starts and ends trips. The fleet runner moves the clock and does the sending.
 */
import type { Ping } from '../protocol/ping.js';
import type { RoadWalker } from './walker.js';
import type { Rng } from './rng.js';

export const VEHICLE_KINDS = ['car', 'scooter', 'bike', 'van'] as const;
export type VehicleKind = (typeof VEHICLE_KINDS)[number];
export type VehicleStatus = 'available' | 'on_trip';

/** Top speed of each kind, m/s (the road limit caps it too). */
const KIND_MAX: Record<VehicleKind, number> = { car: 50 / 3.6, van: 45 / 3.6, scooter: 25 / 3.6, bike: 18 / 3.6 };
const ACCEL = 2; // m/s²
const DECEL = 3.5;

export interface VehicleOptions {
  /** Ping interval range (ms); each vehicle picks its own interval in it, with jitter. */
  minIntervalMs: number;
  maxIntervalMs: number;
  /** Mean time online before the app drops (s); 0 = never drops. */
  meanOnlineSeconds: number;
  /** How long a drop lasts (s). Longer than the liveness TTL makes the vehicle vanish from maps. */
  offlineSeconds: [number, number];
  /** Mean length of a trip and of the wait between trips (s). */
  meanTripSeconds: number;
  meanIdleSeconds: number;
}

export const DEFAULT_VEHICLE_OPTIONS: VehicleOptions = {
  minIntervalMs: 1000, maxIntervalMs: 5000,
  meanOnlineSeconds: 300, offlineSeconds: [15, 90],
  meanTripSeconds: 240, meanIdleSeconds: 120,
};

export class SimVehicle {
  status: VehicleStatus;
  online = true;
  speed = 0;
  seq = 0;
  nextPingAt: number;
  readonly intervalMs: number;
  private target = 0;
  private holdUntil = 0;
  private offlineUntil = 0;
  private last: number;

  constructor(
    readonly id: string,
    readonly kind: VehicleKind,
    readonly walker: RoadWalker,
    private readonly rng: Rng,
    private readonly o: VehicleOptions,
    now: number,
  ) {
    this.status = rng.chance(0.4) ? 'on_trip' : 'available';
    this.intervalMs = Math.round(rng.range(o.minIntervalMs, o.maxIntervalMs));
    this.nextPingAt = now + rng.range(0, this.intervalMs);
    this.last = now;
    this.speed = this.cruise() * rng.range(0.3, 1);
    this.target = this.speed;
  }

  /** The speed it aims for on this road in this state. */
  private cruise(): number {
    const cap = Math.min(this.walker.limit, KIND_MAX[this.kind]);
    return cap * (this.status === 'on_trip' ? 0.85 : 0.6);
  }

  /** Moves the clock to `now`: drives, stops, changes status, drops offline or comes back. */
  step(now: number): void {
    const dt = Math.max(0, (now - this.last) / 1000);
    this.last = now;
    if (dt === 0) return;
    const p = (meanSeconds: number): boolean => meanSeconds > 0 && this.rng.chance(1 - Math.exp(-dt / meanSeconds));

    if (this.online && p(this.o.meanOnlineSeconds)) {
      this.online = false;
      this.offlineUntil = now + 1000 * this.rng.range(this.o.offlineSeconds[0], this.o.offlineSeconds[1]);
    } else if (!this.online && now >= this.offlineUntil) {
      this.online = true;
      this.nextPingAt = now;
    }
    if (this.status === 'on_trip' && p(this.o.meanTripSeconds)) {
      this.status = 'available';
      this.holdUntil = now + 1000 * this.rng.range(10, 40); // drop-off
    } else if (this.status === 'available' && p(this.o.meanIdleSeconds)) {
      this.status = 'on_trip';
      this.holdUntil = now + 1000 * this.rng.range(5, 20); // pick-up
    }

    if (now < this.holdUntil) this.target = 0;
    else if (p(25)) { // a red light or traffic about every 25 s of driving
      this.holdUntil = now + 1000 * this.rng.range(4, 25);
      this.target = 0;
    } else this.target = this.cruise() * this.rng.range(0.9, 1.1);

    const v0 = this.speed;
    const dv = this.target - v0;
    this.speed = dv >= 0 ? Math.min(this.target, v0 + ACCEL * dt) : Math.max(this.target, v0 - DECEL * dt);
    this.walker.advance(((v0 + this.speed) / 2) * dt);
  }

  /** True when online and its ping is due. */
  due(now: number): boolean {
    return this.online && now >= this.nextPingAt;
  }

  /** The ping to send now; schedules the next one. */
  ping(now: number): Ping {
    this.nextPingAt = now + this.intervalMs * this.rng.range(0.9, 1.1);
    const f = this.walker.fix();
    return {
      id: this.id,
      lat: round(f.lat, 7),
      lon: round(f.lon, 7),
      ts: now,
      seq: ++this.seq,
      speed: round(this.speed, 2),
      heading: f.heading,
      accuracy: round(this.rng.range(3, 12), 1),
      kind: this.kind,
      status: this.status,
    };
  }
}

function round(v: number, digits: number): number {
  const m = 10 ** digits;
  return Math.round(v * m) / m;
}
