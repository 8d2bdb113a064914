// geoflux live map: subscribes to the tiles in view over socket.io (viewport), draws the
// vehicles moving smoothly, aggregate counts when zoomed out, a side panel with live figures.
// No build step: Leaflet, msgpackr and socket.io-client are the browser builds served by
// the gateway from node_modules (/vendor/…). Protocol: src/protocol/rooms.ts, docs/rooms.md.
/* global L, msgpackr, io */

const params = new URLSearchParams(location.search);
const ROOM_MIN_ZOOM = 3;
const ROOM_MAX_ZOOM = 18;
const STALE_MS = 75_000; // a vehicle not heard of for this long is dropped (server TTL is 60 s)
const STATUS_COLORS = { available: '#16a34a', on_trip: '#2563eb' };
const OTHER_COLOR = '#f59e0b';
const KIND_RADIUS = { car: 6, van: 7, bus: 7, scooter: 5, bike: 4.5 };

const $ = (id) => document.getElementById(id);
const unpack = (payload) => msgpackr.unpack(payload instanceof Uint8Array ? payload : new Uint8Array(payload));
/** Room payloads carry entities as positional arrays [id, lat, lon, ts, speed, heading, kind, status] (src/protocol/rooms.ts). */
const entity = (a) => {
  const u = { id: a[0], lat: a[1], lon: a[2], ts: a[3] };
  if (a[4] != null) u.speed = a[4];
  if (a[5] != null) u.heading = a[5];
  if (a[6] != null) u.kind = a[6];
  if (a[7] != null) u.status = a[7];
  return u;
};
const unpackEntities = (payload) => unpack(payload).map(entity);

// ---------- debug hook (tests, curious users) ----------
const debug = {
  ready: false,
  connected: false,
  tiles: [],
  aggregated: [],
  zoom: null,
  subscribeCount: 0,
  updates: 0,
  snapshots: 0,
  lefts: 0,
  lastError: null,
  basemapErrors: 0,
  basemapLoads: 0,
  vehicleCount: () => vehicles.size,
  positions: () => Object.fromEntries([...vehicles].map(([id, v]) => [id, [v.to.lat, v.to.lng, v.data.ts]])),
  /** Rendered (interpolated) positions, to see motion between updates. */
  rendered: () => Object.fromEntries([...vehicles].map(([id, v]) => { const p = v.marker.getLatLng(); return [id, [p.lat, p.lng]]; })),
};
window.__geoflux = debug;

// ---------- map and base layers ----------
const center = (params.get('center') || '41.1579,-8.6291').split(',').map(Number);
// One canvas for every vector layer: a second canvas on top would swallow clicks meant for the vehicles.
const renderer = L.canvas({ padding: 0.3, tolerance: 8 }); // tolerance: moving vehicles stay easy to click
const map = L.map('map', { preferCanvas: true, renderer, zoomControl: true, worldCopyJump: true })
  .setView([center[0], center[1]], Number(params.get('zoom') || 14));
window.__geoflux.map = map;

/** The fallback base map: tile outlines with their z/x/y, drawn locally (works offline). */
const TileGrid = L.GridLayer.extend({
  createTile(coords) {
    const tile = document.createElement('canvas');
    const size = this.getTileSize();
    tile.width = size.x; tile.height = size.y;
    const ctx = tile.getContext('2d');
    ctx.strokeStyle = 'rgba(100, 116, 139, 0.35)';
    ctx.lineWidth = 1;
    ctx.strokeRect(0.5, 0.5, size.x - 1, size.y - 1);
    ctx.fillStyle = 'rgba(100, 116, 139, 0.55)';
    ctx.font = '10px system-ui, sans-serif';
    ctx.fillText(`${coords.z}/${coords.x}/${coords.y}`, 6, 14);
    return tile;
  },
});
new TileGrid({ zIndex: 1 }).addTo(map);

