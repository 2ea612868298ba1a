// The account pages (issue 13) in headless Chromium, by keyboard only, and the shared
// accessibility harness (a11y.mjs) over every page a person sees: login, consent, the account
// pages, sign-out, and the error pages. Run by crates/cli/tests/browser.rs, which starts
// `latchkey serve --dev` with user ACCOUNT_USER (password ACCOUNT_PASSWORD) and the public client
// LATCHKEY_CLIENT with the loopback redirect URI http://127.0.0.1/callback (any port).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { BASE, DESKTOP, launch, newPage as freshPage, shot } from './support.mjs';
import { assertAxe, assertKeyboard, assertPhone, audit } from './a11y.mjs';

const CLIENT = process.env.LATCHKEY_CLIENT ?? 'browser-test';
const USER = process.env.ACCOUNT_USER ?? 'alice';
const PASSWORD = process.env.ACCOUNT_PASSWORD ?? 'alice-password';

let browser;
let callback;
let REDIRECT;

// A page with the problems the harness must catch: a field without a label, grey-on-white text,
// a button whose focus is invisible, and a paragraph pulled up over the heading.
const BROKEN = `<!doctype html><html lang="en"><title>Broken</title><style>p{color:#bbb}button:focus{outline:none}.up{margin-top:-1.5em}</style>
<main><h1>Broken</h1><p class="up">Drawn over the heading.</p><p>Hard to read.</p><form><input name="q"><button>Go</button></form></main></html>`;

before(async () => {
  callback = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    if (req.url === '/broken') return res.end(BROKEN);
    res.end('<!doctype html><html lang="en"><title>Client app</title><main><h1>Client app</h1><p>The client received the redirect.</p></main></html>');
  });
  await new Promise((resolve) => callback.listen(0, '127.0.0.1', resolve));
  REDIRECT = `http://127.0.0.1:${callback.address().port}/callback`;
  browser = await launch();
});

after(async () => {
  await browser?.close();
  callback?.close();
});

const newPage = (device = DESKTOP) => freshPage(browser, device);

