// The benchmark's peer: node-oidc-provider configured to do what Latchkey does, as closely as it
// allows, so that `latchkey-bench` can run the same workload against both.
//
// - An in-memory adapter (a plain Map: the package's own MemoryAdapter is an LRU capped at 1,000
//   entries, which would evict the 20,000 pre-issued codes).
// - One public client with PKCE (S256), `authorization_code` and `refresh_token`; refresh tokens are
//   issued without `offline_access` (as Latchkey does) and rotated on every use (the default for
//   public clients).
// - RS256 with a fresh RSA-2048 key, like Latchkey's default.
// - Users with Argon2id hashes (m=19456 KiB, t=2, p=1: OWASP's parameters, Latchkey's too), checked
//   by @node-rs/argon2, which wraps the same Rust argon2 crate Latchkey uses.
// - Consent remembered per user and client (Latchkey's behaviour), so that a login goes straight to
//   the code once the user has consented.
//
// Listens on 127.0.0.1 only. Configuration by environment (defaults in brackets):
//   PEER_PORT [3000], PEER_USERS [1000], PEER_USER_PREFIX [bench-], PEER_PASSWORD [bench-password],
//   PEER_CLIENT_ID [latchkey-bench], PEER_REDIRECT_URI [https://client.example/callback], PEER_CODE_TTL [600]
import crypto from 'node:crypto';
import { Algorithm, hash, verify } from '@node-rs/argon2';
import Provider from 'oidc-provider';

const env = (name, fallback) => process.env[name] ?? fallback;
const port = Number(env('PEER_PORT', '3000'));
const userCount = Number(env('PEER_USERS', '1000'));
const userPrefix = env('PEER_USER_PREFIX', 'bench-');
const password = env('PEER_PASSWORD', 'bench-password');
const clientId = env('PEER_CLIENT_ID', 'latchkey-bench');
const redirectUri = env('PEER_REDIRECT_URI', 'https://client.example/callback');
const codeTtl = Number(env('PEER_CODE_TTL', '600'));
const issuer = `http://127.0.0.1:${port}`;

const ARGON2 = { algorithm: Algorithm.Argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1 };

// ---- the in-memory adapter -------------------------------------------------------------------

const storage = new Map(); // key -> { payload, expiresAt (ms, or Infinity) }
const grantMembers = new Map(); // grantId -> Set of keys, for revokeByGrantId
const sessionUids = new Map(); // session uid -> session id
const GRANTABLE = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
  'BackchannelAuthenticationRequest']);

function live(key) {
  const entry = storage.get(key);
  if (!entry) return undefined;
  if (entry.expiresAt <= Date.now()) {
    storage.delete(key);
    return undefined;
  }
  return entry.payload;
}

class MapAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    storage.set(key, { payload, expiresAt });
    if (this.model === 'Session' && payload.uid) sessionUids.set(payload.uid, id);
    if (GRANTABLE.has(this.model) && payload.grantId) {
      let members = grantMembers.get(payload.grantId);
      if (!members) grantMembers.set(payload.grantId, (members = new Set()));
      members.add(key);
    }
  }

  async find(id) {
    return live(this.key(id));
  }

  async findByUid(uid) {
    const id = sessionUids.get(uid);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode() {
    return undefined;
  }

  async consume(id) {
    const payload = live(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    const key = this.key(id);
    const payload = live(key);
    storage.delete(key);
    if (payload?.grantId) grantMembers.get(payload.grantId)?.delete(key);
  }

  async revokeByGrantId(grantId) {
    for (const key of grantMembers.get(grantId) ?? []) storage.delete(key);
    grantMembers.delete(grantId);
  }
}

// ---- accounts ---------------------------------------------------------------------------------

const accounts = new Map(); // id -> account
const byUsername = new Map(); // username -> account

async function createUsers() {
  const names = Array.from({ length: userCount }, (_, i) => `${userPrefix}${i}`);
  // @node-rs/argon2 hashes on the libuv thread pool: a few at a time keeps both cores busy.
  const batch = 8;
  for (let i = 0; i < names.length; i += batch) {
    await Promise.all(names.slice(i, i + batch).map(async (username) => {
      const account = {
        id: crypto.randomBytes(16).toString('base64url'),
        username,
        email: `${username}@bench.example`,
        name: `Bench ${username}`,
        hash: await hash(password, ARGON2),
      };
      accounts.set(account.id, account);
      byUsername.set(username, account);
    }));
  }
}

// Verified against when the username is unknown, so that a miss costs as much as a wrong password.
const dummyHash = await hash(crypto.randomBytes(16).toString('base64url'), ARGON2);

// ---- the provider -----------------------------------------------------------------------------

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), alg: 'RS256', use: 'sig', kid: 'peer-rs256' };

// accountId:clientId -> grantId: consent remembered per user and client, as Latchkey does.
const rememberedGrants = new Map();

