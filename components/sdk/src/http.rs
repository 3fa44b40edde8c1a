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

use crate::BackendError;
use crate::bindings::compute_bridge::backend::http as raw;

pub use raw::{HttpError, Method};

/// A request under construction.
#[derive(Debug, Clone)]
pub struct Request {
    inner: raw::Request,
}

impl Request {
    /// A request with `method` to `url`.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            inner: raw::Request {
                method,
                url: url.into(),
                headers: Vec::new(),
                body: Vec::new(),
            },
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
        self.inner.headers.push((name.into(), value.into()));
        self
    }
    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }
    /// Raw body bytes.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.inner.body = body.into();
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
        (
            &self.inner.method,
            &self.inner.url,
            &self.inner.headers,
            &self.inner.body,
        )
    }

    /// Send it and wait for the whole response.
    pub fn send(self) -> Result<Response, HttpError> {
        self.send_ref()
    }

    /// [`Self::send`] without giving the request up ([`crate::WasmHost`]).
    pub(crate) fn send_ref(&self) -> Result<Response, HttpError> {
        raw::send(&self.inner).map(|r| Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        })
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
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
        HttpError::Denied(m) => format!("denied by the host: {m}"),
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
