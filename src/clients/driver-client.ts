/**
 * A small typed driver client for `/v1/ingest` over the `ws` package. Used by tests, the
 * simulator and the load tests.
 *
 *   const c = await DriverClient.connect('ws://127.0.0.1:8080', token, { encoding: 'msgpack' });
 *   const r = await c.send({ id: 'car-1', lat: 41.15, lon: -8.61, ts: Date.now(), seq: 1 });
 *   // r = { type: 'ack', frame: 1, seq: 1, count: 1, errors: [] }
 *   await c.close();
 *
 * The server answers every data frame with exactly one `ack` (count = pings made durable,
 * 0 when all were rejected), in the order the frames were sent; the error frames about a
 * frame carry its number and arrive before its ack.
 */
import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import { Packr } from 'msgpackr';
import type { Ping } from '../protocol/ping.js';
import type { AckFrame, ErrorFrame, ServerFrame, WelcomeFrame } from '../protocol/messages.js';

export type DriverEncoding = 'json' | 'msgpack';

export interface DriverClientOptions {
  encoding?: DriverEncoding;
  /** How the token travels at upgrade: Authorization header (default) or `?token=`. */
  tokenIn?: 'header' | 'query';
  /** Reject connect() when the welcome frame does not arrive in time. Default 10 s. */
  connectTimeoutMs?: number;
  /** Called for every error frame (also emitted as the `errorFrame` event). */
  onError?: (f: ErrorFrame) => void;
  /** Passed to `ws` (e.g. `perMessageDeflate: false`, `maxPayload`). */
  ws?: WebSocket.ClientOptions;
}

/** The ack of one sent frame with the error frames the server sent about it. */
export interface SendResult extends AckFrame {
  errors: ErrorFrame[];
}

export interface CloseInfo { code: number; reason: string }

/** Upgrade refused (HTTP status and error code from the JSON body when present). */
export class DriverConnectError extends Error {
  constructor(readonly status: number, readonly code: string | undefined, message: string) {
    super(message);
  }
}

/** The socket closed before the frame was acknowledged. */
export class DriverClosedError extends Error {
  constructor(readonly close: CloseInfo) {
    super(`ingest socket closed (${close.code}${close.reason ? ` ${close.reason}` : ''}) before ack`);
  }
}

interface Pending { frame: number; errors: ErrorFrame[]; resolve: (r: SendResult) => void; reject: (e: unknown) => void }

const packr = new Packr({ useRecords: false });

function ingestUrl(base: string, token: string, tokenIn: 'header' | 'query'): string {
  const u = new URL(base.replace(/^http/, 'ws'));
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/v1/ingest';
  if (tokenIn === 'query') u.searchParams.set('token', token);
  return u.toString();
}

export interface DriverClientEvents {
  errorFrame: [ErrorFrame];
  close: [CloseInfo];
}

export class DriverClient extends EventEmitter<DriverClientEvents> {
  readonly encoding: DriverEncoding;
  /** Set once connected. */
  welcome!: WelcomeFrame;
  /** Resolves when the socket is closed (by either side). */
  readonly closed: Promise<CloseInfo>;
  private readonly pending: Pending[] = [];
  private head = 0;
  private frames = 0;
  private closeInfo: CloseInfo | undefined;
  private resolveClosed!: (c: CloseInfo) => void;

  private constructor(readonly ws: WebSocket, opts: DriverClientOptions) {
    super();
    this.encoding = opts.encoding ?? 'json';
    this.closed = new Promise((resolve) => { this.resolveClosed = resolve; });
    if (opts.onError) this.on('errorFrame', opts.onError);
  }

