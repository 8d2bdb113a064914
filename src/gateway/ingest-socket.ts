import type { TemplatedApp, WebSocket, HttpResponse, HttpRequest } from 'uWebSockets.js';
import { Packr } from 'msgpackr';
import type { Logger } from '../log/logger.js';
import type { Principal, TokenVerifier } from '../auth/tokens.js';
import { requireScope } from '../auth/tokens.js';
import { isAppError } from '../errors/app-error.js';
import { CLOSE_CODES, ERRORS, type ErrorCode } from '../protocol/errors.js';
import type { ServerFrame } from '../protocol/messages.js';
import { decodeFrame } from '../ingest/decode.js';
import type { ValidationLimits } from '../ingest/validate.js';
import type { IngestBatcher } from '../ingest/batcher.js';
import { processPings, type FrameOutcome } from '../ingest/process.js';
import { TokenBucket } from '../ingest/rate-limit.js';
import { ingestMetrics } from '../ingest/metrics.js';
import { errorBody, statusLine } from '../http/respond.js';

export const INGEST_PATH = '/v1/ingest';

export interface IngestSocketData {
  principal: Principal;
  /** The encoding of the last frame the client sent; replies use the same. */
  binary: boolean;
  open: boolean;
  /** Frames received so far (the number of the current frame). */
  frames: number;
  /** Frames answered so far: acks go out in frame order. */
  answered: number;
  /** Outcomes that arrived before an earlier frame's (rare: answered as soon as their turn comes). */
  early: Map<number, FrameOutcome> | undefined;
  bucket: TokenBucket;
  /** Time of the last data frame (ms); silent sockets are closed with 4008. */
  lastFrame: number;
}

export interface IngestLimits {
  maxBatch: number;
  maxPayloadBytes: number;
  idleTimeoutSeconds: number;
  ratePerSecond: number;
  rateBurst: number;
  rateAbusePings: number;
  maxBufferedBytes: number;
}

export interface IngestSocketDeps extends IngestLimits {
  log: Logger;
  verifier: TokenVerifier;
  batcher: IngestBatcher;
  ingestZoom: number;
  limits: ValidationLimits;
  isClosing(): boolean;
  /** True when the gateway holds as many client connections as it may. */
  atCapacity(): boolean;
}

export interface IngestSockets {
  /** Closes every open ingest socket with the given code. */
  closeAll(code: number, reason: string): void;
  count(): number;
}

const packr = new Packr({ useRecords: false });

/** Sends a frame in the client's encoding. `d` is captured by callers: a closed uWS socket must not be touched. */
function send(ws: WebSocket<IngestSocketData>, d: IngestSocketData, frame: ServerFrame): void {
  if (!d.open) return;
  if (d.binary) ws.send(packr.pack(frame), true);
  else ws.send(JSON.stringify(frame), false);
}

function refuseUpgrade(res: HttpResponse, status: number, code: ErrorCode, message: string): void {
  res.cork(() => {
    res.writeStatus(statusLine(status)).writeHeader('content-type', 'application/json').end(JSON.stringify(errorBody(code, message)));
  });
}

/**
 * The driver WebSocket: auth at upgrade, decode, rate-limit, validate, batch to Redis, then
 * answer every frame with its error frames and exactly one ack, in frame order.
 */
