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
 * moving an entity back in time) and `left` deletes. Deltas that arrive while a request for the
 * tile is in flight are also kept aside and applied again on top of its snapshot (the snapshot
 * may have been read before them), so an entity that left meanwhile does not come back. Frames
 * of tiles the client neither holds nor has asked for are dropped. The client holds what the
 * server's acks say, applied in request order (an ack older than one already applied is
 * ignored). After a reconnect the per-tile and followed state is cleared, and the client re-sends
 * its tiles, viewport and follows; the server answers with fresh snapshots. What fails is sent
 * again after a pause (`resubscribeFailed` event), what is refused is dropped.
 */
import { io, type Socket } from 'socket.io-client';
import { Unpackr } from 'msgpackr';
import type {
  ClientToServerEvents, EntityUpdate, FollowAck, LeftEntity, ServerToClientEvents, SubscribeAck, TileAggregate,
} from '../protocol/rooms.js';
import { SOCKET_PATH, unpackEntity, type PackedEntity } from '../protocol/rooms.js';
import { roomsParser } from '../protocol/rooms-parser.js';
import { tileKey, tilesInBBox } from '../geo/tiles.js';

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
  /** First pause before re-sending what failed after a reconnect (doubles up to retryMaxMs). Default 500 ms. */
  retryMinMs?: number;
  /** Longest pause between retries (re-subscribing, and reconnecting after a refused handshake). Default 10 s. */
  retryMaxMs?: number;
  /**
   * Engine.IO transports, in order. Default `['websocket']`; `['polling', 'websocket']` starts
   * on HTTP long-polling and upgrades (for networks that block WebSockets), `['polling']` stays there.
   */
  transports?: ('websocket' | 'polling')[];
}

/** A subscription that could not be re-sent after a reconnect. */
export interface ResubscribeFailure {
  request: 'subscribe' | 'viewport' | 'follow';
  /** The tiles, the viewport, or the followed entity id. */
  target: string[] | { bbox: Bbox; zoom: number } | string;
  /** The ack's code (UNAVAILABLE, TOO_MANY_TILES, FORBIDDEN, …), or TIMEOUT when no ack came. */
  code: string;
  message: string;
  /** True: sent again after `retryInMs`. False: refused for good, the client no longer holds it. */
  retrying: boolean;
  retryInMs?: number;
  /** 1 for the re-send right after the reconnect, then 2, 3, … */
  attempt: number;
}

