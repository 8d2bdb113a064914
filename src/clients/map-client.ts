/**
 * A small typed map client for the socket.io tile rooms (WebSocket transport). Used by tests,
 * the map page logic and the benchmarks.
 *
 *   const m = await MapClient.connect('http://127.0.0.1:8080', token);
 *   await m.subscribeTiles(['15/15603/12257']);          // or m.subscribeViewport(bbox, 15)
 *   m.on('update', (tile, updates, receivedAt) => …);    // coalesced deltas, each with the ping's ts
 *   m.tileState('15/15603/12257');                       // Map id → latest EntityUpdate
 *   await m.close();
 *
 * State: per tile, the snapshot replaces what the client held, then `update` upserts (never
 * moving an entity back in time) and `left` deletes. After a reconnect the client re-sends its
 * tiles, viewport and follows automatically; the server answers with fresh snapshots, so the
 * state converges to the truth (whatever happened while disconnected is covered by the snapshot).
 */
import { io, type Socket } from 'socket.io-client';
import { Unpackr } from 'msgpackr';
import type {
  ClientToServerEvents, EntityUpdate, FollowAck, LeftEntity, ServerToClientEvents, SubscribeAck, TileAggregate,
} from '../protocol/rooms.js';
import { SOCKET_PATH, unpackEntity, type PackedEntity } from '../protocol/rooms.js';
import { roomsParser } from '../protocol/rooms-parser.js';

export type { EntityUpdate, LeftEntity, TileAggregate, SubscribeAck, FollowAck };

export interface MapClientOptions {
  /** Reject connect() if not connected within this time. Default 10 s. */
  connectTimeoutMs?: number;
  /** Reconnect automatically (and re-subscribe). Default true. */
  reconnect?: boolean;
  /** Per-ack timeout for subscribe/unsubscribe/follow. Default 10 s. */
  ackTimeoutMs?: number;
  /** Keep per-tile state maps (default true; a benchmark counting frames may turn it off). */
  keepState?: boolean;
  /** Use a fresh engine connection rather than socket.io-client's shared manager. Default true. */
  forceNew?: boolean;
}

export interface MapClientEvents {
  /** A tile's live entities at (re)subscribe time; the tile's state was replaced by them. */
  snapshot: (tile: string, entities: EntityUpdate[]) => void;
  /** Changed entities of a tile; `receivedAt` = Date.now() on arrival (latency = receivedAt - u.ts). */
  update: (tile: string, updates: EntityUpdate[], receivedAt: number) => void;
  left: (tile: string, left: LeftEntity[]) => void;
  aggregates: (tile: string, agg: TileAggregate) => void;
  /** A followed entity moved (also sent once at follow time when it is live). */
  entity: (id: string, update: EntityUpdate, receivedAt: number) => void;
  entityLeft: (id: string, reason: string) => void;
  /** Connected again after a drop; subscriptions were re-sent. */
  reconnected: (acks: SubscribeAck[]) => void;
  disconnect: (reason: string) => void;
}

/** The handshake was refused (code from the server, e.g. UNAUTHORIZED, FORBIDDEN). */
export class MapConnectError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

type Listener<K extends keyof MapClientEvents> = MapClientEvents[K];
type Bbox = [number, number, number, number];

const unpackr = new Unpackr({ useRecords: false });
const decode = <T>(payload: Uint8Array | ArrayBuffer): T =>
  unpackr.unpack(payload instanceof Uint8Array ? payload : new Uint8Array(payload)) as T;

export class MapClient {
  private readonly listeners = new Map<keyof MapClientEvents, Set<(...args: never[]) => void>>();
  private readonly state = new Map<string, Map<string, EntityUpdate>>();
  private readonly aggs = new Map<string, TileAggregate>();
  private readonly followedState = new Map<string, EntityUpdate>();
  /** What to re-send after a reconnect. */
  private readonly tiles = new Set<string>();
  private viewportTiles = new Set<string>();
  private viewport: { bbox: Bbox; zoom: number } | undefined;
  private readonly follows = new Set<string>();
  private connectedOnce = false;
  private closed = false;

