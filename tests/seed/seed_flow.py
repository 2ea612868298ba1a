"""The seed's Authorization Code + PKCE flow, step by step, as its Python code writes it.

Run against a live Latchkey (`latchkey serve --dev`):

    python3 tests/seed/seed_flow.py http://127.0.0.1:8080

Steps 1-5 and 8-9 are the seed's own code with the server's endpoints in place of
oauth-provider.com; the browser part (login page, consent page) is done by a requests.Session
that fills in the HTML forms, as a person would. Then each of the seed's "Common Pitfalls" is
tried and the server's error is checked. Exits non-zero on the first surprise.
"""

import base64
import hashlib
import re
import secrets
import sys
import urllib.parse
from urllib.parse import urlparse, parse_qs

import requests

issuer = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
username = sys.argv[2] if len(sys.argv) > 2 else "demo"
password = sys.argv[3] if len(sys.argv) > 3 else "demo-password"

# Step 1: Register Your Application (`latchkey serve --dev` registered this one).
client_id = 'latchkey-demo'
redirect_uri = 'http://127.0.0.1:8765/callback'

# Step 2: Generate a Code Verifier and Code Challenge
code_verifier = secrets.token_urlsafe(32)
code_challenge = base64.urlsafe_b64encode(hashlib.sha256(code_verifier.encode('utf-8')).digest()).rstrip(b'=')
code_challenge = code_challenge.decode('utf-8')


def authorization_url(challenge, method='S256', state='seed-state'):
    # Step 3: Redirect the User to the Authorization Server
    return (
        issuer + '/authorize'
        '?response_type=code'
        '&client_id={}'
        '&redirect_uri={}'
        '&scope=openid%20profile%20email'
        '&code_challenge={}'
        '&code_challenge_method={}'
        '&state={}'
    ).format(client_id, urllib.parse.quote(redirect_uri, safe=''), challenge, method, state)


def hidden(html, name):
    m = re.search(r'name="%s" value="([^"]*)"' % name, html)
    assert m, "no %s field in page:\n%s" % (name, html)
    return m.group(1)


def log_in_and_consent(browser, url):
    """The user's part: sign in on the login page, allow on the consent page (if shown)."""
    page = browser.get(url, allow_redirects=False)
    if page.status_code == 302:
        # Already signed in, and consent was given before: straight back to the app.
        return page.headers['Location']
    if page.status_code == 200 and 'value="allow"' in page.text:
        # Already signed in; a native app (loopback redirect) is asked every time (RFC 8252 8.6).
        res = browser.post(issuer + '/consent', data={
            'req': hidden(page.text, 'req'), 'csrf': hidden(page.text, 'csrf'), 'decision': 'allow',
        }, allow_redirects=False)
        assert res.status_code == 303, (res.status_code, res.text)
        return res.headers['Location']
    assert page.status_code == 200 and 'name="password"' in page.text, page.text
    res = browser.post(issuer + '/login', data={
        'req': hidden(page.text, 'req'), 'csrf': hidden(page.text, 'csrf'),
        'username': username, 'password': password,
    }, allow_redirects=False)
    assert res.status_code == 303, (res.status_code, res.text)
    location = res.headers['Location']
    if location.startswith('/consent'):
        consent = browser.get(issuer + location, allow_redirects=False)
        assert consent.status_code == 200, consent.text
        res = browser.post(issuer + '/consent', data={
            'req': hidden(consent.text, 'req'), 'csrf': hidden(consent.text, 'csrf'), 'decision': 'allow',
        }, allow_redirects=False)
        location = res.headers['Location']
    # The redirect goes to the app's redirect_uri; nothing needs to listen there.
    return location


def fresh_code(browser, challenge):
    redirect_response = log_in_and_consent(browser, authorization_url(challenge))
    # Step 4: Handle the Authorization Response
    parsed_url = urlparse(redirect_response)
    query = parse_qs(parsed_url.query)
    assert query['state'] == ['seed-state'], query
    assert query['iss'] == [issuer], query
    return query['code'][0]


