// Passkeys in a real browser: Debian's Chromium with a CDP virtual authenticator (ctap2, internal
// transport, resident keys, user verification), driven by playwright-core. Run by
// crates/cli/tests/browser.rs against `latchkey serve --dev --issuer http://localhost:PORT`
// (WebAuthn needs a domain name; browsers treat localhost as a secure context), with a public
// client LATCHKEY_CLIENT registered for the loopback redirect URI http://127.0.0.1/callback.
// Screenshots go to ARTIFACTS_DIR.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { BASE, assertStyled, launch, shot, watch } from './support.mjs';

const CLIENT = process.env.LATCHKEY_CLIENT ?? 'browser-test';
// The narrowest phone the pages must serve.
const PHONE_360 = { viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
const DESKTOP = { viewport: { width: 1280, height: 800 } };

let browser;
let callback;
let REDIRECT;
// The passkey registered by the first test, exported from its virtual authenticator, so that
// the later tests can hold the same credential in authenticators of their own (as a synced
// passkey would be on another device).
let exported;

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

// A fresh context and page with a virtual authenticator of its own.
async function withAuthenticator(device = DESKTOP, options = {}) {
  const context = await browser.newContext(device);
  const page = await context.newPage();
  const problems = watch(page);
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
      ...options,
    },
  });
  return { context, page, problems, cdp, authenticatorId };
}

function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

function authorizeUrl(challenge, scope) {
  const u = new URL('/authorize', BASE);
  const params = {
    response_type: 'code',
    client_id: CLIENT,
    redirect_uri: REDIRECT,
    scope,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state: 'st-' + randomBytes(4).toString('hex'),
  };
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.toString();
}

async function focused(page) {
  return page.evaluate(() => document.activeElement?.id || document.activeElement?.textContent?.trim());
}

// Tab from the top of the page until `want` (an element id or a button's text) has the focus.
async function tabTo(page, want, limit = 30) {
  for (let i = 0; i < limit; i++) {
    if ((await focused(page)) === want) return;
    await page.keyboard.press('Tab');
  }
  assert.fail(`Tab never reached ${want}`);
}

// Nothing wider than the screen; text and controls big enough to read and tap.
async function assertFitsPhone(page) {
  const m = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    width: window.innerWidth,
    controls: [...document.querySelectorAll('input:not([type=hidden]), button')]
      .filter((e) => e.offsetParent !== null)
      .map((e) => {
        const r = e.getBoundingClientRect();
        return { name: e.id || e.textContent.trim(), left: r.left, right: r.right, height: r.height, font: parseFloat(getComputedStyle(e).fontSize) };
      }),
  }));
  assert.ok(m.scrollWidth <= m.width, `no horizontal scrolling: ${m.scrollWidth} > ${m.width}`);
  for (const c of m.controls) {
    assert.ok(c.font >= 16, `${c.name}: font ${c.font}px`);
    assert.ok(c.height >= 44, `${c.name}: ${c.height}px tall`);
    assert.ok(c.left >= 0 && c.right <= m.width, `${c.name} fits the screen`);
  }
}

// The password sign-in, from the keyboard, on the login page the browser is on; resolves once
// the page titled `next` is shown (the account pages show their login page at their own URL).
async function passwordSignIn(page, next) {
  assert.equal(await page.title(), 'Sign in · Latchkey');
  await page.getByLabel('Username').fill('demo');
  await page.getByLabel('Password').fill('demo-password');
  await page.getByLabel('Password').press('Enter');
  await page.waitForFunction((t) => document.title === t, next);
}

async function redeem(code, verifier) {
  const res = await fetch(new URL('/token', BASE), {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT, client_id: CLIENT, code_verifier: verifier }),
  });
  assert.equal(res.status, 200);
  const tokens = await res.json();
  return JSON.parse(Buffer.from(tokens.id_token.split('.')[1], 'base64url').toString());
}

test('keyboard only: enrol a passkey from the account page', async () => {
  const { context, page, problems, cdp, authenticatorId } = await withAuthenticator();
  await page.goto(new URL('/account/passkeys', BASE).toString());
  await passwordSignIn(page, 'Passkeys · Latchkey');
  assert.equal(await page.title(), 'Passkeys · Latchkey');
  await assertStyled(page);
  // The script revealed the form (hidden without JavaScript) and hid the "needs JavaScript" note.
  await page.locator('#passkey-add').waitFor();
  assert.equal(await page.locator('#passkey-unsupported').isVisible(), false);
  await shot(page, 'passkeys-empty');

  await tabTo(page, 'passkey-name');
  await page.keyboard.press('Control+A');
  await page.keyboard.type('Work laptop');
  await page.keyboard.press('Tab');
  assert.equal(await focused(page), 'Add a passkey');
  await Promise.all([page.waitForURL(/done=added/), page.keyboard.press('Enter')]);
  await page.getByRole('heading', { name: 'Work laptop' }).waitFor();
  assert.match(await page.locator('[role=status]').textContent(), /Your passkey was added/);
  await shot(page, 'passkeys-added');

  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  assert.equal(credentials.length, 1);
  assert.equal(credentials[0].isResidentCredential, true, 'a discoverable credential');
  assert.equal(credentials[0].rpId, 'localhost');
  exported = credentials[0];
  assert.deepEqual(problems, []);
  await context.close();
});

