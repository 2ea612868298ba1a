// An MCP host built on the official TypeScript SDK (@modelcontextprotocol/sdk, pinned in
// package-lock.json): `StreamableHTTPClientTransport` with an `OAuthClientProvider`, so discovery
// (RFC 9728, RFC 8414), registration (DCR, CIMD or none), PKCE, `resource` (RFC 8707), the token
// requests and the refresh are the SDK's own code. The person is played over plain HTTP against
// Latchkey's real pages (person.mjs): the login form, then the consent page, whose "allow" redirects
// to the loopback redirect URI; the code goes back to the SDK through `finishAuth`.
//
// Run by crates/cli/tests/mcp_interop.rs:
//   node ts_client.mjs --server <MCP URL> --mode dcr|cimd|preregistered [--client-id <id or URL>]
//        --redirect <loopback URI> --user <name> --password <pw> [--tool whoami]
//        [--other-server <URL of another resource>] [--refresh] [--step-up-tool <name>]
// It prints ONE line of JSON (the result the Rust test asserts on) and exits 0 even when a step
// failed: `ok` and `error` say what happened.
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError, auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { Person, waitUntilRefused } from './person.mjs';

const { values: opt } = parseArgs({
  options: {
    server: { type: 'string' },
    mode: { type: 'string' },
    'client-id': { type: 'string' },
    redirect: { type: 'string' },
    user: { type: 'string' },
    password: { type: 'string' },
    tool: { type: 'string', default: 'whoami' },
    'other-server': { type: 'string' },
    refresh: { type: 'boolean', default: false },
    'step-up-tool': { type: 'string' },
  },
});
const SERVER = new URL(opt.server);
const result = { sdk: 'typescript', mode: opt.mode, ok: false, steps: [], authorizations: [], token_requests: [] };

// Every request the SDK makes goes through here (the transport's `fetch`, which it also hands to
// its OAuth code): the test sees the registrations and the grant type of each token request.
let lastChallenge = null;
async function recordingFetch(input, init) {
  const res = await fetch(input, init);
  const url = new URL(input instanceof Request ? input.url : String(input));
  const method = init?.method ?? (input instanceof Request ? input.method : 'GET');
  if (method === 'POST' && init?.body instanceof URLSearchParams && init.body.get('grant_type')) {
    result.token_requests.push({
      grant_type: init.body.get('grant_type'),
      resource: init.body.get('resource'),
      status: res.status,
    });
  } else if (method === 'POST' && url.pathname.endsWith('/register')) {
    result.registered = { status: res.status };
  }
  if (res.status === 401 || res.status === 403) {
    if (url.origin === SERVER.origin) lastChallenge = { status: res.status, www_authenticate: res.headers.get('www-authenticate') };
  }
  return res;
}

// The person at the browser: one user agent (cookie jar) for the whole run, as a real browser keeps
// its Latchkey session between two authorizations.
const person = new Person({ user: opt.user, password: opt.password, redirect: opt.redirect });
let pendingCode = null;

class Provider {
  constructor() {
    this.client = opt.mode === 'preregistered' ? { client_id: opt['client-id'] } : undefined;
    this.stored = undefined;
    this.verifier = undefined;
    this.lastState = undefined;
    if (opt.mode === 'cimd') this.clientMetadataUrl = opt['client-id'];
  }
  get redirectUrl() {
    return opt.redirect;
  }
  get clientMetadata() {
    return {
      client_name: `TS SDK interop (${opt.mode})`,
      redirect_uris: [opt.redirect],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      application_type: 'native',
    };
  }
  state() {
    this.lastState = randomBytes(16).toString('base64url');
    return this.lastState;
  }
  clientInformation() {
    return this.client;
  }
  saveClientInformation(info) {
    this.client = info;
  }
  tokens() {
    return this.stored;
  }
  saveTokens(t) {
    this.stored = t;
  }
  saveCodeVerifier(v) {
    this.verifier = v;
  }
  codeVerifier() {
    return this.verifier;
  }
  invalidateCredentials(scope) {
    if (scope === 'all' || scope === 'tokens') this.stored = undefined;
    if (scope === 'all' || scope === 'client') this.client = opt.mode === 'preregistered' ? { client_id: opt['client-id'] } : undefined;
  }
  async redirectToAuthorization(url) {
    // The authorization request as the SDK built it, then the person's part on the real pages.
    const q = url.searchParams;
    const entry = {
      client_id: q.get('client_id'),
      scope: q.get('scope'),
      resource: q.get('resource'),
      code_challenge_method: q.get('code_challenge_method'),
    };
    result.authorizations.push(entry);
    const back = await person.authorize(url, entry);
    // RFC 6749 §10.12 and RFC 9207: the host checks the state and the issuer of the response.
    entry.state_ok = back.get('state') === this.lastState;
    entry.iss = back.get('iss');
    if (back.get('error')) throw new Error(`authorization refused: ${back.get('error')}: ${back.get('error_description')}`);
    pendingCode = back.get('code');
  }
}

