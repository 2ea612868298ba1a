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
//
// DPoP mode (RFC 9449): the same files at http://127.0.0.1:SPA_PORT/dpop/, with a config.js that
// says `dpop: true`, for the client SPA_DPOP_CLIENT (registered with `--dpop`, so it gets bound
// tokens only, redirect URI .../dpop/). Latchkey requires DPoP nonces ([dpop] require_nonce) and
// so does the API (--dpop-nonces), so the SPA's retry with the server's nonce runs at both.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPublicKey, generateKeyPairSync, randomUUID, sign, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BASE, assertStyled, hasFocus, launch, newPage as freshPage, shot, signIn, watch } from './support.mjs';

const SPA_DIR = process.env.SPA_DIR ?? fileURLToPath(new URL('../../examples/spa/', import.meta.url));
const SPA_PORT = Number(process.env.SPA_PORT);
const CLIENT = process.env.SPA_CLIENT ?? 'latchkey-spa';
const DPOP_CLIENT = process.env.SPA_DPOP_CLIENT;
const API = process.env.API_BASE;
assert.ok(SPA_PORT && API && DPOP_CLIENT, 'SPA_PORT, SPA_DPOP_CLIENT and API_BASE come from crates/cli/tests/browser.rs');
const SPA = `http://127.0.0.1:${SPA_PORT}`;

let browser;
let servers = [];
let OTHER;

