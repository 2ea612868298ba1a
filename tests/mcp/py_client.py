"""An MCP host built on the official Python SDK (`mcp`, pinned in requirements.lock).

`OAuthClientProvider` is the SDK's httpx2 auth (the 2.x SDK's HTTP client, a fork of httpx): the
discovery (RFC 9728, RFC 8414), registration (DCR, CIMD or none), PKCE, `resource` (RFC 8707),
token requests, the proactive refresh and the step-up on 403 insufficient_scope are the SDK's own
code. The person is played over plain HTTP against Latchkey's real pages: the login form, then the
consent page, whose "allow" redirects to the loopback redirect URI; the code goes back to the SDK
through the callback handler.

Run by crates/cli/tests/mcp_interop.rs (same flags as ts_client.mjs):
  .venv/bin/python py_client.py --server <MCP URL> --mode dcr|cimd|preregistered
      [--client-id <id or URL>] --redirect <loopback URI> --user <name> --password <pw>
      [--tool whoami] [--other-server <URL>] [--refresh] [--step-up-tool <name>]
It prints ONE line of JSON (the result the Rust test asserts on) and exits 0 even when a step
failed: `ok` and `error` say what happened.
"""

import argparse
import asyncio
import html
import json
import re
import time
import traceback
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

p = argparse.ArgumentParser()
p.add_argument("--server", required=True)
p.add_argument("--mode", required=True, choices=["dcr", "cimd", "preregistered"])
p.add_argument("--client-id")
p.add_argument("--redirect", required=True)
p.add_argument("--user", required=True)
p.add_argument("--password", required=True)
p.add_argument("--tool", default="whoami")
p.add_argument("--other-server")
p.add_argument("--refresh", action="store_true")
p.add_argument("--step-up-tool")
opt = p.parse_args()

result: dict = {"sdk": "python", "mode": opt.mode, "ok": False, "steps": [], "authorizations": [], "token_requests": []}
last_challenge: dict | None = None


class Memory:
    """The SDK's TokenStorage, in memory; a pre-registered client is known from the start."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None
        if opt.mode == "preregistered":
            self.client = OAuthClientInformationFull(
                client_id=opt.client_id, redirect_uris=[opt.redirect], token_endpoint_auth_method="none"
            )

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def visible_text(page: str) -> str:
    page = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", page, flags=re.S | re.I)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def form(page: str, action: str) -> dict | None:
    """The hidden fields of the page's form posting to `action`, as served (CSRF token included)."""
    if not re.search(rf'<form\b[^>]*action="{re.escape(action)}"', page):
        return None
    fields = {}
    for tag in re.findall(r"<input\b[^>]*>", page):
        attrs = {k.lower(): html.unescape(v) for k, v in re.findall(r'([a-zA-Z_:-]+)="([^"]*)"', tag)}
        if attrs.get("type") == "hidden" and "name" in attrs:
            fields[attrs["name"]] = attrs.get("value", "")
    return fields


class Person:
    """The person at the browser: one cookie jar for the run (a real browser keeps its Latchkey
    session between two authorizations); redirects are followed by hand so each page is seen, and
    the redirect to the client's loopback URI is caught, not followed."""

    def __init__(self) -> None:
        self.http = httpx2.AsyncClient(follow_redirects=False, timeout=30)
        self.redirect = urlparse(opt.redirect)
        self.pending: AuthorizationCodeResult | None = None

    async def authorize(self, authorization_url: str) -> None:
        q = parse_qs(urlparse(authorization_url).query)
        entry = {
            "client_id": q.get("client_id", [None])[0],
            "scope": q.get("scope", [None])[0],
            "resource": q.get("resource", [None])[0],
            "code_challenge_method": q.get("code_challenge_method", [None])[0],
        }
        result["authorizations"].append(entry)
        url = authorization_url
        res = await self.http.get(url)
        for _ in range(10):
            if 300 <= res.status_code < 400:
                nxt = urljoin(url, res.headers["location"])
                u = urlparse(nxt)
                # The client's loopback redirect URI (any port, RFC 8252 §7.3): the code is the SDK's.
                if (u.scheme, u.hostname, u.path) == (self.redirect.scheme, self.redirect.hostname, self.redirect.path):
                    entry["redirected_to"] = f"{u.scheme}://{u.netloc}{u.path}"
                    back = {k: v[0] for k, v in parse_qs(u.query).items()}
                    entry["iss"] = back.get("iss")
                    if "error" in back:
                        raise RuntimeError(f"authorization refused: {back['error']}: {back.get('error_description')}")
                    self.pending = AuthorizationCodeResult(code=back["code"], state=back.get("state"), iss=back.get("iss"))
                    return
                url = nxt
                res = await self.http.get(url)
                continue
            if res.status_code != 200:
                raise RuntimeError(f"{urlparse(url).path}: HTTP {res.status_code}: {visible_text(res.text)[:300]}")
            login, consent = form(res.text, "/login"), form(res.text, "/consent")
            if login is not None and 'name="password"' in res.text:
                entry["login_page"] = True
                url = urljoin(url, "/login")
                res = await self.http.post(url, data={**login, "username": opt.user, "password": opt.password})
            elif consent is not None:
                text = visible_text(res.text)
                entry["consent"] = {
                    "unverified": "unverified" in text.lower(),
                    "shows_redirect_host": self.redirect.hostname in text,
                    "text": text[:1500],
                }
                url = urljoin(url, "/consent")
                res = await self.http.post(url, data={**consent, "decision": "allow"})
            else:
                raise RuntimeError(f"{urlparse(url).path}: neither a login nor a consent page: {visible_text(res.text)[:300]}")
        raise RuntimeError("the authorization did not reach the client after 10 steps")

    async def callback(self) -> AuthorizationCodeResult:
        pending, self.pending = self.pending, None
        if pending is None:
            raise RuntimeError("no authorization response")
        return pending