  private constructor(readonly socket: Socket<ServerToClientEvents, ClientToServerEvents>, private readonly opts: Required<MapClientOptions>) {
    socket.on('snapshot', (tile, payload) => {
      const list = decode<PackedEntity[]>(payload).map(unpackEntity);
      if (this.opts.keepState) this.state.set(tile, new Map(list.map((u) => [u.id, u])));
      this.emit('snapshot', tile, list);
    });
    socket.on('update', (tile, payload) => {
      const receivedAt = Date.now();
      const list = decode<PackedEntity[]>(payload).map(unpackEntity);
      if (this.opts.keepState) {
        let m = this.state.get(tile);
        if (!m) this.state.set(tile, (m = new Map()));
        for (const u of list) {
          const cur = m.get(u.id);
          if (!cur || cur.ts <= u.ts) m.set(u.id, u);
        }
      }
      this.emit('update', tile, list, receivedAt);
    });
    socket.on('left', (tile, payload) => {
      const list = decode<LeftEntity[]>(payload);
      const m = this.state.get(tile);
      if (m) {
        for (const l of list) {
          const cur = m.get(l.id);
          // a 'moved' left older than what we hold (it came back in) is ignored
          if (cur && (l.reason === 'expired' || cur.ts <= l.ts)) m.delete(l.id);
        }
      }
      this.emit('left', tile, list);
    });
    socket.on('aggregates', (tile, payload) => {
      const agg = decode<TileAggregate>(payload);
      this.aggs.set(tile, agg);
      this.emit('aggregates', tile, agg);
    });
    socket.on('entity', (id, payload) => {
      const receivedAt = Date.now();
      const u = unpackEntity(decode<PackedEntity>(payload));
      const cur = this.followedState.get(id);
      if (!cur || cur.ts <= u.ts) this.followedState.set(id, u);
      this.emit('entity', id, u, receivedAt);
    });
    socket.on('entityLeft', (id, reason) => {
      this.followedState.delete(id);
      this.emit('entityLeft', id, reason);
    });
    socket.on('disconnect', (reason) => {
      this.emit('disconnect', reason);
      // The server dropped us on purpose (shutdown, too slow): socket.io-client does not retry
      // by itself then; reconnect after a jittered pause (to another gateway behind the LB).
      if (reason === 'io server disconnect' && this.opts.reconnect && !this.closed) {
        setTimeout(() => { if (!this.closed) socket.connect(); }, 200 + Math.floor(Math.random() * 800)).unref();
      }
    });
    socket.on('connect', () => {
      if (!this.connectedOnce) { this.connectedOnce = true; return; }
      void this.resubscribe().then((acks) => this.emit('reconnected', acks), () => undefined);
    });
  }

