//! The `http` capability: `wasi:http/outgoing-handler` for one backend,
//! served by `wasmtime-wasi-http` with our policy in its
//! [`WasiHttpHooks::send_request`] hook, and only the origins the operator
//! listed reachable.
//!
//! The shape follows Spin's outbound-HTTP factor (spinframework/spin,
//! `crates/factor-outbound-http/src/wasi.rs`: the per-instance state is the
//! hooks, the allowed-hosts check happens in the hook before anything is
//! sent and answers `HTTP-request-denied`, the address check lives in the
//! connector); the rules are ours. `wasmtime-wasi-http` turns the guest's
//! resources into an `http::Request`; everything from there to the
//! response is here. Checks, in order:
//! 1. the URL's origin (`scheme://host:port`) is on `allowed_hosts`, before
//!    any DNS;
//! 2. every address the name resolves to is public ([`is_forbidden`]:
//!    loopback, link-local with cloud metadata at 169.254.169.254, private,
//!    shared, unspecified, multicast, site-local, and each of these inside
//!    the IPv6 forms that embed an IPv4 address), unless the operator listed
//!    that very origin by address: the same scheme, that IP and the same
//!    port, for every port the name is listed with. A name left with no
//!    address is refused. Listing `http://127.0.0.1:18081` opens that one
//!    origin, not every port of 127.0.0.1. The resolver that checks the
//!    addresses is the one the client connects with, and it hands the
//!    client only the addresses it checked: there is no second resolution;
//! 3. the host follows no redirect: a 3xx reaches the guest as it came, and
//!    a request to its `location` is a new request, checked like any other;
//! 4. the host sets `Host` from the URL and the length from the body (the
//!    `Content-Length` the guest declared, which `wasmtime-wasi-http` holds
//!    the body to) and drops the hop-by-hop headers a component sets
//!    (RFC 9110 §7.6.1: `Connection` and the fields it names, `Keep-Alive`,
//!    `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`), so a
//!    request goes to the listed origin as that origin and carries nothing
//!    meant for a hop in between;
//! 5. the whole exchange (connect, request, response and its body) has one
//!    timeout and the response body a size cap. The body is read to its end
//!    inside the hook, so that a body over the cap fails the request itself
//!    with `HTTP-response-body-size(cap)`: `wasmtime-wasi-http` 48 hands an
//!    error raised while the guest streams a body to it as a plain
//!    `wasi:io` error, which `http-error-code` cannot name (its body errors
//!    are not `error-code`s), so a cap enforced while streaming would reach
//!    the guest without its code.
//!
//! Errors reach the guest as `error-code`s ([`HttpCapability::exchange`]
//! says which). A denial is `HTTP-request-denied` only; the reason stays on
//! the host: it is logged (warn, with the backend's name), counted, and
//! kept in the call's state, so that if the call then fails its error says
//! `; the host denied: <reason>` ([`Capability::failure_note`]).
//!
//! Underneath is one `reqwest` client per backend (its rustls and
//! platform-verifier roots, its connection pool), with no proxy, no
//! redirects and the checking resolver; nothing of the old `http.send`
//! record API is left. Bytes out and in are counted per backend.

use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

mod config;

pub use config::HttpConfig;

use compute_bridge_contract::keypath::Invalid;
use sha2::{Digest, Sha256};
use wasmtime::component::Linker;
use wasmtime_wasi_http::p2::bindings::LinkOptions;
use wasmtime_wasi_http::p2::bindings::http::{outgoing_handler, types as wasi_types};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttp, WasiHttpCtx, WasiHttpCtxView,
    WasiHttpHooks,
};

use super::{Capability, HasCall};
use crate::spec::LoadContext;

/// An allowed origin: scheme, lower-case host, port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// Host name or IP literal, lower case, IPv6 without brackets.
    pub host: String,
    /// Port (the scheme's default if not written).
    pub port: u16,
}

impl Origin {
    /// Parse an `allowed_hosts` entry: exactly `scheme://host[:port]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(s)
            .map_err(|e| format!("{s:?} is not a URL ({e}); write scheme://host[:port]"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{s:?}: only http and https origins can be allowed"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{s:?}: credentials do not belong in allowed_hosts"));
        }
        let bare = s.trim_end_matches('/');
        if url.path() != "/"
            || url.query().is_some()
            || url.fragment().is_some()
            || bare.ends_with('?')
        {
            return Err(format!(
                "{s:?}: allowed_hosts are origins, scheme://host[:port], with no path or query"
            ));
        }
        Self::of(&url).ok_or_else(|| format!("{s:?} has no host"))
    }

    /// The origin of a URL.
    pub fn of(url: &reqwest::Url) -> Option<Self> {
        let host = match url.host()? {
            url::Host::Domain(d) => d.to_ascii_lowercase(),
            url::Host::Ipv4(ip) => ip.to_string(),
            url::Host::Ipv6(ip) => ip.to_string(),
        };
        Some(Self {
            scheme: url.scheme().to_string(),
            host,
            port: url.port_or_known_default()?,
        })
    }

    /// The host as an IP, if it is a literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ip() {
            Some(IpAddr::V6(ip)) => write!(f, "{}://[{ip}]:{}", self.scheme, self.port),
            _ => write!(f, "{}://{}:{}", self.scheme, self.host, self.port),
        }
    }
}

