//! Route declarations. Each route states its method, path, auth scope and body beside its
//! filter ([`declare`]); the matcher, the auth gate, the browser checks and the metrics label
//! all read that one declaration, so no other code repeats a path and the scope a request is
//! checked against is always the scope of the route that serves it.

use super::browser::{self, RequestFacts};
use super::errors::{self, ApiError};
use super::ui::logins::CSRF_HEADER;
use super::{auth, AppState};
use std::future::Future;
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::path::FullPath;
use warp::reject::Reject;
use warp::reply::Response;
use warp::{Filter, Rejection};

/// What a request needs to be let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Anyone (`/health`), or a route that authenticates itself (signed webhooks).
    Public,
    Read,
    Write,
    Admin,
}

/// What a route reads from the request body; decides the Content-Type check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// Nothing. A Content-Type, when sent, must still be JSON: a form or `text/plain` post
    /// is a browser's cross-site request, not a client of this API.
    None,
    /// A JSON document: `Content-Type: application/json` is required (415 otherwise).
    Json,
    /// The route reads and verifies its own body (GitHub deliveries, JSON or form-encoded,
    /// authenticated by their signature).
    Own,
}

/// The method a route answers; GET routes answer HEAD too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Patch,
    Delete,
}

/// One route of the API.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    pub verb: Verb,
    /// The path, with `:name` for a parameter; also the route's metrics label.
    pub path: &'static str,
    pub scope: Scope,
    pub body: Body,
}

impl Route {
    const fn new(verb: Verb, path: &'static str, scope: Scope, body: Body) -> Self {
        Self {
            verb,
            path,
            scope,
            body,
        }
    }

    pub const fn get(path: &'static str, scope: Scope) -> Self {
        Self::new(Verb::Get, path, scope, Body::None)
    }

    pub const fn post(path: &'static str, scope: Scope) -> Self {
        Self::new(Verb::Post, path, scope, Body::None)
    }

    pub const fn patch(path: &'static str, scope: Scope) -> Self {
        Self::new(Verb::Patch, path, scope, Body::None)
    }

    pub const fn delete(path: &'static str, scope: Scope) -> Self {
        Self::new(Verb::Delete, path, scope, Body::None)
    }

    /// The route reads a JSON body.
    pub const fn json(self) -> Self {
        Self::new(self.verb, self.path, self.scope, Body::Json)
    }

    /// The route reads and authenticates its own body.
    pub const fn own_body(self) -> Self {
        Self::new(self.verb, self.path, self.scope, Body::Own)
    }

    fn accepts(&self, method: &Method) -> bool {
        match self.verb {
            Verb::Get => method == Method::GET || method == Method::HEAD,
            Verb::Post => method == Method::POST,
            Verb::Patch => method == Method::PATCH,
            Verb::Delete => method == Method::DELETE,
        }
    }

    /// The parameters when `path` is this route's path: segment by segment, case-sensitive,
    /// one trailing `/` tolerated, no empty segment anywhere else.
    pub fn params(&self, path: &str) -> Option<Vec<String>> {
        // The dashboard's `/` has no segment to compare.
        if self.path == "/" {
            return (path == "/").then(Vec::new);
        }
        let path = match path.strip_suffix('/') {
            Some(trimmed) if !trimmed.is_empty() => trimmed,
            _ => path,
        };
        let mut given = path.strip_prefix('/')?.split('/');
        let mut params = Vec::new();
        for expected in self.path.trim_start_matches('/').split('/') {
            let segment = given.next()?;
            if segment.is_empty() {
                return None;
            }
            if expected.starts_with(':') {
                params.push(segment.to_owned());
            } else if segment != expected {
                return None;
            }
        }
        given.next().is_none().then_some(params)
    }
}

