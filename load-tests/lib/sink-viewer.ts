/**
 * A sink subscriber for the fan-out benchmark: a real socket.io connection to the tile rooms
 * (Engine.IO v4 over WebSocket, the rooms' MessagePack packets, the token in the CONNECT, a
 * `subscribe` with its ack) that, once subscribed, only counts the binary messages it receives
 * and never decodes them. The gateway does exactly the same work for it as for a MapClient
 * (same room, same frames, same socket writes); the load generator does far less: no
 * socket.io-client machinery, no MessagePack decoding, no per-entity work.
 *
 * Why: on a 2-core box the subscribers' processes share the cores with the gateways and Redis
 * they measure, and 1,000 MapClients decoding ≈ 23k frames/s take ≈ 0.6 core (docs/benchmarks.md).
 * With `--sample n` the fan-out scenario measures delivery latency on n MapClients spread over
 * the tiles and gateways, and fills the rest of the audience with sinks, which still count
 * their frames so that a starved subscriber shows. Not a client for applications: use
 * src/clients/map-client.ts (which the sampled subscribers are).
 */
import WebSocket from 'ws';
import { Packr, Unpackr } from 'msgpackr';
import { SOCKET_PATH, type SubscribeAck } from '../../src/protocol/rooms.js';

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false });

/** Socket.IO packet types (socket.io-parser PacketType). */
const CONNECT = 0;
const EVENT = 2;
const ACK = 3;
const CONNECT_ERROR = 4;

interface SioPacket { type: number; nsp?: string; data?: unknown; id?: number }

/** The namespace CONNECT a sink sends on Engine.IO's open: the rooms' MessagePack packet with the token. */
export const sinkConnectPacket = (token: string): Buffer => packr.pack({ type: CONNECT, nsp: '/', data: { token } });

/** The `subscribe` event a sink sends once connected (ack id 1). */
export const sinkSubscribePacket = (tiles: string[]): Buffer => packr.pack({ type: EVENT, nsp: '/', data: ['subscribe', { tiles }], id: 1 });

export class SinkViewer {
  /** Binary messages received after the subscribe was acknowledged (room frames; counted only while `counting`). */
  frames = 0;
  counting = false;
  private subscribed = false;
  private pendingAck: ((p: SioPacket) => void) | undefined;

  private constructor(private readonly ws: WebSocket) {}

  /** Opens the WebSocket, sends the CONNECT with the token on Engine.IO's open, resolves on the server's CONNECT. */
  static connect(url: string, token: string, timeoutMs = 10_000): Promise<SinkViewer> {
    const wsUrl = `${url.replace(/^http/, 'ws').replace(/\/$/, '')}${SOCKET_PATH}/?EIO=4&transport=websocket`;
    const ws = new WebSocket(wsUrl, { perMessageDeflate: false });
    const sink = new SinkViewer(ws);
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (err?: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) { ws.terminate(); reject(err); } else resolve(sink);
      };
      const timer = setTimeout(() => settle(new Error(`sink: socket.io connect timed out after ${timeoutMs} ms`)), timeoutMs);
      ws.on('error', (err) => settle(err));
      ws.on('close', (code) => settle(new Error(`sink: closed during the handshake (${code})`)));
      ws.on('message', (data: Buffer, isBinary) => {
        if (!isBinary) {
          // Engine.IO control frames: open (answered with the namespace CONNECT) and the server's ping.
          const t = data[0];
          if (t === 0x30) ws.send(sinkConnectPacket(token));
          else if (t === 0x32) ws.send('3');
          return;
        }
        if (sink.subscribed) {
          if (sink.counting) sink.frames++;
          return;
        }
        const p = unpackr.unpack(data) as SioPacket;
        if (p.type === CONNECT) settle();
        else if (p.type === CONNECT_ERROR) settle(new Error(`sink: connect refused: ${JSON.stringify(p.data)}`));
        else if (p.type === ACK) sink.pendingAck?.(p);
      });
    });
  }

  /** Subscribes to tiles; from its ack on, every binary message is a room frame and is only counted. */
  subscribeTiles(tiles: string[], timeoutMs = 10_000): Promise<SubscribeAck> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.pendingAck = undefined; reject(new Error(`sink: subscribe not acknowledged within ${timeoutMs} ms`)); }, timeoutMs);
      this.pendingAck = (p) => {
        clearTimeout(timer);
        this.pendingAck = undefined;
        const ack = (p.data as unknown[])[0] as SubscribeAck;
        this.subscribed = ack.ok;
        resolve(ack);
      };
      this.ws.send(sinkSubscribePacket(tiles));
    });
  }

  close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      this.ws.once('close', () => resolve());
      this.ws.close();
    });
  }
}
