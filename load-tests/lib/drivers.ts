/**
 * Shared driver-side load: tokens, plausible paths, opening many sockets (spread over
 * loopback source addresses) and an open-loop fixed-rate sender with ack latency.
 */
import { mintHmacToken, type Scope } from '../../src/auth/tokens.js';
import { DriverClient, type DriverEncoding } from '../../src/clients/driver-client.js';
import type { Ping } from '../../src/protocol/ping.js';
import { BENCH_ISSUER, BENCH_JWT_SECRET } from './stack.js';
import { Latency } from './hist.js';
import { progress } from './report.js';

export const BENCH_TENANT = 'bench';
/** Lisbon: the city the simulated fleet drives in. */
export const CITY = { lat: 38.7223, lon: -9.1393 };

export function benchToken(sub: string, scopes: Scope[], fleet = false): Promise<string> {
  return mintHmacToken(BENCH_JWT_SECRET, { sub, tenant: BENCH_TENANT, scopes, ttlSeconds: 6 * 3600, issuer: BENCH_ISSUER, fleet });
}

/** A vehicle moving along a plausible path: constant-ish speed, slowly turning heading. */
export class Vehicle {
  lat: number;
  lon: number;
  heading: number;
  speed: number;
  seq = 0;
  lastTs = 0;

  constructor(readonly id: string, rnd: () => number = Math.random, radiusKm = 5, center = CITY) {
    const r = radiusKm * Math.sqrt(rnd());
    const a = rnd() * 2 * Math.PI;
    this.lat = center.lat + (r / 111.32) * Math.cos(a);
    this.lon = center.lon + (r / (111.32 * Math.cos((center.lat * Math.PI) / 180))) * Math.sin(a);
    this.heading = rnd() * 360;
    this.speed = 5 + rnd() * 12;
  }

  /** Advances `dtMs` and returns the ping for the new position, taken at `ts`. */
  next(ts: number, dtMs: number): Ping {
    const d = (this.speed * dtMs) / 1000;
    const h = (this.heading * Math.PI) / 180;
    this.lat += (d * Math.cos(h)) / 111_320;
    this.lon += (d * Math.sin(h)) / (111_320 * Math.cos((this.lat * Math.PI) / 180));
    this.heading = (this.heading + (Math.random() - 0.5) * 10 + 360) % 360;
    this.lastTs = Math.max(ts, this.lastTs + 1);
    return {
      id: this.id, lat: round6(this.lat), lon: round6(this.lon), ts: this.lastTs, seq: ++this.seq,
      speed: Math.round(this.speed * 10) / 10, heading: Math.round(this.heading), kind: 'car', status: 'available',
    };
  }
}

const round6 = (x: number): number => Math.round(x * 1e6) / 1e6;

/** 127.0.0.1, 127.0.0.2, …: source addresses, `perAddress` sockets each. */
export function localAddressFor(i: number, perAddress = 20_000): string {
  return `127.0.0.${1 + Math.floor(i / perAddress)}`;
}

export interface OpenedDrivers { clients: DriverClient[]; vehicles: Vehicle[]; failed: number; firstError?: string }

/**
 * Opens `n` driver sockets with bounded concurrency; failures are counted, not thrown. With
 * `fleet` = k > 1 each socket is a fleet feed (token claim `fleet`) for k vehicles: vehicles
 * k·i … k·i+k−1 belong to socket i (see RateOptions.fleet). With several URLs, socket i
 * connects to `url[i mod their count]` (a load balancer's round robin).
 */
export async function openDrivers(url: string | readonly string[], n: number, o: { prefix: string; encoding: DriverEncoding; concurrency?: number; perAddress?: number; deadlineMs?: number; indexOffset?: number; fleet?: number }): Promise<OpenedDrivers> {
  const k = Math.max(1, o.fleet ?? 1);
  const clients: DriverClient[] = [];
  const vehicles: Vehicle[] = [];
  let failed = 0;
  let firstError: string | undefined;
  let next = 0;
  const deadline = Date.now() + (o.deadlineMs ?? 120_000);
  let lastLog = Date.now();
  const worker = async (): Promise<void> => {
    while (next < n && Date.now() < deadline) {
      const i = (o.indexOffset ?? 0) + next++;
      const id = `${o.prefix}-${i}`;
      try {
        const token = await benchToken(id, ['ingest'], k > 1);
        const c = await DriverClient.connect(typeof url === 'string' ? url : url[i % url.length]!, token, { encoding: o.encoding, connectTimeoutMs: 20_000, ws: { localAddress: localAddressFor(i, o.perAddress) } });
        clients.push(c);
        if (k === 1) vehicles.push(new Vehicle(id));
        else for (let j = 0; j < k; j++) vehicles.push(new Vehicle(`${id}-${j}`));
      } catch (err) {
        failed++;
        firstError ??= (err as Error).message;
        if (failed > Math.min(50, Math.max(5, n * 0.05))) { next = n; }
      }
      if (Date.now() - lastLog > 3000) { lastLog = Date.now(); progress(`  connected ${clients.length}/${n} (${failed} failed)`); }
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency ?? 64, n) }, worker));
  return { clients, vehicles, failed, ...(firstError ? { firstError } : {}) };
}

