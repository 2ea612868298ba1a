// A browser MCP host, like the MCP Inspector, in headless Chromium: a page on another origin than
// Latchkey's that discovers the authorization server, registers itself (RFC 7591), runs the
// authorization in the browser on Latchkey's real login and consent pages, then exchanges the code
// and revokes the token with fetch() across origins. Every cross-origin request carries the
// `mcp-protocol-version` header, as MCP hosts send it, so each one is preflighted: CORS must let them
// through, and `Access-Control-Allow-Credentials` must never be sent (no cookies, no ambient
// authority: a page may use these endpoints, never the person's Latchkey session).
//
// Run by crates/cli/tests/browser.rs against `latchkey serve --dev` (LATCHKEY_BASE; user demo).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { BASE, launch, newPage, shot, signIn } from './support.mjs';

const PROTOCOL_VERSION = '2025-11-25';
let browser;
let host;
let HOST;

// The host's one page: its script does what an MCP host's OAuth code does, step by step, called
// from the test with page.evaluate. The PKCE verifier and the client live in sessionStorage across
// the navigation to Latchkey and back.
const PAGE = `<!doctype html><meta charset="utf-8"><title>MCP host</title><p id="status">MCP host</p>
<script>
const AS = ${JSON.stringify(BASE)};
const headers = (extra = {}) => ({ 'mcp-protocol-version': ${JSON.stringify(PROTOCOL_VERSION)}, ...extra });
const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
window.host = {
  async discover() {
    const res = await fetch(AS + '/.well-known/oauth-authorization-server', { headers: headers() });
    const metadata = await res.json();
    sessionStorage.setItem('metadata', JSON.stringify(metadata));
    return { status: res.status, metadata };
  },
  async register() {
    const metadata = JSON.parse(sessionStorage.getItem('metadata'));
    const res = await fetch(metadata.registration_endpoint, {
      method: 'POST',
      headers: headers({ 'content-type': 'application/json' }),
      // The Inspector's registration: a public client, loopback redirect, an empty scope string.
      body: JSON.stringify({
        client_name: 'Browser MCP host',
        redirect_uris: [location.origin + '/callback'],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
        scope: '',
      }),
    });
    const client = await res.json();
    sessionStorage.setItem('client', JSON.stringify(client));
    return { status: res.status, client };
  },
  async authorizationUrl() {
    const metadata = JSON.parse(sessionStorage.getItem('metadata'));
    const client = JSON.parse(sessionStorage.getItem('client'));
    const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
    const challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
    const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
    sessionStorage.setItem('verifier', verifier);
    sessionStorage.setItem('state', state);
    const u = new URL(metadata.authorization_endpoint);
    for (const [k, v] of Object.entries({
      response_type: 'code', client_id: client.client_id, redirect_uri: location.origin + '/callback',
      scope: 'openid profile', code_challenge: challenge, code_challenge_method: 'S256', state,
    })) u.searchParams.set(k, v);
    return u.toString();
  },
  async exchange() {
    const metadata = JSON.parse(sessionStorage.getItem('metadata'));
    const client = JSON.parse(sessionStorage.getItem('client'));
    const q = new URLSearchParams(location.search);
    if (q.get('state') !== sessionStorage.getItem('state')) throw new Error('state mismatch');
    if (q.get('iss') !== metadata.issuer) throw new Error('iss mismatch (RFC 9207): ' + q.get('iss'));
    const res = await fetch(metadata.token_endpoint, {
      method: 'POST',
      headers: headers({ 'content-type': 'application/x-www-form-urlencoded' }),
      body: new URLSearchParams({
        grant_type: 'authorization_code', code: q.get('code'), redirect_uri: location.origin + '/callback',
        client_id: client.client_id, code_verifier: sessionStorage.getItem('verifier'),
      }),
    });
    const tokens = await res.json();
    sessionStorage.setItem('tokens', JSON.stringify(tokens));
    return { status: res.status, token_type: tokens.token_type, has_access_token: !!tokens.access_token, has_refresh_token: !!tokens.refresh_token };
  },
  async revoke() {
    const metadata = JSON.parse(sessionStorage.getItem('metadata'));
    const client = JSON.parse(sessionStorage.getItem('client'));
    const tokens = JSON.parse(sessionStorage.getItem('tokens'));
    const res = await fetch(metadata.revocation_endpoint, {
      method: 'POST',
      headers: headers({ 'content-type': 'application/x-www-form-urlencoded' }),
      body: new URLSearchParams({ token: tokens.refresh_token, token_type_hint: 'refresh_token', client_id: client.client_id }),
    });
    // The revoked refresh token no longer works.
    const again = await fetch(metadata.token_endpoint, {
      method: 'POST',
      headers: headers({ 'content-type': 'application/x-www-form-urlencoded' }),
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: client.client_id }),
    });
    return { status: res.status, refresh_after_revoke: again.status, error: (await again.json()).error };
  },
};
</script>`;

before(async () => {
  host = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    if (path === '/' || path === '/callback') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(PAGE);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => host.listen(0, '127.0.0.1', resolve));
  HOST = `http://127.0.0.1:${host.address().port}`;
  assert.notEqual(new URL(HOST).origin, new URL(BASE).origin, 'the host page is on another origin');
  browser = await launch();
});

after(async () => {
  await browser?.close();
  host?.close();
});