map.createPane('streets');
map.getPane('streets').style.zIndex = 150; // below the tile pane: OSM tiles cover it when they load
map.getPane('streets').style.pointerEvents = 'none';

const osm = L.tileLayer(params.get('tiles') || 'https://tile.openstreetmap.org/{z}/{x}/{y}.png', {
  maxZoom: 19, zIndex: 2, attribution: '© <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors',
});
osm.on('tileerror', () => { debug.basemapErrors++; showBasemapNote(); });
osm.on('tileload', () => { debug.basemapLoads++; showBasemapNote(); });
if (params.get('tiles') !== 'none') osm.addTo(map);
function showBasemapNote() {
  const el = $('basemap');
  if (debug.basemapErrors > 0 && debug.basemapLoads === 0) {
    el.textContent = 'Base map tiles unreachable (offline?): showing the tile grid and the street network instead.';
    el.classList.remove('hidden');
  } else el.classList.add('hidden');
}

// Street network for offline use (Porto, from the simulator's data), drawn under the tiles.
fetch('/data/porto-roads.json').then((r) => (r.ok ? r.json() : undefined)).then((d) => {
  if (!d) return;
  const lines = d.lines.map((flat) => { const pts = []; for (let i = 0; i < flat.length; i += 2) pts.push([flat[i + 1], flat[i]]); return pts; });
  L.polyline(lines, { pane: 'streets', renderer: L.canvas({ pane: 'streets' }), color: '#b8c1cc', weight: 1.6, interactive: false }).addTo(map);
  map.attributionControl.addAttribution('streets © OpenStreetMap contributors (ODbL)');
}).catch(() => undefined);

// ---------- token and socket ----------
async function getToken() {
  if (params.get('token')) return params.get('token');
  const r = await fetch('/v1/demo-token');
  if (!r.ok) throw new Error('no token: open the page with ?token=<a subscribe+query token> (the demo token endpoint is off in production)');
  return (await r.json()).token;
}

let token = await getToken();
const authHeaders = { authorization: `Bearer ${token}` };
// auth as a function: every (re)connect presents a current token (the server disconnects a
// socket whose token expired).
const socket = io({
  path: '/socket.io', transports: ['websocket'], reconnectionDelay: 300, reconnectionDelayMax: 3000,
  auth: (cb) => { getToken().then((t) => { token = t; authHeaders.authorization = `Bearer ${t}`; cb({ token: t }); }, () => cb({ token })); },
});

socket.on('connect', () => {
  debug.connected = true;
  setConn(true);
  subscribeView(true);
});
socket.on('disconnect', (reason) => {
  debug.connected = false;
  setConn(false);
  // socket.io-client does not retry after a server-side disconnect (shutdown, slow client,
  // expired token): reconnect ourselves; the 'connect' handler re-subscribes (fresh snapshot).
  if (reason === 'io server disconnect') setTimeout(() => socket.connect(), 500 + Math.random() * 1000);
});
socket.on('connect_error', (err) => { debug.lastError = err.message; setConn(false, err.message); });
function setConn(on, why) {
  const el = $('conn');
  el.className = `conn ${on ? 'on' : 'off'}`;
  el.textContent = on ? 'live' : why ? `offline: ${why}` : 'reconnecting…';
}

// ---------- vehicles ----------
/** id → { data, marker, from, to, t0, dur, tiles:Set, seen, trail:[] } */
const vehicles = new Map();
/** tile → Set(id) */
const tileMembers = new Map();
const delays = [];
let updatesThisSecond = 0;
let selected = null;
let selectedTrail = null;
let trackLayer = null;

function colorOf(status) { return STATUS_COLORS[status] || OTHER_COLOR; }

