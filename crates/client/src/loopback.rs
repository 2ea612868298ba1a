//! The loopback redirect listener of a native app (RFC 8252 §7.3): an HTTP server on 127.0.0.1 (or
//! [::1]) on an ephemeral port, which receives the one authorization response and answers the
//! browser with a small page.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use latchkey_proto::{AuthorizationCode, RedirectUri};
use tokio::sync::{mpsc, oneshot};
use url::Url;

use crate::{Callback, Error};

/// A bound listener, ready to receive the redirect. Bind it before building the authorization
/// request: its port is part of the redirect URI.
pub struct LoopbackListener {
    listener: tokio::net::TcpListener,
    redirect_uri: RedirectUri,
    path: String,
}

impl std::fmt::Debug for LoopbackListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopbackListener").field("redirect_uri", &self.redirect_uri).finish()
    }
}

type Hit = (String, oneshot::Sender<Result<(), String>>);

#[derive(Clone)]
struct Shared {
    path: String,
    hits: mpsc::Sender<Hit>,
}

impl LoopbackListener {
    /// Binds the listener. `requested` is a loopback redirect URI such as
    /// `http://127.0.0.1/callback` (no port: an ephemeral one is chosen, which a provider that
    /// implements RFC 8252 §7.3 accepts for that registration) or `http://127.0.0.1:8765/callback`
    /// (that port). `None` means `http://127.0.0.1:{ephemeral}/callback`.
    ///
    /// `localhost` is refused: RFC 8252 §8.3 recommends the IP literal, since the name may resolve
    /// to another interface or be taken by another program on the other address family.
    pub async fn bind(requested: Option<&str>) -> Result<Self, Error> {
        let (ip, port, path) = match requested {
            None => (IpAddr::V4(Ipv4Addr::LOCALHOST), 0, "/callback".to_owned()),
            Some(s) => parse_loopback(s)?,
        };
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, port))
            .await
            .map_err(|source| Error::Listen { addr: SocketAddr::new(ip, port).to_string(), source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| Error::Listen { addr: SocketAddr::new(ip, port).to_string(), source })?;
        let uri = format!("http://{addr}{path}");
        let redirect_uri = RedirectUri::parse(&uri).map_err(|_| Error::NotLoopback(uri.clone()))?;
        Ok(Self { listener, redirect_uri, path })
    }

    pub fn redirect_uri(&self) -> &RedirectUri {
        &self.redirect_uri
    }

    /// Waits at most `timeout` for the authorization response, checks it with `check` (normally
    /// [`crate::Client::check_callback`]), tells the browser the outcome, and stops listening.
    /// Other paths (a favicon) get a 404.
    ///
    /// A request to the redirect path that fails the `state` check ([`Error::StateMismatch`]), or
    /// is too malformed to be checked, is answered with 400 and otherwise ignored: any local
    /// process or web page can send one, and it must not abort the login in progress (RFC 6749
    /// §10.12). The first request that passes the `state` check decides.
    pub async fn receive<F>(self, timeout: Duration, check: F) -> Result<AuthorizationCode, Error>
    where
        F: Fn(&Callback) -> Result<AuthorizationCode, Error>,
    {
        self.receive_or_pasted(timeout, None, check).await
    }

    /// [`LoopbackListener::receive`], also accepting the redirect URL pasted by the user (each
    /// item of `pasted` is a line of input). For a browser on another machine: its redirect to
    /// 127.0.0.1 fails there, and the user copies the address bar instead.
    pub async fn receive_or_pasted<F>(
        self,
        timeout: Duration,
        mut pasted: Option<mpsc::Receiver<String>>,
        check: F,
    ) -> Result<AuthorizationCode, Error>
    where
        F: Fn(&Callback) -> Result<AuthorizationCode, Error>,
    {
        let (tx, mut rx) = mpsc::channel::<Hit>(1);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let app = Router::new().fallback(handle).with_state(Shared { path: self.path.clone(), hits: tx });
        let server = tokio::spawn(async move {
            let _ = axum::serve(self.listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await;
        });
        let redirect_uri = self.redirect_uri.to_string();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let outcome = loop {
            let next_paste = async {
                match pasted.as_mut() {
                    Some(p) => p.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                hit = rx.recv() => match hit {
                    Some((query, answer)) => {
                        let result = Callback::from_query(&query).and_then(|cb| check(&cb));
                        let _ = answer.send(result.as_ref().map(|_| ()).map_err(ToString::to_string));
                        if !is_forgeable(&result) {
                            break result;
                        }
                        tracing::warn!("ignored a request to the redirect URI that is not the response to this login; still waiting");
                    }
                    None => break Err(Error::Listen {
                        addr: redirect_uri.clone(),
                        source: std::io::Error::other("the listener stopped"),
                    }),
                },
                line = next_paste => match line {
                    // Input closed: keep waiting for the browser.
                    None => pasted = None,
                    Some(line) if line.trim().is_empty() => {}
                    Some(line) => break pasted_callback(line.trim(), &redirect_uri).and_then(|cb| check(&cb)),
                },
                () = &mut deadline => break Err(Error::Timeout { redirect_uri: redirect_uri.clone(), waited: timeout }),
            }
        };
        let _ = stop_tx.send(());
        // Let the page reach the browser; a browser holding the connection open cannot delay us long.
        let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        outcome
    }
}

/// Whether a hit on the redirect path failed in a way that anyone who does not know the `state`
/// can cause: a wrong or missing `state`, or a query that cannot be parsed. Such a hit cannot be
/// the authorization server's response to this login, so it is refused and the wait goes on.
fn is_forgeable(result: &Result<AuthorizationCode, Error>) -> bool {
    matches!(result, Err(Error::StateMismatch | Error::BadCallback(_)))
}

/// A pasted redirect URL must be our redirect URI plus a query: anything else is a mistake.
fn pasted_callback(line: &str, redirect_uri: &str) -> Result<Callback, Error> {
    match line.strip_prefix(redirect_uri) {
        Some(rest) if rest.starts_with('?') => Callback::from_url(line),
        _ => Err(Error::BadCallback(format!(
            "the pasted text is not the address the browser was sent to (it starts with {redirect_uri}?)"
        ))),
    }
}

fn parse_loopback(s: &str) -> Result<(IpAddr, u16, String), Error> {
    let not = || Error::NotLoopback(s.to_owned());
    let url = Url::parse(s).map_err(|_| not())?;
    if url.scheme() != "http" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(not());
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) if ip.is_loopback() => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) if ip.is_loopback() => IpAddr::V6(ip),
        _ => return Err(not()),
    };
    Ok((ip, url.port().unwrap_or(0), url.path().to_owned()))
}