async def on_request(request: httpx2.Request) -> None:
    try:
        request.extensions["interop_body"] = request.content if request.method == "POST" else b""
    except httpx2.RequestNotRead:
        request.extensions["interop_body"] = b""


async def on_response(response: httpx2.Response) -> None:
    """Every request the SDK makes, its OAuth requests included, passes here: the test sees the
    registration and the grant type of each token request."""
    global last_challenge
    req = response.request
    body = req.extensions.get("interop_body", b"")
    if req.method == "POST" and req.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form_body = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if "grant_type" in form_body:
            result["token_requests"].append(
                {"grant_type": form_body["grant_type"], "resource": form_body.get("resource"), "status": response.status_code}
            )
    elif req.method == "POST" and req.url.path.endswith("/register"):
        result["registered"] = {"status": response.status_code}
    if response.status_code in (401, 403) and str(req.url).startswith(opt.server):
        last_challenge = {"status": response.status_code, "www_authenticate": response.headers.get("www-authenticate")}


async def wait_until_refused(access_token: str, limit: float = 90) -> dict:
    """Polls the server with `access_token` until it refuses it (401): expired there, the server's
    leeway included."""
    started = time.monotonic()
    async with httpx2.AsyncClient(timeout=30) as http:
        while True:
            res = await http.post(
                opt.server,
                headers={"authorization": f"Bearer {access_token}", "accept": "application/json, text/event-stream"},
                json={"jsonrpc": "2.0", "id": "expiry-probe", "method": "ping"},
            )
            if res.status_code == 401:
                return {"status": 401, "www_authenticate": res.headers.get("www-authenticate"), "after_ms": int((time.monotonic() - started) * 1000)}
            if time.monotonic() - started > limit:
                raise RuntimeError(f"the access token was still accepted after {limit} s")
            await asyncio.sleep(1)


def text_of(res) -> object:
    for c in res.content:
        if getattr(c, "type", None) == "text":
            try:
                return json.loads(c.text)
            except ValueError:
                return c.text
    return None


async def main() -> None:
    person = Person()
    storage = Memory()
    metadata = OAuthClientMetadata(
        client_name=f"Python SDK interop ({opt.mode})",
        redirect_uris=[opt.redirect],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    provider = OAuthClientProvider(
        server_url=opt.server,
        client_metadata=metadata,
        storage=storage,
        redirect_handler=person.authorize,
        callback_handler=person.callback,
        client_metadata_url=opt.client_id if opt.mode == "cimd" else None,
    )
    http = httpx2.AsyncClient(
        auth=provider,
        timeout=httpx2.Timeout(30, read=300),
        event_hooks={"request": [on_request], "response": [on_response]},
    )
    async with http, Client(streamable_http_client(opt.server, http_client=http)) as client:
        result["steps"].append("connect")
        result["client_id"] = storage.client.client_id if storage.client else None
        result["steps"].append("tool")
        first = await client.call_tool(opt.tool, {})
        result["tool"] = {"is_error": bool(first.is_error), "value": text_of(first)}
        result["resource_metadata_challenge"] = last_challenge

        if opt.other_server:
            # A token minted for this resource, presented to another one (no token passthrough).
            result["steps"].append("other-server")
            async with httpx2.AsyncClient(timeout=30) as raw:
                res = await raw.post(
                    opt.other_server,
                    headers={
                        "authorization": f"Bearer {storage.tokens.access_token}",
                        "accept": "application/json, text/event-stream",
                    },
                    json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                )
                result["other_server"] = {"status": res.status_code, "www_authenticate": res.headers.get("www-authenticate")}

        if opt.refresh:
            result["steps"].append("refresh")
            old = storage.tokens
            result["refresh"] = r = {"expired": await wait_until_refused(old.access_token)}
            before = len(result["token_requests"])
            again = await client.call_tool(opt.tool, {})
            r["is_error"] = bool(again.is_error)
            r["value"] = text_of(again)
            r["grants"] = result["token_requests"][before:]
            r["new_access_token"] = storage.tokens.access_token != old.access_token
            r["rotated_refresh_token"] = storage.tokens.refresh_token != old.refresh_token

        if opt.step_up_tool:
            result["steps"].append("step-up")
            s = result["step_up"] = {"authorizations_before": len(result["authorizations"])}
            res = await client.call_tool(opt.step_up_tool, {})
            s["first_try"] = {"is_error": bool(res.is_error), "value": text_of(res), "challenge": last_challenge}
            s["sdk_reauthorized"] = len(result["authorizations"]) > s["authorizations_before"]
            s["authorization"] = result["authorizations"][-1]
            s["granted_scope"] = storage.tokens.scope if storage.tokens else None
    result["ok"] = True


try:
    asyncio.run(main())
except BaseException as e:  # noqa: BLE001 - the Rust test reads what failed from the JSON line
    result["error"] = "".join(traceback.format_exception(e))[-4000:]
print(json.dumps(result), flush=True)