/** A circle marker with a small nose pointing along the vehicle's heading (canvas renderer). */
const VehicleMarker = L.CircleMarker.extend({
  _updatePath() {
    const r = this._renderer;
    const h = this.options.heading;
    if (r && r._drawing && r._ctx && typeof h === 'number' && this.options.moving && !this._empty()) {
      const ctx = r._ctx, p = this._point, rad = this._radius;
      const a = ((h - 90) * Math.PI) / 180; // clockwise from north; canvas y points down
      const at = (d, da) => [p.x + Math.cos(a + da) * d, p.y + Math.sin(a + da) * d];
      const tip = at(rad + 6, 0), left = at(rad, -0.75), right = at(rad, 0.75);
      ctx.beginPath();
      ctx.moveTo(tip[0], tip[1]); ctx.lineTo(left[0], left[1]); ctx.lineTo(right[0], right[1]); ctx.closePath();
      ctx.globalAlpha = 0.95;
      ctx.fillStyle = this.options.fillColor;
      ctx.fill();
    }
    L.CircleMarker.prototype._updatePath.call(this);
  },
});

function upsert(tile, u, animate) {
  let v = vehicles.get(u.id);
  const now = performance.now();
  const to = L.latLng(u.lat, u.lon);
  if (!v) {
    const marker = new VehicleMarker(to, {
      heading: u.heading, moving: (u.speed || 0) > 0.5,
      renderer, radius: KIND_RADIUS[u.kind] || 6, color: '#ffffff', weight: 1.5, fillColor: colorOf(u.status), fillOpacity: 0.95, bubblingMouseEvents: false,
    }).addTo(map);
    marker.on('click', () => select(u.id));
    if (highlighted.has(u.id)) marker.setStyle({ color: '#f59e0b', weight: 4 });
    v = { data: u, marker, from: to, to, t0: now, dur: 0, tiles: new Set(), seen: Date.now(), lastAt: now, trail: [[u.lat, u.lon]] };
    vehicles.set(u.id, v);
    if (selected === u.id) styleSelected(u.id, true);
  } else {
    if (u.ts < v.data.ts) { addToTile(tile, v, u.id); return; } // never move back in time
    const moved = u.lat !== v.to.lat || u.lon !== v.to.lng;
    if (moved) {
      v.from = animate ? v.marker.getLatLng() : to;
      v.to = to;
      v.t0 = now;
      v.dur = animate ? Math.min(5000, Math.max(800, now - v.lastAt)) : 0;
      v.trail.push([u.lat, u.lon]);
      if (v.trail.length > 120) v.trail.shift();
    }
    v.marker.options.heading = u.heading;
    v.marker.options.moving = (u.speed || 0) > 0.5;
    if (v.data.status !== u.status) v.marker.setStyle({ fillColor: colorOf(u.status) });
    v.data = u;
    v.seen = Date.now();
    v.lastAt = now;
    if (!animate) v.marker.setLatLng(to);
  }
  addToTile(tile, v, u.id);
  if (selected === u.id) renderDetails();
}

function addToTile(tile, v, id) {
  v.tiles.add(tile);
  let s = tileMembers.get(tile);
  if (!s) tileMembers.set(tile, (s = new Set()));
  s.add(id);
}

function removeFromTile(tile, id) {
  const v = vehicles.get(id);
  tileMembers.get(tile)?.delete(id);
  if (!v) return;
  v.tiles.delete(tile);
  if (v.tiles.size === 0) removeVehicle(id);
}

function removeVehicle(id) {
  const v = vehicles.get(id);
  if (!v) return;
  map.removeLayer(v.marker);
  for (const t of v.tiles) tileMembers.get(t)?.delete(id);
  vehicles.delete(id);
  if (selected === id) renderDetails(true);
}

function forgetTile(tile) {
  for (const id of [...(tileMembers.get(tile) || [])]) removeFromTile(tile, id);
  tileMembers.delete(tile);
  clearAggregates(tile);
}

socket.on('snapshot', (tile, payload) => {
  debug.snapshots++;
  const list = unpackEntities(payload);
  const ids = new Set(list.map((u) => u.id));
  for (const id of [...(tileMembers.get(tile) || [])]) if (!ids.has(id)) removeFromTile(tile, id);
  for (const u of list) upsert(tile, u, false);
});

