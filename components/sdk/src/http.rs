//! Outbound HTTP, limited by the host to the operator's `allowed_hosts` for
//! this backend.
//!
//! ```text
//! let servers: ServerList = http::Request::get("https://api.example.com/v1/servers")
//!     .bearer(&token)
//!     .send()?
//!     .error_for_status()?
//!     .json()?;
//! ```
//!
//! # Underneath
//!
//! A request goes out through the standard `wasi:http/outgoing-handler`
//! import, with the [`wasip2`] crate's bindings (the module `wasi` below:
//! one blocking exchange, the whole body written and the whole response
//! read). The host checks each request (origin on the allow-list, addresses
//! it resolves to), sets `Host`, drops hop-by-hop headers, bounds time and
//! size, and follows no redirect. What the host says maps onto
//! [`HttpError`]:
//!
//! | `wasi:http` `error-code`                          | [`HttpError`]       | [`describe`]                                    |
//! | ------------------------------------------------- | ------------------- | ----------------------------------------------- |
//! | `HTTP-request-denied`                             | `Denied`            | `denied by the host` (the host adds its reason to the call's error) |
//! | `connection-timeout`, `HTTP-response-timeout`     | `Timeout`           | `timed out`                                     |
//! | `HTTP-response-body-size(some(n))`                | `TooLarge(n)`       | `response larger than the host's cap of n bytes` |
//! | `HTTP-request-URI-invalid`, or a URL or header this module cannot send | `InvalidRequest` | `invalid request: …` |
//! | anything else                                     | `Transport`         | `transport: <the code>`                         |
//!
//! A header that `wasi:http` refuses as forbidden (`header-error.forbidden`:
//! the host decides which; wasmtime's defaults are `Host`, `Connection`,
//! `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`,
//! `Proxy-Authorization`, `Transfer-Encoding`, `Upgrade` and
//! `HTTP2-Settings`) is left out and the request still goes: the host sets
//! those itself, as it always did. A header it refuses as malformed is an
//! `InvalidRequest`. The fields a `Connection` header names are hop-by-hop
//! (RFC 9110 §7.6.1); since no `Connection` goes out, they are left out
//! too, so nothing meant for one hop reaches the origin.
//!
//! # Redirects
//!
//! [`Request::send`] (and so `WasmHost`) follows
//! `301`, `302`, `303`, `307` and `308` with a `Location`, at most
//! [`MAX_REDIRECTS`] hops, each hop a new request that the host checks like
//! any other; a hop the host refuses is `Denied`, described
//! `redirect refused: denied by the host`. As RFC 9110 §15.4 says: `303`
//! turns the request into a `GET` without a body (a `HEAD` stays a `HEAD`),
//! the others keep the method and body (§15.4.2 and §15.4.3 allow turning a
//! `POST` into a `GET` on `301` and `302`; this module does not); a request
//! that became a `GET` loses its content headers; a hop to another origin
//! loses `Authorization`, `Cookie` and `Proxy-Authorization`. `Location`
//! is resolved against the request's URL (RFC 3986 §5.2). A `3xx` without
//! `Location`, or of another code, is returned as it is.

use crate::BackendError;

/// At most this many redirects are followed for one [`Request::send`].
pub const MAX_REDIRECTS: usize = 10;

/// Request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
}

impl Method {
    /// The method's token, as on the wire (`GET`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }
}

impl core::fmt::Display for Method {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request did not produce a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The host refused the request: its origin is not on the allow-list,
    /// or it resolved to a forbidden address. The host adds its reason to
    /// the failing call's error itself; the text here is what this crate
    /// was doing (empty for a plain request, `redirect refused` for a hop
    /// of a redirect).
    Denied(String),
    /// The request is malformed (bad URL, bad header).
    InvalidRequest(String),
    /// No complete response within the host's timeout.
    Timeout,
    /// The response body exceeded the host's cap (bytes).
    TooLarge(u64),
    /// Connection, TLS or protocol failure.
    Transport(String),
}

impl core::fmt::Display for HttpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&describe(self))
    }
}

