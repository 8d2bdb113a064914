// Shared helpers of the geoflux k6 scripts (k6 modules only): environment, tokens, plausible
// vehicle paths, tile math, Engine.IO v4 / Socket.IO v5 framing with socket.io-msgpack-parser, and a
// small MessagePack encoder/decoder.
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';

// ---------------------------------------------------------------- environment
export const HOST = __ENV.HOST || '127.0.0.1:8080';
export const TLS = __ENV.TLS === '1' || __ENV.TLS === 'true';
export const HTTP_BASE = `${TLS ? 'https' : 'http'}://${HOST}`;
export const WS_BASE = `${TLS ? 'wss' : 'ws'}://${HOST}`;
export const TENANT = __ENV.TENANT || 'demo';
export const CITY = { lat: Number(__ENV.CITY_LAT || 38.7223), lon: Number(__ENV.CITY_LON || -9.1393) };
export const CITY_RADIUS_KM = Number(__ENV.CITY_RADIUS_KM || 5);

export function envInt(name, def) {
  const v = __ENV[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!isFinite(n)) throw new Error(`${name} must be a number, got ${v}`);
  return n;
}

// ---------------------------------------------------------------- tokens
// Three ways, in order of preference:
//   TOKEN=<jwt>            one token for viewers/dispatchers (npm run token -- --scope "subscribe query")
//   TOKENS_FILE=<path>     one driver token per line (line i = driver k6-drv-<i+1>); see docs/benchmarks.md
//   JWT_SECRET=<secret>    the script mints HS256 tokens itself (test/dev tenants only, never production)
const TOKENS = __ENV.TOKENS_FILE ? open(__ENV.TOKENS_FILE).split('\n').map((l) => l.trim()).filter((l) => l) : null;
const ISSUER = __ENV.JWT_ISSUER || 'geoflux';

export function mintToken(sub, scope, ttlSeconds) {
  const secret = __ENV.JWT_SECRET;
  if (!secret) throw new Error('set TOKEN, TOKENS_FILE or JWT_SECRET (see docs/benchmarks.md)');
  const now = Math.floor(Date.now() / 1000);
  const h = encoding.b64encode(JSON.stringify({ alg: 'HS256', typ: 'JWT' }), 'rawurl');
  const p = encoding.b64encode(JSON.stringify({ sub, tenant: TENANT, scope, iss: ISSUER, iat: now, exp: now + (ttlSeconds || 3600) }), 'rawurl');
  return `${h}.${p}.${crypto.hmac('sha256', secret, `${h}.${p}`, 'base64rawurl')}`;
}

/** The token of driver number n (1-based): from TOKENS_FILE, or minted for `k6-drv-<n>`. */
export function driverToken(n) {
  if (TOKENS) return TOKENS[(n - 1) % TOKENS.length];
  return mintToken(driverId(n), 'ingest');
}

export function driverId(n) {
  return `${__ENV.DRIVER_PREFIX || 'k6-drv'}-${n}`;
}

/** A token for map viewers / dispatchers (not bound to an entity). */
export function clientToken(sub, scope) {
  if (__ENV.TOKEN) return __ENV.TOKEN;
  return mintToken(sub, scope);
}

// ---------------------------------------------------------------- movement
/** A vehicle in the city: constant-ish speed, slowly turning heading. */
export function newVehicle(id) {
  const r = CITY_RADIUS_KM * Math.sqrt(Math.random());
  const a = Math.random() * 2 * Math.PI;
  return {
    id,
    lat: CITY.lat + (r / 111.32) * Math.cos(a),
    lon: CITY.lon + (r / (111.32 * Math.cos((CITY.lat * Math.PI) / 180))) * Math.sin(a),
    heading: Math.random() * 360,
    speed: 5 + Math.random() * 12,
    seq: 0,
  };
}