socket.on('update', (tile, payload) => {
  const list = unpackEntities(payload);
  const now = Date.now();
  debug.updates += list.length;
  updatesThisSecond += list.length;
  for (const u of list) {
    if (!currentTiles.has(tile)) break;
    upsert(tile, u, true);
    delays.push(now - u.ts);
  }
  if (delays.length > 400) delays.splice(0, delays.length - 400);
});

socket.on('left', (tile, payload) => {
  const list = unpack(payload);
  debug.lefts += list.length;
  for (const l of list) {
    const v = vehicles.get(l.id);
    if (v && (l.reason === 'expired' || v.data.ts <= l.ts)) removeFromTile(tile, l.id);
  }
});

// ---------- aggregates (zoomed out) ----------
const aggLayers = new Map(); // tile → L.LayerGroup
function clearAggregates(tile) {
  const g = aggLayers.get(tile);
  if (g) { map.removeLayer(g); aggLayers.delete(tile); }
}
function tileCenter(z, x, y) {
  const n = 2 ** z;
  const lon = ((x + 0.5) / n) * 360 - 180;
  const lat = (Math.atan(Math.sinh(Math.PI * (1 - (2 * (y + 0.5)) / n))) * 180) / Math.PI;
  return [lat, lon];
}
socket.on('aggregates', (tile, payload) => {
  const agg = unpack(payload);
  if (!currentTiles.has(tile)) return;
  clearAggregates(tile);
  const g = L.layerGroup();
  for (const [x, y, count] of agg.cells) {
    const size = Math.round(Math.min(54, 20 + 7 * Math.log2(1 + count)));
    g.addLayer(L.marker(tileCenter(agg.z, x, y), {
      interactive: false,
      icon: L.divIcon({ className: '', html: `<div class="agg" style="width:${size}px;height:${size}px">${count}</div>`, iconSize: [size, size] }),
    }));
  }
  g.addTo(map);
  aggLayers.set(tile, g);
  debug.aggregateTotal = [...aggLayers.keys()].length;
});

// ---------- subscriptions follow the view ----------
let currentTiles = new Set();
let viewportSupported = true;

function tileZoom() { return Math.max(ROOM_MIN_ZOOM, Math.min(ROOM_MAX_ZOOM, Math.round(map.getZoom()))); }

function tilesFor(bounds, z) {
  const n = 2 ** z;
  const x = (lon) => Math.max(0, Math.min(n - 1, Math.floor(((lon + 180) / 360) * n)));
  const y = (lat) => { const r = (Math.max(-85.0511, Math.min(85.0511, lat)) * Math.PI) / 180; return Math.max(0, Math.min(n - 1, Math.floor(((1 - Math.log(Math.tan(r) + 1 / Math.cos(r)) / Math.PI) / 2) * n))); };
  const out = [];
  for (let tx = x(bounds.getWest()); tx <= x(bounds.getEast()); tx++) for (let ty = y(bounds.getNorth()); ty <= y(bounds.getSouth()); ty++) out.push(`${z}/${tx}/${ty}`);
  return out;
}

let subscribing = Promise.resolve();
function subscribeView(force) {
  subscribing = subscribing.then(() => doSubscribe(force)).catch((err) => { debug.lastError = String(err && err.message || err); });
  return subscribing;
}

