// The pages a person sees, in a real browser: headless Chromium from Debian, driven by
// playwright-core. Run by crates/cli/tests/browser.rs, which starts `latchkey serve --dev`, registers
// a public client LATCHKEY_CLIENT with the loopback redirect URI http://127.0.0.1/callback (any port,
// RFC 8252 §7.3) and sets LATCHKEY_BASE. This file plays that client: a small server on an
// ephemeral port receives the redirect. Screenshots go to ARTIFACTS_DIR (git-ignored).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { BASE, PHONE, assertStyled, hasFocus, launch, newPage as freshPage, shot, signIn } from './support.mjs';

const CLIENT = process.env.LATCHKEY_CLIENT ?? 'browser-test';

let browser;
let callback;
let REDIRECT;

before(async () => {
  callback = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>Client app</title><p>The client received the redirect.</p>');
  });
  await new Promise((resolve) => callback.listen(0, '127.0.0.1', resolve));
  REDIRECT = `http://127.0.0.1:${callback.address().port}/callback`;
  browser = await launch();
});

after(async () => {
  await browser?.close();
  callback?.close();
});

function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

function authorizeUrl(challenge, extra = {}) {
  const u = new URL('/authorize', BASE);
  const params = {
    response_type: 'code',
    client_id: CLIENT,
    redirect_uri: REDIRECT,
    scope: 'openid profile email',
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state: 'st-' + randomBytes(4).toString('hex'),
    ...extra,
  };
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.toString();
}

const newPage = (device) => freshPage(browser, device);

// Nothing is wider than the screen, and text and controls are big enough to read and tap.
async function assertReadableOnPhone(page) {
  const m = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    width: window.innerWidth,
    bodyFont: parseFloat(getComputedStyle(document.body).fontSize),
    inputs: [...document.querySelectorAll('input:not([type=hidden]), button')].map((e) => {
      const r = e.getBoundingClientRect();
      return { name: e.id || e.textContent, left: r.left, right: r.right, height: r.height, font: parseFloat(getComputedStyle(e).fontSize) };
    }),
  }));
  assert.ok(m.scrollWidth <= m.width, `no horizontal scrolling: ${m.scrollWidth} > ${m.width}`);
  assert.ok(m.bodyFont >= 16, `body text ${m.bodyFont}px`);
  for (const i of m.inputs) {
    // 16px keeps mobile browsers from zooming into a focused field; 44px is a comfortable tap target.
    assert.ok(i.font >= 16, `${i.name}: font ${i.font}px`);
    assert.ok(i.height >= 44, `${i.name}: ${i.height}px tall`);
    assert.ok(i.left >= 0 && i.right <= m.width, `${i.name} fits the screen`);
  }
}

// Consent is remembered per user, client and scope: each test that needs the consent page asks for
// a scope set of its own (the server starts with an empty database).
test('keyboard only: sign in, allow, and land on the client with a code that redeems', async () => {
  const { context, page, problems } = await newPage();
  const { verifier, challenge } = pkce();
  const url = authorizeUrl(challenge);
  const state = new URL(url).searchParams.get('state');
  await page.goto(url);
  assert.equal(await page.title(), 'Sign in · Latchkey');
  // Every visible input has a label that names it.
  assert.equal(await page.getByLabel('Username').getAttribute('id'), 'username');
  assert.equal(await page.getByLabel('Password').getAttribute('id'), 'password');
  await assertStyled(page);
  await shot(page, 'login');

  // The username field has the focus; no mouse from here on.
  assert.equal(await page.evaluate(() => document.activeElement.id), 'username');
  await page.keyboard.type('demo');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'password');
  await page.keyboard.type('demo-password');
  await Promise.all([page.waitForURL(/\/consent\?/), page.keyboard.press('Enter')]);

  assert.equal(await page.title(), 'Allow access · Latchkey');
  await page.getByText('See your email address').waitFor();
  // Who you are comes first, before what the app may see.
  assert.deepEqual(await page.locator('ul.scopes li').allTextContents(), [
    'Know who you are (your user identifier)',
    'See your name, username and profile details',
    'See your email address',
  ]);
  await shot(page, 'consent');
  // Allow has the focus, and Tab reaches Deny: both choices work from the keyboard.
  assert.equal(await page.evaluate(() => document.activeElement.value), 'allow');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.value), 'deny');
  await page.keyboard.press('Shift+Tab');
  await Promise.all([page.waitForURL((u) => u.href.startsWith(REDIRECT)), page.keyboard.press('Enter')]);

  const back = new URL(page.url());
  assert.equal(back.searchParams.get('state'), state);
  assert.equal(back.searchParams.get('iss'), BASE);
  const code = back.searchParams.get('code');
  assert.ok(code, `a code in ${back}`);
  const res = await fetch(new URL('/token', BASE), {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT, client_id: CLIENT, code_verifier: verifier }),
  });
  assert.equal(res.status, 200);
  assert.ok((await res.json()).access_token);
  assert.deepEqual(problems, []);
  await context.close();
});