/// The route's label, carried on its response for the request metrics.
#[derive(Clone, Copy, Debug)]
pub struct RouteLabel(pub &'static str);

/// A known path asked with a method it does not answer (405 unless another route takes it).
#[derive(Debug)]
pub struct WrongMethod;

impl Reject for WrongMethod {}

impl Reject for ApiError {}

/// Passes requests for `route`'s path and method, extracting its parameters.
fn matched(route: Route) -> impl Filter<Extract = (Vec<String>,), Error = Rejection> + Clone {
    warp::method().and(warp::path::full()).and_then(
        move |method: Method, path: FullPath| async move {
            let params = route
                .params(path.as_str())
                .ok_or_else(warp::reject::not_found)?;
            if route.accepts(&method) {
                Ok(params)
            } else {
                Err(warp::reject::custom(WrongMethod))
            }
        },
    )
}

/// The checks every request passes before its route runs, in order: browser (Origin, Host),
/// token scope, then Content-Type against what the route reads.
fn admit(
    state: &AppState,
    scope: Scope,
    body: Option<Body>,
    facts: &RequestFacts,
) -> Result<(), ApiError> {
    state.browser.check(scope, state.tokens.any(), facts)?;
    // Dashboard (issue 17): without an Authorization header, a login cookie stands in for the
    // token (its scope; its CSRF token on writes). Bearer clients never reach the cookie.
    let authorization = facts.header("authorization");
    let (cookie, csrf) = (facts.header("cookie"), facts.header(CSRF_HEADER));
    let cookie = super::ui::logins::CookieFacts {
        method: &facts.method,
        authorization: authorization.is_some(),
        cookie: cookie.as_deref(),
        csrf: csrf.as_deref(),
    };
    match state.logins.admit(&state.tokens, scope, &cookie) {
        Some(verdict) => verdict?,
        None => auth::check(&state.tokens, scope, authorization.as_deref())?,
    }
    match body {
        Some(body) => browser::check_content_type(body, facts),
        None => Ok(()),
    }
}

fn admitted(state: AppState, route: Route) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    browser::facts()
        .and_then(move |facts: RequestFacts| {
            let result = admit(&state, route.scope, Some(route.body), &facts);
            async move { result.map_err(warp::reject::custom) }
        })
        .untuple_one()
}

/// Passes only `route`'s requests, once admitted, extracting its path parameters.
fn gate(
    state: &AppState,
    route: Route,
) -> impl Filter<Extract = (Vec<String>,), Error = Rejection> + Clone {
    matched(route).and(admitted(state.clone(), route))
}

/// The one parameter of a route like `/api/sessions/:id`.
fn only_param(params: Vec<String>) -> String {
    params.into_iter().next().unwrap_or_default()
}

/// Declares a route without path parameters: `build` gets a filter that passes only this
/// route's requests, once admitted, and adds the handler.
pub fn declare<F>(
    state: &AppState,
    route: Route,
    build: impl FnOnce(BoxedFilter<()>) -> F,
) -> BoxedFilter<(Response,)>
where
    F: Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static,
{
    let at = gate(state, route)
        .map(|_: Vec<String>| ())
        .untuple_one()
        .boxed();
    finish(route, build(at))
}

/// [`declare`] for a route with one path parameter (`/api/sessions/:id`), which `build`'s
/// filter extracts.
pub fn declare_with_id<F>(
    state: &AppState,
    route: Route,
    build: impl FnOnce(BoxedFilter<(String,)>) -> F,
) -> BoxedFilter<(Response,)>
where
    F: Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static,
{
    finish(route, build(gate(state, route).map(only_param).boxed()))
}

/// The routes of one part of the API, tried in the order they are added. Each route is
/// declared where it is added, and its filter hands the handler the shared state.
pub struct Routes<'a> {
    state: &'a AppState,
    all: Option<BoxedFilter<(Response,)>>,
}

impl<'a> Routes<'a> {
    pub fn new(state: &'a AppState) -> Self {
        Self { state, all: None }
    }

    /// Adds a route without path parameters ([`declare`]); `build`'s filter extracts the state.
    pub fn at<F>(self, route: Route, build: impl FnOnce(BoxedFilter<(AppState,)>) -> F) -> Self
    where
        F: Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static,
    {
        let state = self.state.clone();
        let at = gate(self.state, route)
            .map(move |_: Vec<String>| state.clone())
            .boxed();
        self.or(finish(route, build(at)))
    }

    /// Adds a route with one path parameter ([`declare_with_id`]); `build`'s filter extracts
    /// the parameter and the state.
    pub fn at_id<F>(
        self,
        route: Route,
        build: impl FnOnce(BoxedFilter<(String, AppState)>) -> F,
    ) -> Self
    where
        F: Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static,
    {
        let state = self.state.clone();
        let at = gate(self.state, route)
            .map(move |params| (only_param(params), state.clone()))
            .untuple_one()
            .boxed();
        self.or(finish(route, build(at)))
    }