async function doSubscribe(force) {
  if (!socket.connected) return;
  const b = map.getBounds();
  let z = tileZoom();
  for (let attempt = 0; attempt < 4; attempt++, z--) {
    let ack;
    const clampLon = (v) => Math.max(-180, Math.min(180, v));
    const clampLat = (v) => Math.max(-85.05, Math.min(85.05, v));
    const bbox = [clampLon(b.getWest()), clampLat(b.getSouth()), clampLon(b.getEast()), clampLat(b.getNorth())].map((v) => Math.round(v * 1e6) / 1e6);
    if (viewportSupported) {
      try {
        ack = await socket.timeout(4000).emitWithAck('viewport', { bbox, zoom: z });
      } catch {
        viewportSupported = false; // an older server without viewports: subscribe to tiles
      }
    }
    if (!viewportSupported) {
      const want = tilesFor(b, z);
      const drop = [...currentTiles].filter((t) => !want.includes(t));
      if (drop.length) await socket.timeout(4000).emitWithAck('unsubscribe', { tiles: drop }).catch(() => undefined);
      const add = force ? want : want.filter((t) => !currentTiles.has(t));
      ack = add.length ? await socket.timeout(4000).emitWithAck('subscribe', { tiles: add }) : { ok: true, tiles: [] };
      if (ack.ok) ack = { ok: true, tiles: want, aggregated: ack.aggregated };
    }
    if (!ack.ok) {
      debug.lastError = `${ack.code}: ${ack.message}`;
      if (ack.code === 'TOO_MANY_TILES' && z > ROOM_MIN_ZOOM) continue;
      return;
    }
    const next = new Set(ack.tiles);
    for (const t of currentTiles) if (!next.has(t)) forgetTile(t);
    currentTiles = next;
    debug.tiles = [...next].sort();
    debug.aggregated = (ack.aggregated || []).slice().sort();
    for (const t of debug.aggregated) {
      // vehicles are not sent for aggregated tiles
      for (const id of [...(tileMembers.get(t) || [])]) removeFromTile(t, id);
    }
    for (const t of [...aggLayers.keys()]) if (!debug.aggregated.includes(t)) clearAggregates(t);
    debug.zoom = z;
    debug.subscribeCount++;
    debug.ready = true;
    $('v-tiles').textContent = `${next.size} @ z${z}${debug.aggregated.length ? ' · counts' : ''}`;
    return;
  }
}

let moveTimer;
map.on('moveend', () => { clearTimeout(moveTimer); moveTimer = setTimeout(() => subscribeView(false), 120); });

// ---------- animation ----------
function frame() {
  const now = performance.now();
  for (const v of vehicles.values()) {
    if (v.dur <= 0) continue;
    const p = Math.min(1, (now - v.t0) / v.dur);
    v.marker.setLatLng([v.from.lat + (v.to.lat - v.from.lat) * p, v.from.lng + (v.to.lng - v.from.lng) * p]);
    if (p >= 1) v.dur = 0;
  }
  if (selected && selectedTrail) {
    const v = vehicles.get(selected);
    if (v) selectedTrail.setLatLngs([...v.trail.slice(0, -1), v.marker.getLatLng()]);
  }
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);

// ---------- panel ----------
function fmt(n, digits = 0) { return n === null || n === undefined || Number.isNaN(n) ? 'n/a' : Number(n).toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }); }
function ms(n) { return n === null || n === undefined ? 'n/a' : n >= 10_000 ? `${fmt(n / 1000, 1)} s` : `${fmt(n)} ms`; }

setInterval(() => {
  const t = Date.now();
  for (const [id, v] of vehicles) if (t - v.seen > STALE_MS) removeVehicle(id);
  const bounds = map.getBounds();
  let inView = 0, avail = 0, trip = 0, other = 0;
  for (const v of vehicles.values()) {
    if (!bounds.contains(v.marker.getLatLng())) continue;
    inView++;
    if (v.data.status === 'available') avail++; else if (v.data.status === 'on_trip') trip++; else other++;
  }
  let aggTotal = 0;
  for (const g of aggLayers.values()) aggTotal += g.getLayers().reduce((n, m) => n + Number(m.options.icon.options.html.match(/>(\d+)</)?.[1] || 0), 0);
  $('v-count').textContent = aggTotal ? `${fmt(inView + aggTotal)} (${fmt(aggTotal)} counted)` : fmt(inView);
  $('v-available').textContent = fmt(avail);
  $('v-trip').textContent = fmt(trip);
  $('v-other').textContent = fmt(other);
  $('v-ups').textContent = fmt(updatesThisSecond);
  updatesThisSecond = 0;
  if (delays.length) {
    const s = delays.slice().sort((a, b) => a - b);
    $('v-delay').textContent = `${ms(s[Math.floor(s.length / 2)])} · p95 ${ms(s[Math.floor(s.length * 0.95)])}`;
  }
}, 1000);

