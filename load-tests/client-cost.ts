/**
 * What one driver frame costs the process that sends it, on this machine: CPU (user and
 * kernel) per frame of a load generator sending single-ping MessagePack frames at a fixed
 * rate and reading one ack per frame from a bare uWS ack server (lib/ack-server.ts, its own
 * process, no Redis). Two clients:
 *   driver  the project's DriverClient (`ws`), as the benchmarks' load generators use it;
 *   bare    a plain `net` socket writing WebSocket frames by hand (zero mask key) and reading
 *           acks: a floor for any Node.js client, measurement only.
 *
 *   npx tsc -p . && node dist/load-tests/client-cost.js [--mode driver|bare|both] [--conns 1000] [--rate 10000] [--seconds 10]
 *
 * Prints one JSON line per mode. The ingest benchmarks run their load generator on the same
 * two cores as the gateway and Redis; this tells how much of the machine that takes.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { Packr } from 'msgpackr';
import { parseCliArgs } from '../src/lifecycle/cli-args.js';
import { DriverClient } from '../src/clients/driver-client.js';
import { Vehicle } from './lib/drivers.js';
import { Latency } from './lib/hist.js';
import { startNodeChild } from './lib/stack.js';

const packr = new Packr({ useRecords: false });

const USAGE = `node dist/load-tests/client-cost.js [options]: CPU per single-ping frame of a load-generating client

  --mode driver|bare|both   DriverClient over ws, a bare net socket, or both (default both)
  --conns N                 sockets (default 1000)
  --rate N                  frames per second over all sockets (default 10000)
  --seconds N               measured seconds (default 10)`;

interface Sender { send(frame: Buffer): void }
type OnAck = (ms: number) => void;

async function driverSenders(port: number, n: number, onAck: OnAck): Promise<Sender[]> {
  const out: Sender[] = [];
  for (let i = 0; i < n; i += 100) {
    const batch = await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => DriverClient.connect(`ws://127.0.0.1:${port}`, undefined, { encoding: 'msgpack' })));
    for (const c of batch) out.push({ send: (f) => { const t = performance.now(); void c.sendRaw(f, true).then(() => onAck(performance.now() - t)); } });
  }
  return out;
}

/** One bare WebSocket client on a `net` socket: upgrade by hand, masked binary frames with a zero key. */
function bareSender(port: number, onAck: OnAck): Promise<Sender> {
  return new Promise((resolve, reject) => {
    const s: Socket = netConnect(port, '127.0.0.1');
    s.setNoDelay(true);
    const sentAt: number[] = [];
    let head = 0;
    let upgraded = false;
    let rest: Buffer | undefined;
    s.once('connect', () => s.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`));
    s.once('error', reject);
    s.on('data', (chunk: Buffer) => {
      let b = rest ? Buffer.concat([rest, chunk]) : chunk;
      rest = undefined;
      if (!upgraded) {
        const end = b.indexOf('\r\n\r\n');
        if (end < 0) { rest = b; return; }
        upgraded = true;
        b = b.subarray(end + 4);
        resolve({
          send(f) {
            const h = f.length < 126 ? 6 : 8;
            const out = Buffer.allocUnsafe(h + f.length);
            out[0] = 0x82;
            if (h === 6) out[1] = 0x80 | f.length; else { out[1] = 0x80 | 126; out.writeUInt16BE(f.length, 2); }
            out.writeUInt32BE(0, h - 4);
            f.copy(out, h);
            sentAt.push(performance.now());
            s.write(out);
          },
        });
      }
      let o = 0;
      while (b.length - o >= 2) {
        let len = b[o + 1]! & 127;
        let h = 2;
        if (len === 126) { if (b.length - o < 4) break; len = b.readUInt16BE(o + 2); h = 4; }
        if (b.length - o < h + len) break;
        const frame = b.subarray(o + h, o + h + len);
        o += h + len;
        if ((b[o - h - len]! & 15) === 2 && (packr.unpack(frame) as { type?: string }).type === 'ack') onAck(performance.now() - sentAt[head++]!);
      }
      if (o < b.length) rest = b.subarray(o);
      if (head > 4096) { sentAt.splice(0, head); head = 0; }
    });
  });
}

async function measure(mode: 'driver' | 'bare', port: number, conns: number, rate: number, seconds: number): Promise<Record<string, unknown>> {
  const lat = new Latency();
  const onAck: OnAck = (ms) => lat.record(ms);
  const senders = mode === 'driver' ? await driverSenders(port, conns, onAck) : await Promise.all(Array.from({ length: conns }, () => bareSender(port, onAck)));
  const vehicles = senders.map((_, i) => new Vehicle(`v${i}`));
  await new Promise((r) => setTimeout(r, 300));
  let sent = 0;
  let rr = 0;
  let due = 0;
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      if (now - t0 >= seconds * 1000) { clearInterval(timer); resolve(); return; }
      const target = Math.floor(((now - t0) / 1000) * rate);
      const wall = Date.now();
      for (; due < target; due++, sent++) {
        const i = rr++ % senders.length;
        senders[i]!.send(packr.pack(vehicles[i]!.next(wall, 100)));
      }
    }, 5);
  });
  const cpu = process.cpuUsage(c0);
  const secs = (performance.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, 300));
  const s = lat.summary();
  return {
    mode, conns, rate, frames: sent, acked: lat.count,
    userMicrosPerFrame: Math.round((cpu.user / sent) * 10) / 10,
    kernelMicrosPerFrame: Math.round((cpu.system / sent) * 10) / 10,
    cores: Math.round(((cpu.user + cpu.system) / 1e6 / secs) * 100) / 100,
    ackP50Ms: s.p50, ackP99Ms: s.p99,
  };
}

async function main(): Promise<void> {
  const values = parseCliArgs(USAGE, { mode: { type: 'string', default: 'both' }, conns: { type: 'string', default: '1000' }, rate: { type: 'string', default: '10000' }, seconds: { type: 'string', default: '10' } });
  if (!['driver', 'bare', 'both'].includes(values.mode!)) { process.stderr.write(`--mode must be driver, bare or both\n\n${USAGE}\n`); process.exit(2); }
  const [conns, rate, seconds] = [values.conns, values.rate, values.seconds].map(Number);
  if (![conns, rate, seconds].every((n) => Number.isFinite(n) && n! > 0)) { process.stderr.write(`--conns, --rate and --seconds must be positive numbers\n\n${USAGE}\n`); process.exit(2); }
  const modes = values.mode === 'both' ? (['driver', 'bare'] as const) : [values.mode as 'driver' | 'bare'];
  for (const m of modes) {
    // A fresh server per mode: each mode's sockets are closed by ending the server.
    const srv = startNodeChild('ack-server', 'dist/load-tests/lib/ack-server.js', {});
    try {
      const port = Number((await srv.waitForLog((l) => l.msg === 'ack listening')).port);
      console.log(JSON.stringify(await measure(m, port, conns!, rate!, seconds!)));
    } finally {
      await srv.stop();
    }
  }
  process.exit(0);
}

main().catch((err: unknown) => { console.error(err); process.exit(1); });