/** Moves the vehicle `dtMs` and returns a ping taken now. */
export function nextPing(v, dtMs) {
  const d = (v.speed * dtMs) / 1000;
  const h = (v.heading * Math.PI) / 180;
  v.lat += (d * Math.cos(h)) / 111320;
  v.lon += (d * Math.sin(h)) / (111320 * Math.cos((v.lat * Math.PI) / 180));
  v.heading = (v.heading + (Math.random() - 0.5) * 20 + 360) % 360;
  v.seq += 1;
  return {
    id: v.id, lat: Math.round(v.lat * 1e6) / 1e6, lon: Math.round(v.lon * 1e6) / 1e6, ts: Date.now(), seq: v.seq,
    speed: Math.round(v.speed * 10) / 10, heading: Math.round(v.heading), kind: 'car', status: 'available',
  };
}

export function randomPointInCity() {
  const r = CITY_RADIUS_KM * Math.sqrt(Math.random());
  const a = Math.random() * 2 * Math.PI;
  return {
    lat: CITY.lat + (r / 111.32) * Math.cos(a),
    lon: CITY.lon + (r / (111.32 * Math.cos((CITY.lat * Math.PI) / 180))) * Math.sin(a),
  };
}

// ---------------------------------------------------------------- tiles (Web Mercator)
export function tileOf(lon, lat, z) {
  const n = Math.pow(2, z);
  const x = Math.floor(((lon + 180) / 360) * n);
  const rad = (lat * Math.PI) / 180;
  const y = Math.floor(((1 - Math.log(Math.tan(rad) + 1 / Math.cos(rad)) / Math.PI) / 2) * n);
  return { z, x: Math.min(n - 1, Math.max(0, x)), y: Math.min(n - 1, Math.max(0, y)) };
}

/** The tiles (`z/x/y`) of a w×h block around a point: a map viewport. */
export function viewportTiles(lat, lon, z, w, h) {
  const c = tileOf(lon, lat, z);
  const out = [];
  for (let dx = 0; dx < w; dx++) for (let dy = 0; dy < h; dy++) out.push(`${z}/${c.x + dx - Math.floor(w / 2)}/${c.y + dy - Math.floor(h / 2)}`);
  return out;
}

// ---------------------------------------------------------------- Engine.IO v4 / Socket.IO v5 with the msgpack parser
// The tile rooms use socket.io-msgpack-parser (src/protocol/rooms-parser.ts). Two layers:
//
// Engine.IO frames the connection. Its control packets are TEXT WebSocket messages whose first
// character is the packet type: 0 open (`0{"sid":…,"pingInterval":…}`), 1 close, 2 ping, 3 pong,
// 6 noop (parseFrame). The server pings; the client answers `3`. An Engine.IO message (type 4)
// with binary data is a BINARY WebSocket message holding just the data, with no type prefix.
//
// Every Socket.IO packet is one such binary message: the MessagePack encoding of the object
// { type, nsp, data, id? } with type 0 CONNECT, 1 DISCONNECT, 2 EVENT, 3 ACK, 4 CONNECT_ERROR,
// nsp the namespace ("/"), and id the ack id (the key is absent when there is none). There are no
// binary attachments: bytes travel inside the packet as MessagePack bin.
//   client → { type: 0, nsp: '/', data: { token } }                      connect with auth
//   server → { type: 0, nsp: '/', data: { sid, pid } }                   accepted (pid undefined: see decodeMsgpack)
//   server → { type: 4, nsp: '/', data: { message, data: { code } } }    refused
//   client → { type: 2, nsp: '/', data: ['subscribe', { tiles }], id: 1 } event with ack id 1
//   server → { type: 3, nsp: '/', data: [{ ok: true, … }], id: 1 }      its ack
//   server → { type: 2, nsp: '/', data: ['update', 'z/x/y', <bin>] }    room frame; the bin is itself
//            MessagePack PackedEntity[] (decodeMsgpack it again, then unpackEntity each entry)
export const SIO_PATH = '/socket.io/?EIO=4&transport=websocket';

