import { ERRORS, type ErrorCode } from '../protocol/errors.js';

/** An error with a stable code from the registry; edges map it to HTTP/WS. */
export class AppError extends Error {
  readonly status: number;
  constructor(readonly code: ErrorCode, message?: string, readonly details?: unknown) {
    super(message ?? ERRORS[code].message);
    this.name = 'AppError';
    this.status = ERRORS[code].status;
  }
}

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}
