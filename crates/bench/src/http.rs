//! A minimal HTTP/1.1 client: one keep-alive connection per worker, so that "C connections" means
//! exactly C sockets, each carrying one request at a time (a closed loop).
//!
//! A general client (reqwest) pools connections behind the caller's back and costs more CPU per
//! request; on a 2-core machine the load generator shares the cores with the server, so its cost
//! shows up in every figure.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;
use url::Url;

use crate::OpError;

/// Where requests go: one `http://host:port` origin.
#[derive(Debug, Clone)]
pub struct Origin {
    addr: SocketAddr,
    /// `host:port` as the issuer spells it, sent as the Host header.
    authority: HeaderValue,
    /// `http://host:port`, to tell our own absolute URLs from the client's redirect URI.
    base: String,
}

impl Origin {
    /// The origin of `url`. Only `http` is supported: the benchmark targets servers on this
    /// machine, and TLS would measure the TLS stack rather than the provider. A non-loopback
    /// address is refused unless `allow_non_loopback` is set: a load generator must not be pointed
    /// at someone else's server by mistake.
    pub fn of(url: &Url, allow_non_loopback: bool) -> anyhow::Result<Self> {
        if url.scheme() != "http" {
            anyhow::bail!("{url}: only http:// issuers are supported (benchmark over loopback, without TLS)");
        }
        let host = url.host_str().ok_or_else(|| anyhow::anyhow!("{url}: no host"))?;
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
        let addr = match addrs.as_slice() {
            [] => anyhow::bail!("{url}: the host name resolves to no address"),
            [one] => *one,
            // A name with several addresses (`localhost`: 127.0.0.1 and ::1), of which the server
            // may listen on one only: the first that accepts a connection, as a browser picks.
            many => many
                .iter()
                .copied()
                .find(|a| std::net::TcpStream::connect_timeout(a, std::time::Duration::from_secs(1)).is_ok())
                .unwrap_or(many[0]),
        };
        if !addr.ip().is_loopback() && !allow_non_loopback {
            anyhow::bail!(
                "{url} resolves to {}, which is not a loopback address; pass --allow-non-loopback to load another machine",
                addr.ip()
            );
        }
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        Ok(Self { addr, authority: HeaderValue::from_str(&authority)?, base: format!("http://{authority}") })
    }

    /// The server is reached over IPv4 (whose loopback has 2^24 addresses to connect from).
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// The path and query of `url` when it is on this origin.
    pub fn path_of(&self, url: &str) -> Option<String> {
        let rest = url.strip_prefix(&self.base)?;
        match rest.chars().next() {
            None => Some("/".into()),
            Some('/') | Some('?') => Some(if rest.starts_with('?') { format!("/{rest}") } else { rest.to_owned() }),
            Some(_) => None,
        }
    }
}

