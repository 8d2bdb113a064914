/**
 * Token bucket per connection: `rate` tokens per second up to `burst`. A ping takes one token;
 * pings without a token are refused (RATE_LIMITED) and add to a debt that decays at `rate`
 * (independently of the refill).
 * Debt above `abuseDebt` means sustained abuse: the caller closes the connection (4029).
 */
export class TokenBucket {
  private tokens: number;
  private debt = 0;
  private last: number;

  constructor(private readonly rate: number, private readonly burst: number, private readonly abuseDebt: number, now = Date.now()) {
    this.tokens = burst;
    this.last = now;
  }

  private refill(now: number): void {
    const dt = (now - this.last) / 1000;
    if (dt <= 0) return;
    this.last = now;
    const add = dt * this.rate;
    this.debt = Math.max(0, this.debt - add);
    this.tokens = Math.min(this.burst, this.tokens + add);
  }

  /** Takes up to n tokens; returns how many were granted (the first ones of a batch). */
  take(n: number, now = Date.now()): number {
    this.refill(now);
    const granted = Math.min(n, Math.floor(this.tokens));
    this.tokens -= granted;
    this.debt += n - granted;
    return granted;
  }

  /** True once refused pings outran the refill by more than the abuse threshold. */
  get abusive(): boolean {
    return this.debt > this.abuseDebt;
  }
}
