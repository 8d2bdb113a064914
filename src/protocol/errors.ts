/**
 * The one registry of error codes: stable code, default message, HTTP status and the
 * WebSocket close code used when the error ends a connection. Mapping to the wire
 * happens only at the edges (src/http, src/gateway, src/rooms).
 */
export const CLOSE_CODES = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  /** Server is shutting down or draining: reconnect (to another instance). */
  SERVER_RESTART: 4000,
  UNAUTHORIZED: 4001,
  FORBIDDEN: 4003,
  IDLE_TIMEOUT: 4008,
  FRAME_TOO_LARGE: 4009,
  RATE_LIMITED: 4029,
  BACKPRESSURE: 4030,
  PROTOCOL_ABUSE: 4040,
  INTERNAL: 4500,
} as const;
export type CloseCode = (typeof CLOSE_CODES)[keyof typeof CLOSE_CODES];

interface ErrorSpec { status: number; message: string; close?: CloseCode }

export const ERRORS = {
  BAD_FRAME: { status: 400, message: 'frame is not valid JSON or MessagePack' },
  BAD_REQUEST: { status: 400, message: 'invalid request parameters' },
  INVALID_PING: { status: 400, message: 'ping failed validation' },
  INVALID_COORDINATES: { status: 400, message: 'lat/lon missing, not finite or out of range' },
  TS_IN_FUTURE: { status: 400, message: 'timestamp too far in the future' },
  TS_TOO_OLD: { status: 400, message: 'timestamp too old' },
  BATCH_TOO_LARGE: { status: 413, message: 'too many pings in one frame' },
  FRAME_TOO_LARGE: { status: 413, message: 'frame exceeds the maximum payload', close: CLOSE_CODES.FRAME_TOO_LARGE },
  RATE_LIMITED: { status: 429, message: 'rate limit exceeded', close: CLOSE_CODES.RATE_LIMITED },
  UNAUTHORIZED: { status: 401, message: 'missing, invalid or expired token', close: CLOSE_CODES.UNAUTHORIZED },
  FORBIDDEN: { status: 403, message: 'token scope does not allow this', close: CLOSE_CODES.FORBIDDEN },
  NOT_YOUR_ENTITY: { status: 403, message: 'token may not publish this entity id' },
  IMPLAUSIBLE_JUMP: { status: 422, message: 'implied speed from the last position is above the plausibility limit; ping kept out of live state and history' },
  OVERLOADED: { status: 503, message: 'gateway overloaded: frame refused, retry with backoff' },
  SLOW_CONSUMER: { status: 503, message: 'client does not read its replies', close: CLOSE_CODES.BACKPRESSURE },
  IDLE_TIMEOUT: { status: 408, message: 'no data frame within the idle timeout', close: CLOSE_CODES.IDLE_TIMEOUT },
  NOT_FOUND: { status: 404, message: 'not found' },
  SHUTTING_DOWN: { status: 503, message: 'server is shutting down, reconnect', close: CLOSE_CODES.SERVER_RESTART },
  UNAVAILABLE: { status: 503, message: 'a backing service is unavailable' },
  INTERNAL: { status: 500, message: 'internal error', close: CLOSE_CODES.INTERNAL },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export function errorSpec(code: ErrorCode): ErrorSpec {
  return ERRORS[code];
}
