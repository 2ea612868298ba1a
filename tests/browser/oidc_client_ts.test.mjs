// oidc-client-ts (the relying-party library many SPAs use; version pinned in package-lock.json)
// with DPoP (RFC 9449) against Latchkey, in headless Chromium: a tiny page (oidc-client-ts/) loads
// the library's browser bundle from node_modules and signs in with `signinRedirect` and
// `signinCallback`, `dpop: { bind_authorization_code: true, store: new IndexedDbDPoPStore() }`.
//
// Run by crates/cli/tests/browser.rs, which starts `latchkey serve --dev` (LATCHKEY_BASE) with DPoP
// nonces required, registers the public client OIDC_CLIENT with `--dpop` and the redirect URI
// http://127.0.0.1:OIDC_PORT/callback, and starts the protected-api example at API_BASE with
// `--require-dpop --dpop-nonces`, allowing CORS from that origin.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPublicKey, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { BASE, launch, newPage, shot, signIn } from './support.mjs';

const PORT = Number(process.env.OIDC_PORT);
const CLIENT = process.env.OIDC_CLIENT;
const API = process.env.API_BASE;
assert.ok(PORT && CLIENT && API, 'OIDC_PORT, OIDC_CLIENT and API_BASE come from crates/cli/tests/browser.rs');
const APP = `http://127.0.0.1:${PORT}`;
const PAGE_DIR = fileURLToPath(new URL('./oidc-client-ts/', import.meta.url));
// The library's own browser bundle (an IIFE defining the global `oidc`), as installed by npm ci
// (the package's exports name neither file, so they are found by path).
const PACKAGE = fileURLToPath(new URL('./node_modules/oidc-client-ts/', import.meta.url));
const LIBRARY = `${PACKAGE}dist/browser/oidc-client-ts.min.js`;
const VERSION = JSON.parse(readFileSync(`${PACKAGE}package.json`, 'utf8')).version;

let browser;
let server;