test('a wrong password shows the error next to the password field, and keeps the username', async () => {
  const { context, page, problems } = await newPage();
  await page.goto(authorizeUrl(pkce().challenge));
  await page.getByLabel('Username').fill('demo');
  await page.getByLabel('Password').fill('not-the-password');
  await Promise.all([page.waitForLoadState('load'), page.getByRole('button', { name: 'Sign in' }).click()]);

  const alert = page.getByRole('alert');
  assert.equal((await alert.textContent()).trim(), 'Invalid username or password.');
  const password = page.getByLabel('Password');
  assert.equal(await password.getAttribute('aria-invalid'), 'true');
  // Screen readers read the message with the field: it describes the field.
  assert.equal(await password.getAttribute('aria-describedby'), 'login-error');
  assert.equal(await page.getByLabel('Username').inputValue(), 'demo');
  assert.equal(await password.inputValue(), '', 'the password is not sent back');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'password', 'focus is where the fix goes');
  // Next to the field: directly below it, before the button.
  const field = await password.boundingBox();
  const message = await alert.boundingBox();
  const button = await page.getByRole('button', { name: 'Sign in' }).boundingBox();
  assert.ok(message.y >= field.y + field.height && message.y - (field.y + field.height) < 40, 'right below the field');
  assert.ok(message.y + message.height <= button.y, 'above the button');
  await shot(page, 'login-wrong-password');

  // Correcting it from there works.
  await password.fill('demo-password');
  await Promise.all([page.waitForURL((u) => !u.pathname.startsWith('/login')), password.press('Enter')]);
  assert.deepEqual(problems, []);
  await context.close();
});

test('an invalid request shows an error page that says what is wrong, and never redirects', async () => {
  const { context, page, problems } = await newPage();
  const response = await page.goto(authorizeUrl(pkce().challenge, { client_id: 'no-such-client' }));
  assert.equal(response.status(), 400);
  assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'This sign-in request is invalid');
  assert.match(await page.getByRole('alert').textContent(), /unknown client_id/);
  assert.ok(page.url().startsWith(BASE), 'stayed on the server');
  await assertStyled(page);
  await shot(page, 'error');
  const missing = await page.goto(new URL('/nowhere', BASE).toString());
  assert.equal(missing.status(), 404);
  await shot(page, 'not-found');
  // Only the two documents themselves failed; their stylesheet loaded.
  assert.deepEqual(problems, ['400 /authorize', '404 /nowhere']);
  await context.close();
});

test('on a phone-sized screen every page is readable without zooming or scrolling sideways', async () => {
  const { context, page, problems } = await newPage(PHONE);
  // A scope set no other test asks for, so this user has not consented to it yet.
  await page.goto(authorizeUrl(pkce().challenge, { scope: 'openid offline_access' }));
  await assertReadableOnPhone(page);
  await shot(page, 'phone-login');

  await page.getByLabel('Username').fill('demo');
  await page.getByLabel('Password').fill('wrong-password');
  await Promise.all([page.waitForLoadState('load'), page.getByLabel('Password').press('Enter')]);
  await page.getByRole('alert').waitFor();
  await assertReadableOnPhone(page);
  await shot(page, 'phone-login-wrong-password');

  await page.getByLabel('Password').fill('demo-password');
  await Promise.all([page.waitForURL(/\/consent\?/), page.getByLabel('Password').press('Enter')]);
  await assertReadableOnPhone(page);
  await shot(page, 'phone-consent');
  await Promise.all([
    page.waitForURL((u) => u.href.startsWith(REDIRECT)),
    page.getByRole('button', { name: 'Deny' }).tap(),
  ]);
  assert.equal(new URL(page.url()).searchParams.get('error'), 'access_denied');

  // Signed in (consent was denied, the login stands): the sign-out question.
  await page.goto(new URL(`/logout?client_id=${CLIENT}`, BASE).toString());
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
  await assertReadableOnPhone(page);
  await shot(page, 'phone-logout');

  await page.goto(authorizeUrl(pkce().challenge, { redirect_uri: 'https://evil.example/cb' }));
  await assertReadableOnPhone(page);
  await shot(page, 'phone-error');
  assert.deepEqual(problems, ['400 /authorize']);
  await context.close();
});