export async function closeDrivers(clients: DriverClient[]): Promise<void> {
  const chunk = 500;
  for (let i = 0; i < clients.length; i += chunk) {
    await Promise.all(clients.slice(i, i + chunk).map((c) => Promise.race([c.close().catch(() => undefined), new Promise((r) => setTimeout(r, 4000))])));
  }
}

export interface SendStats {
  framesSent: number;
  pingsSent: number;
  framesAcked: number;
  pingsAccepted: number;
  pingErrors: number;
  frameFailures: number;
  /** Frames not sent because the socket already had `maxInFlight` unacknowledged frames. */
  skipped: number;
  seconds: number;
  /** Seconds of warm-up actually sent (warmupSeconds, or longer until the acks kept pace). */
  warmupSeconds: number;
  /** The warm-up hit warmupMaxExtraSeconds before the acks came at the offered rate. */
  warmupCapped: boolean;
  ack: Latency;
  errorCodes: Record<string, number>;
}

/** Nothing sent yet. */
export function emptySendStats(): SendStats {
  return { framesSent: 0, pingsSent: 0, framesAcked: 0, pingsAccepted: 0, pingErrors: 0, frameFailures: 0, skipped: 0, seconds: 0, warmupSeconds: 0, warmupCapped: false, ack: new Latency(), errorCodes: {} };
}

export interface RateOptions {
  /** Offered pings per second across all sockets. */
  rate: number;
  /** Pings per frame (1 = one ping per frame, sent as an object, not an array). */
  batch: number;
  seconds: number;
  maxInFlight?: number;
  label: string;
  /** Stop early once this many pings were sent (closed-loop backlogs). */
  stopAfterPings?: number;
  /**
   * Fleet feeds (openDrivers' `fleet`): each socket carries this many vehicles and every frame
   * holds the current ping of each of them (then `batch` must equal it). Default 1: a frame
   * holds `batch` successive pings of the socket's own vehicle.
   */
  fleet?: number;
  /** Called for every ping built (vehicle index, ping), e.g. to follow tracer entities. */
  onPing?: (i: number, p: Ping) => void;
  /**
   * Send this long first without counting it (then `seconds` more are measured), and call
   * `onMeasureStart` when the measured part begins: the traffic goes on unbroken, so the
   * measured window opens on a system in its steady state, not on a restart after a pause.
   * The warm-up goes on past `warmupSeconds` (when it is 1 s or more) until the system is in its
   * steady state: the acks of the last second came at the offered rate, ±5 %. Slower means a
   * backlog is building (a start-up stall: JIT, cold rooms, 80 sockets starting at once), faster
   * that one is draining; either would otherwise spill into the measured part. Only throughput
   * decides, not latency. At most `warmupMaxExtraSeconds` (default 10) more.
   */
  warmupSeconds?: number;
  warmupMaxExtraSeconds?: number;
  onMeasureStart?: () => void;
}

/**
 * Open-loop sender: every 5 ms it sends the frames that are due at the target rate,
 * round-robin over the sockets; latency is from send to the frame's ack.
 */