async fn handle(State(shared): State<Shared>, uri: Uri) -> Response {
    if uri.path() != shared.path {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    let (tx, rx) = oneshot::channel();
    if shared.hits.send((uri.query().unwrap_or("").to_owned(), tx)).await.is_err() {
        return page(StatusCode::GONE, "This sign-in is over", "Return to your terminal.");
    }
    match rx.await {
        Ok(Ok(())) => page(StatusCode::OK, "Signed in", "You can close this tab and return to your terminal."),
        Ok(Err(reason)) => {
            page(StatusCode::BAD_REQUEST, "Sign-in failed", &format!("{reason}. Return to your terminal."))
        }
        Err(_) => page(StatusCode::INTERNAL_SERVER_ERROR, "Sign-in failed", "Return to your terminal."),
    }
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body style=\"font-family:sans-serif;max-width:32em;margin:4em auto\"><h1>{t}</h1><p>{x}</p></body></html>",
        t = html_escape::encode_text(title),
        x = html_escape::encode_text(text),
    );
    let mut res = (status, Html(body)).into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The address bar holds the code: no Referer to anything, no script, no framing.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    );
    res
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_loopback_ip_literals() {
        assert_eq!(parse_loopback("http://127.0.0.1/callback").unwrap().1, 0);
        assert_eq!(parse_loopback("http://127.0.0.1:8765/cb").unwrap().1, 8765);
        assert!(parse_loopback("http://[::1]:1/cb").unwrap().0.is_loopback());
        for bad in [
            "http://localhost/callback",
            "https://127.0.0.1/callback",
            "http://10.0.0.1/callback",
            "http://127.0.0.1/callback?x=1",
            "com.example.app:/cb",
        ] {
            assert!(matches!(parse_loopback(bad), Err(Error::NotLoopback(_))), "{bad}");
        }
    }

    #[tokio::test]
    async fn receives_one_redirect_and_answers_the_browser() {
        let l = LoopbackListener::bind(None).await.unwrap();
        let uri = l.redirect_uri().to_string();
        assert!(uri.starts_with("http://127.0.0.1:") && uri.ends_with("/callback"), "{uri}");
        assert!(!uri.contains(":0/"), "an ephemeral port was chosen: {uri}");
        let browser = tokio::spawn({
            let uri = uri.clone();
            async move {
                let http = reqwest::Client::new();
                let fav = http.get(uri.replace("/callback", "/favicon.ico")).send().await.unwrap();
                assert_eq!(fav.status(), 404);
                let res = http.get(format!("{uri}?code=abc&state=s")).send().await.unwrap();
                (res.status().as_u16(), res.headers().clone(), res.text().await.unwrap())
            }
        });
        let code = l
            .receive(Duration::from_secs(10), |cb| {
                assert_eq!(cb.get("state"), Some("s"));
                Ok(AuthorizationCode::new(cb.get("code").unwrap()))
            })
            .await
            .unwrap();
        assert_eq!(code.expose_secret(), "abc");
        let (status, headers, body) = browser.await.unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("You can close this tab"), "{body}");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert_eq!(headers["cache-control"], "no-store");
    }

    #[tokio::test]
    async fn a_failed_check_is_shown_to_the_browser_and_returned() {
        let l = LoopbackListener::bind(Some("http://127.0.0.1/done")).await.unwrap();
        let uri = l.redirect_uri().to_string();
        let browser = tokio::spawn(async move {
            let res = reqwest::get(format!("{uri}?error=access_denied&state=s&iss=<evil>")).await.unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        });
        let mismatch = || Error::IssMismatch { expected: "https://id.example".into(), found: "evil".into() };
        let err = l.receive(Duration::from_secs(10), |_| Err(mismatch())).await.unwrap_err();
        assert!(matches!(err, Error::IssMismatch { .. }));
        let (status, body) = browser.await.unwrap();
        assert_eq!(status, 400);
        assert!(body.contains("mix-up") && !body.contains("<evil>"), "{body}");
    }

    /// Review finding 19f: a local process (or any web page, through the browser) that hits the
    /// callback first with a wrong `state` must not abort the login: it gets 400, and the real
    /// response that follows still completes it.
    #[tokio::test]
    async fn a_forged_hit_with_a_wrong_state_is_refused_and_the_real_response_still_wins() {
        let l = LoopbackListener::bind(None).await.unwrap();
        let uri = l.redirect_uri().to_string();
        let forger = tokio::spawn({
            let uri = uri.clone();
            async move {
                let mut statuses = Vec::new();
                for q in ["code=forged&state=guess", "code=forged", "code=a&code=b&state=s", ""] {
                    statuses.push(reqwest::get(format!("{uri}?{q}")).await.unwrap().status().as_u16());
                }
                let real = reqwest::get(format!("{uri}?code=real&state=s")).await.unwrap();
                (statuses, real.status().as_u16())
            }
        });
        let code = l
            .receive(Duration::from_secs(10), |cb| match cb.get("state") {
                Some("s") => Ok(AuthorizationCode::new(cb.get("code").unwrap())),
                _ => Err(Error::StateMismatch),
            })
            .await
            .unwrap();
        assert_eq!(code.expose_secret(), "real");
        let (forged, real) = forger.await.unwrap();
        assert_eq!(forged, vec![400, 400, 400, 400], "each forged hit is refused");
        assert_eq!(real, 200);
    }

    #[tokio::test]
    async fn forged_hits_alone_end_in_the_timeout() {
        let l = LoopbackListener::bind(None).await.unwrap();
        let uri = l.redirect_uri().to_string();
        let forger =
            tokio::spawn(async move { reqwest::get(format!("{uri}?code=x&state=bad")).await.unwrap().status() });
        let err = l.receive(Duration::from_millis(500), |_| Err(Error::StateMismatch)).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert_eq!(forger.await.unwrap().as_u16(), 400);
    }

    #[tokio::test]
    async fn a_pasted_redirect_url_is_accepted() {
        let l = LoopbackListener::bind(None).await.unwrap();
        let uri = l.redirect_uri().to_string();
        let (tx, rx) = mpsc::channel(4);
        tx.send("   ".into()).await.unwrap();
        tx.send(format!("{uri}?code=pasted&state=s\n")).await.unwrap();
        let code = l
            .receive_or_pasted(Duration::from_secs(10), Some(rx), |cb| {
                Ok(AuthorizationCode::new(cb.get("code").unwrap()))
            })
            .await
            .unwrap();
        assert_eq!(code.expose_secret(), "pasted");
        let l = LoopbackListener::bind(None).await.unwrap();
        let (tx, rx) = mpsc::channel(4);
        tx.send("https://evil.example/callback?code=x&state=s".into()).await.unwrap();
        let e = l.receive_or_pasted(Duration::from_secs(10), Some(rx), |_| Err(Error::CodeMissing)).await.unwrap_err();
        assert!(matches!(e, Error::BadCallback(_)), "{e}");
        // Closed input: the listener keeps waiting, here until the timeout.
        let l = LoopbackListener::bind(None).await.unwrap();
        let (tx, rx) = mpsc::channel::<String>(1);
        drop(tx);
        let e =
            l.receive_or_pasted(Duration::from_millis(200), Some(rx), |_| Err(Error::CodeMissing)).await.unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{e}");
    }

    #[tokio::test]
    async fn gives_up_after_the_timeout() {
        let l = LoopbackListener::bind(None).await.unwrap();
        let err = l.receive(Duration::from_millis(200), |_| Err(Error::CodeMissing)).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }));
        assert!(err.to_string().contains("no authorization response arrived"), "{err}");
    }
}
