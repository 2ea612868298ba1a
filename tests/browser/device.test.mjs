// The device verification page (RFC 8628 §3.3) in a real browser, 360 px wide and with the
// keyboard only: a device (this file, with fetch) asks for a pair of codes; the person signs in at
// verification_uri, types the code, approves on the consent page, and the device's poll gets
// tokens; a second code opened by verification_uri_complete is denied, and the poll is told.
// The code form (with and without its error), the consent page and the answer pages go through
// the accessibility harness (a11y.mjs: axe, Tab order, 360 px, dark scheme). Run by
// crates/cli/tests/browser.rs against `latchkey serve --dev` with a public device client
// DEVICE_CLIENT, user `alice` (password LATCHKEY_PASSWORD) and `[device] interval = 1`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, assertStyled, launch, newPage as freshPage, shot } from './support.mjs';
import { audit } from './a11y.mjs';

const CLIENT = process.env.DEVICE_CLIENT ?? 'tv';
const PASSWORD = process.env.LATCHKEY_PASSWORD ?? 'alice-password';
const GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const PHONE_360 = { viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

let browser;

before(async () => {
  browser = await launch();
});

after(async () => {
  await browser?.close();
});

async function post(path, form) {
  const res = await fetch(new URL(path, BASE), { method: 'POST', body: new URLSearchParams(form) });
  return { status: res.status, body: await res.json() };
}

// What the device does first (§3.1): a pair of codes.
async function deviceAuthorization(scope) {
  const { status, body } = await post('/device_authorization', { client_id: CLIENT, scope });
  assert.equal(status, 200, JSON.stringify(body));
  return body;
}

// The device's polling (§3.4), at the interval, until the answer is final.
async function pollUntilAnswered(d) {
  let interval = d.interval;
  for (let i = 0; i < 30; i++) {
    await new Promise((r) => setTimeout(r, interval * 1000));
    const r = await post('/token', { grant_type: GRANT, device_code: d.device_code, client_id: CLIENT });
    if (r.body.error === 'authorization_pending') continue;
    if (r.body.error === 'slow_down') {
      interval += 5;
      continue;
    }
    return r;
  }
  assert.fail('the device never got an answer');
}

// The focused element, described.
const active = (page) =>
  page.evaluate(() => {
    const a = document.activeElement;
    return { tag: a?.tagName, id: a?.id, text: a?.textContent?.trim(), value: a?.value };
  });

// `autofocus` takes effect at the next rendering update, which can come after the load event.
async function focusIs(page, id) {
  await page.waitForFunction((i) => document.activeElement?.id === i, id, { timeout: 5000 });
}

// Presses Tab until the focused element is the one `matches` accepts; fails after 40 presses.
async function tabTo(page, description, matches) {
  for (let i = 0; i < 40; i++) {
    await page.keyboard.press('Tab');
    if (matches(await active(page))) return;
  }
  assert.fail(`Tab never reached ${description}`);
}

// A key press that submits a form: resolves once the page it leads to has loaded.
async function submitWith(page, key) {
  await Promise.all([page.waitForEvent('load'), page.keyboard.press(key)]);
}

test('a code typed at 360 px with the keyboard is approved, and the device gets tokens', async () => {
  const d = await deviceAuthorization('openid profile');
  assert.equal(d.verification_uri, new URL('/device', BASE).toString());
  const { context, page, problems } = await freshPage(browser, PHONE_360);

  // Signing in first: the login page, by keyboard (the username field has the focus).
  await page.goto(d.verification_uri);
  assert.equal(await page.title(), 'Sign in · Latchkey');
  await focusIs(page, 'username');
  await page.keyboard.type('alice');
  await page.keyboard.press('Tab');
  await page.keyboard.type(PASSWORD);
  await submitWith(page, 'Enter');
  assert.equal(new URL(page.url()).pathname, '/device', 'back at the device page');
  assert.equal(await page.title(), 'Connect a device · Latchkey');
  await assertStyled(page);
  await shot(page, 'device-code');
  await audit(page, 'device-code');

  // A wrong code first: the one neutral message, next to the field.
  await page.goto(d.verification_uri);
  await focusIs(page, 'user_code');
  await page.keyboard.type('BCDF-GHJK');
  await submitWith(page, 'Enter');
  await page.getByRole('alert').waitFor();
  assert.match(await page.getByRole('alert').textContent(), /That code is not valid or has expired\. Check the code on your device\./);
  assert.equal(await page.getByLabel('Code').getAttribute('aria-invalid'), 'true');
  await audit(page, 'device-code-error');

  // The right code, typed the lazy way (lower case, no dash) over what the field gave back.
  await tabTo(page, 'the code field', (e) => e.id === 'user_code');
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.type(d.user_code.replace('-', '').toLowerCase());
  await submitWith(page, 'Enter');
  assert.equal(await page.title(), 'Sign in on a device · Latchkey');
  const text = await page.locator('main').textContent();
  for (const part of [d.user_code, 'If someone sent you this code, deny.', 'ago', 'tv']) {
    assert.ok(text.includes(part), `the consent page shows ${part}`);
  }
  await shot(page, 'device-consent');
  await audit(page, 'device-consent');

  await tabTo(page, 'Approve', (e) => e.tag === 'BUTTON' && e.text === 'Approve');
  await submitWith(page, 'Enter');
  assert.equal(await page.title(), 'Device approved · Latchkey');
  assert.equal(await page.getByRole('status').textContent(), 'Done. You can return to your device.');
  await shot(page, 'device-done');
  await audit(page, 'device-done');

  const r = await pollUntilAnswered(d);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.ok(r.body.access_token && r.body.id_token, 'the device has its tokens');
  assert.deepEqual(problems, [], 'no CSP violation, script error or failed request');
  await context.close();
});

test('a code opened by verification_uri_complete is denied with the keyboard, and the device is told', async () => {
  const d = await deviceAuthorization('openid');
  const { context, page } = await freshPage(browser, PHONE_360);
  await page.goto(d.verification_uri_complete);
  assert.equal(await page.title(), 'Sign in · Latchkey');
  await focusIs(page, 'username');
  await page.keyboard.type('alice');
  await page.keyboard.press('Tab');
  await page.keyboard.type(PASSWORD);
  await submitWith(page, 'Enter');
  // Straight to the consent page: the code came with the link, through the sign-in.
  assert.equal(await page.title(), 'Sign in on a device · Latchkey');
  await tabTo(page, 'Deny', (e) => e.tag === 'BUTTON' && e.text === 'Deny');
  await submitWith(page, 'Enter');
  assert.equal(await page.getByRole('status').textContent(), 'Denied. Your device will be told.');
  await audit(page, 'device-denied');
  const r = await pollUntilAnswered(d);
  assert.equal(r.body.error, 'access_denied', JSON.stringify(r.body));
  await context.close();
});