export function registerIngestSocket(app: TemplatedApp, d: IngestSocketDeps): IngestSockets {
  const sockets = new Set<WebSocket<IngestSocketData>>();
  const procDeps = { batcher: d.batcher, ingestZoom: d.ingestZoom, limits: d.limits };

  function closeWith(ws: WebSocket<IngestSocketData>, data: IngestSocketData, code: ErrorCode, message: string): void {
    if (!data.open) return;
    const close = ERRORS[code] && 'close' in ERRORS[code] ? (ERRORS[code] as { close: number }).close : CLOSE_CODES.PROTOCOL_ABUSE;
    try { send(ws, data, { type: 'error', code, message, frame: data.frames }); } catch { /* closing anyway */ }
    data.open = false;
    ingestMetrics.closed.inc({ code: String(close) });
    try { ws.end(close, code); } catch { /* already closed */ }
  }

  app.ws<IngestSocketData>(INGEST_PATH, {
    // uWS drops frames beyond its own cap without a useful code; keep it above ours so we
    // can close with 4009 ourselves.
    maxPayloadLength: d.maxPayloadBytes * 2 + 1024,
    // Transport-level idle timeout (dead peers); the data-frame idle timeout (4008) is ours, below.
    idleTimeout: Math.min(960, d.idleTimeoutSeconds * 2),
    maxBackpressure: Math.max(d.maxBufferedBytes * 4, 1024 * 1024),
    closeOnBackpressureLimit: 1, // typed as number in this build; truthy = close

    upgrade: (res: HttpResponse, req: HttpRequest, context) => {
      const key = req.getHeader('sec-websocket-key');
      const protocol = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      const auth = req.getHeader('authorization');
      const query = new URLSearchParams(req.getQuery() ?? '');
      const token = /^bearer /i.test(auth) ? auth.slice(7).trim() : query.get('token') ?? undefined;
      const binary = query.get('encoding') === 'msgpack';
      if (d.isClosing()) {
        refuseUpgrade(res, 503, 'SHUTTING_DOWN', ERRORS.SHUTTING_DOWN.message);
        return;
      }
      if (d.atCapacity()) {
        ingestMetrics.rejected.inc({ code: 'OVERLOADED' });
        refuseUpgrade(res, 503, 'OVERLOADED', 'connection limit reached: reconnect later or to another gateway');
        return;
      }
      // The token is checked synchronously and the socket upgraded inside this callback, never
      // later: this uWS build mishandles an upgrade completed after the callback returned (in
      // res.cork() it goes on reading the HTTP response's state from memory the WebSocket now
      // holds, and now and then shuts the socket down right after its 101; uncorked it prints a
      // warning per connection).
      let principal: Principal;
      try {
        principal = d.verifier.verifySync(token);
        requireScope(principal, 'ingest');
      } catch (err) {
        if (isAppError(err)) refuseUpgrade(res, err.status, err.code, err.message);
        else {
          d.log.error({ err }, 'upgrade failed');
          refuseUpgrade(res, 500, 'INTERNAL', ERRORS.INTERNAL.message);
        }
        return;
      }
      const data: IngestSocketData = {
        principal, binary, open: true, frames: 0, answered: 0, early: undefined, lastFrame: Date.now(),
        bucket: new TokenBucket(d.ratePerSecond, d.rateBurst, d.rateAbusePings),
      };
      res.upgrade<IngestSocketData>(data, key, protocol, extensions, context);
    },

    open: (ws) => {
      sockets.add(ws);
      ingestMetrics.connected.inc();
      const data = ws.getUserData();
      const p = data.principal;
      send(ws, data, { type: 'welcome', tenant: p.tenant, sub: p.sub, maxBatch: d.maxBatch, maxPayloadBytes: d.maxPayloadBytes });
    },

    message: (ws, message, isBinary) => {
      const data = ws.getUserData();
      try {
        onMessage(ws, data, message, isBinary);
      } catch (err) {
        d.log.error({ err }, 'ingest message handler failed');
        closeWith(ws, data, 'INTERNAL', ERRORS.INTERNAL.message);
      }
    },

    close: (ws, code, message) => {
      const data = ws.getUserData();
      // uWS's own closes (no close frame, no error frame): a frame over maxPayloadLength, the
      // backpressure cap. It says why in `message`; a peer that just vanished leaves it empty.
      const reason = code === 1006 && data.open && message.byteLength > 0 ? Buffer.from(message).toString() : undefined;
      if (reason) {
        ingestMetrics.closed.inc({ code: '1006' });
        d.log.info({ code, reason, sub: data.principal.sub, frames: data.frames }, 'ingest socket closed by uWS');
      } else d.log.debug({ code }, 'ingest socket closed');
      data.open = false;
      if (sockets.delete(ws)) ingestMetrics.connected.dec();
    },
  });

  function onMessage(ws: WebSocket<IngestSocketData>, data: IngestSocketData, message: ArrayBuffer, isBinary: boolean): void {
    if (!data.open) return;
    data.binary = isBinary;
    data.lastFrame = Date.now();
    const frame = ++data.frames;
    ingestMetrics.frames.inc({ transport: 'ws', encoding: isBinary ? 'msgpack' : 'json' });
    // Backpressure: the client does not read what we send; stop answering and close.
    if (ws.getBufferedAmount() > d.maxBufferedBytes) {
      ingestMetrics.rejected.inc({ code: 'SLOW_CONSUMER' });
      closeWith(ws, data, 'SLOW_CONSUMER', `more than ${d.maxBufferedBytes} bytes of replies unread`);
      return;
    }
    if (message.byteLength > d.maxPayloadBytes) {
      ingestMetrics.rejected.inc({ code: 'FRAME_TOO_LARGE' });
      closeWith(ws, data, 'FRAME_TOO_LARGE', `frame of ${message.byteLength} bytes exceeds ${d.maxPayloadBytes}`);
      return;
    }
    const finish = (r: FrameOutcome): void => answerInOrder(ws, data, frame, r);
    let raws: unknown[];
    try {
      raws = decodeFrame(message, isBinary, d.maxBatch);
    } catch (err) {
      if (!isAppError(err)) throw err;
      ingestMetrics.rejected.inc({ code: err.code });
      // An undecodable frame costs one token: a flood of garbage is rate limited too.
      data.bucket.take(1);
      if (data.bucket.abusive) {
        closeWith(ws, data, 'RATE_LIMITED', 'sustained rate above the limit');
        return;
      }
      return finish({ count: 0, seq: null, errors: [{ code: err.code, message: err.message }] });
    }
    const allowed = data.bucket.take(raws.length);
    if (data.bucket.abusive) {
      ingestMetrics.rejected.inc({ code: 'RATE_LIMITED' }, raws.length);
      closeWith(ws, data, 'RATE_LIMITED', 'sustained rate above the limit');
      return;
    }
    processPings(raws, data.principal, procDeps, allowed, finish);
  }

  /** Sends a frame's error frames and its ack once every earlier frame of the socket was answered. */
  function answerInOrder(ws: WebSocket<IngestSocketData>, data: IngestSocketData, frame: number, r: FrameOutcome): void {
    if (frame !== data.answered + 1) {
      (data.early ??= new Map()).set(frame, r);
      return;
    }
    answer(ws, data, frame, r);
    data.answered = frame;
    const early = data.early;
    if (!early) return;
    for (let next = early.get(data.answered + 1); next !== undefined; next = early.get(data.answered + 1)) {
      early.delete(++data.answered);
      answer(ws, data, data.answered, next);
    }
    if (early.size === 0) data.early = undefined;
  }

  function answer(ws: WebSocket<IngestSocketData>, data: IngestSocketData, frame: number, r: FrameOutcome): void {
    if (!data.open) return;
    try {
      ws.cork(() => {
        for (const e of r.errors) send(ws, data, { type: 'error', ...e, frame });
        send(ws, data, { type: 'ack', seq: r.seq, count: r.count, frame });
      });
    } catch (err) {
      d.log.error({ err }, 'ingest answer failed');
    }
  }

  // Idle timeout on data frames (uWS answers WebSocket pings itself, so a connected but silent
  // client would never time out otherwise): close with 4008.
  const idleMs = d.idleTimeoutSeconds * 1000;
  const idleTimer = setInterval(() => {
    const cutoff = Date.now() - idleMs;
    for (const ws of sockets) {
      const data = ws.getUserData();
      if (data.open && data.lastFrame < cutoff) closeWith(ws, data, 'IDLE_TIMEOUT', `no frame for ${d.idleTimeoutSeconds} s`);
    }
  }, Math.min(5000, Math.max(1000, idleMs / 4)));
  idleTimer.unref();

  return {
    closeAll(code, reason) {
      clearInterval(idleTimer);
      for (const ws of [...sockets]) {
        const data = ws.getUserData();
        if (!data.open) continue;
        // The same error frame as every other close (docs/ingest.md, errors): SHUTTING_DOWN, then 4000.
        try { send(ws, data, { type: 'error', code: 'SHUTTING_DOWN', message: ERRORS.SHUTTING_DOWN.message, frame: data.frames }); } catch { /* closing anyway */ }
        data.open = false;
        try { ws.end(code, reason); } catch { /* already closed */ }
      }
    },
    count: () => sockets.size,
  };
}
