/**
 * Fan-out sinks in one native process (load-tests/sink/sink.c, built here with the system's C
 * compiler on first use): the same socket.io subscribers as lib/sink-viewer.ts (same packets,
 * built by sinkConnectPacket / sinkSubscribePacket, same rooms, same frames from the gateways),
 * but a received frame costs one read() and a header parse instead of 12-20 µs of Node.
 *
 * It speaks the load generators' commands (`open-viewers`, `measure`, `close`) like a forked
 * lib/conn-worker.ts, so lib/viewer-load.ts holds it as one more Gen, and its CPU is counted with
 * the other subscribers' processes.
 */
import { execFileSync, spawn } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { projectRoot } from '../../src/config/load.js';
import type { WorkerCommand, WorkerReply } from './conn-worker.js';
import { benchToken } from './drivers.js';
import type { Gen } from './gen-proc.js';
import { trackChild } from './children.js';
import { sinkConnectPacket, sinkSubscribePacket } from './sink-viewer.js';

/**
 * The native sink's executable, compiled from load-tests/sink/sink.c when it is missing or older
 * than its source (`$CC`, default `cc`); `why` says what failed when there is none.
 */
export function nativeSinkBinary(): { path?: string; why?: string } {
  const src = join(projectRoot(), 'load-tests/sink/sink.c');
  const out = join(projectRoot(), 'dist/load-tests/sink/geoflux-sink');
  try {
    if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) return { path: out };
    mkdirSync(dirname(out), { recursive: true });
    execFileSync(process.env.CC ?? 'cc', ['-O2', '-Wall', '-o', out, src], { stdio: ['ignore', 'ignore', 'pipe'] });
    return { path: out };
  } catch (err) {
    const e = err as Error & { stderr?: Buffer };
    return { why: `could not build ${src}: ${(e.stderr?.toString() || e.message).trim().split('\n')[0]}` };
  }
}

/** host:port of a gateway URL, the host as an IPv4 address (what the native sink connects to). */
async function ipv4Of(url: string): Promise<string> {
  const u = new URL(url);
  const port = u.port || (u.protocol === 'https:' ? '443' : '80');
  if (u.protocol === 'https:') throw new Error(`native sinks speak plain WebSocket only: ${url} (use --sinks node)`);
  const { address } = await lookup(u.hostname.replace(/^\[|\]$/g, ''), { family: 4 });
  return `${address} ${port}`;
}

export interface NativeSinkOptions {
  /** > 0: once subscribed, the sinks read at most this often (sink.c `pace`). Default 0. */
  readEveryMs?: number;
  /** Sink i's token (default: a bench token with the `subscribe` scope). */
  token?: (i: number) => Promise<string>;
}

/** Starts a native sink process; it holds every sink of one `open-viewers`. */
export function nativeSinkGen(binary: string, o: NativeSinkOptions = {}): Gen {
  const tokenOf = o.token ?? ((i: number) => benchToken(`viewer-native-${i}`, ['subscribe']));
  const proc = trackChild(spawn(binary, [], { stdio: ['pipe', 'pipe', 'inherit'] }));
  const lines = createInterface({ input: proc.stdout! });
  const waiting: ((line: string) => void)[] = [];
  lines.on('line', (line) => waiting.shift()?.(line));
  proc.stdin!.on('error', () => undefined); // the process died: the pending ask times out and says so
  let tiles: string[] = [];

  const exchange = (text: string, prefix: string, timeoutMs: number): Promise<string> => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`native sinks: no '${prefix}' in ${timeoutMs} ms`)), timeoutMs);
    waiting.push((line) => {
      clearTimeout(t);
      if (line.startsWith(prefix)) resolve(line.slice(prefix.length).trim()); else reject(new Error(`native sinks: ${line}`));
    });
    proc.stdin!.write(text);
  });

  return {
    proc,
    async ask(c: WorkerCommand, timeoutMs: number): Promise<WorkerReply> {
      if (c.cmd === 'open-viewers') {
        tiles = c.tiles;
        const addr = await Promise.all(c.urls.map(ipv4Of));
        let text = '';
        for (let i = 0; i < c.tiles.length; i++) {
          text += `sink ${addr[c.gatewayOf[i]!]} ${sinkConnectPacket(await tokenOf(i)).toString('hex')} ${sinkSubscribePacket([c.tiles[i]!]).toString('hex')}\n`;
        }
        const [ok, failed, ...why] = (await exchange(`${text}open 64 10000\n`, 'opened', timeoutMs)).split(' ');
        await exchange(`pace ${o.readEveryMs ?? 0}\n`, 'paced', 10_000);
        return { type: 'opened', ok: Number(ok), failed: Number(failed), ...(why.length ? { firstError: why.join(' ') } : {}) };
      }
      if (c.cmd === 'measure') {
        const counts = (await exchange(`measure ${c.on ? 'on' : 'off'}\n`, 'measured', timeoutMs)).split(' ').filter(Boolean).map(Number);
        const perViewer = counts.flatMap((frames, i) => (frames >= 0 ? [{ tile: tiles[i]!, frames }] : []));
        return { type: 'measured', delayByGateway: [], updates: 0, frames: 0, sinks: perViewer.length, sinkFrames: perViewer.reduce((a, v) => a + v.frames, 0), perViewer };
      }
      if (c.cmd === 'close') {
        await exchange('close\n', 'closed', timeoutMs);
        return { type: 'closed' };
      }
      return { type: 'error', message: `native sinks: no command ${c.cmd}` };
    },
  };
}
