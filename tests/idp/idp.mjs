// A real OpenID provider for naast's end-to-end tests: oidc-provider on loopback, issuing RS256
// JWT access tokens (RFC 9068) on POST /token with grant_type=client_credentials.
//
// - System clients (a PGO platform) authenticate with a signed JWT client assertion
//   (private_key_jwt), as Koppeltaal 2.0 and SMART Backend Services ask. Their private keys are
//   written to KEYS_DIR/<client_id>.pem for the test to sign assertions with.
// - People sign in interactively: the web timeline's client naast-web (client_secret_basic,
//   secret "secret-naast-web") uses the authorization code flow with PKCE, through the provider's
//   own login page (its development interactions: any login name, any password; the login name
//   is the subject, and a persona's subject gets that persona's claims). Consent is given for it
//   at once, as for a first-party client. Its redirect URIs are registered by the test with
//   POST /test/web-client (the body: the URI), since naast's port is known only once it runs.
// - For the API tests without a browser, each test persona is also a client
//   (client_secret_basic) whose tokens carry that person's subject and claims. naast sees the
//   same kind of signed access token either way.
// - System clients naast-push (RSA key, RS384 assertions) and naast-push-ec (EC P-384 key, ES384
//   assertions) are naast pushing to a platform's FHIR server (SMART Backend Services).
// - Resources: https://naast.test/api (audience "naast"), https://naast.test/short (audience
//   "naast", 1 s lifetime), https://other.test/api (audience "other"),
//   https://platform.test/fhir (audience "platform") and https://platform.test/short (audience
//   "platform", 2 s lifetime), the last two with scopes system/*.read and system/*.write.
// - POST /test/rotate makes the provider sign with a new key (the old one is still published),
//   as an issuer rotating its keys does.
//
// usage: node idp.mjs KEYS_DIR   (prints "idp listening on http://127.0.0.1:PORT")

import Provider from 'oidc-provider';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

const keysDir = process.argv[2];
if (!keysDir) {
  console.error('usage: node idp.mjs KEYS_DIR');
  process.exit(64);
}

function signingKey(kid) {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };
}

// The people of the tests, by client id.
const personas = {
  'ouder-a': { sub: 'burger-ouder-a', naast_role: 'citizen', name: 'Ouder A' },
  'ouder-b': { sub: 'burger-ouder-b', naast_role: 'citizen', name: 'Ouder B' },
  ondersteuner: { sub: 'ondersteuner-1', naast_role: 'supporter', naast_org: 'MEE-0001', name: 'Cliëntondersteuner' },
  zorgverlener: { sub: 'zorgverlener-1', naast_role: 'professional', naast_org: 'AGB-01234567', name: 'Zorgverlener' },
  // A citizen whose token claims an organisation: the claim must count for nothing.
  'ouder-met-org': { sub: 'burger-ouder-org', naast_role: 'citizen', naast_org: 'AGB-01234567', name: 'Ouder met organisatieclaim' },
  evaluator: { sub: 'evaluator-1', naast_role: 'evaluator', name: 'Evaluator' },
  beheerder: { sub: 'beheerder-1', naast_role: 'admin', name: 'Beheerder' },
  // Ouder A's token, valid only an hour from now.
  toekomst: { sub: 'burger-ouder-a', naast_role: 'citizen', nbf_offset: 3600 },
};

// System clients with their own key pairs: the PGO platform (RS256, claims for naast), and
// naast itself as a client of a platform's FHIR server (SMART Backend Services), once with an RSA
// key (RS384) and once with an EC P-384 key (ES384). naast's clients get tokens without naast
// claims.
const systems = { 'pgo-platform': { naast_role: 'pgo', name: 'PGO-platform' } };
const systemKeys = {
  'pgo-platform': { type: 'rsa', options: { modulusLength: 2048 }, alg: 'RS256', kid: 'pgo-platform-1' },
  'naast-push': { type: 'rsa', options: { modulusLength: 2048 }, alg: 'RS384', kid: 'naast-push-1' },
  'naast-push-ec': { type: 'ec', options: { namedCurve: 'P-384' }, alg: 'ES384', kid: 'naast-push-ec-1' },
};
const systemClients = Object.entries(systemKeys).map(([clientId, { type, options, alg, kid }]) => {
  const { privateKey, publicKey } = crypto.generateKeyPairSync(type, options);
  fs.writeFileSync(path.join(keysDir, `${clientId}.pem`), privateKey.export({ format: 'pem', type: 'pkcs8' }));
  return {
    client_id: clientId,
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: alg,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    jwks: { keys: [{ ...publicKey.export({ format: 'jwk' }), kid, use: 'sig', alg }] },
  };
});

// People who sign in at the login page, by subject: the personas' claims.
const people = Object.fromEntries(
  Object.values(personas).filter((p) => !p.nbf_offset).map((p) => [p.sub, p]),
);
// The web timeline's redirect URIs (POST /test/web-client).
const webRedirects = [];
function webClients() {
  if (webRedirects.length === 0) return [];
  return [{
    client_id: 'naast-web',
    client_secret: 'secret-naast-web',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: [...webRedirects],
    // Back to naast's start page after signing out here (RP-initiated logout).
    post_logout_redirect_uris: webRedirects.map((uri) => uri.replace(/\/aanmelden\/terug$/, '/')),
  }];
}

