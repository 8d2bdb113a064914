// k6: dispatchers asking GET /v1/nearby at a constant arrival rate from random points in the city.
//
//   k6 run -e HOST=127.0.0.1:8080 -e TOKEN=$(npm run -s token -- --scope query) -e RATE=200 load-tests/k6/dispatchers.js
//
// Metrics: http_req_duration{name:nearby}, nearby_results (entities per answer), http_req_failed.
import http from 'k6/http';
import { check } from 'k6';
import { Trend } from 'k6/metrics';
import { HTTP_BASE, clientToken, envInt, randomPointInCity } from './lib/geoflux.js';

export const nearbyResults = new Trend('nearby_results');

const RATE = envInt('RATE', 100);
const DURATION = __ENV.DURATION || '1m';
const RADIUS = envInt('RADIUS_M', 1500);
const LIMIT = envInt('LIMIT', 20);

export const options = {
  scenarios: {
    dispatchers: {
      executor: 'constant-arrival-rate',
      exec: 'dispatcher',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: Math.max(10, Math.ceil(RATE / 10)),
      maxVUs: Math.max(50, RATE),
      tags: { scenario_kind: 'dispatchers' },
    },
  },
  thresholds: {
    'http_req_duration{name:nearby}': [`p(99)<${envInt('NEARBY_P99_MS', 50)}`],
    'http_req_failed{name:nearby}': [`rate<${__ENV.MAX_ERROR_RATE || 0.01}`],
    dropped_iterations: [`count<${Math.max(1, Math.floor(RATE))}`],
    checks: ['rate>0.99'],
  },
};

let token;

export function dispatcher() {
  if (!token) token = clientToken(`k6-dispatcher-${__VU}`, 'query');
  const p = randomPointInCity();
  const res = http.get(`${HTTP_BASE}/v1/nearby?lat=${p.lat.toFixed(5)}&lon=${p.lon.toFixed(5)}&radius=${RADIUS}&limit=${LIMIT}`, {
    headers: { Authorization: `Bearer ${token}` },
    tags: { name: 'nearby' },
  });
  const ok = check(res, {
    'nearby 200': (r) => r.status === 200,
    'nearby has results array': (r) => { try { return Array.isArray(r.json('results')); } catch (e) { return false; } },
  });
  if (ok) nearbyResults.add(res.json('results').length);
}

export default dispatcher;