  /** Opens the socket and resolves after the server's `welcome` frame. */
  static connect(url: string, token: string | undefined, opts: DriverClientOptions = {}): Promise<DriverClient> {
    const tokenIn = opts.tokenIn ?? 'header';
    const headers: Record<string, string> = {};
    if (token && tokenIn === 'header') headers.authorization = `Bearer ${token}`;
    const ws = new WebSocket(ingestUrl(url, token ?? '', token ? tokenIn : 'header'), { perMessageDeflate: false, ...opts.ws, headers: { ...headers, ...opts.ws?.headers } });
    const client = new DriverClient(ws, opts);
    return new Promise<DriverClient>((resolve, reject) => {
      let settled = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        ws.terminate();
        reject(err);
      };
      const timer = setTimeout(() => fail(new Error('no welcome frame in time')), opts.connectTimeoutMs ?? 10_000);
      ws.on('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (b: Buffer) => { body += b.toString(); });
        res.on('end', () => {
          let code: string | undefined;
          try { code = (JSON.parse(body) as { error?: { code?: string } }).error?.code; } catch { /* not JSON */ }
          fail(new DriverConnectError(res.statusCode ?? 0, code, `upgrade refused: ${res.statusCode} ${code ?? body}`));
        });
      });
      ws.on('error', (err) => fail(err));
      ws.on('close', (code, reason) => {
        client.onClose(code, reason.toString());
        fail(new DriverClosedError({ code, reason: reason.toString() }));
      });
      ws.on('message', (data, isBinary) => {
        const frame = client.decode(data as Buffer, isBinary);
        if (!frame) return;
        if (frame.type === 'welcome' && !settled) {
          client.welcome = frame;
          settled = true;
          clearTimeout(timer);
          resolve(client);
          return;
        }
        client.onFrame(frame);
      });
    });
  }

  /** Sends one ping or a batch; resolves with the frame's ack (and the errors about it). */
  send(pingOrBatch: Ping | Ping[] | unknown): Promise<SendResult> {
    const binary = this.encoding === 'msgpack';
    return this.sendRaw(binary ? packr.pack(pingOrBatch) : JSON.stringify(pingOrBatch), binary);
  }

  /** Sends raw bytes (tests: malformed frames); the server still answers with one ack. */
  sendRaw(data: string | Uint8Array, binary: boolean): Promise<SendResult> {
    if (this.closeInfo) return Promise.reject(new DriverClosedError(this.closeInfo));
    const frame = ++this.frames;
    return new Promise<SendResult>((resolve, reject) => {
      this.pending.push({ frame, errors: [], resolve, reject });
      this.ws.send(data, { binary }, (err) => { if (err) this.failAll(err); });
    });
  }

  /** Frames sent and not yet acknowledged. */
  get inFlight(): number {
    return this.pending.length - this.head;
  }

  /** Stops reading from the TCP socket (tests: a client that does not read its acks). */
  pauseReading(): void {
    (this.ws as unknown as { _socket?: { pause(): void } })._socket?.pause();
  }

  resumeReading(): void {
    (this.ws as unknown as { _socket?: { resume(): void } })._socket?.resume();
  }

  /** Closes (normal closure) and resolves once closed; pending sends reject. */
  close(code = 1000, reason = ''): Promise<CloseInfo> {
    if (!this.closeInfo && this.ws.readyState !== WebSocket.CLOSED) {
      this.ws.close(code, reason);
      const t = setTimeout(() => this.ws.terminate(), 3000);
      void this.closed.then(() => clearTimeout(t));
    }
    return this.closed;
  }

  private decode(data: Buffer, isBinary: boolean): ServerFrame | undefined {
    try {
      return (isBinary ? packr.unpack(data) : JSON.parse(data.toString())) as ServerFrame;
    } catch {
      return undefined;
    }
  }

  private onFrame(f: ServerFrame): void {
    if (f.type === 'error') {
      const p = f.frame !== undefined ? this.findPending(f.frame) : undefined;
      p?.errors.push(f);
      this.emit('errorFrame', f);
      return;
    }
    if (f.type === 'ack') {
      // Acks come in order: complete everything up to this frame.
      while (this.head < this.pending.length) {
        const p = this.pending[this.head]!;
        if (f.frame !== undefined && p.frame > f.frame) break;
        this.pending[this.head++] = undefined as unknown as Pending;
        if (f.frame === undefined || p.frame === f.frame) {
          p.resolve({ ...f, errors: p.errors });
          break;
        }
        p.resolve({ type: 'ack', frame: p.frame, seq: null, count: 0, errors: p.errors });
      }
      if (this.head > 1024 && this.head * 2 > this.pending.length) {
        this.pending.splice(0, this.head);
        this.head = 0;
      }
    }
  }

  private findPending(frame: number): Pending | undefined {
    for (let i = this.head; i < this.pending.length; i++) if (this.pending[i]!.frame === frame) return this.pending[i];
    return undefined;
  }

  private failAll(err: unknown): void {
    while (this.head < this.pending.length) this.pending[this.head++]!.reject(err);
    this.pending.length = 0;
    this.head = 0;
  }

  private onClose(code: number, reason: string): void {
    if (this.closeInfo) return;
    this.closeInfo = { code, reason };
    this.failAll(new DriverClosedError(this.closeInfo));
    this.resolveClosed(this.closeInfo);
    this.emit('close', this.closeInfo);
  }
}