    /// Adds a route whose handler needs nothing but the state.
    pub fn handle<H, R>(self, route: Route, handler: H) -> Self
    where
        H: Fn(AppState) -> R + Clone + Send + Sync + 'static,
        R: Future<Output = Response> + Send,
    {
        self.at(route, |at| at.then(handler))
    }

    /// Adds a route whose handler needs nothing but its path parameter and the state.
    pub fn handle_id<H, R>(self, route: Route, handler: H) -> Self
    where
        H: Fn(String, AppState) -> R + Clone + Send + Sync + 'static,
        R: Future<Output = Response> + Send,
    {
        self.at_id(route, |at| at.then(handler))
    }

    /// Adds routes declared elsewhere (a module's own, or one that needs no state).
    pub fn or(mut self, next: BoxedFilter<(Response,)>) -> Self {
        self.all = Some(match self.all {
            Some(all) => all.or(next).unify().boxed(),
            None => next,
        });
        self
    }

    /// All the routes as one filter; a request none of them takes is rejected as not found.
    pub fn build(self) -> BoxedFilter<(Response,)> {
        self.all.unwrap_or_else(|| {
            warp::any()
                .and_then(|| async { Err::<Response, _>(warp::reject::not_found()) })
                .boxed()
        })
    }
}

/// Answers refusals and the handler's own rejections here, labelled with the route; only "not
/// this route" goes on to the next one.
fn finish<F>(route: Route, filter: F) -> BoxedFilter<(Response,)>
where
    F: Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static,
{
    filter
        .recover(|rejection: Rejection| async move {
            if rejection.is_not_found() || rejection.find::<WrongMethod>().is_some() {
                Err(rejection)
            } else {
                Ok(errors::rejection_reply(&rejection))
            }
        })
        .unify()
        .map(move |mut response: Response| {
            response.extensions_mut().insert(RouteLabel(route.path));
            response
        })
        .boxed()
}

/// What no route matched: the same browser checks, and a valid token of any scope before the
/// 404 or 405 (unknown paths are not probed anonymously); everything else rejects on.
pub fn fallback(state: AppState) -> BoxedFilter<(Response,)> {
    browser::facts()
        .and_then(move |facts: RequestFacts| {
            let result = admit(&state, Scope::Read, None, &facts);
            async move {
                match result {
                    Err(refused) => Ok::<_, Rejection>(refused.into_response()),
                    Ok(()) => Err(warp::reject::not_found()),
                }
            }
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_segment_by_segment() {
        let list = Route::get("/api/sessions", Scope::Read);
        let show = Route::get("/api/sessions/:id", Scope::Read);
        let metrics = Route::get("/metrics", Scope::Admin);
        assert_eq!(list.params("/api/sessions"), Some(vec![]));
        assert_eq!(list.params("/api/sessions/"), Some(vec![]));
        assert_eq!(list.params("/api/sessions//"), None);
        assert_eq!(list.params("//api/sessions"), None);
        assert_eq!(list.params("/api//sessions"), None);
        assert_eq!(list.params("/API/sessions"), None);
        assert_eq!(list.params("/api/sessions/x"), None);
        assert_eq!(
            show.params("/api/sessions/abc"),
            Some(vec!["abc".to_owned()])
        );
        assert_eq!(
            show.params("/api/sessions/abc/"),
            Some(vec!["abc".to_owned()])
        );
        assert_eq!(show.params("/api/sessions/"), None);
        assert_eq!(show.params("/api/sessions/abc/events"), None);
        assert_eq!(metrics.params("/metrics/"), Some(vec![]));
        assert_eq!(metrics.params("/metrics%2F"), None);
        assert_eq!(metrics.params("/Metrics"), None);
        assert_eq!(metrics.params("metrics"), None);
        assert_eq!(metrics.params("/"), None);
        let root = Route::get("/", Scope::Public);
        assert_eq!(root.params("/"), Some(vec![]));
        assert_eq!(root.params("//"), None);
        assert_eq!(root.params("/x"), None);
    }

    #[test]
    fn get_routes_answer_head() {
        let route = Route::get("/health", Scope::Public);
        assert!(route.accepts(&Method::GET));
        assert!(route.accepts(&Method::HEAD));
        assert!(!route.accepts(&Method::POST));
        assert!(!Route::post("/x", Scope::Write).accepts(&Method::HEAD));
    }
}
