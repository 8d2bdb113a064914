// k6: map viewers on socket.io, spoken as raw Engine.IO v4 / Socket.IO v5 over k6/ws (k6 has no
// socket.io client), with the gateway's packet format, socket.io-msgpack-parser: Engine.IO control
// frames (open, ping/pong, close) are text messages, every Socket.IO packet (connect, event, ack,
// connect_error) is one binary message holding the MessagePack packet { type, nsp, data, id? }
// (lib/geoflux.js sioConnectPacket / sioEventPacket / parsePacket). Each VU connects with its token,
// subscribes to a viewport of tiles around a random point in the city, counts snapshot/update
// events and measures ping-to-screen delay (arrival − the ping's ts) of every entity update. A room
// event is ['update' | 'snapshot', 'z/x/y', <bin>], the bin being MessagePack PackedEntity[],
// decoded with decodeMsgpack and unpackEntity.
//
//   k6 run -e HOST=127.0.0.1:8080 -e TOKEN=$(npm run -s token -- --scope subscribe) -e VIEWERS=200 load-tests/k6/map-viewers.js
//
// Needs the clocks of the drivers' devices (here: the k6 drivers or `npm run simulate` on the
// same machine) and of k6 to agree; run it next to drivers.js or rush-hour.js.
import ws from 'k6/ws';
import { check, sleep } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import exec from 'k6/execution';
import { SIO_PATH, WS_BASE, clientToken, decodeMsgpack, envInt, parseFrame, parsePacket, randomPointInCity, sioConnectPacket, sioEventPacket, unpackEntity, viewportTiles } from './lib/geoflux.js';

export const deliveryDelay = new Trend('delivery_delay', true);
export const updatesReceived = new Counter('updates_received');
export const binaryUpdates = new Counter('binary_updates_unparsed');
export const snapshotsReceived = new Counter('snapshots_received');
export const subscribeOk = new Rate('subscribe_ok');
export const viewerErrors = new Rate('viewer_errors');

const VIEWERS = envInt('VIEWERS', 50);
const DURATION = __ENV.DURATION || '1m';
const VIEW_SECONDS = envInt('VIEW_SECONDS', 30);
const ZOOM = envInt('ZOOM', 14);
const VIEW_W = envInt('VIEW_TILES_W', 2);
const VIEW_H = envInt('VIEW_TILES_H', 2);

export const options = {
  scenarios: {
    viewers: {
      executor: 'constant-vus',
      exec: 'viewer',
      vus: VIEWERS,
      duration: DURATION,
      gracefulStop: '5s',
      tags: { scenario_kind: 'viewers' },
    },
  },
  thresholds: {
    delivery_delay: [`p(99)<${envInt('DELIVERY_P99_MS', 50)}`],
    subscribe_ok: ['rate>0.99'],
    viewer_errors: [`rate<${__ENV.MAX_ERROR_RATE || 0.01}`],
    checks: ['rate>0.99'],
  },
};

/** One viewer session: handshake, connect with auth, subscribe, watch VIEW_SECONDS, close. */
export function viewer() {
  const token = clientToken(`k6-viewer-${exec.vu.idInTest}`, 'subscribe');
  const p = randomPointInCity();
  const tiles = viewportTiles(p.lat, p.lon, ZOOM, VIEW_W, VIEW_H);
  let nextAck = 1;
  const acks = {};
  let connected = false;
  /** A room event [name, tile, payload]: payload is MessagePack PackedEntity[] (bin). */
  const onEvent = (name, payload) => {
    if (name !== 'update' && name !== 'snapshot') return;
    let entities;
    try { entities = decodeMsgpack(payload); } catch (e) { binaryUpdates.add(1); return; }
    if (!Array.isArray(entities)) { binaryUpdates.add(1); return; }
    if (name === 'snapshot') { snapshotsReceived.add(1); return; }
    const now = Date.now();
    for (let i = 0; i < entities.length; i++) deliveryDelay.add(now - unpackEntity(entities[i]).ts);
    updatesReceived.add(entities.length);
  };

  const res = ws.connect(`${WS_BASE}${SIO_PATH}`, { tags: { name: 'socket.io' } }, (socket) => {
    const emit = (name, args, onAck) => {
      const id = nextAck++;
      acks[id] = onAck;
      socket.sendBinary(sioEventPacket(name, args, id));
    };
    // Engine.IO control frames (text).
    socket.on('message', (text) => {
      let f;
      try { f = parseFrame(text); } catch (e) { viewerErrors.add(1); return; }
      if (f.eio === 'open') socket.sendBinary(sioConnectPacket({ token }));
      else if (f.eio === 'ping') socket.send('3');
      else if (f.eio === 'close') socket.close();
    });
    // Socket.IO packets (binary, MessagePack).
    socket.on('binaryMessage', (buf) => {
      let pkt;
      try { pkt = parsePacket(buf); } catch (e) { viewerErrors.add(1); return; }
      if (pkt.sio === 'connect') {
        connected = true;
        viewerErrors.add(0);
        emit('subscribe', [{ tiles }], (ack) => {
          const ok = !!(ack && ack.ok);
          subscribeOk.add(ok ? 1 : 0);
          check(ack, { 'subscribe acknowledged ok': () => ok });
        });
      } else if (pkt.sio === 'connect_error') {
        viewerErrors.add(1);
        check(pkt.data, { 'socket.io connect accepted': () => false });
        socket.close();
      } else if (pkt.sio === 'ack') {
        const cb = acks[pkt.ackId];
        delete acks[pkt.ackId];
        if (cb) cb(pkt.data && pkt.data[0]);
      } else if (pkt.sio === 'event' && Array.isArray(pkt.data)) {
        onEvent(pkt.data[0], pkt.data[2]);
      } else if (pkt.sio === 'disconnect') {
        socket.close();
      }
    });
    socket.on('error', () => viewerErrors.add(1));
    socket.setTimeout(() => socket.close(1000), VIEW_SECONDS * 1000);
  });
  check(res, { 'socket.io upgrade 101': (r) => r && r.status === 101 });
  if (!connected) { viewerErrors.add(1); sleep(1 + Math.random() * 2); }
}

export default viewer;