function authorizeUrl(extra = {}) {
  const challenge = createHash('sha256').update(randomBytes(32).toString('base64url')).digest('base64url');
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

// Enter in the focused field of a form: waits for the page the post leads to (after any
// redirect) to have loaded.
async function submitByEnter(page) {
  await Promise.all([page.waitForEvent('load'), page.keyboard.press('Enter')]);
}

// The login form, by keyboard: type into the username field, Tab, type, Enter. The login page is
// shown at the address that asked for it, so what follows is told by the post's answer.
async function signInByKeyboard(page) {
  assert.equal(await page.title(), 'Sign in · Latchkey');
  await page.getByLabel('Username').focus();
  await page.keyboard.type(USER);
  await page.keyboard.press('Tab');
  await page.keyboard.type(PASSWORD);
  await submitByEnter(page);
  assert.notEqual(await page.title(), 'Sign in · Latchkey', 'signed in');
}

// Moves the keyboard focus to the control `locator` names by pressing Tab (never clicking), and
// returns once it has it.
async function tabTo(page, locator, max = 60) {
  const target = await locator.elementHandle();
  for (let i = 0; i < max; i++) {
    if (await page.evaluate((t) => document.activeElement === t, target)) return;
    await page.keyboard.press('Tab');
  }
  assert.fail('Tab never reached the control');
}

test('every page a person sees passes axe, the keyboard run and the 360 px run', async () => {
  const { context, page, problems } = await newPage();
  // Login, with its error, then consent.
  await page.goto(authorizeUrl({ scope: 'openid profile email offline_access' }));
  await audit(page, 'login');
  await page.getByLabel('Username').fill(USER);
  await page.getByLabel('Password').fill('not the password');
  await Promise.all([page.waitForLoadState('load'), page.getByLabel('Password').press('Enter')]);
  await page.getByRole('alert').waitFor();
  await audit(page, 'login-error');
  await signInByKeyboard(page);
  assert.match(page.url(), /\/consent\?/);
  await audit(page, 'consent');
  await Promise.all([page.waitForURL((u) => u.href.startsWith(REDIRECT)), page.getByRole('button', { name: 'Allow' }).press('Enter')]);

  // Every account page, signed in by the same session.
  for (const [path, name] of [
    ['/account', 'account-profile'],
    ['/account/password', 'account-password'],
    ['/account/sessions', 'account-sessions'],
    ['/account/apps', 'account-apps'],
    ['/account/activity', 'account-activity'],
  ]) {
    await page.goto(new URL(path, BASE).toString());
    assert.equal(await page.locator('nav.account [aria-current=page]').count(), 1, `${path}: the navigation marks it`);
    await audit(page, name);
  }
  // The profile form with its errors.
  await page.goto(new URL('/account', BASE).toString());
  await page.getByLabel('Website').fill('http://not-https.example');
  await page.getByLabel('Birthdate').fill('1999-02-31');
  await Promise.all([page.waitForLoadState('load'), page.getByLabel('Birthdate').press('Enter')]);
  await page.getByRole('alert').waitFor();
  await audit(page, 'account-profile-errors');

  // Sign-out: the confirmation, then the signed-out page.
  await page.goto(new URL('/logout', BASE).toString());
  await audit(page, 'logout-confirm');
  await Promise.all([page.waitForLoadState('load'), page.getByRole('button', { name: 'Sign out' }).press('Enter')]);
  assert.equal(await page.title(), 'Signed out · Latchkey');
  await audit(page, 'signed-out');

  // The error pages.
  await page.goto(authorizeUrl({ client_id: 'no-such-client' }));
  await audit(page, 'error');
  await page.goto(new URL('/nowhere', BASE).toString());
  await audit(page, 'not-found');
  assert.deepEqual(problems, ['400 /authorize', '404 /nowhere']);
  await context.close();
});

test('keyboard only: the profile form shows errors next to the field, keeps every value, and saves', async () => {
  const { context, page, problems } = await newPage();
  await page.goto(new URL('/account', BASE).toString());
  await signInByKeyboard(page);
  assert.equal(new URL(page.url()).pathname, '/account');
  // The navigation is reached and followed by keyboard.
  await tabTo(page, page.getByRole('link', { name: 'Password' }));
  await Promise.all([page.waitForURL(/\/account\/password$/), page.keyboard.press('Enter')]);
  await tabTo(page, page.getByRole('link', { name: 'Profile' }));
  await Promise.all([page.waitForURL(/\/account$/), page.keyboard.press('Enter')]);

  await tabTo(page, page.getByLabel('Given name'));
  await page.keyboard.press('Control+A');
  await page.keyboard.type('Alice');
  await tabTo(page, page.getByLabel('Picture'));
  await page.keyboard.type('http://alice.example/me.png');
  await tabTo(page, page.getByLabel('Time zone'));
  await page.keyboard.type('Europe/London');
  await submitByEnter(page);

  const picture = page.getByLabel('Picture');
  assert.equal(await picture.getAttribute('aria-invalid'), 'true');
  assert.match(await picture.getAttribute('aria-describedby'), /e-picture/);
  assert.equal(await page.locator('#e-picture').textContent(), 'Enter an https:// address.');
  // The message sits between the label and the field.
  const [label, message, field] = await Promise.all([
    page.locator('label[for=f-picture]').boundingBox(),
    page.locator('#e-picture').boundingBox(),
    picture.boundingBox(),
  ]);
  assert.ok(label.y < message.y && message.y < field.y, 'next to its field');
  assert.equal(await picture.inputValue(), 'http://alice.example/me.png', 'what was typed stays');
  assert.equal(await page.getByLabel('Given name').inputValue(), 'Alice');
  assert.equal(await page.getByLabel('Time zone').inputValue(), 'Europe/London');
  // The summary links to the field.
  const link = page.getByRole('link', { name: /^Picture:/ });
  await tabTo(page, link);
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => location.hash === '#f-picture');
  await shot(page, 'account-profile-errors');

  await tabTo(page, picture);
  await page.keyboard.press('Control+A');
  await page.keyboard.type('https://alice.example/me.png');
  await Promise.all([page.waitForURL(/done=saved/), page.keyboard.press('Enter')]);
  assert.equal((await page.getByRole('status').textContent()).trim(), 'Your profile was saved.');
  assert.equal(await page.getByLabel('Picture').inputValue(), 'https://alice.example/me.png');
  assert.equal(await page.getByLabel('Given name').inputValue(), 'Alice');
  await shot(page, 'account-profile');
  assert.deepEqual(problems, []);
  await context.close();
});