/// One request, built without the cost of a general-purpose builder.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl Req {
    pub fn get(path: impl Into<String>) -> Self {
        Self { method: Method::GET, path: path.into(), headers: Vec::new(), body: Bytes::new() }
    }

    /// A POST with an `application/x-www-form-urlencoded` body.
    pub fn form(path: impl Into<String>, fields: &[(&str, &str)]) -> Self {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in fields {
            s.append_pair(k, v);
        }
        Self {
            method: Method::POST,
            path: path.into(),
            headers: vec![(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"))],
            body: Bytes::from(s.finish()),
        }
    }

    /// A POST with a JSON body.
    pub fn json(path: impl Into<String>, body: &serde_json::Value) -> Self {
        Self {
            method: Method::POST,
            path: path.into(),
            headers: vec![(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body: Bytes::from(body.to_string()),
        }
    }

    pub fn header(mut self, name: header::HeaderName, value: &str) -> Result<Self, OpError> {
        let v = HeaderValue::from_str(value).map_err(|_| OpError::Protocol("a header value is not valid HTTP"))?;
        self.headers.push((name, v));
        Ok(self)
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn location(&self) -> Option<&str> {
        self.headers.get(header::LOCATION).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Result<serde_json::Value, OpError> {
        serde_json::from_slice(&self.body).map_err(|_| OpError::Protocol("the response body is not JSON"))
    }

    /// The status is `want`, or an error that says what came instead. The body of an error
    /// response (an OAuth error object, an error page) is kept, shortened: it never holds a token.
    pub fn expect(self, want: StatusCode) -> Result<Self, OpError> {
        if self.status == want {
            return Ok(self);
        }
        let snippet: String = String::from_utf8_lossy(&self.body).chars().take(200).collect();
        Err(OpError::Status { want: want.as_u16(), got: self.status.as_u16(), body: snippet })
    }

    pub fn is_redirect(&self) -> bool {
        matches!(self.status.as_u16(), 301 | 302 | 303 | 307 | 308)
    }
}

/// One keep-alive connection. Reconnects when the server has closed it.
pub struct Conn {
    origin: Arc<Origin>,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// Connections opened, including reconnections: more than one per worker means the server
    /// closed keep-alive connections (or an operation moved to another source address), which the
    /// report should not hide.
    pub connects: usize,
    /// The local address to connect from, when an operation chose one ([`Conn::bind_source`]).
    source: Option<IpAddr>,
    /// Requests sent from `source` since it was chosen.
    sent_from_source: usize,
}

impl Conn {
    pub fn new(origin: Arc<Origin>) -> Self {
        Self { origin, sender: None, connects: 0, source: None, sent_from_source: 0 }
    }

    pub fn origin(&self) -> Arc<Origin> {
        self.origin.clone()
    }

    /// Connects from `source` from now on (a fresh connection, on the next request). On loopback
    /// every address of 127.0.0.0/8 is the machine's own, so requests can come from many
    /// "networks" as a server in production sees them.
    pub fn bind_source(&mut self, source: IpAddr) {
        if self.source != Some(source) {
            self.source = Some(source);
            self.sender = None;
        }
        self.sent_from_source = 0;
    }

    /// The source chosen with [`Conn::bind_source`] and the requests sent from it since.
    pub fn source(&self) -> Option<(IpAddr, usize)> {
        self.source.map(|s| (s, self.sent_from_source))
    }

    pub async fn connect(&mut self) -> Result<(), OpError> {
        let stream = match self.source {
            None => tokio::net::TcpStream::connect(self.origin.addr).await.map_err(OpError::Connect)?,
            Some(local) => {
                let socket = if local.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() };
                let socket = socket.map_err(OpError::Connect)?;
                socket.bind(SocketAddr::new(local, 0)).map_err(OpError::Connect)?;
                socket.connect(self.origin.addr).await.map_err(OpError::Connect)?
            }
        };
        stream.set_nodelay(true).map_err(OpError::Connect)?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(OpError::Http)?;
        // The connection task ends when the sender is dropped or the server closes the socket.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.sender = Some(sender);
        self.connects += 1;
        Ok(())
    }

    pub async fn send(&mut self, req: Req) -> Result<Resp, OpError> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.connect().await?;
        }
        let Some(sender) = self.sender.as_mut() else { return Err(OpError::Protocol("no connection")) };
        self.sent_from_source += 1;
        let mut builder = Request::builder().method(req.method).uri(req.path);
        if let Some(h) = builder.headers_mut() {
            h.insert(header::HOST, self.origin.authority.clone());
            for (k, v) in req.headers {
                h.append(k, v);
            }
        }
        let request = builder.body(Full::new(req.body)).map_err(|_| OpError::Protocol("cannot build the request"))?;
        let result = async {
            sender.ready().await?;
            let res = sender.send_request(request).await?;
            let (parts, body) = res.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, hyper::Error>(Resp { status: parts.status, headers: parts.headers, body })
        }
        .await;
        match result {
            Ok(r) => {
                if r.headers.get(header::CONNECTION).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close")) {
                    self.sender = None;
                }
                Ok(r)
            }
            Err(e) => {
                // The next request starts on a fresh connection.
                self.sender = None;
                Err(OpError::Http(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_on_the_origin() {
        let o = Origin::of(&Url::parse("http://127.0.0.1:8080").unwrap(), false).unwrap();
        assert_eq!(o.path_of("http://127.0.0.1:8080/token").as_deref(), Some("/token"));
        assert_eq!(o.path_of("http://127.0.0.1:8080").as_deref(), Some("/"));
        assert_eq!(o.path_of("http://127.0.0.1:80801/token"), None);
        assert_eq!(o.path_of("http://127.0.0.1:8765/callback"), None);
    }

    #[test]
    fn only_loopback_http_by_default() {
        assert!(Origin::of(&Url::parse("https://127.0.0.1:8443").unwrap(), false).is_err());
        assert!(Origin::of(&Url::parse("http://192.0.2.1:8080").unwrap(), false).is_err());
        assert!(Origin::of(&Url::parse("http://localhost:8080").unwrap(), false).is_ok());
    }
}