/// True for addresses a backend may not reach unless the operator listed
/// that exact origin by address: anything that is not plainly public, in
/// every spelling.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 shared
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_ipv4(v6) {
                return is_forbidden(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local, RFC 4193
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local, RFC 3879 (deprecated, still routed)
                || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 prefixes but the /96 (RFC 8215 local use)
                || (s[0] == 0x2001 && s[1] == 0) // Teredo, RFC 4380: a tunnel to any IPv4 host
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only, RFC 6666
        }
    }
}

/// The IPv4 address an IPv6 address stands for, in the forms that carry
/// one: IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d` (RFC 4291
/// §2.5.5.1, deprecated), IPv4-translated `::ffff:0:a.b.c.d` (RFC 2765),
/// NAT64 `64:ff9b::a.b.c.d` (RFC 6052) and 6to4 `2002:aabb:ccdd::/48`
/// (RFC 3056). `::` and `::1` are not IPv4 addresses.
fn embedded_ipv4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let s = v6.segments();
    let low = std::net::Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => None,
        [0, 0, 0, 0, 0, 0, _, _] => Some(low),
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, a, b, ..] => Some(std::net::Ipv4Addr::new(
            (a >> 8) as u8,
            a as u8,
            (b >> 8) as u8,
            b as u8,
        )),
        _ => None,
    }
}

/// What one backend may reach, derived from its `[backends.http]`.
#[derive(Debug)]
pub struct HttpPolicy {
    allowed: HashSet<Origin>,
    resolve: std::collections::BTreeMap<String, IpAddr>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Body cap, bytes.
    pub max_response_bytes: u64,
}

impl HttpPolicy {
    /// Build from config (validated at load).
    pub fn new(cfg: &HttpConfig) -> Result<Self, String> {
        let mut allowed = HashSet::new();
        for h in &cfg.allowed_hosts {
            allowed.insert(Origin::parse(h)?);
        }
        Ok(Self {
            allowed,
            resolve: cfg
                .resolve
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), *v))
                .collect(),
            timeout: Duration::from_secs(cfg.timeout_sec),
            max_response_bytes: cfg.max_response_bytes,
        })
    }

    /// Is this URL's origin listed?
    pub fn allows_url(&self, url: &reqwest::Url) -> Result<Origin, String> {
        let origin = Origin::of(url).ok_or_else(|| format!("{url} has no host"))?;
        if self.allowed.contains(&origin) {
            Ok(origin)
        } else {
            Err(format!("{origin} is not in this backend's allowed_hosts"))
        }
    }

    /// May a connection for `origin` go to `ip`? A public address, or a
    /// forbidden one whose own origin (the same scheme and port at that IP)
    /// is listed.
    pub fn allows_ip_for(&self, origin: &Origin, ip: IpAddr) -> bool {
        !is_forbidden(ip)
            || self.allowed.contains(&Origin {
                scheme: origin.scheme.clone(),
                host: ip.to_string(),
                port: origin.port,
            })
    }

    /// May a connection to the name `host`, resolved to `ip`, go there? The
    /// resolver does not know the port asked for, so `ip` must do for every
    /// origin `host` is listed with (a request or a redirect goes only to
    /// one of those); a name that is not listed gets only public addresses.
    pub fn allows_resolved(&self, host: &str, ip: IpAddr) -> bool {
        if !is_forbidden(ip) {
            return true;
        }
        let mut origins = self.allowed.iter().filter(|o| o.host == host).peekable();
        origins.peek().is_some() && origins.all(|o| self.allows_ip_for(o, ip))
    }
}

/// Headers only the host sets: `Host` comes from the URL and the length
/// from the body.
const HOST_SET: &[&str] = &["host", "content-length"];

/// Hop-by-hop headers (RFC 9110 §7.6.1), which a component has no business
/// setting on a request to a listed origin.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether the host drops a header a component set: one it sets itself,
/// a hop-by-hop one, any `Proxy-*`, or one a `Connection` header names
/// (`nominated`, lower case).
fn dropped_header(name: &str, nominated: &[String]) -> bool {
    let n = name.to_ascii_lowercase();
    HOST_SET.contains(&n.as_str())
        || HOP_BY_HOP.contains(&n.as_str())
        || n.starts_with("proxy-")
        || nominated.contains(&n)
}

/// Raised inside reqwest by our resolver; recognised on the way out so the
/// component sees `HTTP-request-denied`, and the reason is kept.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Denied(String);

/// The name lookup itself failed (no such name, no answer); the guest sees
/// a `DNS-error`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct LookupFailed(String);