browser = requests.Session()
code = fresh_code(browser, code_challenge)

# Step 5: Exchange the Authorization Code for an Access Token
token_url = issuer + '/token'
token_data = {
    'grant_type': 'authorization_code',
    'code': code,
    'redirect_uri': redirect_uri,
    'client_id': client_id,
    'code_verifier': code_verifier
}
response = requests.post(token_url, data=token_data)
if response.status_code == 200:
    tokens = response.json()
    access_token = tokens['access_token']
    print('Access Token: %s...' % access_token[:16])
else:
    print('Error:', response.json())
    sys.exit(1)
assert tokens['token_type'] == 'Bearer' and tokens['refresh_token'] and tokens['id_token'], tokens

# Steps 8-9: API Request with Token -> Protected Resource (the userinfo endpoint)
me = requests.get(issuer + '/userinfo', headers={'Authorization': 'Bearer ' + access_token})
assert me.status_code == 200, me.text
print('Userinfo:', me.json())
assert me.json()['preferred_username'] == username

# Refresh: a new pair; the old refresh token is spent. A retry within the grace window (a lost
# response, a second tab) gets the very same successor instead of logging the user out.
refreshed = requests.post(token_url, data={'grant_type': 'refresh_token', 'refresh_token': tokens['refresh_token'],
                                           'client_id': client_id})
assert refreshed.status_code == 200, refreshed.text
assert refreshed.json()['refresh_token'] != tokens['refresh_token']
again = requests.post(token_url, data={'grant_type': 'refresh_token', 'refresh_token': tokens['refresh_token'],
                                       'client_id': client_id})
assert again.status_code == 200 and again.json() == refreshed.json(), again.text
print('Refresh: rotated; a retry of the old token got the same successor')


def expect(response, status, error, words):
    body = response.json()
    assert response.status_code == status, (response.status_code, body)
    assert body['error'] == error, body
    assert words in body['error_description'], body
    print('  refused as expected: %s: %s' % (body['error'], body['error_description']))


print('Common Pitfalls:')
# 1. Incorrect Code Challenge Method: the error comes back to the redirect URI.
res = browser.get(authorization_url(code_verifier, method='plain'), allow_redirects=False)
assert res.status_code == 302, res.status_code
err = parse_qs(urlparse(res.headers['Location']).query)
assert err['error'] == ['invalid_request'] and 'S256' in err['error_description'][0], err
assert err['state'] == ['seed-state'], err
print('  refused as expected: invalid_request: %s' % err['error_description'][0])

# 2. Mismatched Code Verifier
code = fresh_code(browser, code_challenge)
token_data = {'grant_type': 'authorization_code', 'code': code, 'redirect_uri': redirect_uri,
              'client_id': client_id, 'code_verifier': 'different-verifier' * 3}
expect(requests.post(token_url, data=token_data), 400, 'invalid_grant', 'code_verifier does not match')

# 3. Missing or Incorrect Parameters: no redirect_uri
token_data = {'grant_type': 'authorization_code', 'code': code, 'client_id': client_id,
              'code_verifier': code_verifier}
expect(requests.post(token_url, data=token_data), 400, 'invalid_grant', 'redirect_uri')

# 4. Exposing Secrets: a public client sending a client_secret
token_data = {'grant_type': 'authorization_code', 'code': code, 'redirect_uri': redirect_uri,
              'client_id': client_id, 'client_secret': 'your-client-secret', 'code_verifier': code_verifier}
expect(requests.post(token_url, data=token_data), 401, 'invalid_client', 'public clients hold no secret')

# The right request still works: none of the refusals burned the code.
token_data = {'grant_type': 'authorization_code', 'code': code, 'redirect_uri': redirect_uri,
              'client_id': client_id, 'code_verifier': code_verifier}
assert requests.post(token_url, data=token_data).status_code == 200
print("That's it. Simple, secure, works.")