export interface MapClientEvents {
  /** A tile's live entities at (re)subscribe time; the tile's state was replaced by them (plus the deltas that arrived meanwhile). */
  snapshot: (tile: string, entities: EntityUpdate[]) => void;
  /** Changed entities of a tile; `receivedAt` = Date.now() on arrival (latency = receivedAt - u.ts). */
  update: (tile: string, updates: EntityUpdate[], receivedAt: number) => void;
  left: (tile: string, left: LeftEntity[]) => void;
  aggregates: (tile: string, agg: TileAggregate) => void;
  /** A followed entity moved (also sent once at follow time when it is live). */
  entity: (id: string, update: EntityUpdate, receivedAt: number) => void;
  entityLeft: (id: string, reason: string) => void;
  /** Connected again after a drop; subscriptions were re-sent (acks of the first attempt, failures included). */
  reconnected: (acks: SubscribeAck[]) => void;
  /** Re-sending a subscription after a reconnect failed (see ResubscribeFailure). */
  resubscribeFailed: (failure: ResubscribeFailure) => void;
  /**
   * The server refused a handshake after connect() had succeeded (a token from the provider
   * expired or lost its scope, …). socket.io-client gives up then; with a token provider the
   * client tries again after a pause (`retrying`), with a fixed token it stays disconnected.
   */
  refused: (error: MapConnectError, retrying: boolean) => void;
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
type Frame = { left: false; list: EntityUpdate[] } | { left: true; list: LeftEntity[] };
/** A tile named by requests in flight: its deltas are kept to be applied again on top of its snapshot. */
interface PendingTile { requests: number; frames: Frame[] }

const unpackr = new Unpackr({ useRecords: false });
const decode = <T>(payload: Uint8Array | ArrayBuffer): T =>
  unpackr.unpack(payload instanceof Uint8Array ? payload : new Uint8Array(payload)) as T;

/** Codes after which re-sending the same request cannot succeed. */
const FINAL_CODES = new Set(['BAD_REQUEST', 'TOO_MANY_TILES', 'FORBIDDEN']);
const failure = (err: unknown): { ok: false; code: string; message: string } =>
  ({ ok: false, code: 'TIMEOUT', message: err instanceof Error ? err.message : String(err) });
/** socket.io-client's ack timeout: the request was sent, and the server may still apply it. */
const isAckTimeout = (err: unknown): boolean => err instanceof Error && err.message === 'operation has timed out';

function applyUpdates(m: Map<string, EntityUpdate>, list: readonly EntityUpdate[]): void {
  for (const u of list) {
    const cur = m.get(u.id);
    if (!cur || cur.ts <= u.ts) m.set(u.id, u);
  }
}

function applyLeft(m: Map<string, EntityUpdate>, list: readonly LeftEntity[]): void {
  for (const l of list) {
    const cur = m.get(l.id);
    // a 'moved' left older than what we hold (it came back in) is ignored
    if (cur && (l.reason === 'expired' || cur.ts <= l.ts)) m.delete(l.id);
  }
}

export class MapClient {
  private readonly listeners = new Map<keyof MapClientEvents, Set<(...args: never[]) => void>>();
  private readonly state = new Map<string, Map<string, EntityUpdate>>();
  private readonly aggs = new Map<string, TileAggregate>();
  private readonly followedState = new Map<string, EntityUpdate>();
  /** What the server holds for us (as its acks said), and what to re-send after a reconnect. */
  private readonly tiles = new Set<string>();
  private viewportTiles = new Set<string>();
  private viewport: { bbox: Bbox; zoom: number } | undefined;
  private readonly follows = new Set<string>();
  /** Tiles and entity ids named by requests in flight. */
  private readonly pending = new Map<string, PendingTile>();
  private readonly pendingFollows = new Map<string, number>();
  /** Viewport requests in flight (latest last): the latest one is what a reconnect re-sends. */
  private readonly viewportRequests: { seq: number; bbox: Bbox; zoom: number }[] = [];
  /** Requests are numbered; an ack older than one already applied to the same tile (or the viewport) is ignored. */
  private seq = 0;
  private viewportSeq = 0;
  private readonly tileSeq = new Map<string, number>();
  /** Connections so far; what is confirmed on the current one. */
  private epoch = 0;
  private confirmed = { tiles: new Set<string>(), viewport: false, follows: new Set<string>() };
  private refusals = 0;
  private connectedOnce = false;
  private closed = false;

