// The person at the browser, played over plain HTTP for ts_client.mjs (py_client.py has the same in
// Python): open the authorization URL, fill Latchkey's real login form (its CSRF token and hidden
// fields as served), allow on the real consent page, and catch the redirect to the client's loopback
// redirect URI without following it. Redirects are followed by hand, so every page is seen.

// The attributes of each tag `tag` in `html`, values HTML-unescaped.
function tags(html, tag) {
  const out = [];
  for (const m of html.matchAll(new RegExp(`<${tag}\\b([^>]*)>`, 'gi'))) {
    const attrs = {};
    for (const a of m[1].matchAll(/([a-zA-Z_:-]+)(?:="([^"]*)")?/g)) attrs[a[1].toLowerCase()] = unescape(a[2] ?? '');
    out.push(attrs);
  }
  return out;
}

function unescape(s) {
  return s
    .replace(/&quot;/g, '"')
    .replace(/&#x27;|&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&#x2F;|&#47;/g, '/')
    .replace(/&amp;/g, '&');
}

// The visible text of a page, for what the consent page says.
function visibleText(html) {
  return unescape(html.replace(/<(script|style)[^>]*>[\s\S]*?<\/\1>/gi, ' ').replace(/<[^>]+>/g, ' ')).replace(/\s+/g, ' ');
}

// The form posting to `action` and its hidden fields.
function form(html, action) {
  const f = tags(html, 'form').find((a) => a.action === action);
  if (!f) return null;
  const fields = {};
  for (const i of tags(html, 'input')) if (i.type === 'hidden' && i.name) fields[i.name] = i.value ?? '';
  return fields;
}

export class Person {
  constructor({ user, password, redirect }) {
    this.user = user;
    this.password = password;
    this.redirect = new URL(redirect);
    this.cookies = new Map();
  }

  async request(url, init = {}) {
    const headers = new Headers(init.headers);
    if (this.cookies.size) headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    const res = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair.indexOf('=');
      this.cookies.set(pair.slice(0, i).trim(), pair.slice(i + 1).trim());
    }
    return { status: res.status, location: res.headers.get('location'), body: await res.text() };
  }

  // Runs the person's part of one authorization; `entry` records what the pages showed. Returns
  // the query of the redirect to the client (code, state, iss; or error).
  async authorize(authorizationUrl, entry) {
    let url = new URL(authorizationUrl);
    let res = await this.request(url);
    for (let hops = 0; hops < 10; hops++) {
      if (res.status >= 300 && res.status < 400) {
        const next = new URL(res.location, url);
        // The client's loopback redirect URI (any port, RFC 8252 §7.3): the code is for the SDK.
        if (next.protocol === this.redirect.protocol && next.hostname === this.redirect.hostname && next.pathname === this.redirect.pathname) {
          entry.redirected_to = `${next.origin}${next.pathname}`;
          return next.searchParams;
        }
        url = next;
        res = await this.request(url);
        continue;
      }
      if (res.status !== 200) throw new Error(`${url.pathname}: HTTP ${res.status}: ${visibleText(res.body).slice(0, 300)}`);
      const login = form(res.body, '/login');
      const consent = form(res.body, '/consent');
      if (login && /name="password"/.test(res.body)) {
        entry.login_page = true;
        url = new URL('/login', url);
        res = await this.request(url, {
          method: 'POST',
          body: new URLSearchParams({ ...login, username: this.user, password: this.password }),
        });
      } else if (consent) {
        const text = visibleText(res.body);
        entry.consent = {
          unverified: /unverified/i.test(text),
          shows_redirect_host: text.includes(this.redirect.hostname),
          text: text.slice(0, 1500),
        };
        url = new URL('/consent', url);
        res = await this.request(url, { method: 'POST', body: new URLSearchParams({ ...consent, decision: 'allow' }) });
      } else {
        throw new Error(`${url.pathname}: neither a login nor a consent page: ${visibleText(res.body).slice(0, 300)}`);
      }
    }
    throw new Error('the authorization did not reach the client after 10 steps');
  }
}

// Polls `server` with `accessToken` until it refuses it (401): the token has expired there, the
// server's leeway included. Returns the refusal's status and WWW-Authenticate.
export async function waitUntilRefused(server, accessToken, limitMs = 90_000) {
  const started = Date.now();
  for (;;) {
    const res = await fetch(server, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${accessToken}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 'expiry-probe', method: 'ping' }),
    });
    await res.body?.cancel();
    if (res.status === 401) return { status: 401, www_authenticate: res.headers.get('www-authenticate'), after_ms: Date.now() - started };
    if (Date.now() - started > limitMs) throw new Error(`the access token was still accepted after ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}
