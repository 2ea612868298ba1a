// The SPA example (examples/spa) end to end in headless Chromium: its own JavaScript does PKCE with
// WebCrypto, the token exchange and refresh over CORS, the API call and RP-initiated logout.
//
// Run by crates/cli/tests/browser.rs, which starts `latchkey serve --dev` (LATCHKEY_BASE), registers
// the public client SPA_CLIENT with redirect and post-logout redirect URI http://127.0.0.1:SPA_PORT/,
// adds the user alice / alice-password, and starts the protected-api example at API_BASE, which
// allows CORS from that origin only. This file serves the SPA's files on SPA_PORT with a config.js
// of its own, and the same files on a second, unregistered origin: http://localhost:PORT (for
// 127.0.0.1 with another port, Latchkey would accept the redirect URI: RFC 8252 §7.3 lets a
// loopback redirect URI take any port, although CORS still wants the exact origin).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BASE, assertStyled, hasFocus, launch, newPage as freshPage, shot, signIn, watch } from './support.mjs';

const SPA_DIR = process.env.SPA_DIR ?? fileURLToPath(new URL('../../examples/spa/', import.meta.url));
const SPA_PORT = Number(process.env.SPA_PORT);
const CLIENT = process.env.SPA_CLIENT ?? 'latchkey-spa';
const API = process.env.API_BASE;
assert.ok(SPA_PORT && API, 'SPA_PORT and API_BASE come from crates/cli/tests/browser.rs');
const SPA = `http://127.0.0.1:${SPA_PORT}`;

let browser;
let servers = [];
let OTHER;

