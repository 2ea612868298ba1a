// Two-step sign-in in a real browser, at phone size (360 px wide) and with the keyboard only:
// TOTP set up from the account page (the QR code must load under the strict CSP), the recovery
// codes shown once, then a sign-in to a client with the password and a code. Codes are computed
// here with node's own HMAC-SHA-1 (RFC 6238), not by the server. Run by crates/cli/tests/browser.rs
// against `latchkey serve --dev` with a user `alice` (password in LATCHKEY_PASSWORD).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { BASE, assertStyled, base32, launch, newPage as freshPage, shot, totp } from './support.mjs';

const CLIENT = process.env.LATCHKEY_CLIENT ?? 'browser-test';
const PASSWORD = process.env.LATCHKEY_PASSWORD ?? 'alice-password';
// The narrowest phone the pages are made for.
const PHONE_360 = { viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

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

test('the test TOTP passes RFC 6238 Appendix B (SHA-1)', () => {
  const key = Buffer.from('12345678901234567890');
  const at = (t, digits) => {
    const counter = Buffer.alloc(8);
    counter.writeBigUInt64BE(BigInt(Math.floor(t / 30)));
    const h = createHmac('sha1', key).update(counter).digest();
    const o = h[19] & 0x0f;
    const bin = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
    return String(bin % 10 ** digits).padStart(digits, '0');
  };
  assert.equal(at(59, 8), '94287082');
  assert.equal(at(1111111109, 8), '07081804');
  assert.equal(at(2000000000, 8), '69279037');
  assert.deepEqual(base32('GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ'), key);
});

// Presses Tab until the focused element is the one `matches` accepts; fails after 40 presses.
async function tabTo(page, description, matches) {
  for (let i = 0; i < 40; i++) {
    await page.keyboard.press('Tab');
    const el = await page.evaluate(() => {
      const a = document.activeElement;
      return { tag: a?.tagName, id: a?.id, text: a?.textContent?.trim(), value: a?.value };
    });
    if (matches(el)) return;
  }
  assert.fail(`Tab never reached ${description}`);
}

// Nothing wider than 360 px, inputs and buttons big enough to read and tap.
async function fitsThePhone(page) {
  const m = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    width: window.innerWidth,
    controls: [...document.querySelectorAll('input:not([type=hidden]), button')]
      .filter((e) => e.getClientRects().length > 0)
      .map((e) => {
        const r = e.getBoundingClientRect();
        return { name: e.id || e.textContent, right: r.right, height: r.height };
      }),
  }));
  assert.ok(m.scrollWidth <= m.width, `no horizontal scrolling at ${m.width}px: ${m.scrollWidth}`);
  for (const c of m.controls) {
    assert.ok(c.height >= 44 && c.right <= m.width, `${c.name}: ${c.height}px tall, right edge ${c.right}`);
  }
}

async function submitWithEnter(page) {
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
}

