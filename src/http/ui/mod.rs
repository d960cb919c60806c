//! The web dashboard (issue 17), served by the daemon itself: `GET /` and the pages below it
//! serve one embedded HTML shell whose ES modules draw each page from the JSON API and its
//! event streams. What the public API does not offer lives under `/ui/`: logins (`logins`),
//! a slim session list and the actions a session allows (`views`), and one live feed of every
//! session's activity (`feed`). Files are embedded (`assets`).
//!
//! Every route is declared like the API's (scope, browser checks, metrics label). Pages and
//! files are public — they hold no data; everything they show comes through routes that check
//! the caller.

mod assets;
mod feed;
pub mod logins;
mod views;

use super::errors::{bounded_body, respond, ApiError};
use super::json::{parse_body, reply_json, Query};
use super::route::{declare, declare_with_id, Route, Routes, Scope};
use super::sessions::{session_filter, session_id};
use super::{auth, AppState, API_BODY_LIMIT};
use bytes::Bytes;
pub use logins::Logins;
use serde::{Deserialize, Serialize};
use telecoder_actors::domain::PolicyMode;
use telecoder_actors::requests;
use warp::filters::BoxedFilter;
use warp::http::header::{HeaderValue, SET_COOKIE};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

/// The dashboard's pages (the modules route among them with the History API).
const PAGES: &[&str] = &[
    "/",
    "/sessions",
    "/inbox",
    "/approvals",
    "/watches",
    "/new",
    "/admin",
    "/login",
];
/// Pages of one record.
const RECORD_PAGES: &[&str] = &["/sessions/:id", "/watches/:id"];

/// Rows of one page of the dashboard's session list, by default and at most.
const ROWS_DEFAULT: u32 = 50;
const ROWS_MAX: u32 = 200;

pub fn routes(state: &AppState) -> BoxedFilter<(Response,)> {
    let header = |name: &'static str| warp::header::optional::<String>(name);
    let mut routes = Routes::new(state).or(assets_route(state));
    for page in PAGES {
        let page = declare(state, Route::get(page, Scope::Public), |at| {
            at.and(header("if-none-match")).map(shell)
        });
        routes = routes.or(page);
    }
    for page in RECORD_PAGES {
        let page = declare_with_id(state, Route::get(page, Scope::Public), |at| {
            at.and(header("if-none-match"))
                .map(|_id: String, tag: Option<String>| shell(tag))
        });
        routes = routes.or(page);
    }
    // Who is asking, for the answers that depend on it.
    let with_caller = || {
        let state = state.clone();
        header("authorization").and(header("cookie")).map(
            move |authorization: Option<String>, cookie: Option<String>| {
                caller(&state, authorization.as_deref(), cookie.as_deref())
            },
        )
    };
    routes
        .at(Route::post("/ui/login", Scope::Public).json(), |at| {
            at.and(header("x-forwarded-proto"))
                .and(bounded_body(API_BODY_LIMIT))
                .then(login)
        })
        .at(Route::post("/ui/logout", Scope::Read), |at| {
            at.and(header("cookie"))
                .and(header("x-forwarded-proto"))
                .then(logout)
        })
        .at(Route::get("/ui/whoami", Scope::Read), |at| {
            at.and(with_caller()).map(whoami)
        })
        .at(Route::get("/ui/sessions", Scope::Read), |at| {
            at.and(warp::query::<Query>()).then(list)
        })
        .at_id(Route::get("/ui/sessions/:id", Scope::Read), |at| {
            at.and(with_caller()).then(show)
        })
        .at(Route::get("/ui/feed", Scope::Read), |at| {
            at.map(feed::stream)
        })
        .build()
}

fn shell(if_none_match: Option<String>) -> Response {
    assets::serve(&assets::SHELL, if_none_match.as_deref())
}

