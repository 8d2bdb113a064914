/** Exact `numeric` sums of float8 values in JS, as PostgreSQL's `sum(x::numeric)` prints them. */
/**
 * A float8 as PostgreSQL's `float8::numeric` reads it — printf `%.15g`: 15 significant digits,
 * ties to even, trailing zeros dropped — as [m, d]: the value m / 10^d, with d its scale
 * (`numeric` keeps it: a sum's scale is the largest of its terms'). JS's shortest round-trip
 * text is that decimal when it has at most 15 significant digits (it is then the 15-digit
 * decimal nearest to the double: 15-digit steps are more than 4 ulps apart); with 16 or 17,
 * toPrecision(15) rounds the exact binary value, as printf does, except on an exact tie
 * (toPrecision rounds it up, printf to even): a 16-digit text ending in 5 that is the double
 * exactly. That case, exponent forms (below 1e-6, above 1e21, or 15-digit rounding at or
 * above 1e15) give undefined: the caller lets SQL convert those.
 */
export function numericParts(v: number): [number, number] | undefined {
  let s = String(v);
  if (s.includes('e')) return undefined;
  let sig = 0, lead = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) continue; // sign, point
    if (lead && c === 48) continue;
    lead = false;
    sig++;
  }
  if (sig > 15) {
    if (sig === 16 && s.endsWith('5') && exactDecimal(s)) return undefined;
    s = v.toPrecision(15);
    if (s.includes('e')) return undefined;
    if (s.includes('.')) s = s.replace(/\.?0+$/, '');
  }
  const neg = s.charCodeAt(0) === 45;
  const body = neg ? s.slice(1) : s;
  const dot = body.indexOf('.');
  const m = Number(dot < 0 ? body : body.slice(0, dot) + body.slice(dot + 1));
  return [neg ? -m : m, dot < 0 ? 0 : body.length - dot - 1];
}

/** Whether a decimal text (no exponent) can be a double exactly: its value N / 10^k is dyadic, i.e. 5^k divides N. */
function exactDecimal(s: string): boolean {
  const body = s.replace('-', '');
  const dot = body.indexOf('.');
  if (dot < 0) return true;
  const k = body.length - dot - 1;
  return BigInt(body.slice(0, dot) + body.slice(dot + 1)) % 5n ** BigInt(k) === 0n;
}

/**
 * Exact sum of numericParts terms, as `numeric` text with the largest scale of its terms (what
 * `sum(x::numeric)` prints). Per scale, the integer terms are split at 10^8 and both halves
 * summed as doubles (exact below 2^53: about 10^7 terms); BigInt only at the end.
 */
export class DecimalSum {
  private readonly hi: number[] = [];
  private readonly lo: number[] = [];
  add([m, d]: [number, number]): void {
    while (this.hi.length <= d) { this.hi.push(0); this.lo.push(0); }
    const h = Math.trunc(m / 1e8);
    this.hi[d]! += h;
    this.lo[d]! += m - h * 1e8;
  }
  /** undefined when nothing was added. */
  text(): string | undefined {
    const scale = this.hi.length - 1;
    if (scale < 0) return undefined;
    let total = 0n;
    for (let d = 0; d <= scale; d++) total += (BigInt(this.hi[d]!) * 100_000_000n + BigInt(this.lo[d]!)) * 10n ** BigInt(scale - d);
    const neg = total < 0n;
    const digits = (neg ? -total : total).toString().padStart(scale + 1, '0');
    const int = digits.slice(0, digits.length - scale);
    return `${neg ? '-' : ''}${int}${scale > 0 ? `.${digits.slice(digits.length - scale)}` : ''}`;
  }
}