before(async () => {
  server = createServer((req, res) => {
    const files = {
      '/': [PAGE_DIR + 'index.html', 'text/html'],
      '/callback': [PAGE_DIR + 'index.html', 'text/html'],
      '/page.js': [PAGE_DIR + 'page.js', 'text/javascript'],
      '/oidc-client-ts.js': [LIBRARY, 'text/javascript'],
    };
    const headers = {
      // No inline code, and fetch() only to Latchkey and the API: the library needs no more.
      'content-security-policy': `default-src 'none'; script-src 'self'; connect-src ${BASE} ${API}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
      'cache-control': 'no-store',
    };
    const pathname = new URL(req.url, APP).pathname;
    if (pathname === '/config.js') {
      res.writeHead(200, { ...headers, 'content-type': 'text/javascript; charset=utf-8' });
      res.end(`window.TEST_CONFIG = ${JSON.stringify({ issuer: BASE, clientId: CLIENT, api: `${API}/me` })};\n`);
    } else if (files[pathname]) {
      const [file, type] = files[pathname];
      res.writeHead(200, { ...headers, 'content-type': `${type}; charset=utf-8` });
      res.end(readFileSync(file));
    } else {
      res.writeHead(404, headers);
      res.end();
    }
  });
  await new Promise((resolve) => server.listen(PORT, '127.0.0.1', resolve));
  browser = await launch();
});

after(async () => {
  await browser?.close();
  server?.close();
});

const jwtClaims = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());
// RFC 7638 §3.2: the required members of an EC key, in lexicographic order.
const thumbprint = ({ crv, kty, x, y }) => createHash('sha256').update(JSON.stringify({ crv, kty, x, y })).digest('base64url');
const ath = (token) => createHash('sha256').update(token).digest('base64url');
// A request's DPoP proof: its header, its claims, and whether the key in the header signed it.
async function proofOf(request) {
  const raw = (await request.allHeaders()).dpop;
  assert.ok(raw, `${request.url()} has no DPoP proof`);
  const [h, p, sig] = raw.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url').toString());
  const key = createPublicKey({ key: header.jwk, format: 'jwk' });
  const signed = verify('sha256', Buffer.from(`${h}.${p}`), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(sig, 'base64url'));
  return { header, claims: JSON.parse(Buffer.from(p, 'base64url').toString()), signed };
}

test(`oidc-client-ts ${VERSION} signs in with DPoP, calls a DPoP-only API and refreshes, bound to one key`, async () => {
  assert.match(VERSION, /^3\./);
  const { context, page, problems } = await newPage(browser);
  const meta = await (await fetch(`${BASE}/.well-known/openid-configuration`)).json();
  const calls = [];
  page.on('response', (r) => {
    if ([meta.token_endpoint, `${API}/me`].includes(r.url()) && r.request().method() !== 'OPTIONS') calls.push(r);
  });
  const take = () => calls.splice(0);

  // signinRedirect: the authorization request carries the key's thumbprint (RFC 9449 §10).
  await page.goto(`${APP}/`);
  const isAuthorize = (u) => u.origin === BASE && u.pathname === '/authorize';
  await Promise.all([page.waitForURL(isAuthorize), page.getByRole('button', { name: 'Sign in with Latchkey' }).click()]);
  const request = new URL(page.url()).searchParams;
  assert.equal(request.get('client_id'), CLIENT);
  assert.equal(request.get('code_challenge_method'), 'S256');
  const jkt = request.get('dpop_jkt');
  assert.match(jkt ?? '', /^[A-Za-z0-9_-]{43}$/, 'bind_authorization_code sends dpop_jkt');
  await signIn(page, 'demo', 'demo-password');
  await page.getByRole('button', { name: 'Allow' }).click();

  // signinCallback: the code exchange, with a proof; Latchkey wants a nonce (§8), and the library
  // retries with the one it was given.
  await page.getByRole('status').filter({ hasText: 'Signed in' }).waitFor();
  assert.equal(page.url(), `${APP}/`);
  await shot(page, 'oidc-client-ts-signed-in');
  const user = await page.evaluate(() => window.app.user());
  assert.equal(user.token_type, 'DPoP');
  assert.deepEqual(jwtClaims(user.access_token).cnf, { jkt }, 'the access token is bound to that key');
  const [challenged, exchanged] = take();
  assert.equal(challenged.status(), 400);
  assert.equal((await challenged.json()).error, 'use_dpop_nonce');
  const nonce = (await challenged.allHeaders())['dpop-nonce'];
  assert.equal(exchanged.status(), 200);
  const proof = await proofOf(exchanged.request());
  assert.ok(proof.signed);
  assert.deepEqual(
    [proof.header.typ, proof.header.alg, thumbprint(proof.header.jwk), proof.claims.htm, proof.claims.htu, proof.claims.nonce],
    ['dpop+jwt', 'ES256', jkt, 'POST', meta.token_endpoint, nonce],
  );

  // A DPoP-authenticated call with a proof from dpopProof(url, user, method), to an API that takes
  // DPoP-bound tokens only; once more with the API's nonce (§9).
  const answer = await page.evaluate(() => window.app.callApi());
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  assert.equal(answer.body.dpop_jkt, jkt);
  assert.equal(answer.body.client_id, CLIENT);
  const [apiChallenged, apiAnswered] = take();
  assert.equal(apiChallenged.status(), 401);
  const apiProof = await proofOf(apiAnswered.request());
  assert.equal((await apiAnswered.request().allHeaders()).authorization, `DPoP ${user.access_token}`);
  assert.deepEqual(
    [apiProof.signed, thumbprint(apiProof.header.jwk), apiProof.claims.htu, apiProof.claims.ath, apiProof.claims.nonce],
    [true, jkt, `${API}/me`, ath(user.access_token), (await apiChallenged.allHeaders())['dpop-nonce']],
  );
  // The same token copied out of the browser, as a Bearer token: refused.
  const copied = await fetch(`${API}/me`, { headers: { Authorization: `Bearer ${user.access_token}` } });
  assert.equal(copied.status, 401);
  assert.match(copied.headers.get('www-authenticate'), /^DPoP realm="notes", error="invalid_token"/);

  // signinSilent with the refresh token: new tokens, still bound to the same key.
  const refreshed = await page.evaluate(() => window.app.refresh());
  assert.equal(refreshed.token_type, 'DPoP');
  assert.notEqual(refreshed.access_token, user.access_token);
  assert.notEqual(refreshed.refresh_token, user.refresh_token);
  assert.equal(refreshed.sub, user.sub);
  assert.deepEqual(jwtClaims(refreshed.access_token).cnf, { jkt });
  const [refresh] = take();
  assert.equal(refresh.status(), 200);
  assert.equal(new URLSearchParams(refresh.request().postData()).get('grant_type'), 'refresh_token');
  const refreshProof = await proofOf(refresh.request());
  assert.deepEqual([refreshProof.signed, thumbprint(refreshProof.header.jwk)], [true, jkt]);
  const again = await page.evaluate(() => window.app.callApi());
  assert.equal(again.status, 200);
  assert.equal(again.body.dpop_jkt, jkt);
  const [againCall] = take();
  assert.equal(againCall.status(), 200, 'the nonce the page kept is still good: no second challenge');
  assert.equal((await againCall.request().allHeaders()).authorization, `DPoP ${refreshed.access_token}`);

  // removeUser forgets the key with the user.
  assert.equal(await page.evaluate(() => window.app.forget()), undefined);
  // The two nonce challenges, and nothing else went wrong.
  assert.deepEqual(problems, ['400 /token', '401 /me']);
  await context.close();
});
