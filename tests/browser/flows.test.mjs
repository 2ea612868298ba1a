// The pages only a flow reaches (issue 13), reached through that flow and checked by the shared
// accessibility harness (a11y.mjs): sign-up and the address check, the password reset from the
// link a real SMTP server received, the second-factor pages of a sign-in (TOTP set up where a
// client requires it, the recovery codes, the code and recovery-code entry) and the passkey a
// client requires (a CDP virtual authenticator). Each flow is also finished, so the pages are
// shown working, not only rendered.
//
// Run by crates/cli/tests/browser.rs against `latchkey serve --dev` at http://localhost:PORT
// (WebAuthn needs a domain name) with `signup = "open"` and mail to the test's SMTP server, whose
// messages are JSON files in MAIL_DIR. It registers the loopback clients `browser-test`
// (optional second factor), `strict-app` (required) and `passkey-app` (passkey), and the users
// alice, carol and dana (password: NAME-password, address NAME@example.com).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';
import { BASE, DESKTOP, base32, hasFocus, launch, signIn, totp, watch } from './support.mjs';
import { audit } from './a11y.mjs';

const MAIL_DIR = process.env.MAIL_DIR;
assert.ok(MAIL_DIR, 'MAIL_DIR must name the directory the SMTP server writes messages to');

let browser;
let callback;
let REDIRECT;

before(async () => {
  callback = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><html lang="en"><title>Client app</title><main><h1>Client app</h1></main></html>');
  });
  await new Promise((resolve) => callback.listen(0, '127.0.0.1', resolve));
  REDIRECT = `http://127.0.0.1:${callback.address().port}/callback`;
  browser = await launch();
});

after(async () => {
  await browser?.close();
  callback?.close();
});

// A fresh context; with `passkeys`, a CDP virtual authenticator (user-verifying platform
// authenticator with resident keys) that answers without a prompt.
async function newPage({ passkeys = false } = {}) {
  const context = await browser.newContext(DESKTOP);
  const page = await context.newPage();
  const problems = watch(page);
  if (passkeys) {
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'internal',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    });
  }
  return { context, page, problems };
}

function authorizeUrl(client) {
  const challenge = createHash('sha256').update(randomBytes(32).toString('base64url')).digest('base64url');
  const u = new URL('/authorize', BASE);
  const params = {
    response_type: 'code',
    client_id: client,
    redirect_uri: REDIRECT,
    scope: 'openid profile',
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state: 'st-' + randomBytes(4).toString('hex'),
  };
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.toString();
}

// Presses `key` (Enter, on the focused control) and waits for the page the form leads to.
async function press(page, key = 'Enter') {
  await Promise.all([page.waitForEvent('load'), page.keyboard.press(key)]);
}

// Fills the field labelled `label` (or the locator `label`) and sends its form with Enter from
// that field.
async function fillAndSend(page, label, value) {
  const field = typeof label === 'string' ? page.getByLabel(label, { exact: true }) : label;
  await field.fill(value);
  await field.focus();
  await press(page);
}