  /**
   * Connects with a token that has the `subscribe` scope; rejects with MapConnectError when
   * refused. `token` may be a function: it is called on every (re)connect, so a long-lived
   * client can hand over a fresh token (the server disconnects a socket when its token expires).
   */
  static connect(url: string, token: string | (() => string | Promise<string>), options: MapClientOptions = {}): Promise<MapClient> {
    const opts: Required<MapClientOptions> = {
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      reconnect: options.reconnect ?? true,
      ackTimeoutMs: options.ackTimeoutMs ?? 10_000,
      keepState: options.keepState ?? true,
      forceNew: options.forceNew ?? true,
    };
    const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io(url, {
      path: SOCKET_PATH, parser: roomsParser, transports: ['websocket'], auth: typeof token === 'string' ? { token } : (cb: (data: object) => void) => {
        Promise.resolve().then(token).then((t) => cb({ token: t }), () => cb({}));
      }, forceNew: opts.forceNew,
      reconnection: opts.reconnect, reconnectionDelay: 200, reconnectionDelayMax: 2000, timeout: opts.connectTimeoutMs,
    });
    const client = new MapClient(socket, opts);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { socket.close(); reject(new MapConnectError('TIMEOUT', `no connection to ${url} in ${opts.connectTimeoutMs} ms`)); }, opts.connectTimeoutMs);
      socket.once('connect', () => { clearTimeout(timer); resolve(client); });
      socket.once('connect_error', (err: Error & { data?: { code?: string } }) => {
        // A refused handshake (middleware error) carries data.code; transport errors retry.
        if (err.data?.code || !opts.reconnect) {
          clearTimeout(timer);
          socket.close();
          reject(new MapConnectError(err.data?.code ?? 'CONNECT_FAILED', err.message));
        }
      });
    });
  }

  on<K extends keyof MapClientEvents>(event: K, fn: Listener<K>): this {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn as (...args: never[]) => void);
    return this;
  }

  off<K extends keyof MapClientEvents>(event: K, fn: Listener<K>): this {
    this.listeners.get(event)?.delete(fn as (...args: never[]) => void);
    return this;
  }

  private emit<K extends keyof MapClientEvents>(event: K, ...args: Parameters<MapClientEvents[K]>): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const fn of set) (fn as unknown as (...a: Parameters<MapClientEvents[K]>) => void)(...args);
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  /** Adds tiles `z/x/y`; each gets a snapshot (or aggregates) then deltas. */
  async subscribeTiles(tiles: string[]): Promise<SubscribeAck> {
    const ack = await this.socket.timeout(this.opts.ackTimeoutMs).emitWithAck('subscribe', { tiles });
    if (ack.ok) for (const t of ack.tiles) this.tiles.add(t);
    return ack;
  }

  /** Replaces the viewport (bbox [w,s,e,n] + zoom); tiles that left the viewport are dropped. */
  async subscribeViewport(bbox: Bbox, zoom: number): Promise<SubscribeAck> {
    const ack = await this.socket.timeout(this.opts.ackTimeoutMs).emitWithAck('viewport', { bbox, zoom });
    if (ack.ok) {
      const next = new Set<string>(ack.tiles);
      for (const t of this.viewportTiles) if (!next.has(t) && !this.tiles.has(t)) this.forget(t);
      this.viewportTiles = next;
      this.viewport = { bbox, zoom };
    }
    return ack;
  }

  /** Drops tiles (default: every tile and the viewport). */
  async unsubscribe(tiles?: string[]): Promise<SubscribeAck> {
    const list = tiles ?? [...new Set([...this.tiles, ...this.viewportTiles])];
    if (!tiles) { this.viewport = undefined; this.viewportTiles = new Set<string>(); }
    if (list.length === 0) return { ok: true, tiles: [] };
    const ack = await this.socket.timeout(this.opts.ackTimeoutMs).emitWithAck('unsubscribe', { tiles: list });
    if (ack.ok) for (const t of list) { this.tiles.delete(t); this.viewportTiles.delete(t); this.forget(t); }
    return ack;
  }

  /** Follows one entity (token claim `follow` must list it, or scope `admin`). */
  async followEntity(id: string): Promise<FollowAck> {
    const ack = await this.socket.timeout(this.opts.ackTimeoutMs).emitWithAck('follow', { id });
    if (ack.ok) this.follows.add(id);
    return ack;
  }

  async unfollowEntity(id: string): Promise<FollowAck> {
    const ack = await this.socket.timeout(this.opts.ackTimeoutMs).emitWithAck('unfollow', { id });
    this.follows.delete(id);
    this.followedState.delete(id);
    return ack;
  }

  /** Latest known state of the entities in one tile (id → update). */
  tileState(tile: string): ReadonlyMap<string, EntityUpdate> {
    return this.state.get(tile) ?? new Map();
  }

  /** Every entity held, across tiles (an entity in several tiles appears once, latest ts). */
  entities(): Map<string, EntityUpdate> {
    const out = new Map<string, EntityUpdate>();
    for (const m of this.state.values()) {
      for (const u of m.values()) {
        const cur = out.get(u.id);
        if (!cur || cur.ts < u.ts) out.set(u.id, u);
      }
    }
    return out;
  }

  aggregates(tile: string): TileAggregate | undefined {
    return this.aggs.get(tile);
  }

  followed(id: string): EntityUpdate | undefined {
    return this.followedState.get(id);
  }

  /** Tiles currently subscribed (explicit + viewport). */
  subscribedTiles(): string[] {
    return [...new Set([...this.tiles, ...this.viewportTiles])];
  }

  /** Drops the connection as if the network failed (tests): socket.io-client reconnects. */
  simulateDrop(): void {
    (this.socket.io.engine as unknown as { close(): void } | undefined)?.close();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
  }

  private forget(tile: string): void {
    this.state.delete(tile);
    this.aggs.delete(tile);
  }

  private async resubscribe(): Promise<SubscribeAck[]> {
    const acks: SubscribeAck[] = [];
    const t = this.socket.timeout(this.opts.ackTimeoutMs);
    if (this.tiles.size > 0) acks.push(await t.emitWithAck('subscribe', { tiles: [...this.tiles] }));
    if (this.viewport) acks.push(await t.emitWithAck('viewport', this.viewport));
    for (const id of this.follows) await t.emitWithAck('follow', { id });
    return acks;
  }
}
