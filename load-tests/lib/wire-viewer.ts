/**
 * A map viewer for the load generators that speaks the tile rooms' wire protocol by hand over
 * `ws`, as load-tests/k6/map-viewers.js does in k6 (which has no socket.io client): Engine.IO v4
 * control frames as text (`0{…}` open, the server's ping `2` answered with `3`), and every
 * Socket.IO packet one binary message, MessagePack `{ type, nsp, data, id? }` as the rooms'
 * parser (socket.io-msgpack-parser) writes it. Per room frame it does what MapClient does
 * (decode the payload, unpack every entity, note the arrival time) without socket.io-client's
 * per-packet machinery (manager, emitters, reconnection, buffering), which costs ≈ 24 µs per
 * frame (load-tests/map-client-cost.ts): on a 2-core box that shares the cores with the gateways
 * that is most of a core at the fan-out benchmark's size. Not a client for applications: no
 * reconnection, no state, no aggregates or follows. Use src/clients/map-client.ts for that.
 */
import WebSocket from 'ws';
import { Packr, Unpackr } from 'msgpackr';
import { SOCKET_PATH, unpackEntity, type EntityUpdate, type PackedEntity, type SubscribeAck } from '../../src/protocol/rooms.js';

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false });

/** Socket.IO packet types (socket.io-parser PacketType). */
const CONNECT = 0;
const DISCONNECT = 1;
const EVENT = 2;
const ACK = 3;
const CONNECT_ERROR = 4;

interface SioPacket { type: number; nsp?: string; data?: unknown; id?: number }

/** The handshake was refused (`code` from the server's CONNECT_ERROR, e.g. UNAUTHORIZED). */
export class WireConnectError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

export type WireUpdateListener = (tile: string, updates: EntityUpdate[], receivedAt: number) => void;

export class WireViewer {
  private nextAckId = 1;
  private readonly acks = new Map<number, { resolve: (data: unknown[]) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private updateListener: WireUpdateListener | undefined;
  /** Snapshots received (entities are not kept). */
  snapshots = 0;

  private constructor(private readonly ws: WebSocket, private readonly ackTimeoutMs: number) {}

  /** Opens the WebSocket, answers Engine.IO's open with a CONNECT carrying the token, resolves on the server's CONNECT. */
  static connect(url: string, token: string, o: { connectTimeoutMs?: number; ackTimeoutMs?: number } = {}): Promise<WireViewer> {
    const wsUrl = `${url.replace(/^http/, 'ws').replace(/\/$/, '')}${SOCKET_PATH}/?EIO=4&transport=websocket`;
    const ws = new WebSocket(wsUrl, { perMessageDeflate: false });
    const viewer = new WireViewer(ws, o.ackTimeoutMs ?? 10_000);
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (err?: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) { ws.terminate(); reject(err); } else resolve(viewer);
      };
      const timer = setTimeout(() => settle(new Error(`socket.io connect timed out after ${o.connectTimeoutMs ?? 10_000} ms`)), o.connectTimeoutMs ?? 10_000);
      ws.on('error', (err) => settle(err));
      ws.on('close', (code) => { settle(new Error(`closed during the handshake (${code})`)); viewer.failAcks(new Error(`socket closed (${code})`)); });
      ws.on('message', (data: Buffer, isBinary) => {
        if (!isBinary) {
          const t = data.toString('latin1', 0, 1);
          if (t === '0') ws.send(packr.pack({ type: CONNECT, nsp: '/', data: { token } }));
          else if (t === '2') ws.send('3');
          return;
        }
        const p = unpackr.unpack(data) as SioPacket;
        if (p.type === EVENT) viewer.onEvent(p.data as unknown[]);
        else if (p.type === ACK) viewer.onAck(p.id, p.data as unknown[]);
        else if (p.type === CONNECT) settle();
        else if (p.type === CONNECT_ERROR) {
          const d = p.data as { message?: string; data?: { code?: string } } | undefined;
          settle(new WireConnectError(d?.data?.code ?? 'CONNECT_ERROR', d?.message ?? 'connect refused'));
        } else if (p.type === DISCONNECT) ws.close();
      });
    });
  }

  /** Room frames (`update` events) of every subscribed tile; one listener. */
  onUpdate(fn: WireUpdateListener): void {
    this.updateListener = fn;
  }

  subscribeTiles(tiles: string[]): Promise<SubscribeAck> {
    return this.emitWithAck('subscribe', { tiles }).then((d) => d[0] as SubscribeAck);
  }

  close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      this.ws.once('close', () => resolve());
      this.ws.close();
    });
  }

  private emitWithAck(name: string, ...args: unknown[]): Promise<unknown[]> {
    const id = this.nextAckId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.acks.delete(id); reject(new Error(`${name}: no ack within ${this.ackTimeoutMs} ms`)); }, this.ackTimeoutMs);
      this.acks.set(id, { resolve, reject, timer });
      this.ws.send(packr.pack({ type: EVENT, nsp: '/', data: [name, ...args], id }));
    });
  }

  private onAck(id: number | undefined, data: unknown[]): void {
    const a = id === undefined ? undefined : this.acks.get(id);
    if (!a) return;
    this.acks.delete(id!);
    clearTimeout(a.timer);
    a.resolve(data);
  }

  private failAcks(err: Error): void {
    for (const a of this.acks.values()) { clearTimeout(a.timer); a.reject(err); }
    this.acks.clear();
  }

  private onEvent(data: unknown[]): void {
    const name = data[0];
    if (name === 'update') {
      const receivedAt = Date.now();
      const list = (unpackr.unpack(data[2] as Uint8Array) as PackedEntity[]).map(unpackEntity);
      this.updateListener?.(data[1] as string, list, receivedAt);
    } else if (name === 'snapshot') {
      this.snapshots++;
    }
  }
}