  private constructor(
    readonly socket: Socket<ServerToClientEvents, ClientToServerEvents>,
    private readonly opts: Required<MapClientOptions>,
    private readonly tokenProvided: boolean,
  ) {
    socket.on('snapshot', (tile, payload) => {
      if (!this.holds(tile) && this.viewportRequests.length === 0) return; // dropped meanwhile
      const list = decode<PackedEntity[]>(payload).map(unpackEntity);
      if (this.opts.keepState) {
        const m = new Map(list.map((u) => [u.id, u]));
        // Deltas since the request was sent may be newer than the snapshot's read: apply them again.
        for (const f of this.pending.get(tile)?.frames ?? []) {
          if (f.left) applyLeft(m, f.list);
          else applyUpdates(m, f.list);
        }
        this.state.set(tile, m);
      }
      this.emit('snapshot', tile, list);
    });
    socket.on('update', (tile, payload) => {
      const receivedAt = Date.now();
      if (!this.holds(tile)) return;
      const list = decode<PackedEntity[]>(payload).map(unpackEntity);
      if (this.opts.keepState) {
        const p = this.pending.get(tile);
        p?.frames.push({ left: false, list });
        let m = this.state.get(tile);
        if (!m && !p) this.state.set(tile, (m = new Map()));
        if (m) applyUpdates(m, list);
      }
      this.emit('update', tile, list, receivedAt);
    });
    socket.on('left', (tile, payload) => {
      if (!this.holds(tile)) return;
      const list = decode<LeftEntity[]>(payload);
      if (this.opts.keepState) {
        this.pending.get(tile)?.frames.push({ left: true, list });
        const m = this.state.get(tile);
        if (m) applyLeft(m, list);
      }
      this.emit('left', tile, list);
    });
    socket.on('aggregates', (tile, payload) => {
      if (!this.holds(tile) && this.viewportRequests.length === 0) return;
      const agg = decode<TileAggregate>(payload);
      this.aggs.set(tile, agg);
      this.emit('aggregates', tile, agg);
    });
    socket.on('entity', (id, payload) => {
      const receivedAt = Date.now();
      if (!this.follows.has(id) && !this.pendingFollows.has(id)) return;
      const u = unpackEntity(decode<PackedEntity>(payload));
      const cur = this.followedState.get(id);
      if (!cur || cur.ts <= u.ts) this.followedState.set(id, u);
      this.emit('entity', id, u, receivedAt);
    });
    socket.on('entityLeft', (id, reason) => {
      if (!this.follows.has(id) && !this.pendingFollows.has(id)) return;
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
    socket.on('connect_error', (err: Error & { data?: { code?: string } }) => {
      // Before the first connection connect() reports refusals; transport errors are retried by socket.io-client.
      if (!this.connectedOnce || this.closed || !err.data?.code) return;
      // A refused handshake ends socket.io-client's reconnection: a token provider may have a
      // better token next time, a fixed token will not.
      const retrying = this.opts.reconnect && this.tokenProvided;
      this.emit('refused', new MapConnectError(err.data.code, err.message), retrying);
      if (retrying) {
        const pause = Math.min(this.opts.retryMaxMs, this.opts.retryMinMs * 2 ** Math.min(this.refusals++, 16));
        setTimeout(() => { if (!this.closed && !socket.connected) socket.connect(); }, pause).unref();
      }
    });
    socket.on('connect', () => {
      this.refusals = 0;
      if (!this.connectedOnce) { this.connectedOnce = true; return; }
      // Nothing held before the drop is known to be true any more: fresh snapshots will tell.
      const epoch = ++this.epoch;
      this.confirmed = { tiles: new Set(), viewport: false, follows: new Set() };
      this.state.clear();
      this.aggs.clear();
      this.followedState.clear();
      for (const p of this.pending.values()) p.frames = [];
      void this.resubscribe(epoch);
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
      retryMinMs: options.retryMinMs ?? 500,
      retryMaxMs: options.retryMaxMs ?? 10_000,
      transports: options.transports ?? ['websocket'],
    };
    const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io(url, {
      path: SOCKET_PATH, parser: roomsParser, transports: opts.transports, auth: typeof token === 'string' ? { token } : (cb: (data: object) => void) => {
        Promise.resolve().then(token).then((t) => cb({ token: t }), () => cb({}));
      }, forceNew: opts.forceNew,
      reconnection: opts.reconnect, reconnectionDelay: 200, reconnectionDelayMax: 2000, timeout: opts.connectTimeoutMs,
    });
    const client = new MapClient(socket, opts, typeof token !== 'string');
    return new Promise((resolve, reject) => {
      // Only until connect() settles: later refusals are the client's (event `refused`).
      const settle = (): void => {
        clearTimeout(timer);
        socket.off('connect', onConnect);
        socket.off('connect_error', onError);
      };
      const fail = (e: MapConnectError): void => {
        settle();
        client.closed = true;
        socket.close();
        reject(e);
      };
      const onConnect = (): void => { settle(); resolve(client); };
      const onError = (err: Error & { data?: { code?: string } }): void => {
        // A refused handshake (middleware error) carries data.code; transport errors retry.
        if (err.data?.code || !opts.reconnect) fail(new MapConnectError(err.data?.code ?? 'CONNECT_FAILED', err.message));
      };
      const timer = setTimeout(() => fail(new MapConnectError('TIMEOUT', `no connection to ${url} in ${opts.connectTimeoutMs} ms`)), opts.connectTimeoutMs);
      socket.on('connect', onConnect);
      socket.on('connect_error', onError);
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
    const seq = ++this.seq;
    try {
      return await this.inFlight(tiles, async () => {
        const ack = await this.socket.timeout(this.opts.ackTimeoutMs).emitWithAck('subscribe', { tiles });
        if (ack.ok) {
          for (const t of ack.tiles) {
            this.confirmed.tiles.add(t);
            if (seq <= (this.tileSeq.get(t) ?? 0)) continue; // a later unsubscribe was applied already
            this.tileSeq.set(t, seq);
            this.tiles.add(t);
          }
        }
        return ack;
      });
    } catch (err) {
      // Timed out here, applied there later: the server would go on sending tiles this client
      // does not hold. Undo it (the server runs a socket's requests in order, so this comes after).
      if (this.mayUndo(err)) this.dropUnheld(tiles);
      throw err;
    }
  }

  /** Replaces the viewport (bbox [w,s,e,n] + zoom); tiles that left the viewport are dropped. */
  async subscribeViewport(bbox: Bbox, zoom: number): Promise<SubscribeAck> {
    const seq = ++this.seq;
    const req = { seq, bbox, zoom };
    this.viewportRequests.push(req);
    const found = tilesInBBox(bbox, zoom, 4096);
    const named = found ? found.map(tileKey) : [];
    let timedOut = false;
    try {
      return await this.inFlight(named, async () => {
        const ack = await this.socket.timeout(this.opts.ackTimeoutMs).emitWithAck('viewport', { bbox, zoom });
        if (ack.ok && seq > this.viewportSeq) {
          this.viewportSeq = seq;
          this.confirmed.viewport = true;
          const old = this.viewportTiles;
          this.viewportTiles = new Set<string>(ack.tiles);
          this.viewport = { bbox, zoom };
          for (const t of old) if (!this.holds(t)) this.forget(t);
        }
        return ack;
      });
    } catch (err) {
      timedOut = this.mayUndo(err);
      throw err;
    } finally {
      this.viewportRequests.splice(this.viewportRequests.indexOf(req), 1);
      if (this.viewportRequests.length === 0) {
        // Snapshots taken in while a viewport was in flight, of tiles it did not end up holding.
        for (const t of [...this.state.keys(), ...this.aggs.keys()]) if (!this.holds(t)) this.forget(t);
        // The server may still switch to the viewport this client gave up on: put back the one it holds.
        if (timedOut) this.restoreViewport(named);
      }
    }
  }

  /**
   * A request that failed with `err` may still be applied by the server: it timed out on a
   * connection that is still up (a request cut by a disconnect died with that server socket,
   * and the next connection gets only what the client holds).
   */
  private mayUndo(err: unknown): boolean {
    return isAckTimeout(err) && !this.closed && this.socket.connected;
  }

  /** After a viewport request timed out: the held viewport sent again, or (none held) the timed-out one's tiles dropped. */
  private restoreViewport(timedOutTiles: string[]): void {
    if (this.viewport) {
      void this.subscribeViewport(this.viewport.bbox, this.viewport.zoom).catch(() => undefined);
      return;
    }
    this.dropUnheld(timedOutTiles);
  }

  /** Unsubscribes, on the server, those of `tiles` the client does not hold (nor names in a request in flight). */
  private dropUnheld(tiles: readonly string[]): void {
    const unheld = tiles.filter((t) => !this.holds(t));
    if (unheld.length > 0) void this.unsubscribe(unheld).catch(() => undefined);
  }

  /** Drops tiles (default: every tile and the viewport, including those of requests in flight). */
  async unsubscribe(tiles?: string[]): Promise<SubscribeAck> {
    const seq = ++this.seq;
    const list = tiles ?? [...new Set([...this.tiles, ...this.viewportTiles, ...this.pending.keys()])];
    if (!tiles) {
      // Whatever viewport ack comes back meanwhile is older than this: never applied.
      this.viewportSeq = seq;
      this.viewport = undefined;
      this.viewportTiles = new Set<string>();
      this.confirmed.viewport = true;
    }
    if (list.length === 0) return { ok: true, tiles: [] };
    const ack = await this.socket.timeout(this.opts.ackTimeoutMs).emitWithAck('unsubscribe', { tiles: list });
    if (ack.ok) {
      for (const t of list) {
        if (seq > (this.tileSeq.get(t) ?? 0)) {
          this.tileSeq.set(t, seq);
          this.tiles.delete(t);
        }
        if (seq > this.viewportSeq) this.viewportTiles.delete(t);
        if (!this.holds(t)) this.forget(t);
      }
    }
    this.pruneSeqs();
    return ack;
  }

  /** Follows one entity (token claim `follow` must list it, or scope `admin`). */
  async followEntity(id: string): Promise<FollowAck> {
    this.pendingFollows.set(id, (this.pendingFollows.get(id) ?? 0) + 1);
    let timedOut = false;
    try {
      const ack = await this.socket.timeout(this.opts.ackTimeoutMs).emitWithAck('follow', { id });
      if (ack.ok) {
        this.follows.add(id);
        this.confirmed.follows.add(id);
      }
      return ack;
    } catch (err) {
      timedOut = this.mayUndo(err);
      throw err;
    } finally {
      const n = (this.pendingFollows.get(id) ?? 1) - 1;
      if (n > 0) this.pendingFollows.set(id, n);
      else this.pendingFollows.delete(id);
      if (!this.follows.has(id) && !this.pendingFollows.has(id)) {
        this.followedState.delete(id);
        // Timed out here, maybe applied there later: undo it on the server.
        if (timedOut) void this.unfollowEntity(id).catch(() => undefined);
      }
    }
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

  /** Tiles currently subscribed (explicit + viewport; after a reconnect, also those still being re-sent). */
  subscribedTiles(): string[] {
    return [...new Set([...this.tiles, ...this.viewportTiles])];
  }

  /** Entities followed (after a reconnect, also those still being re-sent). */
  followedEntities(): string[] {
    return [...this.follows];
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

  /** A tile whose frames are wanted: held, or named by a request in flight. */
  private holds(tile: string): boolean {
    return this.tiles.has(tile) || this.viewportTiles.has(tile) || this.pending.has(tile);
  }

  private forget(tile: string): void {
    this.state.delete(tile);
    this.aggs.delete(tile);
  }

  /** Runs a request naming `tiles`: their frames are kept while it is in flight; whatever is not held after it is forgotten. */
  private async inFlight<T>(tiles: readonly string[], fn: () => Promise<T>): Promise<T> {
    for (const t of tiles) {
      const p = this.pending.get(t);
      if (p) p.requests++;
      else this.pending.set(t, { requests: 1, frames: [] });
    }
    try {
      return await fn();
    } finally {
      for (const t of tiles) {
        const p = this.pending.get(t);
        if (p && --p.requests <= 0) this.pending.delete(t);
        if (!this.holds(t)) this.forget(t);
      }
      this.pruneSeqs();
    }
  }

  /** With nothing in flight, per-tile sequence numbers of tiles not held are of no use. */
  private pruneSeqs(): void {
    if (this.pending.size > 0 || this.tileSeq.size <= this.tiles.size) return;
    for (const t of this.tileSeq.keys()) if (!this.tiles.has(t)) this.tileSeq.delete(t);
  }

  private live(epoch: number): boolean {
    return !this.closed && this.epoch === epoch && this.socket.connected;
  }

  /**
   * After a reconnect: re-sends the tiles, the viewport and the follows not yet confirmed on
   * this connection, each on its own (one failure does not stop the others). What failed is
   * reported (`resubscribeFailed`) and sent again after a pause that doubles up to retryMaxMs,
   * until it succeeds, the connection drops (the next one starts over) or the client closes.
   * What the server refuses for good (TOO_MANY_TILES, FORBIDDEN, …) is dropped.
   */
  private async resubscribe(epoch: number): Promise<void> {
    let pause = this.opts.retryMinMs;
    for (let attempt = 1; this.live(epoch); attempt++) {
      const acks: SubscribeAck[] = [];
      let retry = false;
      const report = (request: ResubscribeFailure['request'], target: ResubscribeFailure['target'], ack: { code: string; message: string }, drop: () => void): void => {
        const retrying = !FINAL_CODES.has(ack.code);
        if (retrying) retry = true;
        else drop();
        this.emit('resubscribeFailed', { request, target, code: ack.code, message: ack.message, retrying, ...(retrying ? { retryInMs: pause } : {}), attempt });
      };

      const tiles = [...this.tiles].filter((t) => !this.confirmed.tiles.has(t));
      if (tiles.length > 0) {
        const ack = await this.subscribeTiles(tiles).catch(failure);
        acks.push(ack);
        if (!ack.ok) {
          report('subscribe', tiles, ack, () => {
            for (const t of tiles) { this.tiles.delete(t); if (!this.holds(t)) this.forget(t); }
          });
        }
      }
      if (!this.live(epoch)) return;

      const v = this.viewportRequests.at(-1) ?? this.viewport;
      if (v && !this.confirmed.viewport) {
        const { bbox, zoom } = v;
        const ack = await this.subscribeViewport(bbox, zoom).catch(failure);
        acks.push(ack);
        if (!ack.ok && !this.confirmed.viewport) {
          report('viewport', { bbox, zoom }, ack, () => {
            // Nothing of a viewport is held on this connection: drop it.
            const old = this.viewportTiles;
            this.viewport = undefined;
            this.viewportTiles = new Set();
            for (const t of old) if (!this.holds(t)) this.forget(t);
          });
        }
      }
      if (!this.live(epoch)) return;

      for (const id of [...this.follows].filter((f) => !this.confirmed.follows.has(f))) {
        const ack = await this.followEntity(id).catch(failure);
        if (!this.live(epoch)) return;
        if (!ack.ok) report('follow', id, ack, () => { this.follows.delete(id); this.followedState.delete(id); });
      }

      if (attempt === 1) this.emit('reconnected', acks);
      if (!retry || !this.live(epoch)) return;
      await new Promise((r) => setTimeout(r, pause).unref());
      pause = Math.min(this.opts.retryMaxMs, pause * 2);
    }
  }
}
