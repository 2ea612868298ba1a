"""Python authlib (OAuth2Session, PKCE S256) against a running Latchkey: the code flow and a refresh.

    python3 tests/interop/authlib_flow.py ISSUER CLIENT_ID REDIRECT_URI USERNAME PASSWORD

The browser part (login and consent forms) is played by a requests.Session.
"""
import re
import sys

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

issuer, client_id, redirect_uri, username, password = sys.argv[1:6]
meta = requests.get(issuer + '/.well-known/openid-configuration').json()

client = OAuth2Session(client_id, redirect_uri=redirect_uri, scope='openid profile email',
                       code_challenge_method='S256', token_endpoint_auth_method='none')
code_verifier = generate_token(48)
url, state = client.create_authorization_url(meta['authorization_endpoint'], code_verifier=code_verifier)


def hidden(html, name):
    return re.search(r'name="%s" value="([^"]*)"' % name, html).group(1)


browser = requests.Session()
page = browser.get(url, allow_redirects=False)
assert page.status_code == 200, page.text
res = browser.post(issuer + '/login', data={'req': hidden(page.text, 'req'), 'csrf': hidden(page.text, 'csrf'),
                                            'username': username, 'password': password}, allow_redirects=False)
location = res.headers['Location']
if location.startswith('/consent'):
    consent = browser.get(issuer + location, allow_redirects=False)
    res = browser.post(issuer + '/consent', data={'req': hidden(consent.text, 'req'),
                                                  'csrf': hidden(consent.text, 'csrf'), 'decision': 'allow'},
                       allow_redirects=False)
    location = res.headers['Location']

token = client.fetch_token(meta['token_endpoint'], authorization_response=location, code_verifier=code_verifier)
assert token['token_type'] == 'Bearer' and 'id_token' in token and 'refresh_token' in token, token
me = client.get(meta['userinfo_endpoint']).json()
assert me['preferred_username'] == username, me
print('authlib: flow ok')

new = client.refresh_token(meta['token_endpoint'], refresh_token=token['refresh_token'])
assert new['access_token'] != token['access_token'] and new['refresh_token'] != token['refresh_token'], new
print('authlib: refresh ok')