/// A resolver that drops forbidden addresses.
struct GuardedResolver {
    policy: Arc<HttpPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let name = name.as_str().to_ascii_lowercase();
        Box::pin(async move {
            let addrs: Vec<IpAddr> = match policy.resolve.get(&name) {
                Some(ip) => vec![*ip],
                None => tokio::net::lookup_host((name.as_str(), 0))
                    .await
                    .map_err(|e| LookupFailed(format!("{name}: {e}")))?
                    .map(|a| a.ip())
                    .collect(),
            };
            if addrs.is_empty() {
                return Err(Box::new(Denied(format!("{name} resolves to no address")))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            let (ok, refused): (Vec<IpAddr>, Vec<IpAddr>) = addrs
                .into_iter()
                .partition(|ip| policy.allows_resolved(&name, *ip));
            if ok.is_empty() {
                let shown: Vec<String> = refused.iter().map(ToString::to_string).collect();
                return Err(Box::new(Denied(format!(
                    "{name} resolves only to forbidden addresses ({}); list that address's origin \
                     (the same scheme and port) in allowed_hosts to allow it",
                    shown.join(", ")
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: reqwest::dns::Addrs =
                Box::new(ok.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// Bytes and requests of one backend, since start.
#[derive(Debug, Default)]
pub struct HttpCounters {
    /// Requests sent.
    pub requests: AtomicU64,
    /// Requests refused by the policy.
    pub denied: AtomicU64,
    /// Request bytes sent (body and headers).
    pub bytes_out: AtomicU64,
    /// Response body bytes received.
    pub bytes_in: AtomicU64,
}

/// Why the host denied a request of this call, the last one; shared
/// between the call's state and the requests it has in flight (they run
/// on their own tasks).
pub type Denials = Arc<Mutex<Option<String>>>;

/// The `http` capability of one backend, shared by all its calls.
pub struct HttpCapability {
    backend: Arc<str>,
    policy: Arc<HttpPolicy>,
    client: reqwest::Client,
    /// Counters since start.
    pub counters: Arc<HttpCounters>,
}

impl HttpCapability {
    /// Build the client for `backend` from its config.
    pub fn new(backend: &str, cfg: &HttpConfig) -> anyhow::Result<Self> {
        let policy = Arc::new(HttpPolicy::new(cfg).map_err(anyhow::Error::msg)?);
        let client = reqwest::Client::builder()
            .no_proxy()
            .user_agent(concat!("compute-bridge/", env!("CARGO_PKG_VERSION")))
            // The whole exchange is bounded in `exchange`; connecting has
            // its own, earlier limit, so a timeout before the connection is
            // told apart from one after it.
            .connect_timeout(connect_timeout(policy.timeout))
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            backend: backend.into(),
            policy,
            client,
            counters: Arc::default(),
        })
    }

    /// Count, log and keep the reason of a denial; what the guest sees.
    fn deny(&self, why: String, denials: &Denials) -> HttpError {
        self.counters.denied.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(backend = %self.backend, "http request denied: {why}");
        *denials.lock().unwrap() = Some(why);
        HttpError::HttpRequestDenied
    }

    /// One request of the guest, under the policy, to its response with the
    /// whole body read (at most the cap).
    ///
    /// Errors, as the guest sees them (`wasi:http/types.error-code`):
    /// - origin not listed, a forbidden address, a name that resolves to no
    ///   address: `HTTP-request-denied` (the reason goes to `denials`);
    /// - no connection within the connect limit: `connection-timeout`; the
    ///   whole exchange past the timeout after that:
    ///   `HTTP-response-timeout`;
    /// - a body over the cap (declared or counted):
    ///   `HTTP-response-body-size(cap)`;
    /// - otherwise the closest code: `DNS-error` (the lookup failed),
    ///   `connection-refused`, `connection-terminated`,
    ///   `destination-unavailable`, `TLS-certificate-error`,
    ///   `TLS-alert-received`, `TLS-protocol-error`,
    ///   `HTTP-request-URI-invalid`, `HTTP-request-body-size` (the guest's
    ///   body broke its own `Content-Length`), `HTTP-response-incomplete`
    ///   (the body broke off), `HTTP-protocol-error`, and `internal-error`
    ///   with the cause for anything else.
    pub async fn exchange(
        &self,
        request: http::Request<WasiBody>,
        denials: &Denials,
    ) -> Result<http::Response<WasiBody>, HttpError> {
        let (parts, body) = request.into_parts();
        let url = reqwest::Url::parse(&parts.uri.to_string())
            .map_err(|_| HttpError::HttpRequestUriInvalid)?;
        let origin = (self.policy.allows_url(&url)).map_err(|why| self.deny(why, denials))?;
        if let Some(ip) = origin.ip()
            && !self.policy.allows_ip_for(&origin, ip)
        {
            return Err(self.deny(format!("{ip} is a forbidden address"), denials));
        }

        let nominated: Vec<String> = (parts.headers.get_all(http::header::CONNECTION).iter())
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        let mut headers = http::HeaderMap::new();
        let mut out_bytes = 0u64;
        for (k, v) in &parts.headers {
            if dropped_header(k.as_str(), &nominated) {
                continue;
            }
            out_bytes += (k.as_str().len() + v.len() + 4) as u64;
            headers.append(k.clone(), v.clone());
        }
        // `wasmtime-wasi-http` holds the body to the length the guest
        // declared (and refused a malformed one), so it is the body's.
        let length = parts.headers.get(http::header::CONTENT_LENGTH).cloned();
        if let Some(length) = length {
            out_bytes += (http::header::CONTENT_LENGTH.as_str().len() + length.len() + 4) as u64;
            headers.insert(http::header::CONTENT_LENGTH, length);
        }
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_out
            .fetch_add(out_bytes, Ordering::Relaxed);
        tracing::debug!(backend = %self.backend, method = %parts.method, %origin, path = url.path(), "http request");

        let sent = self
            .client
            .request(parts.method, url)
            .headers(headers)
            .body(reqwest::Body::wrap(Outgoing {
                body: Mutex::new(body),
                counters: self.counters.clone(),
            }))
            .send();
        let cap = self.policy.max_response_bytes;
        let exchange = async {
            let resp = sent.await.map_err(|e| self.classify(&e, denials))?;
            if resp.content_length().is_some_and(|n| n > cap) {
                return Err(HttpError::HttpResponseBodySize(Some(cap)));
            }
            let mut head = http::Response::builder().status(resp.status());
            if let Some(h) = head.headers_mut() {
                *h = resp.headers().clone();
            }
            let mut body = Vec::new();
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.classify(&e, denials))?;
                self.counters
                    .bytes_in
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                if body.len() as u64 + chunk.len() as u64 > cap {
                    return Err(HttpError::HttpResponseBodySize(Some(cap)));
                }
                body.extend_from_slice(&chunk);
            }
            let body = http_body_util::Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed_unsync();
            head.body(body)
                .map_err(|e| HttpError::InternalError(Some(e.to_string())))
        };
        match tokio::time::timeout(self.policy.timeout, exchange).await {
            Ok(r) => r,
            // Connecting has its own, earlier limit (`connect_timeout`):
            // past it, the connection was made.
            Err(_) => Err(HttpError::HttpResponseTimeout),
        }
    }

    /// The `error-code` for a failure of the client.
    fn classify(&self, e: &reqwest::Error, denials: &Denials) -> HttpError {
        let chain = || {
            std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |s| {
                s.source()
            })
        };
        if let Some(d) = chain().find_map(|s| s.downcast_ref::<Denied>()) {
            return self.deny(d.0.clone(), denials);
        }
        if let Some(l) = chain().find_map(|s| s.downcast_ref::<LookupFailed>()) {
            return HttpError::DnsError {
                rcode: Some(l.0.clone()),
                info_code: None,
            };
        }
        if let Some(b) = chain().find_map(|s| s.downcast_ref::<HttpError>()) {
            // The guest's own body failed (wasmtime-wasi-http's errors).
            return match b {
                HttpError::HttpRequestBodySize(n) => HttpError::HttpRequestBodySize(*n),
                _ => HttpError::HttpProtocolError,
            };
        }
        if e.is_timeout() {
            return if e.is_connect() {
                HttpError::ConnectionTimeout
            } else {
                HttpError::HttpResponseTimeout
            };
        }
        // rustls's error travels inside an `io::Error`, whose `source` skips
        // it: look inside those too.
        let tls = chain().find_map(|s| {
            s.downcast_ref::<rustls::Error>().or_else(|| {
                (s.downcast_ref::<std::io::Error>())
                    .and_then(|io| io.get_ref())
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            })
        });
        if let Some(t) = tls {
            return match t {
                rustls::Error::InvalidCertificate(_) => HttpError::TlsCertificateError,
                rustls::Error::AlertReceived(alert) => HttpError::TlsAlertReceived {
                    alert_id: Some(u8::from(*alert)),
                    alert_message: Some(format!("{alert:?}")),
                },
                _ => HttpError::TlsProtocolError,
            };
        }
        if let Some(io) = chain().find_map(|s| s.downcast_ref::<std::io::Error>()) {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::ConnectionRefused => return HttpError::ConnectionRefused,
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
                    return HttpError::ConnectionTerminated;
                }
                K::HostUnreachable | K::NetworkUnreachable | K::AddrNotAvailable => {
                    return HttpError::DestinationUnavailable;
                }
                K::TimedOut => return HttpError::ConnectionTimeout,
                _ => {}
            }
        }
        if e.is_body() || e.is_decode() {
            return HttpError::HttpResponseIncomplete;
        }
        // reqwest's Display hides the cause chain; the cause is what helps.
        let msg: Vec<String> = chain().map(ToString::to_string).collect();
        tracing::debug!(backend = %self.backend, "http request failed: {}", msg.join(": "));
        if e.is_request() && !e.is_connect() {
            return HttpError::HttpProtocolError;
        }
        HttpError::InternalError(Some(msg.join(": ")))
    }
}

/// How long connecting (name lookup, TCP and TLS) may take: three quarters
/// of the timeout, at most 10 s, so it always ends before the exchange's
/// own limit and a timeout there is `connection-timeout`.
fn connect_timeout(timeout: Duration) -> Duration {
    (timeout * 3 / 4).min(Duration::from_secs(10))
}

/// The guest's request body on its way out: `Sync` for the client (the
/// body is only ever polled through `&mut`, so the lock is never taken),
/// counting the bytes it sends.
struct Outgoing {
    body: Mutex<WasiBody>,
    counters: Arc<HttpCounters>,
}

impl http_body::Body for Outgoing {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.get_mut();
        let body = this.body.get_mut().unwrap_or_else(|p| p.into_inner());
        let frame = Pin::new(body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &frame
            && let Some(data) = f.data_ref()
        {
            (this.counters.bytes_out).fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.lock().map(|b| b.is_end_stream()).unwrap_or(false)
    }

    fn size_hint(&self) -> SizeHint {
        self.body.lock().map(|b| b.size_hint()).unwrap_or_default()
    }
}

/// One call's `wasi:http` hooks: the capability and where this call's
/// denials are kept.
pub struct HttpHooks {
    cap: Arc<HttpCapability>,
    denials: Denials,
}

impl HttpHooks {
    /// Why the host denied this call's last denied request, if it did.
    pub fn denied(&self) -> Option<String> {
        self.denials.lock().unwrap().clone()
    }
}

type ResponseIo = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

impl WasiHttpHooks for HttpHooks {
    /// The host sets `Host` (from the URL, in the client).
    fn set_host_header(&mut self) -> bool {
        false
    }

    /// A request without a scheme is refused (`HTTP-protocol-error`): an
    /// origin is exactly `scheme://host:port`.
    fn default_scheme(&mut self) -> Option<http::uri::Scheme> {
        None
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        fut: ResponseIo,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, ResponseIo), HttpError>> + Send>
    {
        // The body is whole when the response is handed over: nothing is
        // left to report on `fut`, nor on the returned one.
        drop(fut);
        let cap = self.cap.clone();
        let denials = self.denials.clone();
        Box::new(async move {
            let response = cap.exchange(request, &denials).await?;
            Ok((response, Box::new(async { Ok(()) }) as ResponseIo))
        })
    }
}

impl Capability for HttpCapability {
    const SECTION: Option<&'static str> = Some("http");
    const IMPORTS: &'static [(&'static str, &'static str)] = &[
        (
            "wasi:http/outgoing-handler@0.2.",
            "outbound HTTP to the allowed origins",
        ),
        (
            "wasi:http/types@0.2.",
            "the requests and responses of outbound HTTP",
        ),
    ];
    type Config = HttpConfig;
    type Call = HttpCall;

    fn validate(cfg: &HttpConfig, _at: &LoadContext) -> Result<(), Invalid> {
        if cfg.timeout_sec == 0 {
            return Err(Invalid {
                path: vec!["timeout_sec".into()],
                message: "must be at least 1 second".into(),
            });
        }
        for (j, h) in cfg.allowed_hosts.iter().enumerate() {
            if let Err(message) = Origin::parse(h) {
                return Err(Invalid {
                    path: vec!["allowed_hosts".into(), j.into()],
                    message,
                });
            }
        }
        Ok(())
    }

    fn provide(cfg: &HttpConfig, at: &LoadContext) -> anyhow::Result<Self> {
        Self::new(&at.backend, cfg)
    }

    fn start_call(this: &Arc<Self>, _export: &'static str) -> HttpCall {
        HttpCall {
            ctx: WasiHttpCtx::new(),
            hooks: HttpHooks {
                cap: this.clone(),
                denials: Denials::default(),
            },
        }
    }

    fn add_to_linker<T: HasCall<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        fn view<T: HasCall<HttpCapability>>(t: &mut T) -> WasiHttpCtxView<'_> {
            let (call, table) = t.call_state_and_table();
            WasiHttpCtxView {
                ctx: &mut call.ctx,
                table,
                hooks: &mut call.hooks,
            }
        }
        outgoing_handler::add_to_linker::<T, WasiHttp>(linker, view::<T>)?;
        wasi_types::add_to_linker::<T, WasiHttp>(linker, &LinkOptions::default().into(), view::<T>)
    }

    fn routing(cfg: &HttpConfig) -> Option<Vec<String>> {
        Some(cfg.allowed_hosts.clone())
    }

    fn summary(cfg: &HttpConfig) -> Option<String> {
        Some(if cfg.allowed_hosts.is_empty() {
            "none".into()
        } else {
            cfg.allowed_hosts.join(", ")
        })
    }

    /// The allowed origins (normalised, sorted), the fixed resolutions and
    /// the bounds of one exchange. An http section holds no secret.
    fn measure(cfg: &HttpConfig, h: &mut Sha256) {
        let mut origins: Vec<String> = cfg
            .allowed_hosts
            .iter()
            .map(|o| Origin::parse(o).map_or_else(|_| o.clone(), |o| o.to_string()))
            .collect();
        origins.sort();
        origins.dedup();
        for o in &origins {
            h.update(b"origin\0");
            h.update(o.as_bytes());
            h.update([0]);
        }
        for (name, ip) in &cfg.resolve {
            h.update(format!("resolve\0{}\0{ip}\0", name.to_ascii_lowercase()).as_bytes());
        }
        h.update(cfg.timeout_sec.to_be_bytes());
        h.update(cfg.max_response_bytes.to_be_bytes());
    }

    /// Why the host denied a request of this call, for the call's error.
    fn failure_note(call: &HttpCall) -> Option<String> {
        call.hooks
            .denied()
            .map(|why| format!("the host denied: {why}"))
    }
}

/// One call's `wasi:http`: its context and its hooks.
pub struct HttpCall {
    ctx: WasiHttpCtx,
    /// The hooks, with this call's denials.
    pub hooks: HttpHooks,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(cfg: &HttpConfig) -> [u8; 32] {
        let mut h = Sha256::new();
        HttpCapability::measure(cfg, &mut h);
        h.finalize().into()
    }

    #[test]
    fn the_measurement_follows_the_allowed_origins() {
        let cfg = HttpConfig {
            allowed_hosts: vec!["https://a.example".into(), "https://b.example".into()],
            ..Default::default()
        };
        let same = HttpConfig {
            allowed_hosts: vec!["https://B.example:443".into(), "https://a.example/".into()],
            ..Default::default()
        };
        assert_eq!(
            measured(&cfg),
            measured(&same),
            "same origins, other spelling"
        );
        let other = HttpConfig {
            allowed_hosts: vec!["https://a.example".into(), "https://c.example".into()],
            ..Default::default()
        };
        assert_ne!(measured(&cfg), measured(&other));
        let slower = HttpConfig {
            timeout_sec: 31,
            ..cfg.clone()
        };
        assert_ne!(measured(&cfg), measured(&slower));
    }

    #[test]
    fn origins_are_exact() {
        let o = Origin::parse("https://EC2.us-east-1.amazonaws.com").unwrap();
        assert_eq!(o.to_string(), "https://ec2.us-east-1.amazonaws.com:443");
        assert!(Origin::parse("https://x.example/api").is_err());
        assert!(Origin::parse("ftp://x.example").is_err());
        assert!(Origin::parse("https://user:pw@x.example").is_err());
        assert!(Origin::parse("x.example").is_err());
        assert_eq!(
            Origin::parse("http://[::1]:8080").unwrap().to_string(),
            "http://[::1]:8080"
        );
    }

    #[test]
    fn forbidden_ranges() {
        for ip in [
            "127.0.0.1",
            "169.254.169.254",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            // The IPv4-embedding forms of forbidden IPv4 addresses.
            "::7f00:1",
            "::a9fe:a9fe",
            "::ffff:0:7f00:1",
            "::ffff:0:a00:1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "fec0::1",
            "feff::1",
            "100::1",
        ] {
            assert!(is_forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "54.239.28.85",
            "2606:4700::1111",
            // The same forms of a public IPv4 address.
            "::ffff:1.1.1.1",
            "64:ff9b::101:101",
            "2002:101:101::1",
        ] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn hop_by_hop_and_host_set_headers_are_dropped() {
        let nominated = vec!["x-secret-hop".to_string()];
        for h in [
            "Host",
            "content-length",
            "Connection",
            "Keep-Alive",
            "Proxy-Authorization",
            "proxy-connection",
            "TE",
            "Trailer",
            "Transfer-Encoding",
            "Upgrade",
            "X-Secret-Hop",
        ] {
            assert!(dropped_header(h, &nominated), "{h}");
        }
        for h in ["authorization", "content-type", "x-amz-date", "accept"] {
            assert!(!dropped_header(h, &nominated), "{h}");
        }
    }

    #[test]
    fn listed_ip_is_allowed() {
        let cfg = HttpConfig {
            allowed_hosts: vec!["http://127.0.0.1:5000".into()],
            ..Default::default()
        };
        let p = HttpPolicy::new(&cfg).unwrap();
        let listed = Origin::parse("http://127.0.0.1:5000").unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(p.allows_ip_for(&listed, lo));
        assert!(!p.allows_ip_for(&listed, "169.254.169.254".parse().unwrap()));
        let u = reqwest::Url::parse("http://127.0.0.1:5001/x").unwrap();
        assert!(p.allows_url(&u).is_err());
        // The exemption is that origin's, not the IP's: another port or
        // scheme at 127.0.0.1 is not listed.
        let other_port = Origin::parse("http://127.0.0.1:22").unwrap();
        assert!(!p.allows_ip_for(&other_port, lo));
        let other_scheme = Origin::parse("https://127.0.0.1:5000").unwrap();
        assert!(!p.allows_ip_for(&other_scheme, lo));
    }

    #[test]
    fn a_name_gets_a_listed_address_only_for_the_ports_listed_there() {
        let cfg = HttpConfig {
            allowed_hosts: vec![
                "http://127.0.0.1:5000".into(),
                "http://api.test:5000".into(),
                "http://evil.test:22".into(),
                "http://both.test:5000".into(),
                "http://both.test:22".into(),
            ],
            ..Default::default()
        };
        let p = HttpPolicy::new(&cfg).unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(p.allows_resolved("api.test", lo));
        assert!(!p.allows_resolved("evil.test", lo));
        assert!(!p.allows_resolved("both.test", lo));
        assert!(!p.allows_resolved("unlisted.test", lo));
        assert!(p.allows_resolved("evil.test", "1.1.1.1".parse().unwrap()));
    }

    // The hook, driven natively against servers on 127.0.0.1: what a
    // guest's `outgoing-handler.handle` hands it, and what comes back.

    use http_body_util::Full;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;

    /// A server on 127.0.0.1 answering every request with `reply` (never,
    /// if empty); each request it read (head and body) arrives on the
    /// channel before its answer leaves.
    async fn server(reply: &'static [u8]) -> (u16, mpsc::UnboundedReceiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = conn.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = (text[..end].lines())
                                .find_map(|l| l.strip_prefix("content-length: "))
                                .map_or(0, |n| n.trim().parse::<usize>().unwrap());
                            if seen.len() >= end + 4 + length {
                                break;
                            }
                        }
                    }
                    let _ = tx.send(String::from_utf8_lossy(&seen).into_owned());
                    if reply.is_empty() {
                        std::future::pending::<()>().await;
                    }
                    let _ = conn.write_all(reply).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        (port, rx)
    }

    fn capability(cfg: HttpConfig) -> Arc<HttpCapability> {
        Arc::new(HttpCapability::new("test-backend", &cfg).unwrap())
    }

    fn request(
        uri: &str,
        headers: &[(&str, &str)],
        body: &'static [u8],
    ) -> http::Request<WasiBody> {
        let mut b = http::Request::builder().method("POST").uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(
            Full::new(Bytes::from_static(body))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .unwrap()
    }

    /// What the guest's `future-incoming-response` resolves to.
    async fn send(
        call: &mut HttpCall,
        req: http::Request<WasiBody>,
    ) -> Result<http::Response<WasiBody>, HttpError> {
        let sent = call
            .hooks
            .send_request(req, None, Box::new(async { Ok(()) }));
        Pin::from(sent).await.map(|(response, _io)| response)
    }

    async fn body(r: http::Response<WasiBody>) -> Vec<u8> {
        r.into_body().collect().await.unwrap().to_bytes().to_vec()
    }

    const HELLO: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";

    #[tokio::test]
    async fn a_listed_origin_is_reached_as_itself_without_hop_by_hop_headers() {
        let (port, mut seen) = server(HELLO).await;
        let cap = capability(HttpConfig {
            allowed_hosts: vec![format!("http://127.0.0.1:{port}")],
            ..Default::default()
        });
        let mut call = HttpCapability::start_call(&cap, "test");
        let req = request(
            &format!("http://127.0.0.1:{port}/v1/x?y=1"),
            &[
                ("host", "evil.example"),
                ("connection", "x-hop"),
                ("x-hop", "1"),
                ("keep-alive", "5"),
                ("te", "trailers"),
                ("trailer", "x-t"),
                ("proxy-authorization", "secret"),
                ("upgrade", "h2c"),
                ("x-kept", "yes"),
                ("content-length", "4"),
            ],
            b"ping",
        );
        let resp = send(&mut call, req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(body(resp).await, b"hello");
        let raw = seen.recv().await.unwrap().to_ascii_lowercase();
        assert!(raw.starts_with("post /v1/x?y=1 http/1.1\r\n"), "{raw}");
        assert!(
            raw.contains(&format!("\r\nhost: 127.0.0.1:{port}\r\n")),
            "{raw}"
        );
        for gone in [
            "evil.example",
            "x-hop",
            "keep-alive",
            "\r\nte:",
            "\r\ntrailer:",
            "proxy-authorization",
            "upgrade",
        ] {
            assert!(!raw.contains(gone), "{gone} in {raw}");
        }
        assert!(raw.contains("\r\nx-kept: yes\r\n"), "{raw}");
        assert!(raw.contains("\r\ncontent-length: 4\r\n"), "{raw}");
        assert!(raw.ends_with("\r\n\r\nping"), "{raw}");
        assert_eq!(HttpCapability::failure_note(&call), None);
    }

    #[tokio::test]
    async fn bytes_out_and_in_are_counted_per_backend() {
        let (port, _seen) = server(HELLO).await;
        let cap = capability(HttpConfig {
            allowed_hosts: vec![format!("http://127.0.0.1:{port}")],
            ..Default::default()
        });
        for _ in 0..2 {
            let mut call = HttpCapability::start_call(&cap, "test");
            let req = request(
                &format!("http://127.0.0.1:{port}/"),
                &[("x-a", "bc"), ("content-length", "4")],
                b"ping",
            );
            body(send(&mut call, req).await.unwrap()).await;
        }
        let c = &cap.counters;
        assert_eq!(c.requests.load(Ordering::Relaxed), 2);
        assert_eq!(c.denied.load(Ordering::Relaxed), 0);
        assert_eq!(c.bytes_in.load(Ordering::Relaxed), 10);
        // Per request: the body (4), and each header's name and value with
        // `: ` and CRLF: `x-a: bc` (9) and the length the host sets from the
        // declared one (`content-length: 4`, 19).
        assert_eq!(c.bytes_out.load(Ordering::Relaxed), 2 * (4 + 9 + 19));
    }

    #[tokio::test]
    async fn an_unlisted_origin_is_denied_with_the_reason_kept_for_the_call() {
        let (port, _seen) = server(HELLO).await;
        let cap = capability(HttpConfig {
            allowed_hosts: vec![format!("http://127.0.0.1:{port}")],
            ..Default::default()
        });
        let mut call = HttpCapability::start_call(&cap, "test");
        // A name that could not resolve: the origin is refused first.
        let e = send(&mut call, request("https://unlisted.invalid/x", &[], b""))
            .await
            .unwrap_err();
        assert!(matches!(e, HttpError::HttpRequestDenied), "{e}");
        assert_eq!(
            HttpCapability::failure_note(&call).as_deref(),
            Some(
                "the host denied: https://unlisted.invalid:443 is not in this backend's allowed_hosts"
            )
        );
        // Another port, or another scheme, of the listed address.
        for other in [
            format!("http://127.0.0.1:{}/", port.wrapping_add(1).max(1)),
            format!("https://127.0.0.1:{port}/"),
        ] {
            let e = send(&mut call, request(&other, &[], b""))
                .await
                .unwrap_err();
            assert!(matches!(e, HttpError::HttpRequestDenied), "{other}: {e}");
        }
        assert_eq!(cap.counters.denied.load(Ordering::Relaxed), 3);
        assert_eq!(cap.counters.requests.load(Ordering::Relaxed), 0);
        // Each call keeps its own.
        let fresh = HttpCapability::start_call(&cap, "test");
        assert_eq!(HttpCapability::failure_note(&fresh), None);
    }

    #[tokio::test]
    async fn a_name_resolving_to_a_forbidden_address_is_denied() {
        let (port, _seen) = server(HELLO).await;
        let cap = capability(HttpConfig {
            allowed_hosts: vec![format!("http://api.test:{port}")],
            resolve: [("api.test".to_string(), "127.0.0.1".parse().unwrap())].into(),
            ..Default::default()
        });
        let mut call = HttpCapability::start_call(&cap, "test");
        let req = request(&format!("http://api.test:{port}/"), &[], b"");
        let e = send(&mut call, req).await.unwrap_err();
        assert!(matches!(e, HttpError::HttpRequestDenied), "{e}");
        let note = HttpCapability::failure_note(&call).unwrap();
        assert!(
            note.starts_with(
                "the host denied: api.test resolves only to forbidden addresses (127.0.0.1)"
            ),
            "{note}"
        );
    }

    #[tokio::test]
    async fn a_name_reaches_a_forbidden_address_whose_origin_is_listed() {
        let (port, mut seen) = server(HELLO).await;
        let cap = capability(HttpConfig {
            allowed_hosts: vec![
                format!("http://api.test:{port}"),
                format!("http://127.0.0.1:{port}"),
            ],
            resolve: [("api.test".to_string(), "127.0.0.1".parse().unwrap())].into(),
            ..Default::default()
        });
        let mut call = HttpCapability::start_call(&cap, "test");
        let req = request(&format!("http://API.test:{port}/p"), &[], b"");
        let resp = send(&mut call, req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let raw = seen.recv().await.unwrap().to_ascii_lowercase();
        assert!(
            raw.contains(&format!("\r\nhost: api.test:{port}\r\n")),
            "{raw}"
        );
    }

    #[tokio::test]
    async fn the_response_body_is_capped_declared_or_not() {
        for reply in [
            HELLO,
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"
                as &[u8],
        ] {
            let (port, _seen) = server(reply).await;
            let cap = capability(HttpConfig {
                allowed_hosts: vec![format!("http://127.0.0.1:{port}")],
                max_response_bytes: 4,
                ..Default::default()
            });
            let mut call = HttpCapability::start_call(&cap, "test");
            let req = request(&format!("http://127.0.0.1:{port}/"), &[], b"");
            let e = send(&mut call, req).await.unwrap_err();
            assert!(matches!(e, HttpError::HttpResponseBodySize(Some(4))), "{e}");
            assert_eq!(HttpCapability::failure_note(&call), None);
        }
    }

    #[tokio::test]
    async fn the_exchange_is_bounded_by_the_timeout() {
        let (port, _seen) = server(b"").await;
        let cap = capability(HttpConfig {
            allowed_hosts: vec![format!("http://127.0.0.1:{port}")],
            timeout_sec: 1,
            ..Default::default()
        });
        let mut call = HttpCapability::start_call(&cap, "test");
        let req = request(&format!("http://127.0.0.1:{port}/"), &[], b"");
        let e = send(&mut call, req).await.unwrap_err();
        assert!(matches!(e, HttpError::HttpResponseTimeout), "{e}");
    }

    #[tokio::test]
    async fn no_redirect_is_followed() {
        let (to, mut reached) = server(HELLO).await;
        let reply: &'static [u8] = Box::leak(
            format!(
                "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{to}/next\r\n\
                 content-length: 0\r\n\r\n"
            )
            .into_bytes()
            .into_boxed_slice(),
        );
        let (from, _seen) = server(reply).await;
        let cap = capability(HttpConfig {
            allowed_hosts: vec![
                format!("http://127.0.0.1:{from}"),
                format!("http://127.0.0.1:{to}"),
            ],
            ..Default::default()
        });
        let mut call = HttpCapability::start_call(&cap, "test");
        let req = request(&format!("http://127.0.0.1:{from}/"), &[], b"");
        let resp = send(&mut call, req).await.unwrap();
        assert_eq!(resp.status(), 302);
        assert_eq!(
            resp.headers()["location"],
            format!("http://127.0.0.1:{to}/next").as_str()
        );
        // Had it been followed, the request would be on the channel before
        // the response came back.
        assert!(reached.try_recv().is_err());
    }
}