export async function sendAtRate(clients: DriverClient[], vehicles: Vehicle[], o: RateOptions): Promise<SendStats> {
  const s = emptySendStats();
  if (clients.length === 0) return s;
  const framesPerSec = o.rate / o.batch;
  const maxInFlight = o.maxInFlight ?? 32;
  const perSocketHz = framesPerSec / clients.length;
  const fleet = Math.max(1, o.fleet ?? 1);
  if (fleet > 1 && fleet !== o.batch) throw new Error(`fleet feeds: batch (${o.batch}) must equal fleet (${fleet})`);
  // Time between two pings of one vehicle.
  const dtMs = Math.max(1, Math.round(1000 / Math.max(fleet > 1 ? perSocketHz : perSocketHz * o.batch, 0.001)));
  const t0 = performance.now();
  const warmupMs = Math.max(0, (o.warmupSeconds ?? 0) * 1000);
  const warmupMaxMs = warmupMs + Math.max(0, o.warmupMaxExtraSeconds ?? 10) * 1000;
  /** Set when the measured part starts (at once without a warm-up). */
  let end = warmupMs > 0 ? Infinity : t0 + o.seconds * 1000;
  /** (time, pings answered so far: accepted or refused) during the warm-up, every ≥ 100 ms, the last ≈ 2.5 s of them. */
  const answered = (): number => s.pingsAccepted + s.pingErrors;
  const acked: [number, number][] = [[t0, 0]];
  /** Steady: the acks of the last second came at the offered rate, ±5 % (no backlog building or draining). */
  const steady = (now: number): boolean => {
    for (let i = acked.length - 1; i >= 0; i--) {
      const [t, n] = acked[i]!;
      if (now - t < 1000) continue;
      const ratio = ((answered() - n) * 1000) / (now - t) / o.rate;
      return ratio >= 0.95 && ratio <= 1.05;
    }
    return true; // warmed up for less than a second: nothing to compare
  };
  /** Frames sent before this time are warm-up: counted only until then (the progress lines), then dropped. */
  let markAt = warmupMs > 0 ? Infinity : t0;
  let label = warmupMs > 0 ? `${o.label} warm-up` : o.label;
  /** A warm-up frame answered after the measured part began: not counted. */
  const answeredLate = (sentAt: number): boolean => markAt !== Infinity && sentAt < markAt;
  let rr = 0;
  let due = 0;
  let lastProgress = t0;
  let lastAcked = 0;
  const inflight = new Set<Promise<unknown>>();
  /** Acks since the last progress line: the line shows this window's p99 and max beside the run's. */
  const win = new Latency();
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now();
      if (now >= end || (o.stopAfterPings !== undefined && s.pingsSent >= o.stopAfterPings)) { clearInterval(timer); resolve(); return; }
      if (markAt === Infinity) {
        if (now - acked[acked.length - 1]![0] >= 100) acked.push([now, answered()]);
        while (acked.length > 25) acked.shift();
      }
      if (markAt === Infinity && now - t0 >= warmupMs && (steady(now) || now - t0 >= warmupMaxMs)) {
        markAt = now;
        end = now + o.seconds * 1000;
        s.warmupSeconds = (now - t0) / 1000;
        s.warmupCapped = !steady(now);
        label = o.label;
        Object.assign(s, { framesSent: 0, pingsSent: 0, framesAcked: 0, pingsAccepted: 0, pingErrors: 0, frameFailures: 0, skipped: 0, errorCodes: {} });
        s.ack.reset();
        win.reset();
        lastProgress = now;
        lastAcked = 0;
        o.onMeasureStart?.();
      }
      const target = Math.floor(((now - t0) / 1000) * framesPerSec);
      let budget = Math.min(target - due, 5000);
      due += Math.max(0, target - due);
      const wall = Date.now();
      let idle = 0;
      while (budget-- > 0) {
        const i = rr++ % clients.length;
        const c = clients[i]!;
        if (c.inFlight >= maxInFlight) {
          s.skipped++;
          // Every socket is full: the rest of this tick's budget would be skipped too.
          if (++idle >= clients.length) { s.skipped += budget; break; }
          continue;
        }
        idle = 0;
        let frame: Ping | Ping[];
        const v = vehicles[i]!;
        if (fleet > 1) {
          const arr: Ping[] = new Array(fleet);
          for (let k = 0; k < fleet; k++) { arr[k] = vehicles[i * fleet + k]!.next(wall, dtMs); o.onPing?.(i * fleet + k, arr[k]!); }
          frame = arr;
        } else if (o.batch === 1) { frame = v.next(wall, dtMs); o.onPing?.(i, frame); }
        else {
          const arr: Ping[] = new Array(o.batch);
          for (let k = 0; k < o.batch; k++) { arr[k] = v.next(wall - (o.batch - 1 - k) * dtMs, dtMs); o.onPing?.(i, arr[k]!); }
          frame = arr;
        }
        const sentAt = performance.now();
        s.framesSent++;
        s.pingsSent += o.batch;
        const p = c.send(frame).then((r) => {
          if (answeredLate(sentAt)) return;
          const ms = performance.now() - sentAt;
          s.ack.record(ms);
          win.record(ms);
          s.framesAcked++;
          s.pingsAccepted += r.count;
          for (const e of r.errors) { s.pingErrors++; s.errorCodes[e.code] = (s.errorCodes[e.code] ?? 0) + 1; }
        }, (err: unknown) => {
          if (answeredLate(sentAt)) return;
          s.frameFailures++;
          const closeCode = (err as { close?: { code?: number } }).close?.code;
          const code = closeCode !== undefined ? `socket closed ${closeCode}` : (err as Error).constructor?.name ?? 'Error';
          s.errorCodes[code] = (s.errorCodes[code] ?? 0) + 1;
        });
        inflight.add(p);
        void p.finally(() => inflight.delete(p));
      }
      if (now - lastProgress >= 2000) {
        const sec = (now - lastProgress) / 1000;
        const acked = s.pingsAccepted;
        const sm = s.ack.summary();
        const w = win.summary();
        win.reset();
        progress(`  ${label}: t=${((now - (markAt === Infinity ? t0 : markAt)) / 1000).toFixed(0)}s accepted ${Math.round((acked - lastAcked) / sec)}/s ack p50 ${sm.p50} p99 ${sm.p99} ms (last ${sec.toFixed(0)}s: p99 ${w.p99} max ${w.max}) in flight ${inflight.size} skipped ${s.skipped} errors ${s.pingErrors + s.frameFailures}`);
        lastProgress = now;
        lastAcked = acked;
      }
    };
    const timer = setInterval(tick, 5);
  });
  s.seconds = (performance.now() - (markAt === Infinity ? t0 : markAt)) / 1000;
  // Let the last acks arrive (bounded).
  await Promise.race([Promise.allSettled([...inflight]), new Promise((r) => setTimeout(r, 5000))]);
  return s;
}
