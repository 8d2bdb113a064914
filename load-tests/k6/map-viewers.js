// k6: map viewers on socket.io, spoken as raw Engine.IO v4 / Socket.IO v5 text frames over
// k6/ws (k6 has no socket.io client). Each VU connects with its token, subscribes to a viewport
// of tiles around a random point in the city, counts snapshot/update frames and measures
// ping-to-screen delay (arrival − the ping's ts) of every entity update. Room payloads are
// socket.io binary events (MessagePack attachments), decoded by lib/geoflux.js decodeMsgpack.
//
//   k6 run -e HOST=127.0.0.1:8080 -e TOKEN=$(npm run -s token -- --scope subscribe) -e VIEWERS=200 load-tests/k6/map-viewers.js
//
// Needs the clocks of the drivers' devices (here: the k6 drivers or `npm run simulate` on the
// same machine) and of k6 to agree; run it next to drivers.js or rush-hour.js.
import ws from 'k6/ws';
import { check, sleep } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import exec from 'k6/execution';
import { SIO_PATH, WS_BASE, clientToken, decodeMsgpack, envInt, parseFrame, randomPointInCity, sioConnectFrame, sioEventFrame, unpackEntity, viewportTiles } from './lib/geoflux.js';

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
  /** A binary event waiting for its attachment (the next binary frame). */
  let pendingBinary = null;
  const onEvent = (name, payload) => {
    if (name === 'update' && Array.isArray(payload)) {
      const now = Date.now();
      for (let i = 0; i < payload.length; i++) deliveryDelay.add(now - unpackEntity(payload[i]).ts);
      updatesReceived.add(payload.length);
    } else if (name === 'snapshot') {
      snapshotsReceived.add(1);
    }
  };

  const res = ws.connect(`${WS_BASE}${SIO_PATH}`, { tags: { name: 'socket.io' } }, (socket) => {
    const emit = (name, args, onAck) => {
      const id = nextAck++;
      acks[id] = onAck;
      socket.send(sioEventFrame(name, args, id));
    };
    socket.on('message', (text) => {
      let f;
      try { f = parseFrame(text); } catch (e) { viewerErrors.add(1); return; }
      if (f.eio === 'open') {
        socket.send(sioConnectFrame({ token }));
      } else if (f.eio === 'ping') {
        socket.send('3');
      } else if (f.eio === 'close') {
        socket.close();
      } else if (f.sio === 'connect') {
        connected = true;
        viewerErrors.add(0);
        emit('subscribe', [{ tiles }], (ack) => {
          const ok = !!(ack && ack.ok);
          subscribeOk.add(ok ? 1 : 0);
          check(ack, { 'subscribe acknowledged ok': () => ok });
        });
      } else if (f.sio === 'connect_error') {
        viewerErrors.add(1);
        check(f.data, { 'socket.io connect accepted': () => false });
        socket.close();
      } else if (f.sio === 'ack') {
        const cb = acks[f.ackId];
        delete acks[f.ackId];
        if (cb) cb(f.data && f.data[0]);
      } else if (f.sio === 'event') {
        onEvent(f.data[0], f.data[2]);
      } else if (f.sio === 'binary_event') {
        // [name, tile, {_placeholder, num: 0}]: the MessagePack payload is the next binary frame.
        pendingBinary = f.data[0];
      }
    });
    socket.on('binaryMessage', (buf) => {
      const name = pendingBinary;
      pendingBinary = null;
      if (name === null) return;
      let payload;
      try { payload = decodeMsgpack(buf); } catch (e) { binaryUpdates.add(1); return; }
      onEvent(name, payload);
    });
    socket.on('error', () => viewerErrors.add(1));
    socket.setTimeout(() => socket.close(1000), VIEW_SECONDS * 1000);
  });
  check(res, { 'socket.io upgrade 101': (r) => r && r.status === 101 });
  if (!connected) { viewerErrors.add(1); sleep(1 + Math.random() * 2); }
}

export default viewer;
