import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { AppError, isAppError } from '../errors/app-error.js';
import { ERRORS } from '../protocol/errors.js';
import type { Logger } from '../log/logger.js';

/** What a handler sees: request data copied synchronously (uWS frees `req` after the callback). */
export interface HttpCall {
  method: string;
  url: string;
  query: URLSearchParams;
  headers: Record<string, string>;
  params: string[];
  /** The body, when the route reads one. */
  body?: Buffer;
}

export interface HttpResult {
  status: number;
  body: unknown;
  contentType?: string;
  headers?: Record<string, string>;
}

const STATUS_TEXT: Record<number, string> = {
  200: '200 OK', 201: '201 Created', 202: '202 Accepted', 204: '204 No Content', 207: '207 Multi-Status',
  400: '400 Bad Request', 401: '401 Unauthorized', 403: '403 Forbidden', 404: '404 Not Found',
  405: '405 Method Not Allowed', 413: '413 Payload Too Large', 415: '415 Unsupported Media Type',
  422: '422 Unprocessable Entity', 429: '429 Too Many Requests', 500: '500 Internal Server Error',
  503: '503 Service Unavailable',
};

export function statusLine(status: number): string {
  return STATUS_TEXT[status] ?? `${status} Unknown`;
}

export function errorBody(code: keyof typeof ERRORS, message: string, details?: unknown): { error: { code: string; message: string; details?: unknown } } {
  return { error: { code, message, ...(details === undefined ? {} : { details }) } };
}

/** A path parameter as text; malformed percent-encoding (`%E0`, a lone `%`) is the client's error. */
function decodeParam(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new AppError('BAD_REQUEST', `malformed percent-encoding in the path: ${JSON.stringify(raw.slice(0, 64))}`);
  }
}

/** Copies what the handler needs; throws BAD_REQUEST (an AppError) for an undecodable path parameter. */
export function copyRequest(res: HttpResponse, req: HttpRequest, paramCount = 0): HttpCall {
  const headers: Record<string, string> = {};
  req.forEach((k, v) => { headers[k] = v; });
  const params: string[] = [];
  for (let i = 0; i < paramCount; i++) params.push(decodeParam(req.getParameter(i) ?? ''));
  void res;
  return { method: req.getMethod().toUpperCase(), url: req.getUrl(), query: new URLSearchParams(req.getQuery() ?? ''), headers, params };
}

export function writeResult(res: HttpResponse, r: HttpResult): void {
  const isBuf = r.body instanceof Uint8Array || typeof r.body === 'string';
  res.writeStatus(statusLine(r.status));
  res.writeHeader('content-type', r.contentType ?? 'application/json; charset=utf-8');
  for (const [k, v] of Object.entries(r.headers ?? {})) res.writeHeader(k, v);
  res.end(isBuf ? (r.body as string | Uint8Array) : JSON.stringify(r.body));
}

export function resultFromError(err: unknown, log: Logger): HttpResult {
  if (isAppError(err)) return { status: err.status, body: errorBody(err.code, err.message, err.details) };
  log.error({ err }, 'request failed');
  return { status: 500, body: errorBody('INTERNAL', ERRORS.INTERNAL.message) };
}

/** Reads a request body up to `limit` bytes; rejects with FRAME_TOO_LARGE past it. */
export function readBody(res: HttpResponse, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    res.onData((ab, isLast) => {
      if (done) return;
      size += ab.byteLength;
      if (size > limit) {
        done = true;
        reject(new AppError('FRAME_TOO_LARGE', `body exceeds ${limit} bytes`));
        return;
      }
      chunks.push(Buffer.from(ab.slice(0)));
      if (isLast) {
        done = true;
        resolve(Buffer.concat(chunks));
      }
    });
  });
}

export interface RouteOptions {
  paramCount?: number;
  /** Read a body up to this many bytes before calling the handler. */
  bodyLimit?: number;
}

/**
 * Adapts an async handler to uWS: copies the request, registers onAborted before any
 * await, maps errors to JSON bodies and writes the late response inside cork().
 */
export function route(log: Logger, handler: (call: HttpCall) => Promise<HttpResult> | HttpResult, opts: RouteOptions = {}) {
  return (res: HttpResponse, req: HttpRequest): void => {
    let call: HttpCall;
    try {
      call = copyRequest(res, req, opts.paramCount ?? 0);
    } catch (err) {
      // Answered at once, inside uWS's callback: an exception escaping it would take the process down.
      writeResult(res, resultFromError(err, log));
      return;
    }
    let aborted = false;
    res.onAborted(() => { aborted = true; });
    const run = async (): Promise<HttpResult> => {
      if (opts.bodyLimit !== undefined) call.body = await readBody(res, opts.bodyLimit);
      return handler(call);
    };
    run().catch((err: unknown) => resultFromError(err, log)).then((result) => {
      if (aborted) return;
      res.cork(() => writeResult(res, result));
    });
  };
}

export function bearerToken(call: HttpCall): string | undefined {
  const h = call.headers['authorization'];
  if (h && /^bearer /i.test(h)) return h.slice(7).trim();
  return call.query.get('token') ?? undefined;
}