impl std::error::Error for HttpError {}

/// A request under construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    /// A request with `method` to `url`.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    /// `GET url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }
    /// `POST url`.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }
    /// `PUT url`.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new(Method::Put, url)
    }
    /// `PATCH url`.
    pub fn patch(url: impl Into<String>) -> Self {
        Self::new(Method::Patch, url)
    }
    /// `DELETE url`.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new(Method::Delete, url)
    }

    /// Add a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }
    /// Raw body bytes.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    /// JSON body with `content-type: application/json`.
    pub fn json<T: serde::Serialize>(self, value: &T) -> Self {
        let body = serde_json::to_vec(value).expect("serializing a request body");
        self.header("content-type", "application/json").body(body)
    }
    /// `application/x-www-form-urlencoded` body.
    pub fn form(self, pairs: &[(&str, &str)]) -> Self {
        let body = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }

    /// The request as built, e.g. to sign it.
    pub fn parts(&self) -> (&Method, &str, &[(String, String)], &[u8]) {
        (&self.method, &self.url, &self.headers, &self.body)
    }

    /// Send it through `wasi:http`, following redirects (see the module
    /// docs), and wait for the whole response.
    pub fn send(self) -> Result<Response, HttpError> {
        self.send_ref()
    }

    /// [`Self::send`] without giving the request up ([`crate::WasmHost`]).
    pub(crate) fn send_ref(&self) -> Result<Response, HttpError> {
        follow_redirects(self, wasi::send)
    }
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// A response of `status` with `body` and no headers: what a test, or
    /// a [`MemoryHost`](crate::MemoryHost) handler, answers with.
    pub fn new(status: u16, body: impl AsRef<[u8]>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.as_ref().to_vec(),
        }
    }
    /// The same response with header `name: value` added.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// Body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, BackendError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            BackendError::internal(format!(
                "unexpected response body (status {}): {e}",
                self.status
            ))
        })
    }
    /// The response itself if 2xx; otherwise an error classified by status:
    /// 429 and 5xx are `transient`, 401 and 403 `config`, the rest
    /// `internal`. Backends with documented error bodies map them first.
    pub fn error_for_status(self) -> Result<Self, BackendError> {
        if self.is_success() {
            return Ok(self);
        }
        let snippet: String = self.text().chars().take(300).collect();
        let msg = format!("HTTP {}: {snippet}", self.status);
        Err(match self.status {
            429 | 500..=599 => BackendError::transient(msg),
            401 | 403 => BackendError::config(msg),
            _ => BackendError::internal(msg),
        })
    }
}

/// A sentence for `e`, for logs and error messages.
pub fn describe(e: &HttpError) -> String {
    match e {
        HttpError::Denied(m) if m.is_empty() => "denied by the host".to_string(),
        HttpError::Denied(m) => format!("{m}: denied by the host"),
        HttpError::InvalidRequest(m) => format!("invalid request: {m}"),
        HttpError::Timeout => "timed out".to_string(),
        HttpError::TooLarge(n) => format!("response larger than the host's cap of {n} bytes"),
        HttpError::Transport(m) => format!("transport: {m}"),
    }
}

/// A denied request is the operator's to fix (`config`: allow the host);
/// timeouts and transport failures pass (`transient`); the rest is a bug.
impl From<HttpError> for BackendError {
    fn from(e: HttpError) -> Self {
        let msg = describe(&e);
        match e {
            HttpError::Denied(_) => BackendError::config(msg),
            HttpError::Timeout | HttpError::Transport(_) => BackendError::transient(msg),
            HttpError::InvalidRequest(_) | HttpError::TooLarge(_) => BackendError::internal(msg),
        }
    }
}

/// Percent-encode `s` for a URL query or form value (RFC 3986 unreserved
/// characters pass through).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// What a hop refused by the host is described as when it was a redirect.
const REDIRECT_REFUSED: &str = "redirect refused";