async function pollStats() {
  try {
    const r = await fetch('/v1/stats', { headers: authHeaders });
    if (r.ok) {
      const s = await r.json();
      $('f-pps').textContent = s.pingsPerSecond === null ? '…' : fmt(s.pingsPerSecond, 1);
      $('f-live').textContent = fmt(s.entitiesLive);
      const browserDelay = delays.length ? delays.slice().sort((a, b) => a - b)[Math.floor(delays.length / 2)] : null;
      $('f-delay').textContent = s.deliveryMs !== null ? ms(s.deliveryMs) : ms(browserDelay);
      $('f-lag').textContent = ms(s.persistenceLagMs);
      debug.stats = s;
    }
  } catch { /* next round */ }
}
pollStats();
setInterval(pollStats, 2000);

// ---------- vehicle details and track ----------
function styleSelected(id, on) {
  const v = vehicles.get(id);
  if (!v) return;
  v.marker.setRadius(on ? 9 : KIND_RADIUS[v.data.kind] || 6);
  if (on) { v.marker.setStyle({ color: '#111827', weight: 3 }); v.marker.bringToFront(); }
  else v.marker.setStyle(highlighted.has(id) ? { color: '#f59e0b', weight: 4 } : { color: '#ffffff', weight: 1.5 });
}

async function select(id) {
  if (selected) styleSelected(selected, false);
  selected = id;
  styleSelected(id, true);
  debug.selected = id;
  if (selectedTrail) map.removeLayer(selectedTrail);
  if (trackLayer) { map.removeLayer(trackLayer); trackLayer = null; }
  selectedTrail = L.polyline([], { renderer, color: '#f97316', weight: 3, opacity: 0.9, interactive: false }).addTo(map);
  const prev = $('track-status'); if (prev) prev.textContent = 'history: loading…';
  renderDetails();
  try {
    const since = new Date(Date.now() - 30 * 60_000).toISOString();
    const r = await fetch(`/v1/entities/${encodeURIComponent(id)}/track?from=${encodeURIComponent(since)}`, { headers: authHeaders });
    if (selected !== id) return;
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      const noRoute = /no route/.test((body.error && body.error.message) || '');
      const line = r.status === 404 ? (noRoute ? 'history: endpoint not available on this server' : 'history: none yet') : `history: HTTP ${r.status}`;
      const cur = $('track-status'); if (cur) cur.textContent = line;
      return;
    }
    const geo = await r.json();
    trackLayer = L.geoJSON(geo, { renderer, style: { color: '#a855f7', weight: 3, opacity: 0.8, dashArray: '4 4' }, pointToLayer: (_f, ll) => L.circleMarker(ll, { renderer, radius: 2, color: '#a855f7' }), interactive: false }).addTo(map);
    const n = (geo.features || [geo]).reduce((acc, f) => acc + ((f.geometry && f.geometry.coordinates && f.geometry.coordinates.length) || 0), 0);
    const cur = $('track-status'); if (cur) cur.textContent = `history: ${n} points (last 30 min, PostGIS)`;
  } catch {
    const cur = $('track-status'); if (cur) cur.textContent = 'history: unavailable';
  }
}