const SIO_TYPES = ['connect', 'disconnect', 'event', 'ack', 'connect_error'];

/** The CONNECT packet to namespace "/" with an auth payload (e.g. { token }), for sendBinary. */
export function sioConnectPacket(auth) {
  return encodeMsgpack(auth === undefined ? { type: 0, nsp: '/' } : { type: 0, nsp: '/', data: auth });
}

/** An EVENT packet [name, ...args], asking for an ack when ackId is given, for sendBinary. */
export function sioEventPacket(name, args, ackId) {
  const p = { type: 2, nsp: '/', data: [name].concat(args || []) };
  if (ackId !== undefined) p.id = ackId;
  return encodeMsgpack(p);
}

/**
 * Parses one binary message (ArrayBuffer or Uint8Array) as a Socket.IO packet: { sio, ackId, data }.
 * sio = 'connect' | 'disconnect' | 'event' | 'ack' | 'connect_error' | 'unknown'; ackId is
 * undefined without an ack id; data is the packet's data (an array for events and acks, bin values
 * as Uint8Array). Throws if the bytes are not MessagePack.
 */
export function parsePacket(input) {
  const p = decodeMsgpack(input);
  const ok = p !== null && typeof p === 'object' && !Array.isArray(p);
  return {
    sio: (ok && Number.isInteger(p.type) && SIO_TYPES[p.type]) || 'unknown',
    ackId: ok && typeof p.id === 'number' ? p.id : undefined,
    data: ok ? p.data : undefined,
  };
}

/**
 * Parses one Engine.IO text frame: { eio, data? }. eio = 'open' (data: the handshake object) |
 * 'close' | 'ping' | 'pong' | 'noop' | 'message' (data: the text; the msgpack parser never sends
 * text messages) | 'unknown'.
 */
export function parseFrame(text) {
  const t = text.charAt(0);
  if (t === '0') return { eio: 'open', data: JSON.parse(text.slice(1)) };
  if (t === '1') return { eio: 'close' };
  if (t === '2') return { eio: 'ping' };
  if (t === '3') return { eio: 'pong' };
  if (t === '4') return { eio: 'message', data: text.slice(1) };
  if (t === '6') return { eio: 'noop' };
  return { eio: 'unknown' };
}

/**
 * Room payloads carry entities as positional arrays [id, lat, lon, ts, speed, heading, kind,
 * status] (nil when absent): the EntityUpdate object of one (src/protocol/rooms.ts unpackEntity).
 */
export function unpackEntity(a) {
  const u = { id: a[0], lat: a[1], lon: a[2], ts: a[3] };
  if (a[4] != null) u.speed = a[4];
  if (a[5] != null) u.heading = a[5];
  if (a[6] != null) u.kind = a[6];
  if (a[7] != null) u.status = a[7];
  return u;
}

/**
 * MessagePack decoder (k6 has no msgpack module and no TextDecoder), for the Socket.IO packets
 * (parsePacket) and the room payloads inside them: the bin at data[2] of an `update`/`snapshot`
 * event is MessagePack `PackedEntity[]` (see unpackEntity). Covers the whole format; of the
 * extension types only notepack.io's type 0 (undefined, Date, ArrayBuffer; see ext below), which
 * socket.io-msgpack-parser writes. bin values come back as Uint8Array.
 */
