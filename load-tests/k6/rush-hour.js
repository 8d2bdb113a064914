// k6: "city rush hour" — drivers ramping up to a peak, map viewers watching the city, and
// dispatchers asking /v1/nearby at a rising arrival rate, all at once, with the targets as
// thresholds per scenario (metrics are tagged with k6's `scenario` tag).
//
//   k6 run -e HOST=127.0.0.1:8080 -e JWT_SECRET=… -e TENANT=demo \
//          -e DRIVERS=2000 -e VIEWERS=200 -e NEARBY_RATE=100 -e PEAK=5m load-tests/k6/rush-hour.js
import { driver } from './drivers.js';
import { viewer } from './map-viewers.js';
import { dispatcher } from './dispatchers.js';
import { envInt } from './lib/geoflux.js';

export { driver, viewer, dispatcher };

const DRIVERS = envInt('DRIVERS', 500);
const VIEWERS = envInt('VIEWERS', 50);
const NEARBY_RATE = envInt('NEARBY_RATE', 50);
const RAMP = __ENV.RAMP || '1m';
const PEAK = __ENV.PEAK || '3m';

export const options = {
  scenarios: {
    rush_drivers: {
      executor: 'ramping-vus',
      exec: 'driver',
      startVUs: 0,
      stages: [
        { duration: RAMP, target: Math.round(DRIVERS * 0.3) },
        { duration: RAMP, target: DRIVERS },
        { duration: PEAK, target: DRIVERS },
        { duration: RAMP, target: Math.round(DRIVERS * 0.3) },
      ],
      gracefulRampDown: '10s',
      tags: { scenario_kind: 'drivers' },
    },
    rush_viewers: {
      executor: 'ramping-vus',
      exec: 'viewer',
      startVUs: 0,
      startTime: '10s',
      stages: [
        { duration: RAMP, target: VIEWERS },
        { duration: PEAK, target: VIEWERS },
        { duration: RAMP, target: 0 },
      ],
      gracefulRampDown: '5s',
      tags: { scenario_kind: 'viewers' },
    },
    rush_dispatchers: {
      executor: 'ramping-arrival-rate',
      exec: 'dispatcher',
      startRate: Math.max(1, Math.round(NEARBY_RATE / 5)),
      timeUnit: '1s',
      startTime: '10s',
      preAllocatedVUs: Math.max(10, Math.ceil(NEARBY_RATE / 10)),
      maxVUs: Math.max(50, NEARBY_RATE),
      stages: [
        { duration: RAMP, target: NEARBY_RATE },
        { duration: PEAK, target: NEARBY_RATE },
        { duration: RAMP, target: Math.max(1, Math.round(NEARBY_RATE / 5)) },
      ],
      tags: { scenario_kind: 'dispatchers' },
    },
  },
  thresholds: {
    'ack_latency{scenario:rush_drivers}': [`p(99)<${envInt('ACK_P99_MS', 50)}`],
    'delivery_delay{scenario:rush_viewers}': [`p(99)<${envInt('DELIVERY_P99_MS', 50)}`],
    'http_req_duration{scenario:rush_dispatchers,name:nearby}': [`p(99)<${envInt('NEARBY_P99_MS', 50)}`],
    'http_req_failed{scenario:rush_dispatchers}': [`rate<${__ENV.MAX_ERROR_RATE || 0.01}`],
    ingest_errors: [`rate<${__ENV.MAX_ERROR_RATE || 0.01}`],
    viewer_errors: [`rate<${__ENV.MAX_ERROR_RATE || 0.01}`],
    checks: ['rate>0.99'],
  },
};

export default driver;
