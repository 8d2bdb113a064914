// k6: virtual drivers on WebSocket /v1/ingest. Each VU is one driver (k6-drv-<VU>) holding a
// socket for SESSION_SECONDS, pinging every 1–5 s along a plausible path (JSON text frames),
// and checking that every frame is acknowledged; then it reconnects (k6 iterates).
//
//   k6 run -e HOST=127.0.0.1:8080 -e JWT_SECRET=… -e DRIVERS=500 -e DURATION=2m load-tests/k6/drivers.js
//
// Metrics: ack_latency (frame sent → its ack, ms), pings_acked, ingest_errors (error frames /
// refused upgrades / unacknowledged frames, as a rate), ws_connect_ok.
import ws from 'k6/ws';
import { check, sleep } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import exec from 'k6/execution';
import { WS_BASE, driverId, driverToken, envInt, newVehicle, nextPing } from './lib/geoflux.js';

export const ackLatency = new Trend('ack_latency', true);
export const pingsAcked = new Counter('pings_acked');
export const ingestErrors = new Rate('ingest_errors');
export const wsConnectOk = new Rate('ws_connect_ok');

const DRIVERS = envInt('DRIVERS', 100);
const DURATION = __ENV.DURATION || '1m';
const RAMP = __ENV.RAMP || '30s';
const SESSION_SECONDS = envInt('SESSION_SECONDS', 60);
const MIN_INTERVAL_MS = envInt('PING_MIN_MS', 1000);
const MAX_INTERVAL_MS = envInt('PING_MAX_MS', 5000);

export const options = {
  scenarios: {
    drivers: {
      executor: 'ramping-vus',
      exec: 'driver',
      startVUs: 0,
      stages: [
        { duration: RAMP, target: DRIVERS },
        { duration: DURATION, target: DRIVERS },
        { duration: '10s', target: 0 },
      ],
      gracefulRampDown: '10s',
      tags: { scenario_kind: 'drivers' },
    },
  },
  thresholds: {
    ack_latency: [`p(99)<${envInt('ACK_P99_MS', 50)}`],
    ingest_errors: [`rate<${__ENV.MAX_ERROR_RATE || 0.01}`],
    ws_connect_ok: ['rate>0.99'],
    checks: ['rate>0.99'],
  },
};

/** One driver session: connect, wait for `welcome`, ping every 1–5 s, check acks, close. */
export function driver() {
  const n = exec.vu.idInTest;
  const id = driverId(n);
  const token = driverToken(n);
  const vehicle = newVehicle(id);
  const interval = MIN_INTERVAL_MS + Math.random() * (MAX_INTERVAL_MS - MIN_INTERVAL_MS);
  const sent = {}; // frame number → send time
  let frames = 0;
  let acked = 0;
  let welcomed = false;

  const res = ws.connect(`${WS_BASE}/v1/ingest?token=${encodeURIComponent(token)}`, { tags: { name: 'ingest' } }, (socket) => {
    const sendPing = () => {
      if (!welcomed) return;
      frames += 1;
      sent[frames] = Date.now();
      socket.send(JSON.stringify(nextPing(vehicle, interval)));
    };
    socket.on('message', (text) => {
      let f;
      try { f = JSON.parse(text); } catch (e) { ingestErrors.add(1); return; }
      if (f.type === 'welcome') {
        welcomed = true;
        check(f, { 'welcome names this driver': (w) => w.sub === id });
        sendPing();
        socket.setInterval(sendPing, interval);
      } else if (f.type === 'ack') {
        const frame = f.frame !== undefined ? f.frame : acked + 1;
        const t = sent[frame];
        if (t !== undefined) { ackLatency.add(Date.now() - t); delete sent[frame]; }
        acked += 1;
        pingsAcked.add(f.count || 0);
        ingestErrors.add(f.count >= 1 ? 0 : 1);
        check(f, { 'ping acknowledged': (a) => a.count >= 1 });
      } else if (f.type === 'error') {
        ingestErrors.add(1);
        check(f, { 'no error frame': () => false });
      }
    });
    socket.on('error', () => ingestErrors.add(1));
    socket.setTimeout(() => socket.close(1000), SESSION_SECONDS * 1000);
  });
  const ok = res && res.status === 101;
  wsConnectOk.add(ok ? 1 : 0);
  check(res, { 'ingest upgrade 101': () => ok });
  // Frames sent and never acknowledged before the session ended count as errors.
  const lost = Object.keys(sent).length;
  for (let i = 0; i < lost; i++) ingestErrors.add(1);
  if (!ok) sleep(1 + Math.random() * 2);
}

export default driver;