export function decodeMsgpack(input) {
  const bytes = input instanceof Uint8Array ? input : new Uint8Array(input);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const u8 = () => bytes[pos++];
  const u16 = () => { const v = view.getUint16(pos); pos += 2; return v; };
  const u32 = () => { const v = view.getUint32(pos); pos += 4; return v; };
  const str = (n) => { const s = utf8(bytes, pos, n); pos += n; return s; };
  const bin = (n) => { const b = bytes.slice(pos, pos + n); pos += n; return b; };
  const arr = (n) => { const a = new Array(n); for (let i = 0; i < n; i++) a[i] = read(); return a; };
  const map = (n) => { const o = {}; for (let i = 0; i < n; i++) { const k = read(); o[k] = read(); } return o; };
  // Extension type 0 as notepack.io 2.x (socket.io-msgpack-parser) writes it: undefined is fixext 1
  // (socket.io's CONNECT reply { sid, pid } has pid undefined), a Date fixext 8 (ms), and an
  // ArrayBuffer or non-Buffer typed array ext 8/16/32 (returned as Uint8Array, like bin).
  const ext = (n, fixed) => {
    const t = view.getInt8(pos++);
    if (t !== 0 || (fixed && n !== 1 && n !== 8)) throw new Error(`msgpack: unsupported extension type ${t} (${n} bytes)`);
    if (!fixed) return bin(n);
    if (n === 1) { pos += 1; return undefined; }
    const hi = view.getInt32(pos); pos += 4;
    return new Date(hi * 4294967296 + u32());
  };
  function read() {
    if (pos >= bytes.length) throw new Error('msgpack: truncated');
    const b = u8();
    if (b <= 0x7f) return b;
    if (b <= 0x8f) return map(b & 0x0f);
    if (b <= 0x9f) return arr(b & 0x0f);
    if (b <= 0xbf) return str(b & 0x1f);
    if (b >= 0xe0) return b - 0x100;
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return bin(u8());
      case 0xc5: return bin(u16());
      case 0xc6: return bin(u32());
      case 0xc7: return ext(u8(), false);
      case 0xc8: return ext(u16(), false);
      case 0xc9: return ext(u32(), false);
      case 0xca: { const v = view.getFloat32(pos); pos += 4; return v; }
      case 0xcb: { const v = view.getFloat64(pos); pos += 8; return v; }
      case 0xcc: return u8();
      case 0xcd: return u16();
      case 0xce: return u32();
      case 0xcf: { const hi = u32(); return hi * 4294967296 + u32(); }
      case 0xd0: { const v = view.getInt8(pos); pos += 1; return v; }
      case 0xd1: { const v = view.getInt16(pos); pos += 2; return v; }
      case 0xd2: { const v = view.getInt32(pos); pos += 4; return v; }
      case 0xd3: { const hi = view.getInt32(pos); pos += 4; return hi * 4294967296 + u32(); }
      case 0xd4: return ext(1, true);
      case 0xd5: return ext(2, true);
      case 0xd6: return ext(4, true);
      case 0xd7: return ext(8, true);
      case 0xd8: return ext(16, true);
      case 0xd9: return str(u8());
      case 0xda: return str(u16());
      case 0xdb: return str(u32());
      case 0xdc: return arr(u16());
      case 0xdd: return arr(u32());
      case 0xde: return map(u16());
      case 0xdf: return map(u32());
      default: throw new Error(`msgpack: unsupported type 0x${b.toString(16)}`);
    }
  }
  const value = read();
  if (pos !== bytes.length) throw new Error('msgpack: trailing bytes');
  return value;
}

/**
 * MessagePack encoder for what a client sends, returning an ArrayBuffer (for socket.sendBinary).
 * null and undefined → nil (object keys whose value is undefined are left out, as in JSON);
 * booleans; integers up to ±2^53 in the smallest int/uint form (64-bit ones included); other
 * numbers → float64; strings → UTF-8 (surrogate pairs joined, lone surrogates → U+FFFD);
 * ArrayBuffer and typed arrays/DataView → bin; arrays; other objects → map of their own keys.
 */
