// Shared helpers of the geoflux k6 scripts (k6 modules only): environment, tokens, plausible
// vehicle paths, tile math, and the Engine.IO v4 / Socket.IO v5 text framing.
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

// ---------------------------------------------------------------- Engine.IO v4 / Socket.IO v5 text framing
// Engine.IO packet types: 0 open, 1 close, 2 ping, 3 pong, 4 message. A Socket.IO packet rides
// in an Engine.IO message: 0 CONNECT, 1 DISCONNECT, 2 EVENT, 3 ACK, 4 CONNECT_ERROR,
// 5 BINARY_EVENT, 6 BINARY_ACK; then an optional ack id (digits), then the JSON payload.
//   40{"token":"…","format":"json"}     connect to "/" with auth
//   421["subscribe",{"tiles":[…]}]       event with ack id 1  →  431[{"ok":true,…}]
//   42["update","14/x/y",[…]]            server event (JSON payloads when format=json)
export const SIO_PATH = '/socket.io/?EIO=4&transport=websocket';

export function sioConnectFrame(auth) {
  return `40${JSON.stringify(auth)}`;
}

export function sioEventFrame(name, args, ackId) {
  return `42${ackId === undefined ? '' : ackId}${JSON.stringify([name].concat(args))}`;
}

/**
 * Parses one text frame: { eio, sio?, ackId?, data? }. eio = 'open' | 'ping' | 'pong' |
 * 'close' | 'message' | 'noop'; for messages, sio = 'connect' | 'disconnect' | 'event' | 'ack' |
 * 'connect_error' | 'binary_event' | 'binary_ack'.
 */
export function parseFrame(text) {
  const t = text.charAt(0);
  if (t === '0') return { eio: 'open', data: JSON.parse(text.slice(1)) };
  if (t === '1') return { eio: 'close' };
  if (t === '2') return { eio: 'ping' };
  if (t === '3') return { eio: 'pong' };
  if (t === '6') return { eio: 'noop' };
  if (t !== '4') return { eio: 'unknown' };
  const kinds = ['connect', 'disconnect', 'event', 'ack', 'connect_error', 'binary_event', 'binary_ack'];
  const sio = kinds[Number(text.charAt(1))] || 'unknown';
  let i = 2;
  if (sio === 'binary_event' || sio === 'binary_ack') {
    while (i < text.length && text.charAt(i) !== '-') i++;
    i++;
  }
  if (text.charAt(i) === '/') { // namespace other than "/"
    while (i < text.length && text.charAt(i) !== ',') i++;
    i++;
  }
  let ackId;
  const start = i;
  while (i < text.length && text.charCodeAt(i) >= 48 && text.charCodeAt(i) <= 57) i++;
  if (i > start) ackId = Number(text.slice(start, i));
  const rest = text.slice(i);
  return { eio: 'message', sio, ackId, data: rest ? JSON.parse(rest) : undefined };
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
 * MessagePack decoder for the room payloads (k6 has no msgpack module and no TextDecoder).
 * Room frames are socket.io binary events: a text frame `451-["update","z/x/y",{"_placeholder":true,"num":0}]`
 * followed by one binary frame holding MessagePack `PackedEntity[]` (see unpackEntity). Covers the whole format
 * except extension types (the gateway sends none).
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