const resources = {
  'https://naast.test/api': { audience: 'naast', accessTokenTTL: 3600 },
  'https://naast.test/short': { audience: 'naast', accessTokenTTL: 1 },
  'https://other.test/api': { audience: 'other', accessTokenTTL: 3600 },
  // A PGO platform's FHIR server that naast pushes to (2 s lifetime on /short).
  'https://platform.test/fhir': { audience: 'platform', accessTokenTTL: 3600, scope: 'system/*.read system/*.write' },
  'https://platform.test/short': { audience: 'platform', accessTokenTTL: 2, scope: 'system/*.read system/*.write' },
};

function build(issuer, keys) {
  const provider = new Provider(issuer, {
    jwks: { keys },
    clients: [
      ...Object.keys(personas).map((clientId) => ({
        client_id: clientId,
        client_secret: `secret-${clientId}`,
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      })),
      ...systemClients,
      ...webClients(),
    ],
    findAccount: (ctx, sub) => ({
      accountId: sub,
      claims: () => ({ sub, name: people[sub]?.name ?? sub }),
    }),
    claims: { openid: ['sub'], profile: ['name'] },
    // The name in the ID token too (code flow), so the web timeline can greet the person.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    // naast-web is first-party: consent is given at once, for what it asks.
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      if (ctx.oidc.client.clientId !== 'naast-web') return undefined;
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid profile');
      grant.addResourceScope('https://naast.test/api', 'naast');
      await grant.save();
      return grant;
    },
    // The defaults plus RS384 and ES384, for naast's client assertions.
    enabledJWA: {
      clientAuthSigningAlgValues: ['HS256', 'RS256', 'RS384', 'PS256', 'ES256', 'ES384', 'Ed25519', 'EdDSA'],
    },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'https://naast.test/api',
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource) => {
          const info = resources[resource];
          if (!info) throw new Error(`unknown resource ${resource}`);
          return { scope: 'naast', accessTokenFormat: 'jwt', ...info };
        },
      },
    },
    extraTokenClaims: (ctx, token) => {
      const who = personas[token.clientId] ?? systems[token.clientId]
        ?? (token.accountId ? (people[token.accountId] ?? { naast_role: 'citizen', name: token.accountId }) : undefined);
      if (!who) return undefined;
      const claims = { naast_role: who.naast_role, name: who.name };
      if (who.naast_org) claims.naast_org = who.naast_org;
      // A platform names the member it acts for in its token request.
      const actingFor = ctx?.oidc?.body?.acting_for;
      if (who.naast_role === 'pgo' && actingFor) claims.naast_acting_for = String(actingFor);
      return claims;
    },
    formats: {
      customizers: {
        jwt: (ctx, token, jwt) => {
          const who = personas[token.clientId];
          if (who?.sub) jwt.payload.sub = who.sub;
          if (who?.nbf_offset) jwt.payload.nbf = Math.floor(Date.now() / 1000) + who.nbf_offset;
        },
      },
    },
  });
  return provider.callback();
}

const first = signingKey('idp-key-1');
let handler = null;
let keys = [first];
// What the tests make of the key endpoints: served, held unanswered, or failed; and how often a
// client fetched them.
let keyMode = 'serve';
let keyFetches = 0;
const held = [];
const keyPaths = ['/.well-known/openid-configuration', '/jwks'];
const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/test/rotate') {
    keys = [signingKey('idp-key-2'), first];
    handler = build(issuer, keys);
    res.end('rotated\n');
    return;
  }
  if (req.method === 'POST' && req.url === '/test/withdraw') {
    // A new signing key, and the first one no longer published.
    keys = [signingKey('idp-key-3')];
    handler = build(issuer, keys);
    res.end('withdrawn\n');
    return;
  }
  if (req.method === 'POST' && req.url === '/test/web-client') {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      webRedirects.push(body.trim());
      handler = build(issuer, keys);
      res.end('registered\n');
    });
    return;
  }
  if (req.method === 'POST' && req.url.startsWith('/test/keys/')) {
    keyMode = req.url.slice('/test/keys/'.length);
    if (keyMode === 'serve') for (const [q, s] of held.splice(0)) handler(q, s);
    res.end(`${keyMode}\n`);
    return;
  }
  if (req.method === 'GET' && req.url === '/test/fetches') {
    res.end(`${keyFetches}\n`);
    return;
  }
  if (keyPaths.includes(req.url.split('?')[0])) {
    keyFetches += 1;
    if (keyMode === 'hold') { held.push([req, res]); return; }
    if (keyMode === 'fail') { res.statusCode = 503; res.end('unavailable\n'); return; }
  }
  handler(req, res);
});
let issuer = '';
server.listen(0, '127.0.0.1', () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  handler = build(issuer, keys);
  console.log(`idp listening on ${issuer}`);
  // The test reads that one line and closes the pipe: the provider's later notices (printed
  // with console.log and console.info) go to stderr, so a write to the closed pipe cannot end
  // the provider.
  console.log = console.error;
  console.info = console.error;
  process.stdout.on('error', () => {});
});
