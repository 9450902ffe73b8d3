// A real, independent OpenID provider (panva/oidc-provider) configured the way
// FranceConnect v2 is (code flow only, client_secret_post, ES256 ID tokens and signed
// userinfo, eIDAS acr values, pairwise subjects, RP-initiated logout), so the portal's
// relying party can be tested against code it did not write. Test use only.
//
//   node server.mjs --port 0 --client-id ID --client-secret SECRET --portal-url http://127.0.0.1:8080
//
// Each option may come from the environment instead: OP_PORT, OP_CLIENT_ID,
// OP_CLIENT_SECRET, OP_PORTAL_URL. Port 0 picks a free port. Once listening, the
// issuer is printed on stdout as one JSON line: {"issuer":"http://127.0.0.1:PORT"}.

import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.OP_PORT ?? '0' },
    'client-id': { type: 'string', default: process.env.OP_CLIENT_ID },
    'client-secret': { type: 'string', default: process.env.OP_CLIENT_SECRET },
    'portal-url': { type: 'string', default: process.env.OP_PORTAL_URL },
  },
});
for (const required of ['client-id', 'client-secret', 'portal-url']) {
  if (!args[required]) {
    console.error(`missing --${required}`);
    process.exit(2);
  }
}
const portal = args['portal-url'].replace(/\/+$/, '');

// Test citizens: FranceConnect's pivot identity claims, and the level of identity
// verification their means of login reaches.
const ACCOUNTS = {
  'marie.dupont': {
    acr: 'eidas1',
    claims: {
      given_name: 'Marie-Claire',
      family_name: 'DUPONT',
      birthdate: '1980-07-30',
      gender: 'female',
      birthplace: '75056',
      birthcountry: '99100',
      email: 'marie.dupont@example.org',
    },
  },
  'awa.diallo': {
    acr: 'eidas1',
    claims: {
      given_name: 'Awa Fatou',
      family_name: 'DIALLO',
      birthdate: '1992-11-05',
      gender: 'female',
      birthplace: '',
      birthcountry: '99341',
      email: 'awa.diallo@example.org',
    },
  },
};
const CLAIMS = ['given_name', 'family_name', 'birthdate', 'gender', 'birthplace', 'birthcountry', 'email'];

// One signing key per run, as FranceConnect publishes: ES256 on P-256.
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: randomBytes(8).toString('hex'),
  alg: 'ES256',
  use: 'sig',
};
const pairwiseSalt = randomBytes(16).toString('hex');

const server = createServer();
server.listen(Number(args.port), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, configuration());
  provider.on('server_error', (_ctx, error) => console.error('server_error', error));
  for (const event of ['grant.error', 'userinfo.error', 'end_session.error', 'authorization.error']) {
    provider.on(event, (_ctx, error) => console.error(event, error.message, error.error_description ?? ''));
  }
  const handleProtocol = provider.callback();
  server.on('request', (req, res) => {
    const interaction = req.url.match(/^\/interaction\/([\w-]+)(\/login|\/abort)?$/);
    if (!interaction) {
      handleProtocol(req, res);
      return;
    }
    interactionRoute(provider, req, res, interaction[2]).catch((error) => {
      console.error('interaction error', error);
      if (!res.headersSent) {
        res.statusCode = 400;
        res.end(String(error.message));
      }
    });
  });
  console.log(JSON.stringify({ issuer }));
});