// The SPA's static files, with the test's config.js in place of the example's: at / as the
// example ships (Bearer tokens), and at /dpop/ in DPoP mode. The CSP is what a deployment should
// send: scripts and styles from the page's own origin only (no inline code), and fetch() only to
// the provider and the API.
function serveSpa(port, host = '127.0.0.1') {
  const server = createServer((req, res) => {
    const origin = `http://${host}:${server.address().port}`;
    const pathname = new URL(req.url, origin).pathname;
    const dpop = pathname.startsWith('/dpop/');
    const name = dpop ? pathname.slice('/dpop'.length) : pathname;
    const files = { '/': 'index.html', '/index.html': 'index.html', '/app.js': 'app.js', '/dpop.js': 'dpop.js', '/app.css': 'app.css' };
    const file = files[name];
    const headers = {
      'content-security-policy': `default-src 'none'; script-src 'self'; style-src 'self'; connect-src ${BASE} ${API}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
      'cache-control': 'no-store',
    };
    if (name === '/config.js') {
      const config = dpop
        ? { issuer: BASE, clientId: DPOP_CLIENT, redirectUri: `${origin}/dpop/`, scope: 'openid profile email', api: `${API}/me`, dpop: true }
        : { issuer: BASE, clientId: CLIENT, redirectUri: `${origin}/`, scope: 'openid profile email', api: `${API}/me` };
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

// DPoP: what a request's proof says, and whether its signature is good under the key it names.
const proofOf = async (request) => {
  const raw = (await request.allHeaders()).dpop;
  assert.ok(raw, `${request.url()} has no DPoP proof`);
  const [h, p, sig] = raw.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url').toString());
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
  const key = createPublicKey({ key: header.jwk, format: 'jwk' });
  const signed = verify('sha256', Buffer.from(`${h}.${p}`), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(sig, 'base64url'));
  return { raw, header, claims, signed };
};
// RFC 7638 §3.2: the required members of an EC key, in lexicographic order.
const thumbprint = ({ crv, kty, x, y }) => createHash('sha256').update(JSON.stringify({ crv, kty, x, y })).digest('base64url');
const ath = (token) => createHash('sha256').update(token).digest('base64url');

// A proof made by node, with a key of its own: what someone holding a copy of the token could make.
function foreignProof({ method = 'GET', url, accessToken, nonce }) {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const { kty, crv, x, y } = publicKey.export({ format: 'jwk' });
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const claims = { jti: randomUUID(), htm: method, htu: url, iat: Math.floor(Date.now() / 1000), nonce };
  if (accessToken) claims.ath = ath(accessToken);
  const input = `${part({ typ: 'dpop+jwt', alg: 'ES256', jwk: { kty, crv, x, y } })}.${part(claims)}`;
  return `${input}.${sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}

test('in DPoP mode the tokens are bound to a key of the tab, and a copy of the access token is refused', async () => {
  const { context, page, problems } = await newPage();
  const DPOP_SPA = `${SPA}/dpop/`;
  const meta = await (await fetch(`${BASE}/.well-known/openid-configuration`)).json();
  const calls = [];
  page.on('response', (r) => {
    const watched = [meta.token_endpoint, meta.userinfo_endpoint, `${API}/me`].includes(r.url());
    if (watched && r.request().method() !== 'OPTIONS') calls.push(r);
  });
  const take = () => calls.splice(0);

  await page.goto(DPOP_SPA);
  await Promise.all([page.waitForURL(isAuthorize), page.getByRole('button', { name: 'Sign in with Latchkey' }).click()]);
  const request = new URL(page.url()).searchParams;
  assert.equal(request.get('client_id'), DPOP_CLIENT);
  assert.equal(request.get('redirect_uri'), DPOP_SPA);
  // RFC 9449 §10: the code is bound to the key's thumbprint.
  const jkt = request.get('dpop_jkt');
  assert.match(jkt, /^[A-Za-z0-9_-]{43}$/);
  await signIn(page, 'demo', 'demo-password');
  await page.getByRole('button', { name: 'Allow' }).click();
  await statusIs(page, 'Signed in');
  assert.equal(page.url(), DPOP_SPA);
  assert.equal(await page.locator('#who').textContent(), 'Demo User', 'userinfo answered the DPoP call');
  assert.equal(await page.locator('#binding').textContent(), "Tokens bound to this tab's key (DPoP)");
  const tokens = await tokensOf(page);
  assert.equal(tokens.token_type, 'DPoP');
  // The access token is bound to the key whose thumbprint went to /authorize (RFC 9449 §6.1).
  assert.deepEqual(jwtClaims(tokens.access_token).cnf, { jkt });
  await shot(page, 'spa-dpop-signed-in');

  // The code exchange: the first proof has no nonce, Latchkey asks for one (§8), and the page
  // sends the request once more with a fresh proof carrying it. Then userinfo, with that nonce.
  const [challenged, exchanged, info] = take();
  assert.equal(challenged.url(), meta.token_endpoint);
  assert.equal(challenged.status(), 400);
  assert.equal((await challenged.json()).error, 'use_dpop_nonce');
  const nonce = (await challenged.allHeaders())['dpop-nonce'];
  assert.ok(nonce, 'the nonce is readable from the page (Access-Control-Expose-Headers)');
  const first = await proofOf(challenged.request());
  const second = await proofOf(exchanged.request());
  for (const proof of [first, second]) {
    assert.ok(proof.signed, 'the proof is signed by the key in its header');
    assert.equal(proof.header.typ, 'dpop+jwt');
    assert.equal(proof.header.alg, 'ES256');
    // The public key only: a private member (d) in the header would give the key away.
    assert.deepEqual(Object.keys(proof.header.jwk).sort(), ['crv', 'kty', 'x', 'y']);
    assert.equal(thumbprint(proof.header.jwk), jkt);
    assert.equal(proof.claims.htm, 'POST');
    assert.equal(proof.claims.htu, meta.token_endpoint);
    assert.ok(Math.abs(proof.claims.iat - Date.now() / 1000) < 60, 'iat is now');
    assert.equal(proof.claims.ath, undefined, 'no access token goes to /token');
  }
  assert.equal(first.claims.nonce, undefined);
  assert.equal(second.claims.nonce, nonce);
  assert.notEqual(first.claims.jti, second.claims.jti, 'each proof is new');
  assert.equal(exchanged.status(), 200);
  assert.equal(new URLSearchParams(exchanged.request().postData()).get('grant_type'), 'authorization_code');
  assert.equal(info.url(), meta.userinfo_endpoint);
  assert.equal(info.status(), 200);
  assert.equal((await info.request().allHeaders()).authorization, `DPoP ${tokens.access_token}`);
  const infoProof = await proofOf(info.request());
  assert.deepEqual(
    [infoProof.signed, infoProof.claims.htm, infoProof.claims.htu, infoProof.claims.ath, infoProof.claims.nonce],
    [true, 'GET', meta.userinfo_endpoint, ath(tokens.access_token), nonce],
  );

  // The private key cannot leave the browser: it is non-extractable, and IndexedDB holds the
  // CryptoKey itself (named by an id in this tab's sessionStorage), not its bytes.
  const key = await page.evaluate(async () => {
    const id = sessionStorage.getItem('dpop-key');
    const db = await new Promise((resolve, reject) => {
      const open = indexedDB.open('latchkey-spa');
      open.onsuccess = () => resolve(open.result);
      open.onerror = () => reject(open.error);
    });
    const keys = await new Promise((resolve) => {
      const get = db.transaction('dpop-keys').objectStore('dpop-keys').get(id);
      get.onsuccess = () => resolve(get.result);
    });
    db.close();
    const exported = await crypto.subtle.exportKey('jwk', keys.privateKey).then(() => 'exported', (e) => e.name);
    return { type: keys.privateKey.type, extractable: keys.privateKey.extractable, usages: keys.privateKey.usages, exported };
  });
  assert.deepEqual(key, { type: 'private', extractable: false, usages: ['sign'], exported: 'InvalidAccessError' });

  // The API: the first proof carries no nonce of the API's, the API asks for one (§9), and the
  // second call goes through. The API says which key the token is bound to.
  await page.getByRole('button', { name: 'Call the protected API' }).click();
  await statusIs(page, 'The API answered');
  assert.deepEqual(JSON.parse(await page.locator('#output').textContent()).dpop_jkt, jkt);
  const [apiChallenged, apiAnswered] = take();
  assert.equal(apiChallenged.status(), 401);
  assert.match((await apiChallenged.allHeaders())['www-authenticate'], /DPoP realm="notes", error="use_dpop_nonce"/);
  const apiNonce = (await apiChallenged.allHeaders())['dpop-nonce'];
  assert.equal(apiAnswered.status(), 200);
  assert.equal((await apiAnswered.request().allHeaders()).authorization, `DPoP ${tokens.access_token}`);
  const apiProof = await proofOf(apiAnswered.request());
  assert.deepEqual(
    [apiProof.signed, thumbprint(apiProof.header.jwk), apiProof.claims.htm, apiProof.claims.htu, apiProof.claims.ath, apiProof.claims.nonce],
    [true, jkt, 'GET', `${API}/me`, ath(tokens.access_token), apiNonce],
  );
  await shot(page, 'spa-dpop-api');

  // A copy of the access token, outside the browser: as a Bearer token it is refused (RFC 9449
  // §7.2), by the API and by Latchkey's userinfo; with a proof by another key too (§7.1); and the
  // browser's own proof, replayed, is refused as well (§11.1).
  const asBearer = await fetch(`${API}/me`, { headers: { Authorization: `Bearer ${tokens.access_token}` } });
  assert.equal(asBearer.status, 401);
  assert.match(asBearer.headers.get('www-authenticate'), /^Bearer realm="notes", error="invalid_token", error_description="[^"]*DPoP-bound/);
  const userinfoAsBearer = await fetch(meta.userinfo_endpoint, { headers: { Authorization: `Bearer ${tokens.access_token}` } });
  assert.equal(userinfoAsBearer.status, 401);
  const withForeignKey = await fetch(`${API}/me`, {
    headers: {
      Authorization: `DPoP ${tokens.access_token}`,
      DPoP: foreignProof({ url: `${API}/me`, accessToken: tokens.access_token, nonce: asBearer.headers.get('dpop-nonce') }),
    },
  });
  assert.equal(withForeignKey.status, 401);
  assert.match(await withForeignKey.text(), /signed by another key/);
  const replayed = await fetch(`${API}/me`, { headers: { Authorization: `DPoP ${tokens.access_token}`, DPoP: apiProof.raw } });
  assert.equal(replayed.status, 401);
  assert.match(replayed.headers.get('www-authenticate'), /DPoP realm="notes", error="invalid_dpop_proof"/);

  // Refresh: a proof by the same key (with the nonce the page kept), new tokens bound to it.
  await page.getByRole('button', { name: 'Refresh the tokens' }).click();
  await statusIs(page, 'Refreshed');
  const refreshed = await tokensOf(page);
  assert.notEqual(refreshed.access_token, tokens.access_token);
  assert.equal(refreshed.token_type, 'DPoP');
  assert.deepEqual(jwtClaims(refreshed.access_token).cnf, { jkt });
  const [refresh] = take();
  assert.equal(refresh.status(), 200);
  const refreshProof = await proofOf(refresh.request());
  assert.deepEqual([refreshProof.signed, thumbprint(refreshProof.header.jwk), refreshProof.claims.nonce], [true, jkt, nonce]);
  // The refresh token is bound too (§5): without a proof by the key, Latchkey refuses it.
  const stolenRefresh = await fetch(meta.token_endpoint, {
    method: 'POST',
    headers: { DPoP: foreignProof({ method: 'POST', url: meta.token_endpoint, nonce: (await refresh.allHeaders())['dpop-nonce'] }) },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshed.refresh_token, client_id: DPOP_CLIENT }),
  });
  assert.equal(stolenRefresh.status, 400);
  assert.equal((await stolenRefresh.json()).error, 'invalid_dpop_proof');

  // The API takes the new token with a proof, with no nonce round trip this time.
  await page.getByRole('button', { name: 'Call the protected API' }).click();
  await statusIs(page, 'The API answered');
  const [again] = take();
  assert.equal(again.status(), 200);
  assert.equal((await again.request().allHeaders()).authorization, `DPoP ${refreshed.access_token}`);

  // Sign-out forgets the key as well as the tokens.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await statusIs(page, 'Signed out, here and at Latchkey');
  assert.deepEqual(await page.evaluate(() => Object.keys(sessionStorage)), []);
  const left = await page.evaluate(
    () =>
      new Promise((resolve) => {
        const open = indexedDB.open('latchkey-spa');
        open.onsuccess = () => {
          const all = open.result.transaction('dpop-keys').objectStore('dpop-keys').count();
          all.onsuccess = () => resolve(all.result);
        };
      }),
  );
  assert.equal(left, 0);
  // Each nonce challenge was answered once, and nothing else went wrong.
  assert.deepEqual(problems, ['400 /token', '401 /me']);
  await context.close();
});
