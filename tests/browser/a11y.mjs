// The shared accessibility harness for Latchkey's pages (issue 13). One call, `audit(page, name)`,
// runs on whatever page is open:
//
// 1. axe-core (npm `axe-core`, pinned in package-lock.json, injected from node_modules: no CDN),
//    all of its default rules (WCAG 2.0-2.2 A/AA and best practices); any serious or critical
//    violation fails, the others are reported. The page's strict CSP stays on: the engine is
//    evaluated through the DevTools protocol, not as a <script> the CSP would have to allow.
// 2. A keyboard-only run: from the top of the page, Tab reaches every control (links, buttons,
//    fields) in order, each with a visible focus indicator, and Shift+Tab goes back.
// 3. A phone-sized run (360×740 CSS px): nothing wider than the screen, text at least 16 px,
//    tap targets (fields, buttons, a <details>' summary) at least 44 px tall, axe again, and a
//    full-page screenshot.
// 4. axe once more in the dark colour scheme, which the stylesheet styles on its own.
//
// Reports and screenshots go to A11Y_ARTIFACTS_DIR (set by crates/cli/tests/browser.rs to
// target/browser-artifacts/, which the README names): `<name>.png` at phone size, and
// `<name>.axe.json` with every violation axe found, serious or not.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export const A11Y_ARTIFACTS = process.env.A11Y_ARTIFACTS_DIR ?? path.resolve('../../target/browser-artifacts');
export const PHONE_360 = { width: 360, height: 740 };
mkdirSync(A11Y_ARTIFACTS, { recursive: true });

const BLOCKING = new Set(['serious', 'critical']);

// axe-core on the current document: the violations, serious and critical ones first.
export async function axe(page) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) {
    await page.evaluate(AXE_SOURCE);
  }
  const result = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((n) => ({ target: n.target.join(' '), summary: n.failureSummary })),
    }));
  });
  return result.sort((a, b) => Number(BLOCKING.has(b.impact)) - Number(BLOCKING.has(a.impact)));
}

function describe(violations) {
  return violations
    .map((v) => `${v.impact} ${v.id}: ${v.help}\n${v.nodes.map((n) => `    ${n.target}: ${n.summary}`).join('\n')}`)
    .join('\n');
}

// Fails on serious or critical violations; writes every violation to `<name>.axe.json`.
export async function assertAxe(page, name) {
  const violations = await axe(page);
  writeFileSync(path.join(A11Y_ARTIFACTS, `${name}.axe.json`), JSON.stringify(violations, null, 2));
  const blocking = violations.filter((v) => BLOCKING.has(v.impact));
  assert.deepEqual(blocking, [], `${name}: axe found serious or critical problems:\n${describe(blocking)}`);
  const rest = violations.filter((v) => !BLOCKING.has(v.impact));
  if (rest.length) console.log(`${name}: axe, minor or moderate:\n${describe(rest)}`);
}

// Every control a keyboard user must be able to reach, in document order.
async function controls(page) {
  return page.evaluate(() => {
    // A <details> element's <summary> is a control too: Tab reaches it, Enter opens it.
    const selector = 'a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]:not([tabindex="-1"])';
    return [...document.querySelectorAll(selector)]
      // checkVisibility, not a box alone: the content of a closed <details> keeps its boxes in
      // Chromium but is skipped (content-visibility), and Tab does not reach it.
      .filter((e) => !e.disabled && e.checkVisibility({ visibilityProperty: true }))
      .map((e, i) => {
        e.dataset.a11yKey = String(i);
        return `${i}:${e.tagName.toLowerCase()}:${e.id || e.getAttribute('name') || e.textContent.trim().slice(0, 40)}`;
      });
  });
}

// What has the focus now, and whether it shows: an outline or a box shadow drawn for it.
async function focused(page) {
  return page.evaluate(() => {
    const e = document.activeElement;
    if (!e || e === document.body || !e.dataset.a11yKey) return null;
    const s = getComputedStyle(e);
    const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2;
    const shadow = s.boxShadow && s.boxShadow !== 'none';
    const i = Number(e.dataset.a11yKey);
    return {
      key: `${i}:${e.tagName.toLowerCase()}:${e.id || e.getAttribute('name') || e.textContent.trim().slice(0, 40)}`,
      visible: outline || shadow,
    };
  });
}

// Tab from the top reaches every control, in order, each with a visible focus; Shift+Tab goes
// back. Returns the controls in the order reached.
export async function assertKeyboard(page, name) {
  const all = await controls(page);
  // Start where a keyboard user starts, at the top of the document: a focus point before every
  // control (a blur alone would leave Chromium's starting point at the blurred element).
  await page.evaluate(() => {
    const start = document.createElement('span');
    start.tabIndex = -1;
    start.id = 'a11y-start';
    document.body.prepend(start);
    start.focus();
  });
  await page.keyboard.press('Tab');
  await page.evaluate(() => document.getElementById('a11y-start')?.remove());
  let at = await focused(page);
  const reached = [];
  for (let i = 0; i < all.length + 5 && at !== null && !reached.includes(at.key); i++) {
    assert.ok(at.visible, `${name}: ${at.key} has the focus but no visible focus indicator`);
    reached.push(at.key);
    await page.keyboard.press('Tab');
    at = await focused(page);
  }
  assert.deepEqual(reached, all, `${name}: Tab must reach every control, in document order`);
  if (reached.length > 1) {
    // Back from the last one.
    await page.evaluate((k) => document.querySelector(`[data-a11y-key="${k.split(':')[0]}"]`).focus(), reached.at(-1));
    await page.keyboard.press('Shift+Tab');
    assert.equal((await focused(page))?.key, reached.at(-2), `${name}: Shift+Tab goes back`);
  }
  return reached;
}

