/**
 * Runs a simulated fleet against a gateway through the real driver protocol: one WebSocket and
 * one token per vehicle (DriverClient), a ping when each vehicle is due, the socket closed while
 * the vehicle's app is "offline" and opened again when it comes back.
 */
import type { Logger } from '../log/logger.js';
import type { Ping } from '../protocol/ping.js';
import { DriverClient, type DriverEncoding } from '../clients/driver-client.js';

/** What the runner needs from a simulated vehicle (road-following or trace replay). */
export interface SimEntity {
  readonly id: string;
  readonly kind: string;
  readonly status: string;
  readonly online: boolean;
  step(now: number): void;
  due(now: number): boolean;
  ping(now: number): Ping;
}

export interface FleetStats {
  vehicles: number;
  connected: number;
  online: number;
  onTrip: number;
  sent: number;
  acked: number;
  rejected: number;
  skipped: number;
  /** Successful connections (first ones and reconnections after an offline spell). */
  connects: number;
  /** Sockets closed by the simulator because the vehicle went offline. */
  offlineCloses: number;
  connectFailures: number;
  drops: number;
}

export interface FleetDeps {
  log: Logger;
  url: string;
  entities: SimEntity[];
  /** Token of one vehicle (ingest scope, sub = its id). */
  tokenFor(id: string): Promise<string>;
  encoding: DriverEncoding;
  /** Scheduler tick (ms). */
  tickMs?: number;
  /** Unacknowledged frames per vehicle before pings are skipped (backpressure). */
  maxInFlight?: number;
  /** Simultaneous connection attempts at start-up. */
  connectConcurrency?: number;
  /** Called after every tick (tests, sources that loop). */
  onTick?(now: number): void;
}

export interface Fleet {
  start(): Promise<void>;
  stop(): Promise<void>;
  stats(): FleetStats;
}

interface Slot {
  e: SimEntity;
  client?: DriverClient;
  connecting?: Promise<void>;
  retryAt: number;
  failures: number;
}

export function createFleet(d: FleetDeps): Fleet {
  const tickMs = d.tickMs ?? 200;
  const maxInFlight = d.maxInFlight ?? 4;
  const slots: Slot[] = d.entities.map((e) => ({ e, retryAt: 0, failures: 0 }));
  const counts = { sent: 0, acked: 0, rejected: 0, skipped: 0, connects: 0, offlineCloses: 0, connectFailures: 0, drops: 0 };
  let timer: NodeJS.Timeout | undefined;
  let stopping: Promise<void> | undefined;
  let running = false;

  const connect = (s: Slot): Promise<void> => {
    s.connecting ??= (async () => {
      try {
        const client = await DriverClient.connect(d.url, await d.tokenFor(s.e.id), { encoding: d.encoding, connectTimeoutMs: 10_000 });
        if (!running || !s.e.online) { await client.close(); return; }
        s.client = client;
        s.failures = 0;
        counts.connects++;
        void client.closed.then((info) => {
          if (s.client !== client) return;
          s.client = undefined;
          if (running && info.code !== 1000) {
            counts.drops++;
            d.log.debug({ id: s.e.id, code: info.code, reason: info.reason }, 'vehicle socket closed by the server');
          }
        });
      } catch (err) {
        counts.connectFailures++;
        s.failures++;
        s.retryAt = Date.now() + Math.min(30_000, 500 * 2 ** Math.min(6, s.failures));
        if (s.failures === 1 || s.failures % 10 === 0) d.log.warn({ id: s.e.id, err: (err as Error).message, failures: s.failures }, 'vehicle could not connect');
      } finally {
        s.connecting = undefined;
      }
    })();
    return s.connecting;
  };

  const send = (s: Slot, now: number): void => {
    const c = s.client!;
    if (c.inFlight >= maxInFlight) { counts.skipped++; s.e.ping(now); return; }
    counts.sent++;
    c.send(s.e.ping(now)).then((r) => {
      counts.acked += r.count;
      counts.rejected += r.errors.length;
      for (const e of r.errors) d.log.warn({ id: s.e.id, code: e.code, message: e.message }, 'ping rejected');
    }, () => { /* socket closed before the ack: counted as a drop */ });
  };

  const tick = (): void => {
    const now = Date.now();
    for (const s of slots) {
      s.e.step(now);
      if (!s.e.online) {
        if (s.client) { const c = s.client; s.client = undefined; counts.offlineCloses++; void c.close(1000, 'offline'); }
        continue;
      }
      if (!s.client) {
        if (!s.connecting && now >= s.retryAt) void connect(s);
        continue;
      }
      if (s.e.due(now)) send(s, now);
    }
    d.onTick?.(now);
  };

  return {
    async start() {
      running = true;
      const concurrency = d.connectConcurrency ?? 50;
      const now = Date.now();
      for (const s of slots) s.e.step(now);
      const queue = slots.filter((s) => s.e.online);
      await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, async () => {
        for (let s = queue.shift(); s && running; s = queue.shift()) await connect(s);
      }));
      if (!running) return;
      timer = setInterval(tick, tickMs);
      tick();
    },
    stop() {
      stopping ??= (async () => {
        running = false;
        if (timer) clearInterval(timer);
        await Promise.allSettled(slots.map((s) => s.connecting));
        await Promise.allSettled(slots.map(async (s) => {
          const c = s.client;
          s.client = undefined;
          if (!c) return;
          // Let the last acks arrive (bounded), then close normally.
          for (let i = 0; i < 20 && c.inFlight > 0; i++) await new Promise((r) => setTimeout(r, 50));
          await c.close(1000, 'simulator stopping');
        }));
      })();
      return stopping;
    },
    stats() {
      let connected = 0, online = 0, onTrip = 0;
      for (const s of slots) {
        if (s.client) connected++;
        if (s.e.online) online++;
        if (s.e.online && s.e.status === 'on_trip') onTrip++;
      }
      return { vehicles: slots.length, connected, online, onTrip, ...counts };
    },
  };
}