// The SPA's static files, with the test's config.js in place of the example's. The CSP is what a
// deployment should send: scripts and styles from the page's own origin only (no inline code),
// and fetch() only to the provider and the API.
function serveSpa(port, host = '127.0.0.1') {
  const server = createServer((req, res) => {
    const origin = `http://${host}:${server.address().port}`;
    const file = { '/': 'index.html', '/index.html': 'index.html', '/app.js': 'app.js', '/app.css': 'app.css' }[
      new URL(req.url, origin).pathname
    ];
    const headers = {
      'content-security-policy': `default-src 'none'; script-src 'self'; style-src 'self'; connect-src ${BASE} ${API}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
      'cache-control': 'no-store',
    };
    if (new URL(req.url, origin).pathname === '/config.js') {
      const config = { issuer: BASE, clientId: CLIENT, redirectUri: `${origin}/`, scope: 'openid profile email', api: `${API}/me` };
      res.writeHead(200, { ...headers, 'content-type': 'text/javascript; charset=utf-8' });
      res.end(`window.LATCHKEY_CONFIG = ${JSON.stringify(config)};\n`);
    } else if (file) {
      const type = { html: 'text/html', js: 'text/javascript', css: 'text/css' }[file.split('.').pop()];
      res.writeHead(200, { ...headers, 'content-type': `${type}; charset=utf-8` });
      res.end(readFileSync(path.join(SPA_DIR, file)));
    } else {
      res.writeHead(404, headers);
      res.end();
    }
  });
  servers.push(server);
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(`http://${host}:${server.address().port}`)));
}

before(async () => {
  await serveSpa(SPA_PORT);
  OTHER = await serveSpa(0, 'localhost');
  browser = await launch();
});

after(async () => {
  await browser?.close();
  for (const s of servers) s.close();
});

const newPage = () => freshPage(browser);
const jwtClaims = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());
const s256 = (verifier) => createHash('sha256').update(verifier).digest('base64url');
const tokensOf = (page) => page.evaluate(() => JSON.parse(sessionStorage.getItem('tokens')));
const isAuthorize = (u) => u.origin === BASE && u.pathname === '/authorize';

// The SPA's status line once it says `text` (the SPA works asynchronously after each click).
async function statusIs(page, text) {
  const status = page.getByRole('status');
  await status.filter({ hasText: text }).waitFor();
  return status;
}

test('the SPA signs in with PKCE, calls the API, refreshes, and signs out of Latchkey', async () => {
  const { context, page, problems } = await newPage();
  await page.goto(`${SPA}/`);
  await page.getByRole('button', { name: 'Sign in with Latchkey' }).waitFor();
  assert.equal(await page.locator('#signed-in').isVisible(), false);
  await assertStyled(page);
  await shot(page, 'spa-start');

  // Step 3: the authorization request the page built.
  await Promise.all([page.waitForURL(isAuthorize), page.getByRole('button', { name: 'Sign in with Latchkey' }).click()]);
  const request = new URL(page.url()).searchParams;
  assert.equal(request.get('response_type'), 'code');
  assert.equal(request.get('client_id'), CLIENT);
  assert.equal(request.get('redirect_uri'), `${SPA}/`);
  assert.equal(request.get('code_challenge_method'), 'S256');
  // 32 random bytes each, base64url (RFC 7636 §4.1).
  for (const name of ['code_challenge', 'state', 'nonce']) assert.match(request.get(name), /^[A-Za-z0-9_-]{43}$/, name);
  await shot(page, 'spa-login');

  await signIn(page, 'demo', 'demo-password');
  assert.equal(await page.title(), 'Allow access · Latchkey');
  assert.equal(await page.locator('p', { hasText: 'would like to' }).locator('strong').textContent(), 'SPA example');
  await shot(page, 'spa-consent');

  // Step 5 from the page: a cross-origin POST that the page may read because its origin is the
  // origin of a registered redirect URI.
  const [exchange] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${BASE}/token`),
    page.getByRole('button', { name: 'Allow' }).click(),
  ]);
  await statusIs(page, 'Signed in');
  assert.equal(exchange.status(), 200);
  assert.equal((await exchange.request().allHeaders()).origin, SPA);
  // The token endpoint answers every origin (issue 12: browser MCP hosts register first, so no
  // origin is known beforehand); it uses no cookies, so credentials are never allowed.
  assert.equal((await exchange.allHeaders())['access-control-allow-origin'], '*');
  assert.equal((await exchange.allHeaders())['access-control-allow-credentials'], undefined);
  const sent = new URLSearchParams(exchange.request().postData());
  assert.equal(sent.get('grant_type'), 'authorization_code');
  assert.equal(s256(sent.get('code_verifier')), request.get('code_challenge'), 'the verifier of the challenge sent');
  // The code and state are gone from the address bar (and so from history and Referer).
  assert.equal(page.url(), `${SPA}/`);
  // Tokens (and the userinfo answer) in this tab's sessionStorage only: not in localStorage, not in
  // a cookie. The PKCE verifier, state and nonce are gone.
  const storage = await page.evaluate(() => ({
    session: Object.keys(sessionStorage).sort(),
    local: localStorage.length,
    cookie: document.cookie,
  }));
  assert.deepEqual(storage, { session: ['tokens', 'user'], local: 0, cookie: '' });
  const first = await tokensOf(page);
  const id = jwtClaims(first.id_token);
  assert.equal(id.nonce, request.get('nonce'));
  // The name from /userinfo (another CORS call), and the id from the id_token.
  assert.equal(await page.locator('#who').textContent(), 'Demo User');
  assert.equal(await page.locator('#sub').textContent(), id.sub);
  await shot(page, 'spa-signed-in');

  // Steps 8-9: the protected API, with a preflighted CORS request.
  const [call] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${API}/me`),
    page.getByRole('button', { name: 'Call the protected API' }).click(),
  ]);
  await statusIs(page, 'The API answered');
  assert.equal((await call.allHeaders())['access-control-allow-origin'], SPA);
  assert.equal((await call.request().allHeaders()).authorization, `Bearer ${first.access_token}`);
  const me = JSON.parse(await page.locator('#output').textContent());
  assert.equal(me.sub, id.sub);
  assert.equal(me.client_id, CLIENT);
  assert.deepEqual(me.scope.split(' ').sort(), ['email', 'openid', 'profile']);
  await shot(page, 'spa-api');

  // Refresh: new access and refresh tokens (rotation), and the API takes the new access token.
  await page.getByRole('button', { name: 'Refresh the tokens' }).click();
  await statusIs(page, 'Refreshed');
  const second = await tokensOf(page);
  assert.notEqual(second.access_token, first.access_token);
  assert.notEqual(second.refresh_token, first.refresh_token);
  assert.equal(jwtClaims(second.id_token).sub, id.sub);
  assert.equal(JSON.parse(await page.locator('#output').textContent()).rotated, true);
  await shot(page, 'spa-refreshed');
  const [again] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${API}/me`),
    page.getByRole('button', { name: 'Call the protected API' }).click(),
  ]);
  await statusIs(page, 'The API answered');
  assert.equal((await again.request().allHeaders()).authorization, `Bearer ${second.access_token}`);
  assert.equal(JSON.parse(await page.locator('#output').textContent()).sub, id.sub);
  await shot(page, 'spa-api-after-refresh');

  // Sign out: the refresh token is revoked, then Latchkey's end_session_endpoint. The id_token_hint
  // names the current session, so Latchkey ends it without asking (RP-Initiated Logout §2) and
  // sends the browser back to the registered post_logout_redirect_uri with the page's state.
  const shown = [];
  page.on('framenavigated', (f) => f === page.mainFrame() && shown.push(f.url().split('?')[0]));
  const [revoked] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${BASE}/revoke`),
    page.getByRole('button', { name: 'Sign out' }).click(),
  ]);
  await statusIs(page, 'Signed out, here and at Latchkey');
  assert.equal(revoked.status(), 200);
  assert.ok(shown.length > 0 && shown.every((u) => u === `${SPA}/`), `no page of Latchkey was shown: ${shown}`);
  assert.equal(page.url(), `${SPA}/`);
  assert.equal(await page.locator('#signed-out').isVisible(), true);
  assert.deepEqual(await page.evaluate(() => Object.keys(sessionStorage)), []);
  await shot(page, 'spa-signed-out');
  const refresh = await fetch(`${BASE}/token`, {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: second.refresh_token, client_id: CLIENT }),
  });
  assert.equal((await refresh.json()).error, 'invalid_grant', 'the refresh token is revoked');

  // The Latchkey session is gone too: signing in again asks for the password.
  await Promise.all([page.waitForURL(isAuthorize), page.getByRole('button', { name: 'Sign in with Latchkey' }).click()]);
  assert.equal(await page.title(), 'Sign in · Latchkey');
  assert.deepEqual(problems, []);
  await context.close();
});

