//! The server under the cloud API fakes (`cb-gcp-fake`, `cb-azure-fake`,
//! `cb-hetzner-fake`): an axum router on its own thread and tokio runtime,
//! stopped on drop, and [`Fake`], such a server with the state its handler
//! keeps; the [`Recorder`] in which each fake notes the requests
//! it gets and those it refuses, for its tests; the [`Tokens`] an OAuth
//! fake (GCP, Azure) has issued; and [`forward`], which sends a backend
//! core's request from a native test's `MemoryHost` to such a fake for
//! real.
//!
//! Native only: nothing here is built for wasm, and the nested component
//! build never lists this crate. Keeps nothing but what a fake keeps, for
//! the life of a test.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use axum::Router;
use tokio::sync::oneshot;

/// A running server; stopped (connections dropped) on drop.
pub struct FakeServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// Serve `router` on a free port of 127.0.0.1.
    pub fn start(name: &str, router: Router) -> Self {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("binding a port on 127.0.0.1");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-fake"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake server runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        r = axum::serve(listener, router) => r.expect("fake server"),
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime drops every open connection.
            })
            .expect("starting the fake server thread");
        Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A running fake: its [`FakeServer`], and the state its handler shares
/// with the fake's own methods, behind a mutex. Stopped on drop.
pub struct Fake<S> {
    server: FakeServer,
    state: Arc<Mutex<S>>,
}

impl<S: Send + 'static> Fake<S> {
    /// Serve every request to `handle`, over `state`, on a free port of
    /// 127.0.0.1 ([`router`]).
    pub fn start(
        name: &str,
        state: S,
        handle: fn(&Mutex<S>, Req) -> axum::response::Response,
    ) -> Self {
        let state = Arc::new(Mutex::new(state));
        let server = FakeServer::start(name, router(state.clone(), handle));
        Self { server, state }
    }

    /// The state, locked.
    pub fn state(&self) -> MutexGuard<'_, S> {
        self.state.lock().unwrap()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.server.addr.port()
    }
}

/// One request as the fakes see it.
#[derive(Debug, Clone)]
pub struct Req {
    /// Method.
    pub method: axum::http::Method,
    /// Path, percent-decoded, split on `/` (no empty segments).
    pub segments: Vec<String>,
    /// The raw path.
    pub path: String,
    /// Query pairs, decoded.
    pub query: Vec<(String, String)>,
    /// Headers.
    pub headers: axum::http::HeaderMap,
    /// Body.
    pub body: Vec<u8>,
}

impl Req {
    /// First value of query parameter `k`.
    pub fn query(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    /// Header `k` as text.
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers.get(k).and_then(|v| v.to_str().ok())
    }

    /// The bearer token of `Authorization`, if any.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
    }

    /// True if `Content-Type` is `mime` (parameters ignored).
    pub fn content_type_is(&self, mime: &str) -> bool {
        self.header("content-type")
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case(mime))
    }

    /// The body as an `application/x-www-form-urlencoded` form.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| e.to_string())
    }

    /// `METHOD path` for logs and rejection lists.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// What a fake notes for its tests: every request it gets, and every one
/// it refuses for breaking the API reference, with why. Kept in the fake's
/// state, for the fake's life; a fake's `requests()` and `rejections()`
/// read it ([`recorder_accessors!`]).
#[derive(Debug, Default)]
pub struct Recorder {
    queries: bool,
    requests: Vec<String>,
    rejections: Vec<String>,
}

impl Recorder {
    /// One that notes each request as `METHOD path`.
    pub fn new() -> Self {
        Self::default()
    }

    /// One that notes each request as `METHOD path?query` (the decoded
    /// pairs as `k=v`, joined by `&`; `METHOD path` without a query).
    pub fn with_queries() -> Self {
        Self {
            queries: true,
            ..Self::default()
        }
    }

    /// Note `r`, as it arrives.
    pub fn request(&mut self, r: &Req) {
        let pairs: Vec<String> = r.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.requests.push(if self.queries && !pairs.is_empty() {
            format!("{}?{}", r.line(), pairs.join("&"))
        } else {
            r.line()
        });
    }

    /// Note that `r` was refused, and `why`: `METHOD path: why`.
    pub fn reject(&mut self, r: &Req, why: impl std::fmt::Display) {
        self.rejections.push(format!("{}: {why}", r.line()));
    }

    /// The requests noted, in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.clone()
    }

    /// The refusals noted, in order, as `METHOD path: why`.
    pub fn rejections(&self) -> Vec<String> {
        self.rejections.clone()
    }
}

/// A fake's `rejections()` and `requests()`, read from its [`Recorder`]:
/// `cb_fake_server::recorder_accessors!(GcpFake, |f| f.fake.state().recorder)`
/// names the fake and how one reaches its recorder.
#[macro_export]
macro_rules! recorder_accessors {
    ($fake:ty, |$this:ident| $recorder:expr) => {
        impl $fake {
            /// Requests refused for breaking the API reference, as
            /// `METHOD path: why`.
            pub fn rejections(&self) -> Vec<String> {
                let $this = self;
                $recorder.rejections()
            }

            /// Every request, in order, as the fake's recorder notes it:
            /// `METHOD path`, or `METHOD path?query` where it keeps queries
            /// (`cb_fake_server::Recorder::with_queries`).
            pub fn requests(&self) -> Vec<String> {
                let $this = self;
                $recorder.requests()
            }
        }
    };
}

