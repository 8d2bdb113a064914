/**
 * What one room frame costs a map client process, on this machine: CPU (user and kernel) per
 * `update` frame received by C socket.io clients in this process from a bare room server in its
 * own process (lib/room-server.ts: uWS + socket.io, no Redis), with the rooms' packet format
 * (socket.io-msgpack-parser: one WebSocket message per event) and with socket.io's default
 * parser (a text header plus a binary attachment: two messages). Each client does what
 * MapClient does with a frame: decode the MessagePack payload, unpack every entity, note the
 * arrival time. The third measurement, `sink`, is the fan-out benchmark's sink subscriber
 * (lib/sink-viewer.ts, `npm run bench -- --sample n`): the rooms' format over `ws`, frames
 * counted, not decoded. Alternates the three `--rounds` times.
 *
 *   npx tsc -p . && node dist/load-tests/map-client-cost.js [--clients 200] [--entities 12] [--interval-ms 25] [--seconds 10] [--rounds 2]
 *
 * Prints one JSON line per measurement. Why: docs/rooms.md, "Wire format".
 */
import { io, type Socket } from 'socket.io-client';
import { Unpackr } from 'msgpackr';
import { parseCliArgs } from '../src/lifecycle/cli-args.js';
import { SOCKET_PATH, unpackEntity, type PackedEntity } from '../src/protocol/rooms.js';
import { roomsParser } from '../src/protocol/rooms-parser.js';
import { startNodeChild } from './lib/stack.js';
import { SinkViewer } from './lib/sink-viewer.js';

const USAGE = `node dist/load-tests/map-client-cost.js [options]: CPU per room frame of a map client process

  --clients N       socket.io clients in this process (default 200)
  --entities N      entities per frame (default 12, as in the fan-out benchmark)
  --interval-ms N   one frame to every client every N ms (default 25: rooms.coalesceMs)
  --seconds N       measured seconds per round and format (default 10)
  --rounds N        alternations of the three clients (default 2)`;

type Format = 'msgpack' | 'default' | 'sink';
const unpackr = new Unpackr({ useRecords: false });

async function measure(format: Format, o: { clients: number; entities: number; intervalMs: number; seconds: number }): Promise<Record<string, unknown>> {
  const srv = startNodeChild('room-server', 'dist/load-tests/lib/room-server.js', {}, ['--parser', format === 'sink' ? 'msgpack' : format, '--entities', String(o.entities), '--interval-ms', String(o.intervalMs)]);
  const sockets: Socket[] = [];
  const sinks: SinkViewer[] = [];
  try {
    const port = Number((await srv.waitForLog((l) => l.msg === 'room server listening')).port);
    let frames = 0;
    let entities = 0;
    let counting = false;
    let lastArrival = 0;
    for (let i = 0; format === 'sink' && i < o.clients; i++) {
      const sink = await SinkViewer.connect(`http://127.0.0.1:${port}`, 'no-auth-here');
      await sink.subscribeTiles(['14/7823/6170']);
      sinks.push(sink);
    }
    for (let i = 0; format !== 'sink' && i < o.clients; i++) {
      const s = io(`http://127.0.0.1:${port}`, { path: SOCKET_PATH, transports: ['websocket'], forceNew: true, reconnection: false, ...(format === 'msgpack' ? { parser: roomsParser } : {}) });
      s.on('update', (_tile: string, payload: Uint8Array) => {
        lastArrival = Date.now();
        const list = (unpackr.unpack(payload) as PackedEntity[]).map(unpackEntity);
        if (!counting) return;
        frames++;
        entities += list.length;
      });
      sockets.push(s);
      await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('connect_error', reject); });
    }
    await new Promise((r) => setTimeout(r, 1000));
    counting = true;
    for (const sink of sinks) sink.counting = true;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, o.seconds * 1000));
    const cpu = process.cpuUsage(c0);
    const secs = (performance.now() - t0) / 1000;
    counting = false;
    if (format === 'sink') frames = sinks.reduce((a, x) => a + x.frames, 0);
    const f = Math.max(1, frames);
    return {
      format, clients: o.clients, entitiesPerFrame: Math.round((entities / f) * 10) / 10, framesPerSec: Math.round(frames / secs),
      expectedFramesPerSec: Math.round((o.clients * 1000) / o.intervalMs),
      userMicrosPerFrame: Math.round((cpu.user / f) * 10) / 10,
      kernelMicrosPerFrame: Math.round((cpu.system / f) * 10) / 10,
      cores: Math.round(((cpu.user + cpu.system) / 1e6 / secs) * 100) / 100,
      ...(format === 'sink' ? {} : { lastArrivalAgoMs: Date.now() - lastArrival }),
    };
  } finally {
    for (const s of sockets) s.close();
    await Promise.all(sinks.map((x) => x.close()));
    await srv.stop();
  }
}

async function main(): Promise<void> {
  const v = parseCliArgs(USAGE, { clients: { type: 'string', default: '200' }, entities: { type: 'string', default: '12' }, 'interval-ms': { type: 'string', default: '25' }, seconds: { type: 'string', default: '10' }, rounds: { type: 'string', default: '2' } });
  const [clients, entities, intervalMs, seconds, rounds] = [v.clients, v.entities, v['interval-ms'], v.seconds, v.rounds].map(Number);
  if (![clients, entities, intervalMs, seconds, rounds].every((n) => Number.isInteger(n) && n! > 0)) {
    process.stderr.write(`every option must be a positive integer\n\n${USAGE}\n`);
    process.exit(2);
  }
  for (let r = 0; r < rounds!; r++) {
    for (const format of ['msgpack', 'default', 'sink'] as const) {
      console.log(JSON.stringify({ round: r + 1, ...(await measure(format, { clients: clients!, entities: entities!, intervalMs: intervalMs!, seconds: seconds! })) }));
    }
  }
  process.exit(0);
}

main().catch((err: unknown) => { console.error(err); process.exit(1); });
