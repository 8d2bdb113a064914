import type { TemplatedApp, WebSocket, HttpResponse, HttpRequest } from 'uWebSockets.js';
import { Packr } from 'msgpackr';
import type { Logger } from '../log/logger.js';
import type { Principal, TokenVerifier } from '../auth/tokens.js';
import { requireScope } from '../auth/tokens.js';
import { isAppError } from '../errors/app-error.js';
import { ERRORS, type ErrorCode } from '../protocol/errors.js';
import type { AcceptedPing } from '../protocol/ping.js';
import type { ServerFrame } from '../protocol/messages.js';
import { decodeFrame } from '../ingest/decode.js';
import { validatePing, type ValidationLimits } from '../ingest/validate.js';
import type { IngestBatcher } from '../ingest/batcher.js';
import { cellOf } from '../geo/tiles.js';
import { errorBody, statusLine } from '../http/respond.js';

export const INGEST_PATH = '/v1/ingest';

export interface IngestSocketData {
  principal: Principal;
  /** The encoding of the last frame the client sent; replies use the same. */
  binary: boolean;
  open: boolean;
}

export interface IngestSocketDeps {
  log: Logger;
  verifier: TokenVerifier;
  batcher: IngestBatcher;
  ingestZoom: number;
  maxBatch: number;
  maxPayloadBytes: number;
  idleTimeoutSeconds: number;
  limits: ValidationLimits;
  isClosing(): boolean;
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

function sendError(ws: WebSocket<IngestSocketData>, d: IngestSocketData, code: ErrorCode, message: string, extra: { index?: number; id?: string; seq?: number } = {}): void {
  send(ws, d, { type: 'error', code, message, ...extra });
}

function refuseUpgrade(res: HttpResponse, status: number, code: ErrorCode, message: string): void {
  res.cork(() => {
    res.writeStatus(statusLine(status)).writeHeader('content-type', 'application/json').end(JSON.stringify(errorBody(code, message)));
  });
}

/** The driver WebSocket: auth at upgrade, decode, validate, batch to Redis, ack after durability. */
export function registerIngestSocket(app: TemplatedApp, d: IngestSocketDeps): IngestSockets {
  const sockets = new Set<WebSocket<IngestSocketData>>();

  app.ws<IngestSocketData>(INGEST_PATH, {
    maxPayloadLength: d.maxPayloadBytes,
    idleTimeout: d.idleTimeoutSeconds,
    maxBackpressure: 1024 * 1024,
    closeOnBackpressureLimit: 1, // typed as number in this build; truthy = close

    upgrade: (res: HttpResponse, req: HttpRequest, context) => {
      // Copy everything from req synchronously: it is invalid after the first await.
      const key = req.getHeader('sec-websocket-key');
      const protocol = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      const auth = req.getHeader('authorization');
      const token = /^bearer /i.test(auth) ? auth.slice(7).trim() : new URLSearchParams(req.getQuery() ?? '').get('token') ?? undefined;
      let aborted = false;
      res.onAborted(() => { aborted = true; });
      if (d.isClosing()) {
        refuseUpgrade(res, 503, 'SHUTTING_DOWN', ERRORS.SHUTTING_DOWN.message);
        return;
      }
      d.verifier.verify(token).then((principal) => {
        requireScope(principal, 'ingest');
        if (aborted) return;
        res.cork(() => {
          res.upgrade<IngestSocketData>({ principal, binary: false, open: true }, key, protocol, extensions, context);
        });
      }).catch((err: unknown) => {
        if (aborted) return;
        if (isAppError(err)) refuseUpgrade(res, err.status, err.code, err.message);
        else {
          d.log.error({ err }, 'upgrade failed');
          refuseUpgrade(res, 500, 'INTERNAL', ERRORS.INTERNAL.message);
        }
      });
    },

    open: (ws) => {
      sockets.add(ws);
      const data = ws.getUserData();
      const p = data.principal;
      // Not inside open(): with this uWS build, a frame sent while the async upgrade is still
      // corked corrupts the stream and the client is dropped (1006). Send on the next turn.
      setImmediate(() => send(ws, data, { type: 'welcome', tenant: p.tenant, sub: p.sub, maxBatch: d.maxBatch, maxPayloadBytes: d.maxPayloadBytes }));
    },

    message: (ws, message, isBinary) => {
      d.log.debug({ bytes: message.byteLength, isBinary }, 'ingest frame');
      try {
        onMessage(ws, message, isBinary);
      } catch (err) {
        d.log.error({ err }, 'ingest message handler failed');
        sendError(ws, ws.getUserData(), 'INTERNAL', ERRORS.INTERNAL.message);
      }
    },

    close: (ws, code) => {
      d.log.debug({ code }, 'ingest socket closed');
      ws.getUserData().open = false;
      sockets.delete(ws);
    },
  });

  function onMessage(ws: WebSocket<IngestSocketData>, message: ArrayBuffer, isBinary: boolean): void {
      const data = ws.getUserData();
      data.binary = isBinary;
      let raws: unknown[];
      try {
        raws = decodeFrame(message, isBinary, d.maxBatch);
      } catch (err) {
        if (isAppError(err)) sendError(ws, data, err.code, err.message);
        else throw err;
        return;
      }
      const now = Date.now();
      const accepted: AcceptedPing[] = [];
      let maxSeq: number | null = null;
      raws.forEach((raw, index) => {
        const v = validatePing(raw, data.principal, now, d.limits);
        if (!v.ok) {
          sendError(ws, data, v.code, v.message, { index, ...(v.id !== undefined ? { id: v.id } : {}), ...(v.seq !== undefined ? { seq: v.seq } : {}) });
          return;
        }
        const p = v.ping;
        if (p.seq !== undefined && (maxSeq === null || p.seq > maxSeq)) maxSeq = p.seq;
        accepted.push({ ...p, tenant: data.principal.tenant, cell: cellOf(p.lon, p.lat, d.ingestZoom), rx: now });
      });
      if (accepted.length === 0) return;
      const seq = maxSeq;
      d.batcher.submit(accepted).then(
        () => send(ws, data, { type: 'ack', seq, count: accepted.length }),
        () => sendError(ws, data, 'UNAVAILABLE', 'could not store pings; retry them'),
      );
  }

  return {
    closeAll(code, reason) {
      for (const ws of [...sockets]) {
        ws.getUserData().open = false;
        try { ws.end(code, reason); } catch { /* already closed */ }
      }
      sockets.clear();
    },
    count: () => sockets.size,
  };
}