const provider = new Provider(issuer, {
  adapter: MapAdapter,
  // A web client: node-oidc-provider asks native clients for consent on every request.
  clients: [{
    client_id: clientId,
    token_endpoint_auth_method: 'none',
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    id_token_signed_response_alg: 'RS256',
  }],
  jwks: { keys: [jwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
  },
  // RFC 7591 registration, open as Latchkey's default, for the registration phase.
  features: { devInteractions: { enabled: false }, registration: { enabled: true } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  pkce: { required: () => true },
  // Latchkey issues refresh tokens to every client registered for the grant, bound to the login
  // session unless `offline_access` is granted; node-oidc-provider does the same binding.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId)
      || (ctx.oidc.session.accountId
        && rememberedGrants.get(`${ctx.oidc.session.accountId}:${ctx.oidc.client.clientId}`));
    return grantId ? ctx.oidc.provider.Grant.find(grantId) : undefined;
  },
  findAccount: async (_ctx, sub) => {
    const a = accounts.get(sub);
    if (!a) return undefined;
    return {
      accountId: sub,
      claims: async () => ({
        sub,
        name: a.name,
        preferred_username: a.username,
        email: a.email,
        email_verified: false,
      }),
    };
  },
  ttl: {
    AccessToken: 600,
    AuthorizationCode: codeTtl,
    IdToken: 600,
    Interaction: 600,
    Session: 86400,
    Grant: 30 * 86400,
    RefreshToken: 30 * 86400,
  },
});

// ---- the interaction pages: a login form and a consent form ----------------------------------

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title></head>`
    + `<body><main><h1>${escape(title)}</h1>${body}</main></body></html>`;
}

function loginPage(uid, error) {
  return page('Sign-in', `${error ? `<p role="alert">${escape(error)}</p>` : ''}
<form autocomplete="off" action="/interaction/${escape(uid)}/login" method="post">
<input required type="text" name="login" placeholder="Username" autofocus>
<input required type="password" name="password" placeholder="Password">
<button type="submit">Sign-in</button>
</form>`);
}

function consentPage(uid, scopes) {
  return page('Authorize', `<p>Scopes: ${escape(scopes.join(' '))}</p>
<form autocomplete="off" action="/interaction/${escape(uid)}/confirm" method="post">
<button autofocus type="submit">Continue</button>
</form>`);
}

async function formBody(req) {
  let raw = '';
  for await (const chunk of req) {
    raw += chunk;
    if (raw.length > 64 * 1024) throw new Error('form too large');
  }
  return new URLSearchParams(raw);
}

const INTERACTION = /^\/interaction\/([\w-]+)(?:\/(login|confirm))?$/;

provider.use(async (ctx, next) => {
  const m = INTERACTION.exec(ctx.path);
  if (!m) return next();
  const [, uid, action] = m;
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.uid !== uid) ctx.throw(400, 'interaction mismatch');
  ctx.set('cache-control', 'no-store');
  if (ctx.method === 'GET' && !action) {
    ctx.type = 'html';
    ctx.body = details.prompt.name === 'login'
      ? loginPage(uid)
      : consentPage(uid, details.prompt.details.missingOIDCScope ?? []);
    return undefined;
  }
  if (ctx.method !== 'POST') ctx.throw(405);
  if (action === 'login') {
    const form = await formBody(ctx.req);
    const account = byUsername.get(form.get('login') ?? '');
    const ok = await verify(account?.hash ?? dummyHash, form.get('password') ?? '');
    if (!account || !ok) {
      ctx.type = 'html';
      ctx.body = loginPage(uid, 'Invalid username or password.');
      return undefined;
    }
    const to = await provider.interactionResult(ctx.req, ctx.res,
      { login: { accountId: account.id } }, { mergeWithLastSubmission: false });
    ctx.status = 303;
    ctx.redirect(to);
    return undefined;
  }
  // action === 'confirm': record consent to every missing OIDC scope and claim.
  await formBody(ctx.req);
  const { prompt: { details: d }, params, session: { accountId } } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
  if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
  const grantId = await grant.save();
  rememberedGrants.set(`${accountId}:${params.client_id}`, grantId);
  const to = await provider.interactionResult(ctx.req, ctx.res, { consent: { grantId } },
    { mergeWithLastSubmission: true });
  ctx.status = 303;
  ctx.redirect(to);
  return undefined;
});

const started = Date.now();
await createUsers();
const server = provider.listen(port, '127.0.0.1', () => {
  // One line the driver waits for; it names the pid that server CPU and RSS are read from.
  console.log(`peer ready: issuer ${issuer} pid ${process.pid} users ${userCount} (hashed in ${Date.now() - started} ms)`);
});
// Keep idle keep-alive connections open between benchmark phases (Node closes them after 5 s).
server.keepAliveTimeout = 120_000;
server.headersTimeout = 121_000;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
