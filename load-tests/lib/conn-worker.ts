/**
 * A load-generator child process for the connection-scale scenario: one process cannot hold
 * more sockets than its open-files limit, so the runner forks several of these. Commands over
 * the IPC channel: open (driver sockets + map clients), activity (pings at a rate while the
 * maps count updates; histograms come back HdrHistogram-encoded), close. The fan-out scenario
 * uses it too (open-viewers, measure): decoding hundreds of thousands of entity updates per
 * second must not stall the process that drives the pings and times their acks.
 */
import type { DriverClient } from '../../src/clients/driver-client.js';
import { closeDrivers, openDrivers, sendAtRate, type Vehicle } from './drivers.js';
import { closeViewers, openViewers, setMeasuring, starved, viewerDelay, viewerFrames, type ViewerStats } from './maps.js';

export type WorkerCommand =
  | { cmd: 'open-drivers'; url: string; drivers: number; driverOffset: number; perAddress: number; prefix: string }
  | { cmd: 'open-maps'; url: string; tiles: string[] }
  /** Fan-out: viewers over several gateways (viewer i on urls[gatewayOf[i]], a sink where sinkOf[i]), then measure on/off. */
  | { cmd: 'open-viewers'; urls: string[]; tiles: string[]; gatewayOf: number[]; sinkOf: boolean[] }
  | { cmd: 'measure'; on: boolean }
  | { cmd: 'activity'; rate: number; seconds: number; batch?: number; label?: string }
  | { cmd: 'close' };

export type WorkerReply =
  | { type: 'opened'; ok: number; failed: number; firstError?: string }
  | { type: 'activity'; ack: string; delay: string; pingsAccepted: number; frameFailures: number; errorCodes: Record<string, number>; updates: number; seconds: number; starved: number;
      framesSent: number; pingsSent: number; framesAcked: number; pingErrors: number; skipped: number }
  /** updates, frames: the MapClients'; sinks and their frames; perViewer: frames of each (both kinds). */
  | { type: 'measured'; delayByGateway: string[]; updates: number; frames: number; sinks: number; sinkFrames: number; perViewer: { tile: string; frames: number }[] }
  | { type: 'closed' }
  | { type: 'error'; message: string };

let clients: DriverClient[] = [];
let vehicles: Vehicle[] = [];
let viewers: ViewerStats | undefined;

const reply = (r: WorkerReply): void => { process.send?.(r); };

// The harness is gone (killed without a chance to stop us): nothing left to report to.
process.on('disconnect', () => process.exit(0));

process.on('message', (m: WorkerCommand) => {
  void (async () => {
    try {
      if (m.cmd === 'open-drivers') {
        const d = await openDrivers(m.url, m.drivers, { prefix: m.prefix, encoding: 'msgpack', concurrency: 100, perAddress: m.perAddress, deadlineMs: 240_000, indexOffset: m.driverOffset });
        clients = d.clients;
        vehicles = d.vehicles;
        reply({ type: 'opened', ok: d.clients.length, failed: d.failed, ...(d.firstError ? { firstError: d.firstError } : {}) });
      } else if (m.cmd === 'open-maps') {
        viewers = await openViewers([m.url], m.tiles, { concurrency: 32, deadlineMs: 240_000 });
        reply({ type: 'opened', ok: viewers.viewers.length, failed: viewers.failed, ...(viewers.firstError ? { firstError: viewers.firstError } : {}) });
      } else if (m.cmd === 'open-viewers') {
        viewers = await openViewers(m.urls, m.tiles, { concurrency: 32, deadlineMs: 240_000, gatewayOf: m.gatewayOf, sinkOf: m.sinkOf });
        reply({ type: 'opened', ok: viewers.viewers.length, failed: viewers.failed, ...(viewers.firstError ? { firstError: viewers.firstError } : {}) });
      } else if (m.cmd === 'measure') {
        if (!viewers) throw new Error('no viewers opened');
        setMeasuring(viewers, m.on);
        reply({
          type: 'measured', delayByGateway: viewers.delayByGateway.map((h) => h.encode()), updates: viewers.updates, frames: viewers.frames,
          sinks: viewers.viewers.filter((v) => v.sink).length,
          sinkFrames: viewers.viewers.reduce((a, v) => a + (v.sink ? v.sink.frames : 0), 0),
          perViewer: viewers.viewers.map((v) => ({ tile: v.tile, frames: viewerFrames(v) })),
        });
      } else if (m.cmd === 'activity') {
        if (viewers) setMeasuring(viewers, true);
        const s = await sendAtRate(clients, vehicles, { rate: m.rate, batch: m.batch ?? 1, seconds: m.seconds, label: m.label ?? `scale activity (pid ${process.pid})` });
        await new Promise((r) => setTimeout(r, 300));
        if (viewers) setMeasuring(viewers, false);
        reply({
          type: 'activity', ack: s.ack.encode(), delay: viewers ? viewerDelay(viewers).encode() : '', pingsAccepted: s.pingsAccepted, frameFailures: s.frameFailures,
          errorCodes: s.errorCodes, updates: viewers?.updates ?? 0, seconds: s.seconds, starved: viewers ? starved(viewers.viewers.map((v) => ({ tile: v.tile, frames: viewerFrames(v) }))).starved : 0,
          framesSent: s.framesSent, pingsSent: s.pingsSent, framesAcked: s.framesAcked, pingErrors: s.pingErrors, skipped: s.skipped,
        });
      } else if (m.cmd === 'close') {
        if (viewers) await closeViewers(viewers.viewers);
        await closeDrivers(clients);
        // Exit once the reply is out (sockets' timers may linger; a CPU profile is written on exit).
        process.send?.({ type: 'closed' } satisfies WorkerReply, undefined, {}, () => process.exit(0));
      }
    } catch (err) {
      reply({ type: 'error', message: (err as Error).message });
    }
  })();
});