test('a sign-out with the id_token of an older session asks first, then returns to the SPA', async () => {
  const { context, page: older, problems } = await newPage();
  await older.goto(`${SPA}/`);
  await Promise.all([older.waitForURL(isAuthorize), older.getByRole('button', { name: 'Sign in with Latchkey' }).click()]);
  await signIn(older, 'alice', 'alice-password');
  await older.getByRole('button', { name: 'Allow' }).click();
  await statusIs(older, 'Signed in');

  // A second tab of the same browser: its own sessionStorage, so not signed in in the SPA, but
  // signed in at Latchkey, so signing in asks no password; the app's redirect is loopback, so it
  // is asked to allow every time (RFC 8252 §8.6).
  const newer = await context.newPage();
  watch(newer, problems);
  await newer.goto(`${SPA}/`);
  assert.equal(await newer.locator('#signed-out').isVisible(), true);
  await Promise.all([newer.waitForURL(isAuthorize), newer.getByRole('button', { name: 'Sign in with Latchkey' }).click()]);
  assert.equal(await newer.locator('input[name="password"]').count(), 0);
  await newer.getByRole('button', { name: 'Allow' }).click();
  await statusIs(newer, 'Signed in');
  // That tab signs out (ending the session both tabs used) and signs in again: a new session.
  await newer.getByRole('button', { name: 'Sign out' }).click();
  await statusIs(newer, 'Signed out');
  await Promise.all([newer.waitForURL(isAuthorize), newer.getByRole('button', { name: 'Sign in with Latchkey' }).click()]);
  await signIn(newer, 'alice', 'alice-password');
  await statusIs(newer, 'Signed in');

  // The first tab's id_token names the old session: Latchkey does not take it as proof that the
  // user wants out of the new one, and asks.
  await Promise.all([
    older.waitForURL((u) => u.origin === BASE && u.pathname === '/logout'),
    older.getByRole('button', { name: 'Sign out' }).click(),
  ]);
  assert.equal(await older.title(), 'Sign out · Latchkey');
  assert.equal((await older.locator('p.sub').textContent()).trim(), 'SPA example asked to sign you out.');
  await hasFocus(older, 'Sign out');
  await shot(older, 'spa-logout-confirm');
  await Promise.all([older.waitForURL((u) => u.origin === SPA), older.keyboard.press('Enter')]);
  await statusIs(older, 'Signed out, here and at Latchkey');
  await shot(older, 'spa-signed-out-after-confirm');

  // The new session ended: the other tab's refresh token, bound to it, no longer works.
  await newer.getByRole('button', { name: 'Refresh the tokens' }).click();
  const status = await statusIs(newer, 'invalid_grant');
  assert.equal(await status.getAttribute('class'), 'error');
  assert.deepEqual(problems, ['400 /token']);
  await context.close();
});