function renderDetails(gone) {
  const el = $('details');
  if (!selected) { el.classList.add('hidden'); return; }
  const v = vehicles.get(selected);
  el.classList.remove('hidden');
  const trackLine = document.getElementById('track-status')?.textContent || 'history: loading…';
  if (!v || gone) {
    el.innerHTML = `<h2>${escapeHtml(selected)}</h2><p>went offline or left the view</p><p id="track-status">${escapeHtml(trackLine)}</p>`;
    return;
  }
  const u = v.data;
  el.innerHTML = `<h2>${escapeHtml(u.id)}</h2><table>
    <tr><td>kind</td><td>${escapeHtml(u.kind || 'n/a')}</td></tr>
    <tr><td>status</td><td><i class="dot ${u.status === 'available' || u.status === 'on_trip' ? u.status : 'other'}"></i>${escapeHtml(u.status || 'n/a')}</td></tr>
    <tr><td>speed</td><td>${u.speed === undefined ? 'n/a' : `${fmt(u.speed * 3.6)} km/h`}</td></tr>
    <tr><td>heading</td><td>${u.heading === undefined ? 'n/a' : `${fmt(u.heading)}°`}</td></tr>
    <tr><td>position</td><td>${u.lat.toFixed(5)}, ${u.lon.toFixed(5)}</td></tr>
    <tr><td>last fix</td><td>${new Date(u.ts).toLocaleTimeString()}</td></tr>
  </table><p id="track-status">${escapeHtml(trackLine)}</p>`;
}

function escapeHtml(s) { return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]); }

// ---------- nearby search ----------
let nearbyLayer = null;
const highlighted = new Set();
function setHighlight(ids) {
  for (const id of highlighted) vehicles.get(id)?.marker.setStyle({ color: '#ffffff', weight: 1.5 });
  highlighted.clear();
  for (const id of ids) {
    const v = vehicles.get(id);
    if (!v) continue;
    v.marker.setStyle({ color: '#f59e0b', weight: 4 });
    v.marker.bringToFront();
    highlighted.add(id);
  }
}
map.on('click', async (e) => {
  if (nearbyLayer) map.removeLayer(nearbyLayer);
  setHighlight([]);
  if (selected) styleSelected(selected, false);
  selected = null;
  if (selectedTrail) { map.removeLayer(selectedTrail); selectedTrail = null; }
  if (trackLayer) { map.removeLayer(trackLayer); trackLayer = null; }
  renderDetails();
  const radius = 1500;
  const { lat, lng } = e.latlng;
  nearbyLayer = L.layerGroup([L.circle(e.latlng, { renderer, radius, color: '#f59e0b', weight: 1, fillOpacity: 0.05, interactive: false })]).addTo(map);
  const el = $('nearby');
  el.classList.remove('hidden');
  el.innerHTML = '<h2>Nearest vehicles</h2><p>searching…</p>';
  try {
    const r = await fetch(`/v1/nearby?lat=${lat.toFixed(6)}&lon=${lng.toFixed(6)}&radius=${radius}&limit=8`, { headers: authHeaders });
    const body = await r.json();
    if (!r.ok) { el.innerHTML = `<h2>Nearest vehicles</h2><p>${escapeHtml(body.error ? body.error.message : r.status)}</p>`; return; }
    debug.nearby = body.results;
    // Highlight the vehicles themselves (the rings follow them); ones not drawn here get a marker at the reported spot.
    for (const h of body.results) if (!vehicles.has(h.id)) nearbyLayer.addLayer(L.circleMarker([h.lat, h.lon], { renderer, radius: 8, color: '#f59e0b', weight: 3, fill: false, interactive: false }));
    setHighlight(body.results.map((h) => h.id));
    debug.highlighted = [...highlighted];
    el.innerHTML = `<h2>Nearest vehicles (${body.results.length} within ${fmt(radius)} m)</h2><ol>${body.results.map((h) =>
      `<li data-id="${escapeHtml(h.id)}">${escapeHtml(h.id)}<span>${fmt(h.distance)} m</span></li>`).join('')}</ol>`;
    el.querySelectorAll('li').forEach((li) => li.addEventListener('click', () => { if (vehicles.has(li.dataset.id)) select(li.dataset.id); }));
  } catch (err) {
    el.innerHTML = `<h2>Nearest vehicles</h2><p>${escapeHtml(err.message)}</p>`;
  }
});