/// Send `req` with `hop` (one exchange, no redirects) and follow the
/// redirects it answers with, as the module docs say (RFC 9110 §15.4).
fn follow_redirects(
    req: &Request,
    mut hop: impl FnMut(&Request) -> Result<Response, HttpError>,
) -> Result<Response, HttpError> {
    let mut next: Option<Request> = None;
    for hops in 0..=MAX_REDIRECTS {
        let current = next.as_ref().unwrap_or(req);
        let resp = match hop(current) {
            Ok(resp) => resp,
            Err(HttpError::Denied(_)) if hops > 0 => {
                return Err(HttpError::Denied(REDIRECT_REFUSED.to_string()));
            }
            Err(e) => return Err(e),
        };
        let Some(redirected) = redirect(current, &resp)? else {
            return Ok(resp);
        };
        if hops == MAX_REDIRECTS {
            break;
        }
        next = Some(redirected);
    }
    Err(HttpError::Transport(format!(
        "more than {MAX_REDIRECTS} redirects from {}",
        req.url
    )))
}

/// The request that follows `resp` to `req`, if `resp` is a redirect this
/// module follows (RFC 9110 §15.4).
fn redirect(req: &Request, resp: &Response) -> Result<Option<Request>, HttpError> {
    if !matches!(resp.status, 301 | 302 | 303 | 307 | 308) {
        return Ok(None);
    }
    // §10.2.2: without `Location` there is nowhere to go; the caller gets
    // the response.
    let Some(location) = resp.header("location") else {
        return Ok(None);
    };
    let url = resolve(&req.url, location.trim()).ok_or_else(|| {
        HttpError::Transport(format!(
            "HTTP {} from {} with an unusable location {location:?}",
            resp.status, req.url
        ))
    })?;
    let mut next = req.clone();
    // §15.4.4: a 303 is followed with a retrieval (GET, or HEAD for a HEAD).
    if resp.status == 303 && next.method != Method::Head {
        next.method = Method::Get;
    }
    if next.method != req.method {
        // §15.4, list item 2: a request changed to GET loses its content
        // and the header fields about it.
        next.body.clear();
        next.headers.retain(|(name, _)| !is_content_header(name));
    }
    if origin(&url) != origin(&req.url) {
        // §15.4, list item 3: credentials added by the caller are for the
        // origin it named, not for wherever a server sends it.
        next.headers.retain(|(name, _)| !is_credential_header(name));
    }
    next.url = url;
    Ok(Some(next))
}

/// Header fields about a request's content (RFC 9110 §15.4).
fn is_content_header(name: &str) -> bool {
    [
        "content-encoding",
        "content-language",
        "content-location",
        "content-type",
        "content-length",
        "digest",
        "last-modified",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Header fields carrying credentials for one origin (RFC 9110 §15.4).
fn is_credential_header(name: &str) -> bool {
    ["authorization", "cookie", "proxy-authorization"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

/// `scheme://authority` of an absolute URL, lower-cased, if it has one.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = split_scheme(url)?;
    let rest = rest.strip_prefix("//")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(format!("{scheme}://{}", &rest[..end]).to_ascii_lowercase())
}

/// `(scheme, rest)` if `s` starts with a scheme (RFC 3986 §3.1).
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let colon = s.find(':')?;
    let scheme = &s[..colon];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then(|| (scheme, &s[colon + 1..]))
}

/// Resolve `reference` (a `Location` value) against the absolute URL
/// `base`, as RFC 3986 §5.2.2 does (non-strict), without the fragment: a
/// fragment never goes on the wire. `None` if `base` is not absolute.
fn resolve(base: &str, reference: &str) -> Option<String> {
    let reference = reference.split('#').next().unwrap_or_default();
    let (base_scheme, base_rest) = split_scheme(base)?;
    let base_rest = base_rest.split('#').next().unwrap_or_default();
    let (base_authority, base_path, base_query) = split_hier(base_rest);
    let base_authority = base_authority?;

    let (scheme, rest) = match split_scheme(reference) {
        Some((s, rest)) => (s, rest),
        None => (base_scheme, reference),
    };
    let (authority, path, query) = split_hier(rest);
    let (authority, path, query) = if split_scheme(reference).is_some() || authority.is_some() {
        (authority?, remove_dot_segments(path), query)
    } else if path.is_empty() {
        (base_authority, base_path.to_string(), query.or(base_query))
    } else if path.starts_with('/') {
        (base_authority, remove_dot_segments(path), query)
    } else {
        // §5.2.3: merge with the base path's directory.
        let merged = match base_path.rfind('/') {
            Some(i) => format!("{}{path}", &base_path[..=i]),
            None => format!("/{path}"),
        };
        (base_authority, remove_dot_segments(&merged), query)
    };
    let path = if path.is_empty() { "/" } else { &path };
    let mut url = format!("{scheme}://{authority}{path}");
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    Some(url)
}

/// `(authority, path, query)` of a URL's part after `scheme:`, fragment
/// already removed (RFC 3986 §3).
fn split_hier(rest: &str) -> (Option<&str>, &str, Option<&str>) {
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find('/').unwrap_or(after.len());
            (Some(&after[..end]), &after[end..], query)
        }
        None => (None, rest, query),
    }
}

