/**
 * A backing service could not be reached at start. The message names it, where, and why, never
 * the URL's credentials. The original error is `reason`, not `cause`: pino would print its
 * message a second time.
 */
export class DependencyError extends Error {
  constructor(readonly dependency: 'Redis' | 'PostgreSQL', readonly where: string, readonly reason: unknown) {
    super(`cannot connect to ${dependency} at ${where}: ${(reason as Error | undefined)?.message || String(reason)}`);
    this.name = 'DependencyError';
  }
}

/** `host:port/path` of a service URL, without user, password or query. */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.host}${u.pathname === '/' ? '' : u.pathname}`;
  } catch {
    return '(an unparseable URL)';
  }
}
