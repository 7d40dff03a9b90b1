// A small exam portal in Node.js, guarded by Rollguard through impact metrics.
//
// GET /api/attempts?user=ID answers a student's exam attempts. The flag (FLAG, default
// node-portal-cache) decides per student, with the official SDK, whether the answer
// comes from an in-memory cache (the "optimized" path) or from the slow lookup (the
// "direct" path). Every request is recorded as impact metrics labelled with the flag's
// state for that student, which the SDK posts to the flag service every
// METRICS_INTERVAL_MS. POST /api/admin/fault {"error_rate", "latency_ms"} breaks the
// optimized path, like the Python portal's fault switch; DELETE clears it.
//
//   UNLEASH_URL=http://127.0.0.1:4242/api UNLEASH_TOKEN=<client token> \
//   PORTAL_ADMIN_TOKEN=<secret> PORT=8080 node server.js
'use strict';

const http = require('node:http');
const crypto = require('node:crypto');
const { initialize } = require('unleash-client');

const config = {
  unleashUrl: process.env.UNLEASH_URL || 'http://127.0.0.1:4242/api',
  unleashToken: process.env.UNLEASH_TOKEN || '',
  flag: process.env.FLAG || 'node-portal-cache',
  host: process.env.HOST || '127.0.0.1',
  port: Number(process.env.PORT || 8080),
  adminToken: process.env.PORTAL_ADMIN_TOKEN || '',
  metricsIntervalMs: Number(process.env.METRICS_INTERVAL_MS || 1000),
  refreshIntervalMs: Number(process.env.REFRESH_INTERVAL_MS || 1000),
  lookupMs: Number(process.env.LOOKUP_MS || 10),
};

const REQUESTS = 'portal_requests_total';
const ERRORS = 'portal_errors_total';
const LATENCY = 'portal_request_seconds';
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const MAX_BODY_BYTES = 4096;

const unleash = initialize({
  url: config.unleashUrl,
  appName: 'node-portal',
  customHeaders: { Authorization: config.unleashToken },
  refreshInterval: config.refreshIntervalMs,
  metricsInterval: config.metricsIntervalMs,
  skipInstanceCountWarning: true,
});
unleash.on('error', (err) => console.error(`unleash error: ${err.message || err}`));
unleash.on('warn', (msg) => console.error(`unleash warning: ${msg}`));
unleash.impactMetrics.defineCounter(REQUESTS, 'Attempt lookups served');
unleash.impactMetrics.defineCounter(ERRORS, 'Attempt lookups that failed');
unleash.impactMetrics.defineHistogram(LATENCY, 'Seconds to serve an attempt lookup', BUCKETS);

let ready = false;
unleash.on('synchronized', () => {
  ready = true;
});

let fault = { errorRate: 0, latencyMs: 0 };
const cache = new Map();

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// The expensive call: a student's attempts, as the database would return them.
async function lookupAttempts(user) {
  await sleep(config.lookupMs);
  const digest = crypto.createHash('sha256').update(user).digest();
  return Array.from({ length: 1 + (digest[0] % 4) }, (_, i) => ({ exam: i + 1, score: digest[i + 1] % 101 }));
}

async function optimizedAttempts(user) {
  if (fault.latencyMs > 0) await sleep(fault.latencyMs);
  if (Math.random() < fault.errorRate) throw new Error('injected fault on the optimized path');
  if (!cache.has(user)) cache.set(user, await lookupAttempts(user));
  return cache.get(user);
}

async function attempts(req, res, url) {
  const user = url.searchParams.get('user');
  if (!user || user.length > 100) return send(res, 400, { error: 'user (1-100 characters) is required' });
  const context = { userId: user };
  const flagContext = { flagNames: [config.flag], context };
  const optimized = unleash.isEnabled(config.flag, context);
  const started = process.hrtime.bigint();
  let status = 200;
  let body;
  try {
    body = { user, path: optimized ? 'optimized' : 'direct', attempts: await (optimized ? optimizedAttempts(user) : lookupAttempts(user)) };
  } catch (err) {
    status = 500;
    body = { error: err.message };
    unleash.impactMetrics.incrementCounter(ERRORS, 1, flagContext);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  unleash.impactMetrics.incrementCounter(REQUESTS, 1, flagContext);
  unleash.impactMetrics.observeHistogram(LATENCY, seconds, flagContext);
  send(res, status, body);
}

function authorized(req) {
  const sent = (req.headers.authorization || '').replace(/^Bearer /i, '');
  if (!config.adminToken || !sent) return false;
  const a = Buffer.from(sent);
  const b = Buffer.from(config.adminToken);
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks = [];
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error('body too large'));
        req.destroy();
      } else chunks.push(chunk);
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString() || '{}'));
      } catch (err) {
        reject(new Error('body is not JSON'));
      }
    });
  });
}

function validFault(body) {
  const errorRate = body.error_rate ?? 0;
  const latencyMs = body.latency_ms ?? 0;
  if (typeof errorRate !== 'number' || errorRate < 0 || errorRate > 1) return null;
  if (typeof latencyMs !== 'number' || latencyMs < 0 || latencyMs > 60000) return null;
  return { errorRate, latencyMs };
}

async function faultSwitch(req, res) {
  if (!config.adminToken) return send(res, 403, { error: 'fault injection is disabled: no PORTAL_ADMIN_TOKEN' });
  if (!authorized(req)) return send(res, 401, { error: 'a valid portal admin token is required' });
  if (req.method === 'POST') {
    let body;
    try {
      body = await readJson(req);
    } catch (err) {
      return send(res, 400, { error: err.message });
    }
    const wanted = validFault(body);
    if (!wanted) return send(res, 422, { error: 'error_rate must be in 0..1 and latency_ms in 0..60000' });
    fault = wanted;
    console.error(`fault injected: error_rate=${fault.errorRate} latency_ms=${fault.latencyMs}`);
  } else if (req.method === 'DELETE') {
    fault = { errorRate: 0, latencyMs: 0 };
    console.error('fault cleared');
  } else if (req.method !== 'GET') {
    return send(res, 405, { error: 'GET, POST or DELETE' });
  }
  send(res, 200, { active: fault.errorRate > 0 || fault.latencyMs > 0, error_rate: fault.errorRate, latency_ms: fault.latencyMs });
}

function send(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://portal');
  let handled;
  if (url.pathname === '/healthz') handled = send(res, ready ? 200 : 503, { ready });
  else if (url.pathname === '/api/attempts' && req.method === 'GET') handled = attempts(req, res, url);
  else if (url.pathname === '/api/admin/fault') handled = faultSwitch(req, res);
  else handled = send(res, 404, { error: 'not found' });
  Promise.resolve(handled).catch((err) => {
    console.error(err);
    if (!res.headersSent) send(res, 500, { error: 'internal error' });
  });
});

server.listen(config.port, config.host, () => {
  console.error(`node-portal on http://${config.host}:${config.port}, flag ${config.flag}`);
});

function stop() {
  server.close();
  unleash.destroyWithFlush().finally(() => process.exit(0));
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