/// RFC 3986 §5.2.4: `.` and `..` segments out of `path`.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if path.starts_with('/') && !joined.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
}

/// One exchange through `wasi:http/outgoing-handler`, with the [`wasip2`]
/// bindings: no redirects (the host follows none; [`follow_redirects`]
/// does).
mod wasi {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        ErrorCode, Fields, HeaderError, IncomingBody, Method as WasiMethod, OutgoingBody,
        OutgoingRequest, Scheme,
    };
    use wasip2::io::streams::StreamError;

    use super::{HttpError, Method, Request, Response};

    /// Most bytes one `blocking-write-and-flush` may take (`wasi:io`).
    const WRITE_CHUNK: usize = 4096;
    /// Most bytes asked of one `blocking-read`.
    const READ_CHUNK: u64 = 64 * 1024;

    /// Send `req` as it is and read the whole response.
    pub(super) fn send(req: &Request) -> Result<Response, HttpError> {
        let uri: http::Uri = req
            .url
            .parse()
            .map_err(|e| HttpError::InvalidRequest(format!("bad URL {:?}: {e}", req.url)))?;
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
            Some(s) => Scheme::Other(s.to_string()),
            None => {
                return Err(HttpError::InvalidRequest(format!(
                    "URL {:?} is not absolute",
                    req.url
                )));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| HttpError::InvalidRequest(format!("URL {:?} has no host", req.url)))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());

        let nominated: Vec<String> = (req.headers.iter())
            .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, value)| value.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        let headers = Fields::new();
        for (name, value) in &req.headers {
            if nominated.contains(&name.to_ascii_lowercase()) {
                continue;
            }
            match headers.append(name, value.as_bytes()) {
                Ok(()) => {}
                // The host sets these itself (module docs).
                Err(HeaderError::Forbidden) => {}
                Err(HeaderError::InvalidSyntax) => {
                    return Err(HttpError::InvalidRequest(format!(
                        "bad header {name:?}: {value:?}"
                    )));
                }
                Err(HeaderError::Immutable) => {
                    return Err(HttpError::Transport(
                        "the host made fresh header fields immutable".to_string(),
                    ));
                }
            }
        }
        // Declare the body's length, as RFC 9110 §8.6 asks of a client
        // that knows it: the host sends exactly that many bytes with a
        // `Content-Length` (without one it would stream the body chunked,
        // which some APIs and proxies refuse for a request).
        let declared = req
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-length"));
        if !declared && (!req.body.is_empty() || sends_content(req.method)) {
            headers
                .append("content-length", req.body.len().to_string().as_bytes())
                .map_err(|e| {
                    HttpError::Transport(format!("the host refused a content-length: {e:?}"))
                })?;
        }
        let request = OutgoingRequest::new(headers);
        let head = request
            .set_method(&method(req.method))
            .and_then(|()| request.set_scheme(Some(&scheme)))
            .and_then(|()| request.set_authority(Some(authority.as_str())))
            .and_then(|()| request.set_path_with_query(Some(path)));
        if head.is_err() {
            return Err(HttpError::InvalidRequest(format!(
                "wasi:http refused the head of {} {}",
                req.method, req.url
            )));
        }
        let body = request
            .body()
            .map_err(|()| HttpError::Transport("request body already taken".to_string()))?;

        // Hand the request over first, then write the body: the host reads
        // it while sending, so a body larger than its buffer cannot stall.
        let pending = outgoing_handler::handle(request, None).map_err(from_code)?;
        // A body that could not be sent whole is dropped unfinished, which
        // tells the host so; the exchange then ends and its answer says
        // why (a refusal, a timeout), or the server answered early (a 413,
        // a 401): either says more than the failed write.
        let sent = write_body(&body, &req.body)
            .and_then(|()| OutgoingBody::finish(body, None).map_err(from_code));

        pending.subscribe().block();
        let incoming = match (pending.get(), sent) {
            (Some(Ok(Ok(resp))), _) => resp,
            (Some(Ok(Err(code))), _) => return Err(from_code(code)),
            (_, Err(e)) => return Err(e),
            (Some(Err(())), Ok(())) => {
                return Err(HttpError::Transport("response taken twice".to_string()));
            }
            (None, Ok(())) => {
                return Err(HttpError::Transport("response not ready".to_string()));
            }
        };
        let status = incoming.status();
        let headers = incoming
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| {
                (
                    name.to_ascii_lowercase(),
                    String::from_utf8_lossy(&value).into_owned(),
                )
            })
            .collect();
        let body = incoming
            .consume()
            .map_err(|()| HttpError::Transport("response body already taken".to_string()))?;
        let body = read_body(body)?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// Methods whose request defines a meaning for content (RFC 9110
    /// §9.3): an empty body of one is declared as `content-length: 0`.
    fn sends_content(m: Method) -> bool {
        matches!(m, Method::Post | Method::Put | Method::Patch)
    }

    fn method(m: Method) -> WasiMethod {
        match m {
            Method::Get => WasiMethod::Get,
            Method::Head => WasiMethod::Head,
            Method::Post => WasiMethod::Post,
            Method::Put => WasiMethod::Put,
            Method::Patch => WasiMethod::Patch,
            Method::Delete => WasiMethod::Delete,
        }
    }

    fn write_body(body: &OutgoingBody, bytes: &[u8]) -> Result<(), HttpError> {
        let stream = body
            .write()
            .map_err(|()| HttpError::Transport("request body stream already taken".to_string()))?;
        for chunk in bytes.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(stream_error)?;
        }
        // The stream is a child of the body: it goes before `finish`.
        drop(stream);
        Ok(())
    }

    fn read_body(body: IncomingBody) -> Result<Vec<u8>, HttpError> {
        let stream = body
            .stream()
            .map_err(|()| HttpError::Transport("response body stream already taken".to_string()))?;
        let mut out = Vec::new();
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => out.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(e) => return Err(stream_error(e)),
            }
        }
        // The stream is a child of the body, and the trailers are of no use.
        drop(stream);
        drop(IncomingBody::finish(body));
        Ok(out)
    }

    /// A failed stream: the `error-code` behind it when `wasi:http` has one.
    fn stream_error(e: StreamError) -> HttpError {
        match e {
            StreamError::Closed => HttpError::Transport("stream closed early".to_string()),
            StreamError::LastOperationFailed(err) => {
                match wasip2::http::types::http_error_code(&err) {
                    Some(code) => from_code(code),
                    None => HttpError::Transport(err.to_debug_string()),
                }
            }
        }
    }

    /// The contract with the host, as the module docs' table says.
    pub(super) fn from_code(code: ErrorCode) -> HttpError {
        match code {
            ErrorCode::HttpRequestDenied => HttpError::Denied(String::new()),
            ErrorCode::ConnectionTimeout | ErrorCode::HttpResponseTimeout => HttpError::Timeout,
            ErrorCode::HttpResponseBodySize(Some(n)) => HttpError::TooLarge(n),
            ErrorCode::HttpRequestUriInvalid => {
                HttpError::InvalidRequest("the host found the URL invalid".to_string())
            }
            other => HttpError::Transport(format!("{other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&str, &str)]) -> Response {
        headers
            .iter()
            .fold(Response::new(status, "ok"), |r, (k, v)| r.with_header(k, v))
    }

    /// Follow `req` over answers scripted per URL; return what was sent.
    fn run(
        req: Request,
        answers: &[(&str, Result<Response, HttpError>)],
    ) -> (Result<Response, HttpError>, Vec<Request>) {
        let mut sent = Vec::new();
        let result = follow_redirects(&req, |r| {
            sent.push(r.clone());
            answers
                .iter()
                .find(|(url, _)| *url == r.url)
                .map(|(_, a)| a.clone())
                .unwrap_or_else(|| Ok(answer(200, &[])))
        });
        (result, sent)
    }

    #[test]
    fn the_wasi_error_codes_map_onto_the_contract() {
        use wasip2::http::types::ErrorCode;
        let cases = [
            (ErrorCode::HttpRequestDenied, "denied by the host"),
            (ErrorCode::ConnectionTimeout, "timed out"),
            (ErrorCode::HttpResponseTimeout, "timed out"),
            (
                ErrorCode::HttpResponseBodySize(Some(1_048_576)),
                "response larger than the host's cap of 1048576 bytes",
            ),
            (
                ErrorCode::HttpRequestUriInvalid,
                "invalid request: the host found the URL invalid",
            ),
            (
                ErrorCode::ConnectionRefused,
                "transport: ErrorCode::ConnectionRefused",
            ),
            (
                ErrorCode::HttpResponseBodySize(None),
                "transport: ErrorCode::HttpResponseBodySize(None)",
            ),
        ];
        for (code, text) in cases {
            assert_eq!(describe(&wasi::from_code(code)), text);
        }
        assert_eq!(
            wasi::from_code(ErrorCode::HttpRequestDenied),
            HttpError::Denied(String::new())
        );
        assert!(matches!(
            BackendError::from(wasi::from_code(ErrorCode::HttpRequestDenied)),
            BackendError::Config(_)
        ));
    }

    #[test]
    fn a_redirect_is_followed_with_the_same_method_body_and_headers() {
        let req = Request::put("https://a.example/v1/x?y=1")
            .bearer("t")
            .json(&serde_json::json!({"k": 1}));
        for status in [301, 302, 307, 308] {
            let (result, sent) = run(
                req.clone(),
                &[(
                    "https://a.example/v1/x?y=1",
                    Ok(answer(status, &[("location", "../v2/x?y=2#frag")])),
                )],
            );
            assert_eq!(result.unwrap().status, 200);
            assert_eq!(sent.len(), 2);
            let (method, url, headers, body) = sent[1].parts();
            assert_eq!(*method, Method::Put, "{status}");
            assert_eq!(url, "https://a.example/v2/x?y=2");
            assert_eq!(headers, req.parts().2);
            assert_eq!(body, br#"{"k":1}"#);
        }
    }

    #[test]
    fn a_303_becomes_a_get_without_content_and_another_origin_gets_no_credentials() {
        let req = Request::post("https://a.example/jobs")
            .bearer("t")
            .header("cookie", "c=1")
            .header("x-trace", "7")
            .form(&[("a", "b")]);
        let (result, sent) = run(
            req,
            &[(
                "https://a.example/jobs",
                Ok(answer(
                    303,
                    &[("Location", "https://B.example:8443/jobs/1")],
                )),
            )],
        );
        assert!(result.is_ok());
        let (method, url, headers, body) = sent[1].parts();
        assert_eq!(*method, Method::Get);
        assert_eq!(url, "https://B.example:8443/jobs/1");
        assert_eq!(headers, [("x-trace".to_string(), "7".to_string())]);
        assert!(body.is_empty());

        // A HEAD stays a HEAD; on the same origin the credentials stay.
        let (_, sent) = run(
            Request::new(Method::Head, "http://a.example/x").bearer("t"),
            &[("http://a.example/x", Ok(answer(303, &[("location", "/y")])))],
        );
        assert_eq!(*sent[1].parts().0, Method::Head);
        assert_eq!(sent[1].parts().1, "http://a.example/y");
        assert_eq!(sent[1].parts().2.len(), 1);
    }

    #[test]
    fn a_hop_the_host_refuses_is_a_refused_redirect() {
        let (result, sent) = run(
            Request::get("https://a.example/"),
            &[
                (
                    "https://a.example/",
                    Ok(answer(302, &[("location", "http://169.254.169.254/")])),
                ),
                (
                    "http://169.254.169.254/",
                    Err(HttpError::Denied(String::new())),
                ),
            ],
        );
        let e = result.unwrap_err();
        assert_eq!(describe(&e), "redirect refused: denied by the host");
        assert_eq!(sent.len(), 2);
        // The first request refused is a plain denial.
        let (result, _) = run(
            Request::get("https://a.example/"),
            &[("https://a.example/", Err(HttpError::Denied(String::new())))],
        );
        assert_eq!(describe(&result.unwrap_err()), "denied by the host");
    }

    #[test]
    fn at_most_ten_redirects_are_followed() {
        let mut sent = 0;
        let e = follow_redirects(&Request::get("https://a.example/0"), |r| {
            sent += 1;
            let n: u32 = r.url.rsplit('/').next().unwrap().parse().unwrap();
            Ok(answer(307, &[("location", &format!("/{}", n + 1))]))
        })
        .unwrap_err();
        assert_eq!(sent, MAX_REDIRECTS + 1);
        assert!(
            matches!(e, HttpError::Transport(ref m) if m.contains("more than 10")),
            "{e:?}"
        );

        // Exactly ten are fine.
        let mut sent = 0;
        let resp = follow_redirects(&Request::get("https://a.example/0"), |r| {
            sent += 1;
            let n: usize = r.url.rsplit('/').next().unwrap().parse().unwrap();
            Ok(if n < MAX_REDIRECTS {
                answer(308, &[("location", &format!("{}", n + 1))])
            } else {
                answer(200, &[])
            })
        })
        .unwrap();
        assert_eq!((resp.status, sent), (200, MAX_REDIRECTS + 1));
    }

    #[test]
    fn other_answers_and_errors_come_back_as_they_are() {
        for status in [200, 300, 304, 404] {
            let (result, sent) = run(
                Request::get("https://a.example/"),
                &[(
                    "https://a.example/",
                    Ok(answer(status, &[("location", "/elsewhere")])),
                )],
            );
            assert_eq!((result.unwrap().status, sent.len()), (status, 1));
        }
        let (result, _) = run(
            Request::get("https://a.example/"),
            &[("https://a.example/", Ok(answer(302, &[])))],
        );
        assert_eq!(
            result.unwrap().status,
            302,
            "no location: nothing to follow"
        );
        let (result, _) = run(
            Request::get("https://a.example/"),
            &[
                ("https://a.example/", Ok(answer(302, &[("location", "/t")]))),
                ("https://a.example/t", Err(HttpError::Timeout)),
            ],
        );
        assert_eq!(result.unwrap_err(), HttpError::Timeout);
    }

    #[test]
    fn locations_resolve_as_rfc_3986_says() {
        // RFC 3986 §5.4.1, "normal examples", base http://a/b/c/d;p?q.
        let base = "http://a/b/c/d;p?q";
        for (reference, target) in [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g/"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("g#s", "http://a/b/c/g"),
            (";x", "http://a/b/c/;x"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../", "http://a/"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("https://other:8443/x/../y", "https://other:8443/y"),
        ] {
            assert_eq!(
                resolve(base, reference).as_deref(),
                Some(target),
                "{reference}"
            );
        }
        assert_eq!(resolve("not a url", "/x"), None);
    }
}