fn assets_route(state: &AppState) -> BoxedFilter<(Response,)> {
    declare_with_id(state, Route::get("/assets/:name", Scope::Public), |at| {
        at.and(warp::header::optional::<String>("if-none-match"))
            .map(
                |name: String, tag: Option<String>| match assets::find(&name) {
                    Some(asset) => assets::serve(asset, tag.as_deref()),
                    None => {
                        ApiError::not_found(format!("no dashboard file {name}")).into_response()
                    }
                },
            )
    })
}

/// Who is asking, as the dashboard shows it.
struct Caller {
    /// `open` (no token configured), `token` (a bearer token) or `login` (the cookie).
    how: &'static str,
    scopes: &'static [Scope],
    csrf: Option<String>,
}

const EVERYTHING: &[Scope] = &[Scope::Read, Scope::Write, Scope::Admin];

/// The caller of a request the gate already let through (so one of these matches).
fn caller(state: &AppState, authorization: Option<&str>, cookie: Option<&str>) -> Caller {
    if !state.tokens.any() {
        return Caller {
            how: "open",
            scopes: EVERYTHING,
            csrf: None,
        };
    }
    let bearer = authorization.and_then(auth::bearer);
    if let Some(scopes) = bearer.and_then(|token| auth::granted(&state.tokens, token)) {
        return Caller {
            how: "token",
            scopes,
            csrf: None,
        };
    }
    let login = cookie
        .and_then(|header| logins::cookie_value(header, logins::COOKIE))
        .and_then(|id| state.logins.find(id));
    Caller {
        how: "login",
        scopes: login.as_ref().map_or(&[Scope::Read], |login| login.scopes),
        csrf: login.map(|login| login.csrf),
    }
}

/// (converse) Who answered an approval through a dashboard login, as the approval records it
/// (`dashboard (full token login)`); `None` for a request the cookie did not let in (a bearer
/// token or the open daemon: `auth::requester` names those).
pub fn login_requester(
    state: &AppState,
    authorization: Option<&str>,
    cookie: Option<&str>,
) -> Option<String> {
    if authorization.is_some() || !state.tokens.any() {
        return None;
    }
    let login = state
        .logins
        .find(logins::cookie_value(cookie?, logins::COOKIE)?)?;
    Some(format!("dashboard ({} login)", login.token))
}

fn scope_name(scopes: &[Scope]) -> &'static str {
    if scopes.contains(&Scope::Admin) {
        "admin"
    } else if scopes.contains(&Scope::Write) {
        "write"
    } else {
        "read"
    }
}

/// `GET /ui/whoami`: how the page is authenticated, what it may do, and the defaults its
/// forms show.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Whoami {
    auth: &'static str,
    scope: &'static str,
    /// The login's CSRF token, for the page's writes (only for a cookie login).
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf: Option<String>,
    default_agent: String,
    default_policy: &'static str,
    /// The policies a new session may have here (`ask` needs the native runtime).
    policies: Vec<&'static str>,
    agents: Vec<&'static str>,
    max_runs_per_hour_limit: u32,
}

fn whoami(state: AppState, who: Caller) -> Response {
    let settings = state.daemon.settings();
    let answer = Whoami {
        auth: who.how,
        scope: scope_name(who.scopes),
        csrf: who.csrf,
        default_agent: settings.default_agent.clone(),
        default_policy: settings.default_policy.as_str(),
        policies: PolicyMode::ALL
            .into_iter()
            .filter(|mode| requests::check_runtime_allows(settings, *mode).is_ok())
            .map(PolicyMode::as_str)
            .collect(),
        agents: telecoder_actors::runtime::agents::KNOWN_AGENTS
            .iter()
            .map(|agent| agent.name)
            .collect(),
        max_runs_per_hour_limit: telecoder_actors::domain::watch::MAX_RUNS_PER_HOUR_LIMIT,
    };
    no_store(reply_json(StatusCode::OK, &answer))
}

/// Answers that carry a login's secrets are never cached.
fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        warp::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    response
}

#[derive(Deserialize)]
struct LoginBody {
    token: String,
}

#[derive(Serialize)]
struct LoggedIn {
    scope: &'static str,
    csrf: String,
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    no_store(response)
}

