// A real OpenID Provider for Gatehouse's end-to-end tests: panva's certified oidc-provider, run
// with minimal configuration on 127.0.0.1.
//
//   node server.mjs <port> <redirect_uri> [conform]
//
// `conform` = "true" keeps scope claims (email, profile) out of the ID token, so they are served
// only at userinfo (OpenID Connect Core §5.4, the library's default); anything else puts them in
// the ID token as well.
//
// Two static clients: `gatehouse-basic` (client_secret_basic) and `gatehouse-post`
// (client_secret_post), both with the secret `gatehouse-test-secret`. Logging in is a form
// (POST /interaction/{uid}/login with `login=<account id>`); consent is given automatically.
// Test-only control endpoints, never part of a real provider:
//   PUT  /__test/accounts/{id}  JSON claims of an account (`sub` is the id)
//   POST /__test/rotate          a new signing key with a new `kid`; the old key stays published
// The process prints "listening" once it accepts connections.

import { createServer } from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';

import Provider from 'oidc-provider';

const [port, redirectUri, conform] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const accounts = new Map();

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

let keys = [signingKey()];

function build() {
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'gatehouse-basic',
        client_secret: 'gatehouse-test-secret',
        redirect_uris: redirectUri.split(','),
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: 'gatehouse-post',
        client_secret: 'gatehouse-test-secret',
        redirect_uris: redirectUri.split(','),
        token_endpoint_auth_method: 'client_secret_post',
      },
    ],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'picture'] },
    conformIdTokenClaims: conform === 'true',
    cookies: { keys: ['gatehouse-test-cookie-key'] },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    jwks: { keys },
    async findAccount(ctx, id) {
      const claims = accounts.get(id);
      if (!claims) return undefined;
      return { accountId: id, claims: async () => ({ ...claims, sub: id }) };
    },
  });
  return provider;
}

let provider = build();
let handler = provider.callback();

function body(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => { data += chunk; });
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  if (details.prompt.name === 'login' && action === 'login' && req.method === 'POST') {
    const login = new URLSearchParams(await body(req)).get('login');
    await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
  } else if (details.prompt.name === 'login') {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end(`<!doctype html><form method="post" action="/interaction/${uid}/login">`
      + '<input name="login"><button>Sign in</button></form>');
  } else if (details.prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    const missing = details.prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  } else {
    res.statusCode = 501;
    res.end();
  }
}

const server = createServer(async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    const account = url.pathname.match(/^\/__test\/accounts\/([^/]+)$/);
    const step = url.pathname.match(/^\/interaction\/([^/]+)(?:\/(login))?$/);
    if (account && req.method === 'PUT') {
      accounts.set(decodeURIComponent(account[1]), JSON.parse(await body(req)));
      res.statusCode = 204;
      res.end();
    } else if (url.pathname === '/__test/rotate' && req.method === 'POST') {
      keys = [signingKey(), ...keys];
      provider = build();
      handler = provider.callback();
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ kid: keys[0].kid }));
    } else if (step) {
      await interaction(req, res, step[1], step[2]);
    } else {
      handler(req, res);
    }
  } catch (error) {
    res.statusCode = 500;
    res.end(String(error));
  }
});

server.listen(Number(port), '127.0.0.1', () => console.log('listening'));
