// Passkey ceremonies on Latchkey's own pages: the login page's "Sign in with a passkey", the
// account page's "Add a passkey", and the second-factor step's "Use a passkey" (or, where a
// passkey is required and the user has none, "Add a passkey and continue"). No framework. The server sends WebAuthn options as JSON with
// binary values in base64url; navigator.credentials wants ArrayBuffers, and the answer goes back
// as JSON in base64url again. Every request carries the page's CSRF token in a header.
//
// Progressive enhancement: the controls are hidden in the HTML and shown here only when the
// browser has WebAuthn; the password form never depends on this file.
(function () {
  'use strict';

  var supported = !!(window.PublicKeyCredential && navigator.credentials && navigator.credentials.create);

  function toBuffer(b64url) {
    var b64 = b64url.replace(/-/g, '+').replace(/_/g, '/');
    while (b64.length % 4) b64 += '=';
    var bin = atob(b64);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  function toBase64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var bin = '';
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function creationOptions(options) {
    var pk = options.publicKey;
    pk.challenge = toBuffer(pk.challenge);
    pk.user.id = toBuffer(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) { c.id = toBuffer(c.id); });
    return { publicKey: pk };
  }

  function requestOptions(options) {
    var pk = options.publicKey;
    pk.challenge = toBuffer(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = toBuffer(c.id); });
    return { publicKey: pk };
  }

  // The PublicKeyCredential as the server reads it (webauthn-rs's JSON shape).
  function credentialJson(cred) {
    var r = cred.response;
    var out = { id: cred.id, rawId: toBase64url(cred.rawId), type: cred.type, response: {}, extensions: {} };
    out.response.clientDataJSON = toBase64url(r.clientDataJSON);
    var ext = cred.getClientExtensionResults ? cred.getClientExtensionResults() : {};
    if (ext.credProps) out.extensions.credProps = ext.credProps;
    if (r.attestationObject) {
      out.response.attestationObject = toBase64url(r.attestationObject);
      if (r.getTransports) out.response.transports = r.getTransports();
    } else {
      out.response.authenticatorData = toBase64url(r.authenticatorData);
      out.response.signature = toBase64url(r.signature);
      out.response.userHandle = r.userHandle ? toBase64url(r.userHandle) : null;
    }
    return out;
  }

  function post(url, body, csrf) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify(body),
    }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (json) {
        if (!res.ok) throw new Error(json.error || 'The server refused the request (' + res.status + ').');
        return json;
      });
    });
  }

  function explain(err) {
    if (err && err.name === 'NotAllowedError') return 'The passkey request was cancelled, timed out, or your passkey could not verify you.';
    if (err && err.name === 'InvalidStateError') return 'This passkey is registered already.';
    if (err && err.name === 'SecurityError') return 'Passkeys cannot be used on this address.';
    return (err && err.message) || 'Something went wrong with the passkey.';
  }

  function show(el, message) {
    el.textContent = message;
    el.hidden = false;
  }

  function field(form, name) {
    var input = form.querySelector('input[name="' + name + '"]');
    return input ? input.value : '';
  }

  // The login page: a username-less sign-in for the request the page belongs to.
  function signIn(button) {
    var form = document.querySelector('form[action="/login"]');
    var error = document.getElementById('passkey-error');
    if (!form || !error) return;
    var req = field(form, 'req');
    var csrf = field(form, 'csrf');
    button.hidden = false;
    button.addEventListener('click', function () {
      button.disabled = true;
      error.hidden = true;
      post('/login/passkey/options', { req: req }, csrf)
        .then(function (start) {
          return navigator.credentials.get(requestOptions(start.options)).then(function (cred) {
            return post('/login/passkey', { req: req, ceremony: start.ceremony, credential: credentialJson(cred) }, csrf);
          });
        })
        .then(function (done) { window.location.assign(done.location); })
        .catch(function (err) {
          show(error, explain(err));
          button.disabled = false;
          button.focus();
        });
    });
  }

  // The account page: register a new passkey under the name typed in the form.
  function register(form) {
    var error = document.getElementById('passkey-error');
    var unsupported = document.getElementById('passkey-unsupported');
    if (!error) return;
    if (unsupported) unsupported.hidden = true;
    form.hidden = false;
    var csrf = field(form, 'csrf');
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      var button = form.querySelector('button');
      button.disabled = true;
      error.hidden = true;
      post('/account/passkeys/options', { name: field(form, 'name') }, csrf)
        .then(function (start) {
          return navigator.credentials.create(creationOptions(start.options)).then(function (cred) {
            return post('/account/passkeys', { ceremony: start.ceremony, credential: credentialJson(cred) }, csrf);
          });
        })
        .then(function (done) { window.location.assign(done.location); })
        .catch(function (err) {
          show(error, explain(err));
          button.disabled = false;
        });
    });
  }

  // The second-factor step after the password: one of this user's passkeys.
  function secondFactor(step, button) {
    var error = document.getElementById('passkey-error');
    var unsupported = document.getElementById('passkey-unsupported');
    if (!error) return;
    if (unsupported) unsupported.hidden = true;
    var req = step.getAttribute('data-req');
    var csrf = step.getAttribute('data-csrf');
    button.hidden = false;
    button.addEventListener('click', function () {
      button.disabled = true;
      error.hidden = true;
      post('/login/two-step/passkey/options', { req: req }, csrf)
        .then(function (start) {
          return navigator.credentials.get(requestOptions(start.options)).then(function (cred) {
            return post('/login/two-step/passkey', { req: req, ceremony: start.ceremony, credential: credentialJson(cred) }, csrf);
          });
        })
        .then(function (done) { window.location.assign(done.location); })
        .catch(function (err) {
          show(error, explain(err));
          button.disabled = false;
          button.focus();
        });
    });
  }

  // A first passkey while signing in, where one is required.
  function enrol(form) {
    var error = document.getElementById('passkey-error');
    var unsupported = document.getElementById('passkey-unsupported');
    if (!error) return;
    if (unsupported) unsupported.hidden = true;
    form.hidden = false;
    var req = form.getAttribute('data-req');
    var csrf = field(form, 'csrf');
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      var button = form.querySelector('button');
      button.disabled = true;
      error.hidden = true;
      post('/login/enrol/passkey/options', { req: req, name: field(form, 'name') }, csrf)
        .then(function (start) {
          return navigator.credentials.create(creationOptions(start.options)).then(function (cred) {
            return post('/login/enrol/passkey', { req: req, ceremony: start.ceremony, credential: credentialJson(cred) }, csrf);
          });
        })
        .then(function (done) { window.location.assign(done.location); })
        .catch(function (err) {
          show(error, explain(err));
          button.disabled = false;
        });
    });
  }

  function start() {
    if (!supported) return;
    var button = document.getElementById('passkey-sign-in');
    if (button) signIn(button);
    var form = document.getElementById('passkey-add');
    if (form) register(form);
    var step = document.getElementById('passkey-step');
    var stepButton = document.getElementById('passkey-second-factor');
    if (step && stepButton) secondFactor(step, stepButton);
    var enrolForm = document.getElementById('passkey-enrol');
    if (enrolForm) enrol(enrolForm);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