// Pairs of visible boxes drawn over each other (text, fields, buttons, badges; an element and
// its own ancestors aside) by more than a pixel each way, and pairs of boxes with a border all
// round (fields, buttons, badges, framed messages) closer than 4 px: one would hide part of the
// other, or their frames would run into each other.
async function overlaps(page) {
  return page.evaluate(() => {
    const selector = 'h1, h2, p, label, legend, dt, dd, img, input:not([type=hidden]), button, textarea, select, summary, .badge, .error-summary, nav a, footer';
    const framed = (e) => {
      const s = getComputedStyle(e);
      return ['Top', 'Right', 'Bottom', 'Left'].every((side) => parseFloat(s[`border${side}Width`]) > 0 && s[`border${side}Style`] !== 'none');
    };
    const boxes = [...document.querySelectorAll(selector)]
      .filter((e) => e.checkVisibility({ visibilityProperty: true }))
      .map((e) => ({ e, r: e.getBoundingClientRect(), framed: framed(e) }))
      .filter(({ r }) => r.width > 0 && r.height > 0);
    const name = (e) => `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}${e.className ? '.' + String(e.className).replace(/ /g, '.') : ''} "${e.textContent.trim().slice(0, 30)}"`;
    const found = [];
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const [a, b] = [boxes[i], boxes[j]];
        if (a.e.contains(b.e) || b.e.contains(a.e)) continue;
        const x = Math.min(a.r.right, b.r.right) - Math.max(a.r.left, b.r.left);
        const y = Math.min(a.r.bottom, b.r.bottom) - Math.max(a.r.top, b.r.top);
        if (x > 1 && y > 1) found.push(`${name(a.e)} and ${name(b.e)} overlap (${x.toFixed(1)}×${y.toFixed(1)} px)`);
        else if (a.framed && b.framed && x > -4 && y > -4) found.push(`${name(a.e)} and ${name(b.e)} touch (${Math.max(-x, -y, 0).toFixed(1)} px apart)`);
      }
    }
    return found;
  });
}

// At 360×740: readable without zooming or sideways scrolling, nothing drawn over anything else,
// axe-clean, and photographed.
export async function assertPhone(page, name) {
  const before = page.viewportSize();
  await page.setViewportSize(PHONE_360);
  try {
    const m = await page.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth,
      width: window.innerWidth,
      bodyFont: parseFloat(getComputedStyle(document.body).fontSize),
      controls: [...document.querySelectorAll('input:not([type=hidden]), button, textarea, select, summary')]
        .filter((e) => e.checkVisibility({ visibilityProperty: true }))
        .map((e) => {
          const r = e.getBoundingClientRect();
          const font = parseFloat(getComputedStyle(e).fontSize);
          return { name: e.id || e.getAttribute('name') || e.textContent.trim(), left: r.left, right: r.right, height: r.height, font };
        }),
    }));
    assert.deepEqual(await overlaps(page), [], `${name}: nothing drawn over anything else at 360 px`);
    assert.ok(m.scrollWidth <= m.width, `${name}: no horizontal scrolling at 360 px (${m.scrollWidth} > ${m.width})`);
    assert.ok(m.bodyFont >= 16, `${name}: body text ${m.bodyFont}px`);
    for (const c of m.controls) {
      // 16 px keeps phones from zooming into a focused field; 44 px is a comfortable tap target.
      assert.ok(c.font >= 16, `${name}: ${c.name} font ${c.font}px`);
      assert.ok(c.height >= 44, `${name}: ${c.name} is ${c.height}px tall`);
      assert.ok(c.left >= 0 && c.right <= m.width, `${name}: ${c.name} fits the screen`);
    }
    await assertAxe(page, `${name}.phone`);
    await page.screenshot({ path: path.join(A11Y_ARTIFACTS, `${name}.png`), fullPage: true });
  } finally {
    if (before) await page.setViewportSize(before);
  }
}

// axe again with the reader's dark colour scheme (prefers-color-scheme: dark): the stylesheet
// has its own colours for it, and they must hold their contrast too.
export async function assertDark(page, name) {
  await page.emulateMedia({ colorScheme: 'dark' });
  try {
    await assertAxe(page, `${name}.dark`);
  } finally {
    await page.emulateMedia({ colorScheme: 'light' });
  }
}

// The checks on the open page. `keyboard: false` skips the Tab run (a page that is only a
// message, with nothing to reach, still gets it: it then checks that nothing is reachable).
export async function audit(page, name, { keyboard = true } = {}) {
  await assertAxe(page, name);
  assert.deepEqual(await overlaps(page), [], `${name}: nothing drawn over anything else`);
  const reached = keyboard ? await assertKeyboard(page, name) : [];
  await assertPhone(page, name);
  await assertDark(page, name);
  return reached;
}