test('keyboard only at 360 px: set up TOTP on the account page, then sign in with password and code', async () => {
  const { context, page, problems } = await freshPage(browser, PHONE_360);

  // The account page's own sign-in.
  await page.goto(new URL('/account', BASE).toString());
  assert.equal(await page.title(), 'Sign in · Latchkey');
  // `autofocus` takes effect at a rendering update that can come after the load event.
  await page.waitForFunction(() => document.activeElement?.id === 'username');
  await page.keyboard.type('alice');
  await page.keyboard.press('Tab');
  await page.keyboard.type(PASSWORD);
  await submitWithEnter(page);
  assert.equal(new URL(page.url()).pathname, '/account');

  // To the two-step page through the navigation.
  await tabTo(page, 'the Two-step sign-in link', (e) => e.tag === 'A' && e.text === 'Two-step sign-in');
  await submitWithEnter(page);
  assert.equal(await page.title(), 'Two-step sign-in · Latchkey');
  await assertStyled(page);
  await shot(page, 'two-step-account-off');
  await tabTo(page, 'the setup button', (e) => e.tag === 'BUTTON' && e.text === 'Set up an authenticator app');
  await submitWithEnter(page);

  // The QR code is an image from our own origin: it loads under `img-src 'self'`.
  const qr = page.getByRole('img', { name: /QR code/ });
  await qr.waitFor();
  await page.waitForFunction(() => document.querySelector('p.qr img')?.naturalWidth > 0);
  const key = base32(await page.locator('code.secret').first().textContent());
  assert.equal(key.length, 20, '160-bit key');
  await fitsThePhone(page);
  await shot(page, 'two-step-setup');

  await tabTo(page, 'the code field', (e) => e.id === 'code');
  await page.keyboard.type(totp(key));
  await page.keyboard.press('Tab');
  await page.keyboard.type(PASSWORD);
  await submitWithEnter(page);
  assert.equal(await page.title(), 'Your recovery codes · Latchkey');
  const codes = await page.locator('ol.codes code').allTextContents();
  assert.equal(codes.length, 10);
  assert.ok(codes.every((c) => /^[0-9a-z]{4}(-[0-9a-z]{4}){3}$/.test(c)), codes.join(' '));
  await fitsThePhone(page);
  await shot(page, 'two-step-recovery-codes');
  // The way back has the focus.
  await page.waitForFunction(() => document.activeElement?.textContent?.startsWith('I saved them'));
  await submitWithEnter(page);
  assert.match(await page.locator('main').textContent(), /On since/);
  assert.match(await page.locator('main').textContent(), /10 of 10 unused/);
  await shot(page, 'two-step-account-on');
  assert.deepEqual(problems, [], 'no CSP violation, script error or failed request');
  await context.close();

  // A fresh browser signs in to the client: password, then a code (the next step's: the
  // current one was spent confirming the app, and one step of skew is accepted).
  const fresh = await freshPage(browser, PHONE_360);
  const verifier = randomBytes(32).toString('base64url');
  const u = new URL('/authorize', BASE);
  for (const [k, v] of Object.entries({
    response_type: 'code',
    client_id: CLIENT,
    redirect_uri: REDIRECT,
    scope: 'openid profile',
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    state: 'st-two-step',
  })) {
    u.searchParams.set(k, v);
  }
  await fresh.page.goto(u.toString());
  await fresh.page.waitForFunction(() => document.activeElement?.id === 'username');
  await fresh.page.keyboard.type('alice');
  await fresh.page.keyboard.press('Tab');
  await fresh.page.keyboard.type(PASSWORD);
  await submitWithEnter(fresh.page);
  assert.equal(await fresh.page.title(), 'Two-step sign-in · Latchkey');
  assert.equal(new URL(fresh.page.url()).pathname, '/login/two-step');
  // The code field has the focus.
  await fresh.page.waitForFunction(() => document.activeElement?.id === 'code');
  await fitsThePhone(fresh.page);
  await shot(fresh.page, 'two-step-sign-in');
  await fresh.page.keyboard.type('000000');
  await submitWithEnter(fresh.page);
  assert.match(await fresh.page.getByRole('alert').textContent(), /not right/);
  await shot(fresh.page, 'two-step-sign-in-wrong-code');
  await fresh.page.waitForFunction(() => document.activeElement?.id === 'code');
  await fresh.page.keyboard.type(totp(key, 1));
  await submitWithEnter(fresh.page);
  // The consent page, Allow focused.
  assert.equal(await fresh.page.title(), 'Allow access · Latchkey');
  await fresh.page.waitForFunction(() => document.activeElement?.textContent === 'Allow');
  await Promise.all([fresh.page.waitForURL((url) => url.toString().startsWith(REDIRECT)), fresh.page.keyboard.press('Enter')]);
  const back = new URL(fresh.page.url());
  assert.equal(back.searchParams.get('state'), 'st-two-step');
  const res = await fetch(new URL('/token', BASE), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: back.searchParams.get('code'),
      redirect_uri: REDIRECT,
      client_id: CLIENT,
      code_verifier: verifier,
    }),
  });
  assert.equal(res.status, 200);
  const idToken = (await res.json()).id_token;
  const claims = JSON.parse(Buffer.from(idToken.split('.')[1], 'base64url').toString());
  assert.deepEqual(claims.amr, ['pwd', 'otp', 'mfa']);
  assert.equal(claims.acr, 'https://refeds.org/profile/mfa');
  // The only console errors are the wrong code's page answer, which is a 200: none at all.
  assert.deepEqual(fresh.problems, []);
  await fresh.context.close();
});