// Another browser, told apart on the sessions page by what it says it is.
const FIREFOX_ON_WINDOWS = {
  ...DESKTOP,
  userAgent: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0',
};

test('keyboard only: another session is signed out from the sessions page', async () => {
  const other = await newPage(FIREFOX_ON_WINDOWS);
  await other.page.goto(new URL('/account', BASE).toString());
  await signInByKeyboard(other.page);

  const { context, page, problems } = await newPage();
  await page.goto(new URL('/account/sessions', BASE).toString());
  await signInByKeyboard(page);
  assert.equal(new URL(page.url()).pathname, '/account/sessions');
  const items = page.locator('ul.items > li');
  const before = await items.count();
  assert.ok(before >= 2, `two sessions at least, ${before} listed`);
  assert.match(await items.first().textContent(), /this session/, 'this one first');
  await shot(page, 'account-sessions');
  const theirs = items.filter({ hasText: 'Firefox on Windows' });
  assert.equal(await theirs.count(), 1);
  const button = theirs.getByRole('button', { name: /^Sign out/ });
  await tabTo(page, button);
  await Promise.all([page.waitForURL(/done=1/), page.keyboard.press('Enter')]);
  assert.equal((await page.getByRole('status').textContent()).trim(), '1 session was signed out.');
  assert.equal(await items.count(), before - 1);

  await other.page.goto(new URL('/account', BASE).toString());
  assert.equal(await other.page.title(), 'Sign in · Latchkey', 'that browser is signed out');
  assert.deepEqual(problems, []);
  await context.close();
  await other.context.close();
});

test('keyboard only: an app is removed from the apps page, and its refresh token stops working', async () => {
  const { context, page, problems } = await newPage();
  // Grant the client access with offline_access, and redeem the code for tokens.
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  await page.goto(authorizeUrl({ scope: 'openid email offline_access', code_challenge: challenge }));
  await signInByKeyboard(page);
  // Consent given in an earlier test is remembered; otherwise Allow has the focus.
  if (new URL(page.url()).pathname === '/consent') {
    await Promise.all([page.waitForURL((u) => u.href.startsWith(REDIRECT)), page.keyboard.press('Enter')]);
  }
  assert.ok(page.url().startsWith(REDIRECT), page.url());
  const code = new URL(page.url()).searchParams.get('code');
  const res = await fetch(new URL('/token', BASE), {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT, client_id: CLIENT, code_verifier: verifier }),
  });
  const { refresh_token } = await res.json();
  assert.ok(refresh_token);

  await page.goto(new URL('/account/apps', BASE).toString());
  await page.getByRole('heading', { name: 'Browser Test App' }).waitFor();
  await shot(page, 'account-apps');
  await tabTo(page, page.getByRole('button', { name: 'Remove access of Browser Test App' }));
  await Promise.all([page.waitForURL(/done=removed/), page.keyboard.press('Enter')]);
  assert.equal((await page.getByRole('status').textContent()).trim(), "The app's access was removed.");
  assert.equal(await page.getByRole('heading', { name: 'Browser Test App' }).count(), 0);

  const refresh = await fetch(new URL('/token', BASE), {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token, client_id: CLIENT }),
  });
  assert.equal(refresh.status, 400);
  assert.equal((await refresh.json()).error, 'invalid_grant');

  await page.goto(new URL('/account/activity', BASE).toString());
  await page.getByText('Removed the access of Browser Test App').first().waitFor();
  await shot(page, 'account-activity');
  assert.deepEqual(problems, []);
  await context.close();
});

// The harness is only worth something if it fails: on a page with known problems it must.
test('the accessibility harness fails on a page with a missing label, low contrast, no focus and overlapping text', async () => {
  const { context, page } = await newPage();
  await page.goto(REDIRECT.replace('/callback', '/broken'));
  await assert.rejects(assertAxe(page, 'harness-self-test'), (e) => {
    assert.match(e.message, /label/);
    assert.match(e.message, /color-contrast/);
    return true;
  });
  await assert.rejects(assertKeyboard(page, 'harness-self-test'), /no visible focus indicator/);
  await assert.rejects(assertPhone(page, 'harness-self-test'), /nothing drawn over anything else[^]*h1 "Broken" and p\.up/);
  await context.close();
});