// The RP-initiated logout page (OpenID Connect RP-Initiated Logout 1.0): without an id_token_hint
// that names the session, Latchkey asks before it signs anyone out (§6), with a CSRF-protected form.
test('sign-out asks first; leaving the page or a forged form keeps the session; confirming from the keyboard ends it', async () => {
  const { context, page, problems } = await newPage();
  // Signed in, with a scope set of its own (so consent is asked once, then remembered).
  const scope = 'openid address';
  await page.goto(authorizeUrl(pkce().challenge, { scope }));
  await signIn(page, 'demo', 'demo-password');
  await Promise.all([page.waitForURL((u) => u.href.startsWith(REDIRECT)), page.getByRole('button', { name: 'Allow' }).click()]);
  // Still signed in: a new request asks no password. It shows the consent page, since a loopback
  // app is asked every time (RFC 8252 §8.6).
  const stillSignedIn = async (what) => {
    await page.goto(authorizeUrl(pkce().challenge, { scope }));
    assert.equal(await page.getByRole('button', { name: 'Allow' }).count(), 1, `${what}: ${page.url()}`);
    assert.equal(await page.locator('input[name="password"]').count(), 0, `${what}: no login page`);
  };
  const logoutUrl = new URL(`/logout?client_id=${CLIENT}`, BASE).toString();

  await page.goto(logoutUrl);
  assert.equal(await page.title(), 'Sign out · Latchkey');
  assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Sign out?');
  assert.equal((await page.locator('p.sub').textContent()).trim(), 'Browser Test App asked to sign you out.');
  await assertStyled(page);
  // The one choice has the focus: Enter answers the question, no mouse needed.
  await hasFocus(page, 'Sign out');
  await shot(page, 'logout-confirm');

  // Not answering is "no": the user goes back, and nothing happened.
  await page.goBack();
  assert.ok(page.url().startsWith(REDIRECT));
  await stillSignedIn('after leaving the sign-out page');

  // A confirmation without the page's own CSRF token (what another site's form would send) is
  // refused, and the session stays.
  await page.goto(logoutUrl);
  await hasFocus(page, 'Sign out');
  await page.locator('input[name=csrf]').evaluate((e) => { e.value = 'forged'; });
  const refused = await Promise.all([page.waitForResponse((r) => r.url().endsWith('/logout')), page.keyboard.press('Enter')]);
  assert.equal(refused[0].status(), 403);
  assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'This form has expired');
  await stillSignedIn('after a forged confirmation');

  // A post_logout_redirect_uri the client never registered: an error page, no redirect.
  const open = await page.goto(`${logoutUrl}&post_logout_redirect_uri=${encodeURIComponent('https://evil.example/')}`);
  assert.equal(open.status(), 400);
  assert.match(await page.getByRole('alert').textContent(), /post_logout_redirect_uri is not registered/);
  assert.ok(page.url().startsWith(BASE), 'stayed on the server');
  await stillSignedIn('after an invalid sign-out request');

  // Confirmed from the keyboard: signed out, and the next request asks for the password again.
  await page.goto(logoutUrl);
  await hasFocus(page, 'Sign out');
  await Promise.all([page.waitForLoadState('load'), page.keyboard.press('Enter')]);
  await page.getByRole('heading', { name: 'You are signed out' }).waitFor();
  assert.equal(await page.title(), 'Signed out · Latchkey');
  assert.ok(page.url().startsWith(BASE));
  await assertStyled(page);
  await shot(page, 'signed-out');
  const cookies = await context.cookies(BASE);
  assert.ok(!cookies.some((c) => c.name === 'latchkey_session'), `session cookie removed: ${cookies.map((c) => c.name)}`);
  await page.goto(authorizeUrl(pkce().challenge, { scope }));
  assert.equal(await page.title(), 'Sign in · Latchkey');

  assert.deepEqual(problems, ['403 /logout', '400 /logout']);
  await context.close();
});