const provider = new Provider();

function transport() {
  return new StreamableHTTPClientTransport(SERVER, { authProvider: provider, fetch: recordingFetch });
}

// Connects, running the authorization when the server asks for one (the SDK's documented pattern:
// `connect` fails with UnauthorizedError after redirecting, `finishAuth` exchanges the code, and a
// new transport connects with the token).
async function connect() {
  const client = new Client({ name: 'latchkey-ts-interop', version: '1.0.0' });
  let t = transport();
  try {
    await client.connect(t);
    return { client, transport: t };
  } catch (e) {
    if (!(e instanceof UnauthorizedError) || !pendingCode) throw e;
  }
  const code = pendingCode;
  pendingCode = null;
  await t.finishAuth(code);
  const again = new Client({ name: 'latchkey-ts-interop', version: '1.0.0' });
  t = transport();
  await again.connect(t);
  return { client: again, transport: t };
}

function text(res) {
  const c = res.content?.find((x) => x.type === 'text');
  try {
    return JSON.parse(c?.text ?? 'null');
  } catch {
    return c?.text ?? null;
  }
}

async function step(name, f) {
  result.steps.push(name);
  return f();
}

try {
  const { client, transport: t } = await step('connect', connect);
  result.client_id = provider.client?.client_id;
  const first = await step('tool', () => client.callTool({ name: opt.tool, arguments: {} }));
  result.tool = { is_error: first.isError ?? false, value: text(first) };
  result.resource_metadata_challenge = lastChallenge;

  if (opt['other-server']) {
    // A token minted for this resource, presented to another one (no token passthrough).
    await step('other-server', async () => {
      const res = await fetch(opt['other-server'], {
        method: 'POST',
        headers: {
          authorization: `Bearer ${provider.tokens().access_token}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
      });
      result.other_server = { status: res.status, www_authenticate: res.headers.get('www-authenticate') };
      await res.body?.cancel();
    });
  }

  if (opt.refresh) {
    await step('refresh', async () => {
      const old = provider.tokens();
      // Until the server itself refuses the access token (its expiry plus the server's leeway).
      result.refresh = { expired: await waitUntilRefused(SERVER, old.access_token) };
      const before = result.token_requests.length;
      const again = await client.callTool({ name: opt.tool, arguments: {} });
      result.refresh.is_error = again.isError ?? false;
      result.refresh.value = text(again);
      result.refresh.grants = result.token_requests.slice(before);
      result.refresh.new_access_token = provider.tokens().access_token !== old.access_token;
      result.refresh.rotated_refresh_token = provider.tokens().refresh_token !== old.refresh_token;
    });
  }

  if (opt['step-up-tool']) {
    await step('step-up', async () => {
      const s = (result.step_up = { authorizations_before: result.authorizations.length });
      try {
        const r = await client.callTool({ name: opt['step-up-tool'], arguments: {} });
        s.first_try = { is_error: r.isError ?? false, value: text(r) };
      } catch (e) {
        // SDK 1.32: on 403 insufficient_scope it refreshes when it holds a refresh token, which
        // cannot widen the scope (RFC 6749 §6), then gives up on the same 403
        // (typescript-sdk#2255). A host then runs the authorization itself, with the challenged
        // scope, through the SDK's own `auth()`.
        s.first_try = { error: String(e.message ?? e), challenge: lastChallenge };
      }
      s.sdk_reauthorized = result.authorizations.length > s.authorizations_before;
      if (s.first_try.error) {
        const scope = /scope="([^"]*)"/.exec(lastChallenge?.www_authenticate ?? '')?.[1];
        const metadata = /resource_metadata="([^"]*)"/.exec(lastChallenge?.www_authenticate ?? '')?.[1];
        s.host_scope = scope;
        provider.invalidateCredentials('tokens');
        const how = await auth(provider, {
          serverUrl: SERVER,
          scope,
          resourceMetadataUrl: metadata ? new URL(metadata) : undefined,
          fetchFn: recordingFetch,
        });
        if (how !== 'REDIRECT' || !pendingCode) throw new Error(`step-up: auth() answered ${how}`);
        const code = pendingCode;
        pendingCode = null;
        await t.finishAuth(code);
        const r = await client.callTool({ name: opt['step-up-tool'], arguments: {} });
        s.second_try = { is_error: r.isError ?? false, value: text(r) };
      }
      s.authorization = result.authorizations.at(-1);
      s.granted_scope = provider.tokens()?.scope;
    });
  }
  await client.close();
  result.ok = true;
} catch (e) {
  result.error = String(e?.stack ?? e);
}
console.log(JSON.stringify(result));