// The link to BASE + `prefix` in the `n`-th message (1-based) mailed to `to`, waiting for it.
async function mailedLink(to, prefix, n = 1) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const messages = readdirSync(MAIL_DIR)
      .filter((f) => f.endsWith('.json'))
      .sort()
      .map((f) => JSON.parse(readFileSync(path.join(MAIL_DIR, f), 'utf8')))
      .filter((m) => m.envelope_to.includes(to));
    if (messages.length >= n) {
      const start = BASE + prefix;
      const found = messages[n - 1].text.split(/\s+/).find((w) => w.startsWith(start));
      assert.ok(found, `no ${start}… link in: ${messages[n - 1].text}`);
      return found;
    }
    assert.ok(Date.now() < deadline, `no message ${n} to ${to} within 20 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// From the consent page (if the client asks it: a loopback client is asked every time) to the
// client, which gets a code.
async function allowAndReturn(page) {
  if (new URL(page.url()).pathname === '/consent') {
    await Promise.all([page.waitForURL((u) => u.href.startsWith(REDIRECT)), page.getByRole('button', { name: 'Allow' }).click()]);
  }
  assert.ok(page.url().startsWith(REDIRECT), page.url());
  assert.ok(new URL(page.url()).searchParams.get('code'), 'the client got a code');
}

// The error shown in the page describes the field it is about, which is marked invalid.
async function assertFieldError(page, label, pattern) {
  const alert = page.getByRole('alert');
  assert.match(await alert.textContent(), pattern);
  const field = page.getByLabel(label, { exact: true });
  assert.equal(await field.getAttribute('aria-invalid'), 'true', `${label} is marked invalid`);
  const id = await alert.getAttribute('id');
  assert.ok((await field.getAttribute('aria-describedby')).split(' ').includes(id), `${label} is described by the error`);
}

test('sign-up from the login page, then the address check from the mailed link', async () => {
  const { context, page, problems } = await newPage();
  await page.goto(new URL('/account', BASE).toString());
  await Promise.all([page.waitForURL(/\/signup$/), page.getByRole('link', { name: 'Create an account' }).click()]);
  assert.equal(await page.title(), 'Create an account · Latchkey');
  await audit(page, 'signup');

  // A taken username is said next to the form; what was typed stays, but the password.
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Email address').fill('bob@example.com');
  await fillAndSend(page, 'Password', 'bob-password');
  await assertFieldError(page, 'Username', /taken|in use|already/i);
  assert.equal(await page.getByLabel('Email address').inputValue(), 'bob@example.com');
  assert.equal(await page.getByLabel('Password', { exact: true }).inputValue(), '');
  await audit(page, 'signup-error');

  await page.getByLabel('Username').fill('bob');
  await fillAndSend(page, 'Password', 'bob-password');
  assert.equal(await page.title(), 'Check your email · Latchkey');
  await audit(page, 'signup-sent');

  await page.goto(await mailedLink('bob@example.com', '/verify?token='));
  assert.equal(await page.title(), 'Confirm your email address · Latchkey');
  assert.match(await page.locator('main').textContent(), /bob@example\.com/);
  // Confirming is the focused button: Enter, no mouse (after the audit's own Tab run).
  await hasFocus(page, 'Confirm');
  await audit(page, 'verify');
  await page.getByRole('button', { name: 'Confirm' }).focus();
  await press(page);
  assert.equal(await page.title(), 'Address confirmed · Latchkey');
  await audit(page, 'verify-done');

  // The account is usable now: its "Sign in" link, then the password.
  await Promise.all([page.waitForEvent('load'), page.getByRole('link', { name: 'Sign in' }).click()]);
  await page.getByLabel('Username').fill('bob');
  await fillAndSend(page, 'Password', 'bob-password');
  assert.equal(await page.title(), 'Your account · Latchkey');
  assert.deepEqual(problems, ['400 /signup']);
  await context.close();
});

test('password reset: the request, the mailed link, the new password', async () => {
  const { context, page, problems } = await newPage();
  await page.goto(new URL('/account', BASE).toString());
  await Promise.all([page.waitForURL(/\/reset$/), page.getByRole('link', { name: 'Forgot your password?' }).click()]);
  assert.equal(await page.title(), 'Reset your password · Latchkey');
  await audit(page, 'reset-request');

  // What a browser that does not check `type=email` itself would send: the server's message, on
  // the field.
  await page.locator('form').evaluate((f) => { f.noValidate = true; });
  await fillAndSend(page, 'Email address', 'not-an-address');
  await assertFieldError(page, 'Email address', /Enter an email address/);
  await audit(page, 'reset-request-error');

  await fillAndSend(page, 'Email address', 'dana@example.com');
  assert.equal(await page.title(), 'Check your email · Latchkey');
  await audit(page, 'reset-sent');

  await page.goto(await mailedLink('dana@example.com', '/reset/confirm?token='));
  assert.equal(await page.title(), 'Choose a new password · Latchkey');
  await audit(page, 'reset-form');
  await page.locator('form').evaluate((f) => { f.noValidate = true; });
  await fillAndSend(page, 'New password', 'short');
  await assertFieldError(page, 'New password', /8/);
  await audit(page, 'reset-form-error');

  await fillAndSend(page, 'New password', 'dana-new-password');
  assert.equal(await page.title(), 'Your password was changed · Latchkey');
  await audit(page, 'reset-done');
  await Promise.all([page.waitForEvent('load'), page.getByRole('link', { name: 'Sign in' }).click()]);
  await page.getByLabel('Username').fill('dana');
  await fillAndSend(page, 'Password', 'dana-new-password');
  assert.equal(await page.title(), 'Your account · Latchkey', 'the new password signs in');
  assert.deepEqual(problems, ['400 /reset', '400 /reset/confirm']);
  await context.close();
});

test('a client that requires a second factor: TOTP set up at sign-in, then the code and a recovery code', async () => {
  const { context, page, problems } = await newPage();
  await page.goto(authorizeUrl('strict-app'));
  await signIn(page, 'alice', 'alice-password');
  assert.equal(await page.title(), 'Set up two-step sign-in · Latchkey');
  assert.equal(new URL(page.url()).pathname, '/login/two-step');
  // The QR code loads under `img-src 'self'`.
  const qrLoaded = () => page.waitForFunction(() => document.querySelector('p.qr img')?.naturalWidth > 0);
  await qrLoaded();
  await audit(page, 'two-step-enrol');
  const key = base32(await page.locator('code.secret').first().textContent());
  assert.equal(key.length, 20, '160-bit key');

  await fillAndSend(page, 'Code from your app', '000000');
  await assertFieldError(page, 'Code from your app', /not right/);
  await qrLoaded();
  await audit(page, 'two-step-enrol-error');

  await fillAndSend(page, 'Code from your app', totp(key));
  assert.equal(await page.title(), 'Your recovery codes · Latchkey');
  const codes = await page.locator('ol.codes code').allTextContents();
  assert.equal(codes.length, 10);
  // The way on has the focus (given back after the audit's own Tab run).
  await hasFocus(page, 'I saved them, continue');
  await audit(page, 'recovery-codes');
  await page.getByRole('button', { name: 'I saved them, continue' }).focus();
  await Promise.all([page.waitForURL((u) => u.pathname === '/consent' || u.href.startsWith(REDIRECT)), page.keyboard.press('Enter')]);
  await allowAndReturn(page);
  assert.deepEqual(problems, []);
  await context.close();

  // Another browser: the password, then the code page.
  const other = await newPage();
  await other.page.goto(authorizeUrl('strict-app'));
  await signIn(other.page, 'alice', 'alice-password');
  assert.equal(await other.page.title(), 'Two-step sign-in · Latchkey');
  await audit(other.page, 'two-step-code');
  await fillAndSend(other.page, 'Code from your authenticator app', '000000');
  await assertFieldError(other.page, 'Code from your authenticator app', /not right/);
  await audit(other.page, 'two-step-code-error');

  // A recovery code instead, opened from the keyboard.
  await other.page.locator('summary', { hasText: 'Use a recovery code instead' }).focus();
  await other.page.keyboard.press('Enter');
  await other.page.getByLabel('Recovery code').waitFor();
  await audit(other.page, 'two-step-recovery-code');
  // A wrong one comes back where it was typed: the recovery form open, its field marked and
  // focused (not the code field's).
  await fillAndSend(other.page, 'Recovery code', 'aaaa-bbbb-cccc-dddd');
  await assertFieldError(other.page, 'Recovery code', /That recovery code is not right/);
  assert.equal(await other.page.getByLabel('Code from your authenticator app').getAttribute('aria-invalid'), null);
  await other.page.waitForFunction(() => document.activeElement?.id === 'recovery_code');
  await audit(other.page, 'two-step-recovery-code-error');
  await other.page.getByLabel('Recovery code').fill(codes[0]);
  await Promise.all([
    other.page.waitForURL((u) => u.pathname === '/consent' || u.href.startsWith(REDIRECT)),
    other.page.getByRole('button', { name: 'Use recovery code' }).press('Enter'),
  ]);
  await allowAndReturn(other.page);

  // Signed in: the account's two-step page, with the app on, then turned off with the password
  // from its (keyboard-opened) form, which leaves a notice.
  await other.page.goto(new URL('/account/two-step', BASE).toString());
  assert.match(await other.page.locator('main').textContent(), /9 of 10 unused/);
  await audit(other.page, 'account-two-step');
  await other.page.locator('summary', { hasText: 'Turn off the authenticator app' }).focus();
  await other.page.keyboard.press('Enter');
  // Two forms have a field of this name; this one's.
  const password = other.page.locator('#remove-password');
  await password.waitFor();
  await audit(other.page, 'account-two-step-turn-off');
  await fillAndSend(other.page, password, 'alice-password');
  assert.equal((await other.page.getByRole('status').textContent()).trim(), 'The authenticator app is off.');
  await audit(other.page, 'account-two-step-off');
  // The wrong code's page is an answer (200), not a failure.
  assert.deepEqual(other.problems, []);
  await other.context.close();
});

test('a client that requires a passkey: one is added while signing in, then asked for', async () => {
  const { context, page, problems } = await newPage({ passkeys: true });
  await page.goto(authorizeUrl('passkey-app'));
  await signIn(page, 'carol', 'carol-password');
  assert.equal(await page.title(), 'Add a passkey · Latchkey');
  // The script shows the form (hidden without JavaScript) and hides the note that needs it.
  await page.locator('#passkey-enrol').waitFor();
  assert.equal(await page.locator('#passkey-unsupported').isVisible(), false);
  await audit(page, 'two-step-passkey-enrol');
  await page.getByRole('button', { name: 'Add a passkey and continue' }).focus();
  await Promise.all([page.waitForURL((u) => u.pathname === '/consent' || u.href.startsWith(REDIRECT)), page.keyboard.press('Enter')]);
  await allowAndReturn(page);

  // Signed out, the same authenticator: the password, then the passkey.
  await context.clearCookies();
  await page.goto(authorizeUrl('passkey-app'));
  await signIn(page, 'carol', 'carol-password');
  assert.equal(await page.title(), 'Two-step sign-in · Latchkey');
  const button = page.getByRole('button', { name: 'Use a passkey' });
  await button.waitFor();
  await audit(page, 'two-step-passkey');
  await button.focus();
  await Promise.all([page.waitForURL((u) => u.pathname === '/consent' || u.href.startsWith(REDIRECT)), page.keyboard.press('Enter')]);
  await allowAndReturn(page);

  // Signed in: the account's passkeys page lists the one added, and renaming it leaves a notice.
  await page.goto(new URL('/account/passkeys', BASE).toString());
  await page.getByRole('heading', { name: 'My passkey' }).waitFor();
  await audit(page, 'account-passkeys');
  await fillAndSend(page, 'New name for My passkey', 'Work laptop');
  assert.match(await page.getByRole('status').textContent(), /renamed/);
  await page.getByRole('heading', { name: 'Work laptop' }).waitFor();
  await audit(page, 'account-passkeys-renamed');
  assert.deepEqual(problems, []);
  await context.close();
});