test('only the registered origin can read the API; the token endpoint answers any origin, without credentials', async () => {
  const { context, page, problems } = await newPage();
  // What a page's script gets back: an answer it may read, or the browser's refusal.
  const probe = () =>
    page.evaluate(
      async ({ base, api, client }) => {
        const attempt = async (url, init) => {
          try {
            const r = await fetch(url, init);
            return { status: r.status, body: await r.text(), challenge: r.headers.get('www-authenticate') };
          } catch (e) {
            return { refused: `${e.name}: ${e.message}` };
          }
        };
        const exchange = { grant_type: 'authorization_code', code: 'not-a-code', redirect_uri: `${location.origin}/`, client_id: client, code_verifier: 'v'.repeat(43) };
        return {
          token: await attempt(`${base}/token`, { method: 'POST', body: new URLSearchParams(exchange) }),
          api: await attempt(`${api}/me`, { headers: { Authorization: 'Bearer not-a-token' } }),
        };
      },
      { base: BASE, api: API, client: CLIENT },
    );

  await page.goto(`${SPA}/`);
  const mine = await probe();
  assert.equal(mine.token.status, 400);
  assert.equal(JSON.parse(mine.token.body).error, 'invalid_grant');
  assert.equal(mine.api.status, 401);
  assert.match(mine.api.challenge, /^Bearer realm="notes"/, 'the refusal reason is readable');

  await page.goto(`${OTHER}/`);
  const theirs = await probe();
  // Another origin reads the token endpoint's refusal (it holds no code of anyone's: a code is
  // bound to its client's redirect URI and PKCE verifier), but not the API's answer.
  assert.equal(theirs.token.status, 400);
  assert.equal(JSON.parse(theirs.token.body).error, 'invalid_grant');
  assert.deepEqual(theirs.api, { refused: 'TypeError: Failed to fetch' });
  // Nor can a page there start a sign-in: its redirect URI is not registered.
  const [denied] = await Promise.all([
    page.waitForResponse((r) => isAuthorize(new URL(r.url()))),
    page.getByRole('button', { name: 'Sign in with Latchkey' }).click(),
  ]);
  assert.equal(denied.status(), 400);
  assert.match(await page.getByRole('alert').textContent(), /redirect_uri/);

  const expected = (p) =>
    ['400 /token', '401 /me', '400 /authorize'].includes(p) || /has been blocked by CORS policy/.test(p);
  assert.deepEqual(problems.filter((p) => !expected(p)), []);
  assert.equal(problems.filter((p) => /blocked by CORS policy/.test(p)).length, 1, problems.join('\n'));
  await context.close();
});

test('a callback with a state or an issuer this tab did not send is refused before any token request', async () => {
  const { context, page, problems } = await newPage();
  const tokenRequests = [];
  page.on('request', (r) => r.url() === `${BASE}/token` && tokenRequests.push(r));
  const startSignIn = async () => {
    await page.goto(`${SPA}/`);
    await Promise.all([page.waitForURL(isAuthorize), page.getByRole('button', { name: 'Sign in with Latchkey' }).click()]);
    return new URL(page.url()).searchParams.get('state');
  };

  // A link with the attacker's own code and state: login CSRF (RFC 6749 §10.12).
  await startSignIn();
  await page.goto(`${SPA}/?code=attackers-code&state=attackers-state&iss=${encodeURIComponent(BASE)}`);
  let status = await statusIs(page, 'state does not match');
  assert.equal(await status.getAttribute('class'), 'error');
  assert.equal(page.url(), `${SPA}/`);
  await shot(page, 'spa-state-refused');

  // The right state from another issuer: a mix-up attack (RFC 9207).
  const state = await startSignIn();
  await page.goto(`${SPA}/?code=some-code&state=${state}&iss=${encodeURIComponent('https://evil.example')}`);
  status = await statusIs(page, 'iss does not match');
  assert.equal(await status.getAttribute('class'), 'error');

  assert.equal(tokenRequests.length, 0, 'no code was sent anywhere');
  assert.equal(await page.locator('#signed-out').isVisible(), true);
  assert.deepEqual(await page.evaluate(() => Object.keys(sessionStorage)), []);
  assert.deepEqual(problems, []);
  await context.close();
});