/// A response with a JSON body and extra headers.
pub fn json(
    status: u16,
    body: &serde_json::Value,
    headers: &[(&str, String)],
) -> axum::response::Response {
    let mut b = axum::response::Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=UTF-8");
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.body(axum::body::Body::from(body.to_string()))
        .expect("a response")
}

/// An empty response with headers.
pub fn empty(status: u16, headers: &[(&str, String)]) -> axum::response::Response {
    let mut b = axum::response::Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.body(axum::body::Body::empty()).expect("a response")
}

/// A router that hands every request, whatever its path, to `handle`.
pub fn router<S: Send + Sync + 'static>(
    state: std::sync::Arc<S>,
    handle: fn(&S, Req) -> axum::response::Response,
) -> Router {
    Router::new().fallback(
        move |method: axum::http::Method,
              uri: axum::http::Uri,
              headers: axum::http::HeaderMap,
              body: axum::body::Bytes| {
            let state = state.clone();
            async move {
                let path = uri.path().to_string();
                let segments = path
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
                            .next()
                            .map(|(_, v)| v.into_owned())
                            .unwrap_or_default()
                    })
                    .collect();
                let query = uri
                    .query()
                    .map(|q| {
                        form_urlencoded::parse(q.as_bytes())
                            .map(|(k, v)| (k.into_owned(), v.into_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                handle(
                    &state,
                    Req {
                        method,
                        segments,
                        path,
                        query,
                        headers,
                        body: body.to_vec(),
                    },
                )
            }
        },
    )
}

/// The access tokens an OAuth fake has issued, each until it expires; how
/// long new ones live; and how many token requests came. Kept in the
/// fake's state, for the fake's life; its `set_token_lifetime`,
/// `token_requests`, `mint_token` and `revoke_tokens` use it
/// ([`token_accessors!`]).
#[derive(Debug)]
pub struct Tokens {
    prefix: &'static str,
    lifetime: u64,
    expiry: HashMap<String, u64>,
    requests: u64,
}

/// What a bearer token is to an OAuth fake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    /// Issued and not yet expired.
    Live,
    /// Issued, and expired.
    Expired,
    /// Never issued, or revoked.
    Unknown,
}

impl Tokens {
    /// None issued yet; new ones are `prefix` and random text, and live
    /// `lifetime` seconds.
    pub fn new(prefix: &'static str, lifetime: u64) -> Self {
        Self {
            prefix,
            lifetime,
            expiry: HashMap::new(),
            requests: 0,
        }
    }

    /// Seconds a new token lives.
    pub fn lifetime(&self) -> u64 {
        self.lifetime
    }

    /// New tokens live `secs` seconds.
    pub fn set_lifetime(&mut self, secs: u64) {
        self.lifetime = secs;
    }

    /// Count a token request (whether it is answered with a token or not).
    pub fn count_request(&mut self) {
        self.requests += 1;
    }

    /// The token requests counted.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// A new token (the prefix and `random_bytes` random bytes), live for
    /// the lifetime from now.
    pub fn issue(&mut self, random_bytes: usize) -> String {
        let token = format!("{}{}", self.prefix, random_token(random_bytes));
        self.expiry
            .insert(token.clone(), now_unix() + self.lifetime);
        token
    }

    /// What `token` is now.
    pub fn check(&self, token: &str) -> TokenCheck {
        match self.expiry.get(token) {
            Some(exp) if *exp > now_unix() => TokenCheck::Live,
            Some(_) => TokenCheck::Expired,
            None => TokenCheck::Unknown,
        }
    }

    /// Forget every token issued so far.
    pub fn revoke_all(&mut self) {
        self.expiry.clear();
    }
}

/// An OAuth fake's `set_token_lifetime`, `token_requests`, `mint_token`
/// (a token of `random_bytes` random bytes) and `revoke_tokens`, over its
/// [`Tokens`]: `cb_fake_server::token_accessors!(GcpFake, |f|
/// f.fake.state().tokens, 24)` names the fake, how one reaches its tokens,
/// and the size of a minted one.
#[macro_export]
macro_rules! token_accessors {
    ($fake:ty, |$this:ident| $tokens:expr, $random_bytes:expr) => {
        impl $fake {
            /// Tokens from now on live `secs` seconds.
            pub fn set_token_lifetime(&self, secs: u64) {
                let $this = self;
                $tokens.set_lifetime(secs);
            }

            /// Token requests answered (successfully or not).
            pub fn token_requests(&self) -> u64 {
                let $this = self;
                $tokens.requests()
            }

            /// A live token minted directly, without the token endpoint:
            /// for tests of the fake's own request checks.
            pub fn mint_token(&self) -> String {
                let $this = self;
                $tokens.issue($random_bytes)
            }

            /// Invalidate every token issued so far (as if revoked).
            pub fn revoke_tokens(&self) {
                let $this = self;
                $tokens.revoke_all();
            }
        }
    };
}

/// Unix seconds now.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// RFC 3339 for unix seconds, with the offset Compute Engine uses
/// (`-07:00`) or `Z`.
pub fn rfc3339(unix: u64, offset_hours: i64) -> String {
    let t = unix as i64 + offset_hours * 3600;
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let offset = if offset_hours == 0 {
        "Z".to_string()
    } else {
        format!(
            "{}{:02}:00",
            if offset_hours < 0 { '-' } else { '+' },
            offset_hours.abs()
        )
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000{offset}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A random token of `n` bytes, URL-safe base64.
pub fn random_token(n: usize) -> String {
    use base64::Engine as _;
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Send `req` over plain HTTP (a fake on 127.0.0.1) and hand back the
/// whole answer, whatever its status: a `MemoryHost` HTTP handler
/// (`MemoryHost::new().on_http(cb_fake_server::forward)`), so a backend
/// core runs natively against the fake its configuration points at. A
/// connection that fails is `transport`, one that times out `timeout`, as
/// the host's `http` capability reports them.
pub fn forward(
    req: &compute_bridge_sdk::http::Request,
) -> Result<compute_bridge_sdk::http::Response, compute_bridge_sdk::http::HttpError> {
    use compute_bridge_sdk::http::{HttpError, Method};
    let (method, url, headers, body) = req.parts();
    let method = match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
    };
    let mut http = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        http = http.header(k, v);
    }
    let http = http
        .body(body.to_vec())
        .map_err(|e| HttpError::InvalidRequest(e.to_string()))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into();
    let mut resp = agent.run(http).map_err(|e| match e {
        ureq::Error::Timeout(_) => HttpError::Timeout,
        e => HttpError::Transport(e.to_string()),
    })?;
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp
        .body_mut()
        .read_to_vec()
        .map_err(|e| HttpError::Transport(e.to_string()))?;
    Ok(compute_bridge_sdk::http::Response {
        status: resp.status().as_u16(),
        headers,
        body,
    })
}

/// What the host hands a cloud backend's core in its native tests: a
/// grant and a workload as the fleet sends them.
pub mod fixtures {
    use compute_bridge_sdk::{GrantSpec, TdxRequirement, Workload};

    /// An image pinned by digest, as every grant's must be.
    pub const IMAGE: &str =
        "ghcr.io/acme/job@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// A grant of 2 cores and 4 GiB, in no region, valid until `valid_to`.
    pub fn grant(id: &str, tdx: TdxRequirement, valid_to: u64) -> GrantSpec {
        GrantSpec {
            request_id: id.into(),
            cpu_millicores: 2000,
            ram_mib: 4096,
            region: None,
            tdx,
            image: IMAGE.into(),
            valid_to,
        }
    }

    /// The login `cb-test` with an ed25519 key.
    pub fn workload() -> Workload {
        Workload {
            ssh_user: "cb-test".into(),
            ssh_public_key:
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ test"
                    .into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: axum::http::Method, path: &str, query: &[(&str, &str)]) -> Req {
        Req {
            method,
            segments: Vec::new(),
            path: path.into(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            headers: axum::http::HeaderMap::new(),
            body: Vec::new(),
        }
    }

    #[test]
    fn a_recorder_notes_requests_and_refusals_in_order() {
        let get = req(axum::http::Method::GET, "/v1/servers", &[("page", "2")]);
        let post = req(axum::http::Method::POST, "/v1/servers", &[]);
        let mut plain = Recorder::new();
        let mut queries = Recorder::with_queries();
        for r in [&get, &post] {
            plain.request(r);
            queries.request(r);
        }
        plain.reject(&post, format_args!("{}: {}", "invalid_input", "no name"));
        assert_eq!(plain.requests(), ["GET /v1/servers", "POST /v1/servers"]);
        assert_eq!(
            queries.requests(),
            ["GET /v1/servers?page=2", "POST /v1/servers"]
        );
        assert_eq!(
            plain.rejections(),
            ["POST /v1/servers: invalid_input: no name"]
        );
        assert!(queries.rejections().is_empty());
    }

    #[test]
    fn tokens_are_live_until_they_expire_or_are_revoked() {
        let mut tokens = Tokens::new("ya29.fake-", 3599);
        tokens.count_request();
        let live = tokens.issue(24);
        assert!(live.starts_with("ya29.fake-"));
        assert_eq!(tokens.check(&live), TokenCheck::Live);
        assert_eq!(tokens.check("ya29.other"), TokenCheck::Unknown);
        tokens.set_lifetime(0);
        let expired = tokens.issue(24);
        assert_eq!(tokens.check(&expired), TokenCheck::Expired);
        assert_eq!((tokens.lifetime(), tokens.requests()), (0, 1));
        tokens.revoke_all();
        assert_eq!(tokens.check(&live), TokenCheck::Unknown);
    }
}