/// `POST /ui/login {token}`: a valid token becomes a login cookie with the token's scope.
async fn login(
    state: AppState,
    forwarded_proto: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Response {
    respond(log_in(&state, forwarded_proto.as_deref(), body))
}

fn log_in(
    state: &AppState,
    forwarded_proto: Option<&str>,
    body: Result<Bytes, ApiError>,
) -> Result<Response, ApiError> {
    if !state.tokens.any() {
        return Err(ApiError::bad_request(
            "no API token is configured: the dashboard needs no login on this daemon",
        ));
    }
    let body: LoginBody = parse_body(&body?)?;
    let token = body.token.trim();
    let scopes = auth::granted(&state.tokens, token)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "invalid token"))?;
    let (id, login) = state
        .logins
        .create(scopes, auth::token_kind(&state.tokens, token))?;
    let answer = LoggedIn {
        scope: scope_name(scopes),
        csrf: login.csrf,
    };
    Ok(with_cookie(
        reply_json(StatusCode::OK, &answer),
        &logins::set_cookie(&id, logins::came_over_tls(forwarded_proto)),
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoggedOut {
    logged_out: bool,
}

/// `POST /ui/logout`: ends the login (its cookie stops working at once) and clears the cookie.
async fn logout(
    state: AppState,
    cookie: Option<String>,
    forwarded_proto: Option<String>,
) -> Response {
    if let Some(id) = cookie
        .as_deref()
        .and_then(|header| logins::cookie_value(header, logins::COOKIE))
    {
        state.logins.remove(id);
    }
    let secure = logins::came_over_tls(forwarded_proto.as_deref());
    with_cookie(
        reply_json(StatusCode::OK, &LoggedOut { logged_out: true }),
        &logins::clear_cookie(secure),
    )
}

/// One page of the dashboard's list.
#[derive(Serialize)]
struct ListPage {
    sessions: Vec<serde_json::Value>,
    /// The cursor of the next (older) page, `""` on the last.
    next: String,
}

/// `GET /ui/sessions`: the API's filters, `limit` rows (default 50, at most 200) older than
/// session `before` (keyset paging: deep pages cost what the first does).
async fn list(state: AppState, query: Query) -> Response {
    respond(
        async {
            let mut filter = session_filter(&query)?;
            let rows = filter.limit.unwrap_or(ROWS_DEFAULT).min(ROWS_MAX);
            filter.limit = None;
            filter.offset = None;
            let before = match query.get("before").filter(|v| !v.is_empty()) {
                Some(raw) => Some(
                    telecoder_actors::domain::SessionId::parse(raw.trim())
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "before must be a session id, got '{raw}'"
                            ))
                        })?
                        .to_string(),
                ),
                None => None,
            };
            let mut page = state
                .daemon
                .store()
                .sessions_page(&filter, before, rows + 1)
                .await?;
            let next = if page.len() > rows as usize {
                page.truncate(rows as usize);
                page.last().map(|s| s.id.clone()).unwrap_or_default()
            } else {
                String::new()
            };
            let answer = ListPage {
                sessions: page.iter().map(views::row).collect(),
                next,
            };
            Ok(reply_json(StatusCode::OK, &answer))
        }
        .await,
    )
}

/// A session with the actions its page offers.
#[derive(Serialize)]
struct Shown {
    session: telecoder_actors::domain::Session,
    actions: views::Actions,
}

/// `GET /ui/sessions/:id`: the session and what the caller may do with it.
async fn show(raw_id: String, state: AppState, who: Caller) -> Response {
    respond(
        async {
            let id = session_id(&raw_id)?;
            let session = state.daemon.session(id.as_str()).await?;
            let can_write = who.scopes.contains(&Scope::Write);
            let continuable = can_write
                && session.status.is_finished()
                && state
                    .daemon
                    .store()
                    .why_not_continuable(session.clone())
                    .await?
                    .is_none();
            let actions = views::actions(&session, can_write, continuable);
            Ok(reply_json(StatusCode::OK, &Shown { session, actions }))
        }
        .await,
    )
}
