// What the browser test files share: Debian's Chromium, fresh contexts that collect every page
// problem, screenshots into ARTIFACTS_DIR (git-ignored), a one-step sign-in helper, and RFC 6238 codes.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const BASE = process.env.LATCHKEY_BASE;
export const ARTIFACTS = process.env.ARTIFACTS_DIR ?? path.resolve('artifacts/screenshots');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const PHONE = { viewport: { width: 375, height: 667 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
export const DESKTOP = { viewport: { width: 1280, height: 800 } };

assert.ok(BASE, 'LATCHKEY_BASE must point at a running `latchkey serve --dev`');
mkdirSync(ARTIFACTS, { recursive: true });

export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    // Debian's Chromium as root in a sandbox-less container, with nothing that calls home.
    // playwright gives every launch a fresh, temporary user-data-dir of its own.
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

// Collects what went wrong on a page. A CSP violation or a script error shows up as a console
// error; a missing asset as a failed response (the browser's own /favicon.ico guess aside).
export function watch(page, problems = []) {
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(String(e)));
  page.on('response', (r) => {
    const u = new URL(r.url());
    if (r.status() >= 400 && u.pathname !== '/favicon.ico') problems.push(`${r.status()} ${u.pathname}`);
  });
  return problems;
}

// A fresh browser context: no cookies, no session, no storage.
export async function newPage(browser, device = DESKTOP) {
  const context = await browser.newContext(device);
  const page = await context.newPage();
  return { context, page, problems: watch(page) };
}

export async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

// The stylesheet loaded despite the strict CSP: the card has its styled width and background.
export async function assertStyled(page) {
  const styled = await page.evaluate(() => {
    const main = getComputedStyle(document.querySelector('main'));
    return { padding: main.paddingTop, font: getComputedStyle(document.body).fontFamily };
  });
  assert.notEqual(styled.padding, '0px', 'the stylesheet applied');
  assert.match(styled.font, /system-ui/);
}

// The element whose text is `text` has the focus. `autofocus` takes effect at the next rendering
// update, which can come after the load event: waiting (briefly) keeps the check deterministic.
export async function hasFocus(page, text) {
  await page.waitForFunction((t) => document.activeElement?.textContent === t, text, { timeout: 5000 });
}

// Latchkey's login page (shown at /authorize, or at /login after a failed attempt), filled in and
// sent; resolves once the browser has left it, for the consent page or the client.
export async function signIn(page, username, password) {
  assert.equal(await page.title(), 'Sign in · Latchkey');
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  const left = (u) => u.origin !== new URL(BASE).origin || !['/authorize', '/login'].includes(u.pathname);
  await Promise.all([page.waitForURL(left), page.getByRole('button', { name: 'Sign in', exact: true }).click()]);
}

// RFC 4648 base32, as the page shows the key (groups of four, spaces between).
export function base32(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of text.replace(/[\s=]/g, '').toUpperCase()) {
    value = (value << 5) | alphabet.indexOf(c);
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

// RFC 6238 with HMAC-SHA-1, 6 digits, 30 s steps; `offset` in steps.
export function totp(key, offset = 0) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 1000 / 30) + offset));
  const h = createHmac('sha1', key).update(counter).digest();
  const o = h[19] & 0x0f;
  const bin = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(bin % 1_000_000).padStart(6, '0');
}