test('a browser MCP host on another origin registers, authorizes, exchanges and revokes across origins', async () => {
  const { context, page, problems } = await newPage(browser);
  // Every response from Latchkey that the page saw, with all its headers.
  const seen = [];
  // Pushed at once (a promise of the headers), so that no response is missed when the test reads
  // them: an async handler that pushed after its await raced the last fetch under load.
  page.on('response', (r) => {
    if (new URL(r.url()).origin === new URL(BASE).origin) {
      seen.push(r.allHeaders().then((headers) => ({ url: r.url(), method: r.request().method(), status: r.status(), headers })));
    }
  });

  await page.goto(`${HOST}/`);
  const discovered = await page.evaluate(() => window.host.discover());
  assert.equal(discovered.status, 200);
  assert.equal(discovered.metadata.issuer, BASE);
  assert.ok(discovered.metadata.registration_endpoint, 'registration_endpoint is advertised');
  assert.ok(discovered.metadata.code_challenge_methods_supported.includes('S256'));

  const registered = await page.evaluate(() => window.host.register());
  assert.equal(registered.status, 201, JSON.stringify(registered.client));
  assert.equal(registered.client.token_endpoint_auth_method, 'none');
  assert.deepEqual(registered.client.redirect_uris, [`${HOST}/callback`]);

  // The authorization runs in the browser, top-level, on Latchkey's own pages.
  await page.goto(await page.evaluate(() => window.host.authorizationUrl()));
  await signIn(page, 'demo', 'demo-password');
  assert.equal(await page.title(), 'Allow access · Latchkey');
  const consent = await page.locator('main').innerText();
  assert.match(consent, /unverified/i, 'a self-registered client is marked unverified');
  assert.ok(consent.includes('127.0.0.1'), `the consent page shows the redirect host: ${consent}`);
  await shot(page, 'mcp-host-consent');
  await Promise.all([page.waitForURL((u) => u.origin === HOST && u.pathname === '/callback'), page.getByRole('button', { name: 'Allow' }).click()]);

  const exchanged = await page.evaluate(() => window.host.exchange());
  assert.deepEqual(exchanged, { status: 200, token_type: 'Bearer', has_access_token: true, has_refresh_token: true });
  const revoked = await page.evaluate(() => window.host.revoke());
  assert.equal(revoked.status, 200);
  assert.equal(revoked.refresh_after_revoke, 400);
  assert.equal(revoked.error, 'invalid_grant');

  // What CORS let through: each fetch above succeeded; its response named the page's origin (or
  // any), and none allowed credentials.
  // The response event may arrive a little after the page's fetch resolved: wait for the last one.
  for (let i = 0; i < 50 && !(await Promise.all(seen)).some((s) => new URL(s.url).pathname === '/revoke'); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const responses = await Promise.all(seen);
  const fetched = responses.filter((s) => !['/authorize', '/login', '/consent'].includes(new URL(s.url).pathname) && !s.url.includes('/assets/'));
  for (const p of ['/.well-known/oauth-authorization-server', '/register', '/token', '/revoke']) {
    assert.ok(fetched.some((s) => new URL(s.url).pathname === p), `the page fetched ${p}: ${JSON.stringify(fetched.map((s) => s.url))}`);
  }
  for (const s of fetched) {
    assert.ok([HOST, '*'].includes(s.headers['access-control-allow-origin']), `${s.url}: ${JSON.stringify(s.headers)}`);
  }
  for (const s of responses) assert.equal(s.headers['access-control-allow-credentials'], undefined, `${s.url} allows credentials`);
  await context.close();
  assert.deepEqual(problems.filter((p) => !p.startsWith('400 /token')), [], 'no CORS or script error in the page');
});

test('the preflights of a browser MCP host allow mcp-protocol-version and never credentials', async () => {
  // Chromium does not show preflights to the page, so they are sent here as it sends them.
  for (const [path, method] of [
    ['/.well-known/oauth-authorization-server', 'GET'],
    ['/.well-known/openid-configuration', 'GET'],
    ['/register', 'POST'],
    ['/token', 'POST'],
    ['/revoke', 'POST'],
  ]) {
    const res = await fetch(new URL(path, BASE), {
      method: 'OPTIONS',
      headers: {
        origin: 'http://127.0.0.1:6274',
        'access-control-request-method': method,
        'access-control-request-headers': 'authorization,content-type,mcp-protocol-version',
      },
    });
    assert.ok(res.status >= 200 && res.status < 300, `${path}: preflight ${res.status}`);
    assert.ok(['http://127.0.0.1:6274', '*'].includes(res.headers.get('access-control-allow-origin')), `${path}: ${[...res.headers]}`);
    const allowed = (res.headers.get('access-control-allow-headers') ?? '').toLowerCase();
    const list = allowed.split(/\s*,\s*/);
    for (const h of ['mcp-protocol-version', 'content-type']) {
      assert.ok(list.includes('*') || list.includes(h), `${path} allows ${h}: ${allowed}`);
    }
    // The wildcard never covers Authorization (Fetch standard, CORS-preflight fetch): it must be named.
    assert.ok(list.includes('authorization'), `${path} allows authorization: ${allowed}`);
    assert.equal(res.headers.get('access-control-allow-credentials'), null, `${path} allows credentials`);
  }
});
