//! axum and tower integration: a layer that guards routes, and the [`Claims`] extractor.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::FromRequestParts;
use axum::http::Request;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use latchkey_proto::Scope;
use tower::{Layer, Service};

use crate::{Claims, Refusal, Verifier};

/// Guards the routes it wraps: only requests with a valid token that has the required scope pass,
/// with the [`Claims`] (and the [`Verifier`]) in their extensions. Use it with `route_layer` for
/// per-route scopes: `.route("/x", get(h).route_layer(verifier.require("api:write")))`.
#[derive(Clone)]
pub struct RequireTokenLayer {
    verifier: Verifier,
    scope: Arc<Scope>,
}

impl RequireTokenLayer {
    pub(crate) fn new(verifier: Verifier, scope: Scope) -> Self {
        Self { verifier, scope: Arc::new(scope) }
    }
}

impl<S> Layer<S> for RequireTokenLayer {
    type Service = RequireToken<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequireToken { inner, verifier: self.verifier.clone(), scope: self.scope.clone() }
    }
}

/// The service made by [`RequireTokenLayer`].
#[derive(Clone)]
pub struct RequireToken<S> {
    inner: S,
    verifier: Verifier,
    scope: Arc<Scope>,
}

impl<S, B> Service<Request<B>> for RequireToken<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The clone that was made ready is the one that serves this request (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let scope = self.scope.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let checked = match verifier.verify_request(&parts.method, &parts.uri, &parts.headers).await {
                Ok(claims) => claims.require_scope(&scope).map(|()| claims),
                Err(r) => Err(r),
            };
            match checked {
                Ok(claims) => {
                    let dpop = claims.dpop_jkt.is_some();
                    parts.extensions.insert(claims);
                    parts.extensions.insert(verifier.clone());
                    let mut res = inner.call(Request::from_parts(parts, body)).await?;
                    if dpop {
                        verifier.add_dpop_nonce(res.headers_mut());
                    }
                    Ok(res)
                }
                Err(refusal) => Ok(verifier.refuse_request(&refusal, &scope, &parts.headers)),
            }
        })
    }
}

/// The caller's validated claims. Behind [`RequireTokenLayer`] it takes them from the request;
/// elsewhere it verifies the token itself with a [`Verifier`] found in the request extensions
/// (`.layer(axum::Extension(verifier))`). A refusal answers per RFC 6750 §3.
impl<S: Send + Sync> FromRequestParts<S> for Claims {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(claims) = parts.extensions.get::<Claims>() {
            return Ok(claims.clone());
        }
        let Some(verifier) = parts.extensions.get::<Verifier>().cloned() else {
            return Err(Refusal::Misconfigured(
                "the Claims extractor needs verifier.layer()/require() or an Extension(verifier) on the router",
            )
            .into_response());
        };
        let claims = verifier
            .verify_request(&parts.method, &parts.uri, &parts.headers)
            .await
            .map_err(|r| verifier.refuse_request(&r, &Scope::default(), &parts.headers))?;
        // Kept for a second extraction in the same request: verifying again would find the DPoP
        // proof's jti used (by this very request) and refuse it.
        parts.extensions.insert(claims.clone());
        Ok(claims)
    }
}
