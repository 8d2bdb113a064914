/**
 * Builds the one binary argument that carries a whole batch to a Lua script (read there with
 * `struct.unpack`), so the client encodes one bulk string per script call instead of several
 * arguments per ping. Layout: little-endian; strings are length-prefixed (uint8 `str8`,
 * uint16 `bytes16`). Strings must be ASCII (ids, numbers, cells): callers pass only those.
 */
export class BatchBlob {
  private buf: Buffer;
  private pos = 0;

  constructor(initial = 16 * 1024) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** Starts a new blob (the buffer is reused). */
  reset(): this {
    this.pos = 0;
    return this;
  }

  get length(): number {
    return this.pos;
  }

  u8(v: number): this {
    this.room(1);
    this.buf[this.pos++] = v;
    return this;
  }

  u16(v: number): this {
    this.room(2);
    this.buf.writeUInt16LE(v, this.pos);
    this.pos += 2;
    return this;
  }

  /** Overwrites a uint16 written earlier (a count known only after its items). */
  patchU16(at: number, v: number): void {
    this.buf.writeUInt16LE(v, at);
  }

  /** An ASCII string of at most 255 bytes, uint8 length first. */
  str8(s: string): this {
    const n = s.length;
    if (n > 255) throw new RangeError(`blob string of ${n} bytes exceeds 255`);
    this.room(1 + n);
    this.buf[this.pos] = n;
    this.buf.write(s, this.pos + 1, n, 'latin1');
    this.pos += 1 + n;
    return this;
  }

  /** Bytes of at most 65535, uint16 length first. */
  bytes16(b: Uint8Array): this {
    const n = b.length;
    if (n > 0xffff) throw new RangeError(`blob bytes of ${n} exceed 65535`);
    this.room(2 + n);
    this.buf.writeUInt16LE(n, this.pos);
    this.buf.set(b, this.pos + 2);
    this.pos += 2 + n;
    return this;
  }

  /** A copy of what was written since reset() (the internal buffer is reused). */
  take(): Buffer {
    const out = Buffer.allocUnsafe(this.pos);
    this.buf.copy(out, 0, 0, this.pos);
    this.pos = 0;
    return out;
  }
}