function configuration() {
  return {
    clients: [{
      client_id: args['client-id'],
      client_secret: args['client-secret'],
      redirect_uris: [`${portal}/login/interop/callback`],
      post_logout_redirect_uris: [`${portal}/logout/callback`],
      response_types: ['code'],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: 'client_secret_post',
      id_token_signed_response_alg: 'ES256',
      userinfo_signed_response_alg: 'ES256',
      subject_type: 'pairwise',
    }],
    jwks: { keys: [signingKey] },
    responseTypes: ['code'],
    subjectTypes: ['pairwise'],
    clientAuthMethods: ['client_secret_post', 'private_key_jwt'],
    acrValues: ['eidas1', 'eidas2', 'eidas3'],
    claims: {
      acr: null,
      amr: null,
      auth_time: null,
      sid: null,
      iss: null,
      openid: ['sub'],
      ...Object.fromEntries(CLAIMS.map((claim) => [claim, [claim]])),
    },
    scopes: ['openid', ...CLAIMS],
    features: {
      devInteractions: { enabled: false },
      claimsParameter: { enabled: true },
      jwtUserinfo: { enabled: true },
      revocation: { enabled: true },
      pushedAuthorizationRequests: { enabled: false },
      rpInitiatedLogout: { enabled: true, logoutSource },
    },
    enabledJWA: {
      idTokenSigningAlgValues: ['ES256', 'RS256'],
      userinfoSigningAlgValues: ['ES256', 'RS256'],
    },
    // FranceConnect's lifetimes (seconds).
    ttl: {
      AuthorizationCode: 30,
      AccessToken: 60,
      IdToken: 60,
      Interaction: 600,
      Session: 1800,
      Grant: 1800,
    },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    // FranceConnect asks no consent of its own here: every requested scope is granted.
    loadExistingGrant,
    findAccount: (_ctx, id) => {
      const account = ACCOUNTS[id];
      if (!account) return undefined;
      return { accountId: id, claims: () => ({ sub: id, ...account.claims }) };
    },
    pairwiseIdentifier: (_ctx, accountId, client) => createHash('sha256')
      .update(`${client.sectorIdentifier}\0${accountId}\0${pairwiseSalt}`)
      .digest('hex'),
  };
}

async function loadExistingGrant(ctx) {
  const { provider, client, session, params } = ctx.oidc;
  const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
  if (grantId) {
    const existing = await provider.Grant.find(grantId);
    if (existing) return existing;
  }
  const grant = new provider.Grant({ clientId: client.clientId, accountId: session.accountId });
  grant.addOIDCScope(params.scope);
  grant.addOIDCClaims(['acr', 'amr', 'auth_time']);
  await grant.save();
  return grant;
}

// The login page: a citizen name, nothing else. The level granted is the one the
// account's means of login reaches, whatever was asked for.
async function interactionRoute(provider, req, res, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.prompt.name !== 'login') {
    throw new Error(`unexpected prompt ${details.prompt.name}`);
  }
  if (req.method === 'GET' && !action) {
    const options = Object.keys(ACCOUNTS).map((login) => `<li>${login}</li>`).join('');
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    res.setHeader('Cache-Control', 'no-store');
    res.end(`<!DOCTYPE html><html><head><meta charset="utf-8"><title>Test provider</title></head><body>
<form method="post" action="/interaction/${details.uid}/login">
<label>Login <input type="text" name="login" autofocus></label>
<button type="submit">Sign in</button>
</form>
<form method="post" action="/interaction/${details.uid}/abort"><button type="submit">Cancel</button></form>
<ul>${options}</ul>
</body></html>`);
    return;
  }
  if (req.method !== 'POST') {
    res.statusCode = 405;
    res.end();
    return;
  }
  if (action === '/abort') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
    return;
  }
  const form = new URLSearchParams(await readBody(req));
  const login = form.get('login') ?? '';
  const account = ACCOUNTS[login];
  if (!account) {
    res.statusCode = 400;
    res.end('unknown login');
    return;
  }
  await provider.interactionFinished(req, res, {
    login: { accountId: login, acr: account.acr, amr: ['pwd'] },
  }, { mergeWithLastSubmission: false });
}

async function readBody(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 10_000) throw new Error('form too large');
  }
  return body;
}

// oidc-provider asks the user to confirm a logout; the confirmation is one plain form.
async function logoutSource(ctx, form) {
  ctx.body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Logout</title></head><body>
${form.replace('</form>', '<input type="hidden" name="logout" value="yes"/><button type="submit">Sign out</button></form>')}
</body></html>`;
}