test('username-less sign-in for an application, from the keyboard; amr says a passkey', async () => {
  assert.ok(exported, 'the enrolment test ran first');
  const { context, page, problems, cdp, authenticatorId } = await withAuthenticator();
  await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: exported });
  const { verifier, challenge } = pkce();
  await page.goto(authorizeUrl(challenge, 'openid'));
  const button = page.getByRole('button', { name: 'Sign in with a passkey' });
  await button.waitFor();
  await shot(page, 'login-passkey');
  // Reached with Tab after the password form, pressed with Enter.
  await tabTo(page, 'passkey-sign-in');
  await Promise.all([page.waitForURL((u) => u.pathname === '/consent' || u.href.startsWith(REDIRECT)), page.keyboard.press('Enter')]);
  if (new URL(page.url()).pathname === '/consent') {
    await Promise.all([page.waitForURL((u) => u.href.startsWith(REDIRECT)), page.getByRole('button', { name: 'Allow' }).click()]);
  }
  const code = new URL(page.url()).searchParams.get('code');
  assert.ok(code);
  const claims = await redeem(code, verifier);
  assert.ok(claims.sub);
  // hwk: the virtual authenticator's credential is not backup-eligible (device-bound); mfa: the
  // authenticator verified the person, two factors in one step.
  assert.deepEqual(claims.amr, ['hwk', 'mfa']);
  assert.equal(claims.acr, 'phr');
  // This authenticator's signature counter moved on: the later tests hold its copy, not the
  // enrolment's (whose counter the server would now refuse as a clone's).
  exported = (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials[0];
  // The account page shows the use.
  await page.goto(new URL('/account/passkeys', BASE).toString());
  await page.getByRole('heading', { name: 'Work laptop' }).waitFor();
  assert.doesNotMatch(await page.locator('ul.passkeys').textContent(), /never/);
  assert.deepEqual(problems, []);
  await context.close();
});

test('the passkey as the second factor after the password, from the keyboard', async () => {
  assert.ok(exported);
  const { context, page, problems, cdp, authenticatorId } = await withAuthenticator();
  await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: exported });
  const { verifier, challenge } = pkce();
  await page.goto(authorizeUrl(challenge, 'openid profile'));
  await page.getByLabel('Username').fill('demo');
  await page.getByLabel('Password').fill('demo-password');
  await page.getByLabel('Password').press('Enter');
  // Demo has a passkey now: the password alone is not enough.
  await page.waitForFunction(() => document.title === 'Two-step sign-in · Latchkey');
  const button = page.getByRole('button', { name: 'Use a passkey' });
  await button.waitFor();
  await shot(page, 'two-step-passkey');
  await tabTo(page, 'passkey-second-factor');
  await Promise.all([page.waitForURL((u) => u.pathname === '/consent' || u.href.startsWith(REDIRECT)), page.keyboard.press('Enter')]);
  if (new URL(page.url()).pathname === '/consent') {
    await Promise.all([page.waitForURL((u) => u.href.startsWith(REDIRECT)), page.getByRole('button', { name: 'Allow' }).click()]);
  }
  const claims = await redeem(new URL(page.url()).searchParams.get('code'), verifier);
  assert.deepEqual(claims.amr, ['pwd', 'hwk', 'mfa']);
  assert.equal(claims.acr, 'phr');
  exported = (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials[0];
  assert.deepEqual(problems, []);
  await context.close();
});

test('an authenticator that does not verify the user is refused', async () => {
  assert.ok(exported);
  const { context, page, cdp, authenticatorId } = await withAuthenticator(DESKTOP, { isUserVerified: false });
  await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: exported });
  await page.goto(new URL('/account', BASE).toString());
  await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
  const error = page.locator('#passkey-error');
  await error.waitFor();
  assert.ok((await error.textContent()).length > 0);
  assert.equal(await page.title(), 'Sign in · Latchkey', 'still on the login page');
  const cookies = await context.cookies();
  assert.ok(!cookies.some((c) => c.name.includes('session')), 'no session');
  await shot(page, 'login-passkey-refused');
  await context.close();
});

test('on a 360 px phone: the passkey pages fit, and a removed passkey no longer signs in', async () => {
  assert.ok(exported);
  const { context, page, problems, cdp, authenticatorId } = await withAuthenticator(PHONE_360);
  await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: exported });
  await page.goto(new URL('/account/passkeys', BASE).toString());
  await page.getByRole('button', { name: 'Sign in with a passkey' }).waitFor();
  await assertFitsPhone(page);
  await shot(page, 'phone-login-passkey');
  // The login page is shown at /account/passkeys itself; the passkey leads back there, signed in.
  await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
  await page.getByRole('heading', { name: 'Work laptop' }).waitFor();
  await assertFitsPhone(page);
  await shot(page, 'phone-passkeys');

  // Renamed, then removed, with the keyboard.
  const rename = page.getByLabel('New name for Work laptop');
  await rename.fill('Old laptop');
  await Promise.all([page.waitForURL(/done=renamed/), rename.press('Enter')]);
  await page.getByRole('button', { name: 'Remove Old laptop' }).focus();
  await Promise.all([page.waitForURL(/done=removed/), page.keyboard.press('Enter')]);
  await page.getByText('You have no passkeys yet.').waitFor();
  await shot(page, 'phone-passkeys-removed');

  await context.clearCookies();
  await page.goto(new URL('/account', BASE).toString());
  await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
  const error = page.locator('#passkey-error');
  await error.waitFor();
  assert.match(await error.textContent(), /not registered here, or was removed/);
  assert.equal(await page.title(), 'Sign in · Latchkey');
  // The refusal's 400 is the answer under test, not a page problem.
  assert.deepEqual(problems.filter((p) => !p.includes('/login/passkey')), []);
  await context.close();
});