export function encodeMsgpack(value) {
  const out = [];
  const f64 = new DataView(new ArrayBuffer(8));
  const be = (n, size) => { for (let s = (size - 1) * 8; s >= 0; s -= 8) out.push((n >>> s) & 0xff); };
  const be64 = (n) => { const hi = Math.floor(n / 4294967296); be(hi, 4); be(n - hi * 4294967296, 4); };
  const bytes = (b) => { for (let i = 0; i < b.length; i++) out.push(b[i]); };
  /** A length header: fix form below fixMax (none if 0), then the 8 (if c8), 16 and 32-bit forms. */
  function head(n, fix, fixMax, c8, c16, c32) {
    if (n < fixMax) out.push(fix | n);
    else if (c8 && n < 0x100) out.push(c8, n);
    else if (n < 0x10000) { out.push(c16); be(n, 2); }
    else { out.push(c32); be(n, 4); }
  }
  function int(n) {
    if (n >= 0) {
      if (n < 0x80) out.push(n);
      else if (n < 0x100) out.push(0xcc, n);
      else if (n < 0x10000) { out.push(0xcd); be(n, 2); }
      else if (n < 0x100000000) { out.push(0xce); be(n, 4); }
      else { out.push(0xcf); be64(n); }
    } else if (n >= -0x20) out.push(n & 0xff);
    else if (n >= -0x80) out.push(0xd0, n & 0xff);
    else if (n >= -0x8000) { out.push(0xd1); be(n, 2); }
    else if (n >= -0x80000000) { out.push(0xd2); be(n, 4); }
    else { out.push(0xd3); be64(n); }
  }
  function str(s) {
    const b = [];
    for (let i = 0; i < s.length; i++) {
      let c = s.charCodeAt(i);
      if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) {
        const d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d < 0xe000) { c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00); i++; }
      }
      if (c >= 0xd800 && c < 0xe000) c = 0xfffd;
      if (c < 0x80) b.push(c);
      else if (c < 0x800) b.push(0xc0 | (c >> 6), 0x80 | (c & 0x3f));
      else if (c < 0x10000) b.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
      else b.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 0x3f), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
    }
    head(b.length, 0xa0, 0x20, 0xd9, 0xda, 0xdb);
    bytes(b);
  }
  function write(v) {
    if (v === null || v === undefined) out.push(0xc0);
    else if (typeof v === 'boolean') out.push(v ? 0xc3 : 0xc2);
    else if (typeof v === 'number') {
      if (Number.isInteger(v) && Math.abs(v) <= Number.MAX_SAFE_INTEGER && !Object.is(v, -0)) int(v);
      else { f64.setFloat64(0, v); out.push(0xcb); bytes(new Uint8Array(f64.buffer)); }
    } else if (typeof v === 'string') str(v);
    else if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) {
      const b = v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      head(b.length, 0, 0, 0xc4, 0xc5, 0xc6);
      bytes(b);
    } else if (Array.isArray(v)) {
      head(v.length, 0x90, 0x10, 0, 0xdc, 0xdd);
      for (let i = 0; i < v.length; i++) write(v[i]);
    } else if (typeof v === 'object') {
      const keys = Object.keys(v).filter((k) => v[k] !== undefined);
      head(keys.length, 0x80, 0x10, 0, 0xde, 0xdf);
      for (let i = 0; i < keys.length; i++) { str(keys[i]); write(v[keys[i]]); }
    } else throw new Error(`msgpack: cannot encode ${typeof v}`);
  }
  write(value);
  return new Uint8Array(out).buffer;
}

function utf8(bytes, start, n) {
  let out = '';
  const end = start + n;
  for (let i = start; i < end;) {
    const c = bytes[i++];
    let cp;
    if (c < 0x80) cp = c;
    else if (c < 0xe0) cp = ((c & 0x1f) << 6) | (bytes[i++] & 0x3f);
    else if (c < 0xf0) cp = ((c & 0x0f) << 12) | ((bytes[i++] & 0x3f) << 6) | (bytes[i++] & 0x3f);
    else cp = ((c & 0x07) << 18) | ((bytes[i++] & 0x3f) << 12) | ((bytes[i++] & 0x3f) << 6) | (bytes[i++] & 0x3f);
    if (cp > 0xffff) { cp -= 0x10000; out += String.fromCharCode(0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff)); } else out += String.fromCharCode(cp);
  }
  return out;
}
