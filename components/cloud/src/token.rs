//! OAuth 2.0 access tokens (RFC 6749 §5.1 answers, bearer use per RFC
//! 6750), kept in the host's cache so a backend asks its identity provider
//! once per token lifetime instead of once per call.
//!
//! How a token is obtained (a signed JWT for GCP, client credentials for
//! Azure) and how a refusal is explained stay with each cloud; this module
//! reads the success, classifies throttling and server faults, and caches.
//! The token is a secret: [`Token`]'s `Debug` hides it and nothing here
//! logs it.

use compute_bridge_sdk::http::{HttpError, Request, Response};
use compute_bridge_sdk::log::Level;
use compute_bridge_sdk::{BackendError, Host};
use serde::Deserialize;

/// An access token and its lifetime in seconds.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The bearer token.
    pub access_token: String,
    /// Seconds it is valid for, from when it was issued.
    pub expires_in: u64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(<redacted>, {}s)", self.expires_in)
    }
}

/// RFC 6749 §5.1: `access_token`, `token_type` (must be `Bearer`, compared
/// case-insensitively), `expires_in`.
#[derive(Deserialize)]
struct TokenOk {
    access_token: String,
    #[serde(default)]
    token_type: String,
    expires_in: u64,
}

/// The token endpoint's answer: a bearer token, or the error classified.
/// 429 and 5xx pass (`transient`, naming `endpoint`); any other refusal is
/// explained by the cloud's `refused`, which names the operator's key to
/// fix.
pub fn parse_token(
    resp: &Response,
    endpoint: &str,
    refused: impl FnOnce(&Response) -> BackendError,
) -> Result<Token, BackendError> {
    if resp.is_success() {
        let ok: TokenOk = resp.json()?;
        if !ok.token_type.is_empty() && !ok.token_type.eq_ignore_ascii_case("bearer") {
            return Err(BackendError::internal(format!(
                "token endpoint returned a {:?} token, not a bearer token",
                ok.token_type
            )));
        }
        return Ok(Token {
            access_token: ok.access_token,
            expires_in: ok.expires_in,
        });
    }
    if resp.status == 429 || resp.status >= 500 {
        return Err(BackendError::transient(format!(
            "{endpoint}: HTTP {}",
            resp.status
        )));
    }
    Err(refused(resp))
}

/// How long to keep a token: its lifetime less a margin (a tenth, at most
/// five minutes) so it is never used in its last moments.
pub fn cache_ttl(expires_in: u64) -> u32 {
    let margin = (expires_in / 10).min(300);
    u32::try_from(expires_in - margin).unwrap_or(u32::MAX)
}

/// Why a request sent with a [`Bearer`] token got no answer to act on.
#[derive(Debug)]
pub enum SendError {
    /// It never left: no token, or the host refused to send it.
    NotSent(BackendError),
    /// It may have reached the cloud: the connection failed, timed out, or
    /// the answer was too big to read. Whatever it asked for may have been
    /// done.
    Lost(BackendError),
}

impl From<SendError> for BackendError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::NotSent(e) | SendError::Lost(e) => e,
        }
    }
}

/// One credential's token in the host's cache, under `cache_key` (which
/// names the credential, never its secret).
pub struct Bearer<'h, H: Host> {
    host: &'h H,
    cache_key: String,
}

impl<'h, H: Host> Bearer<'h, H> {
    /// The token kept under `cache_key` in `host`'s cache.
    pub fn new(host: &'h H, cache_key: impl Into<String>) -> Self {
        Self {
            host,
            cache_key: cache_key.into(),
        }
    }

    /// The cached token, or a new one from `fetch` (then cached for its
    /// life less a margin, [`cache_ttl`]).
    pub fn token(
        &self,
        fetch: impl FnOnce() -> Result<Token, BackendError>,
    ) -> Result<String, BackendError> {
        if let Some(t) = self
            .host
            .cache_get(&self.cache_key)
            .and_then(|v| String::from_utf8(v).ok())
        {
            return Ok(t);
        }
        let token = fetch()?;
        self.host.cache_set(
            &self.cache_key,
            token.access_token.as_bytes(),
            cache_ttl(token.expires_in),
        );
        self.host.log(
            Level::Debug,
            "fetched an access token",
            &[("expires_in", &token.expires_in.to_string())],
        );
        Ok(token.access_token)
    }

    /// Send `req` with the token (cached, or from `fetch`). A 401 means
    /// the token went bad early (revoked, clock skew): it is dropped and the
    /// request sent once more with a new one (RFC 6750 §3.1
    /// `invalid_token`).
    pub fn send(
        &self,
        req: &Request,
        fetch: impl Fn() -> Result<Token, BackendError>,
    ) -> Result<Response, SendError> {
        let once = || {
            let token = self.token(&fetch).map_err(SendError::NotSent)?;
            self.host.send(&req.clone().bearer(&token)).map_err(|e| {
                let lost = matches!(
                    e,
                    HttpError::Timeout | HttpError::Transport(_) | HttpError::TooLarge(_)
                );
                let e = BackendError::from(e);
                if lost {
                    SendError::Lost(e)
                } else {
                    SendError::NotSent(e)
                }
            })
        };
        let resp = once()?;
        if resp.status != 401 {
            return Ok(resp);
        }
        self.forget();
        once()
    }

    /// Drop the cached token (the server stopped accepting it: revoked,
    /// clock skew); the next [`Self::token`] fetches a new one.
    pub fn forget(&self) {
        self.host.cache_set(&self.cache_key, &[], 0);
    }
}

/// What the backends' token tests share (the feature `testing`, which
/// only their dev-dependencies turn on).
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use compute_bridge_sdk::BackendError;
    use compute_bridge_sdk::http::Response;

    use super::Token;

    /// Assert that `parse`, a backend's reading of its token endpoint's
    /// answer, keeps [`super::parse_token`]'s rule: a 429 or a 5xx is
    /// `transient`, whatever its body.
    pub fn assert_busy_answers_are_transient(
        parse: impl Fn(&Response) -> Result<Token, BackendError>,
    ) {
        for status in [429, 500, 503] {
            let got = parse(&Response::new(status, ""));
            assert!(
                matches!(got, Err(BackendError::Transient(_))),
                "HTTP {status}: {got:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compute_bridge_sdk::MemoryHost;

    fn refused(r: &Response) -> BackendError {
        BackendError::config(format!("refused: HTTP {}", r.status))
    }

    #[test]
    fn a_bearer_token_is_read_and_anything_else_classified() {
        let t = parse_token(
            &Response::new(
                200,
                r#"{"access_token":"ya29.x","token_type":"Bearer","expires_in":3599}"#,
            ),
            "token endpoint",
            refused,
        )
        .unwrap();
        assert_eq!((t.access_token.as_str(), t.expires_in), ("ya29.x", 3599));
        assert!(!format!("{t:?}").contains("ya29"), "Debug hides the token");
        let mac = parse_token(
            &Response::new(
                200,
                r#"{"access_token":"x","token_type":"mac","expires_in":1}"#,
            ),
            "token endpoint",
            refused,
        );
        assert!(matches!(mac, Err(BackendError::Internal(_))), "{mac:?}");
        for status in [429, 500, 503] {
            let e =
                parse_token(&Response::new(status, ""), "identity platform", refused).unwrap_err();
            assert_eq!(
                e,
                BackendError::Transient(format!("identity platform: HTTP {status}"))
            );
        }
        let e = parse_token(&Response::new(400, "{}"), "token endpoint", refused).unwrap_err();
        assert_eq!(e, BackendError::Config("refused: HTTP 400".into()));
    }

    /// Token `t<n>` for the n-th fetch, an hour long.
    fn numbered(fetches: &std::cell::Cell<u32>) -> Result<Token, BackendError> {
        fetches.set(fetches.get() + 1);
        Ok(Token {
            access_token: format!("t{}", fetches.get()),
            expires_in: 3600,
        })
    }

    #[test]
    fn the_margin_is_a_tenth_at_most_five_minutes() {
        assert_eq!(cache_ttl(3600), 3300);
        assert_eq!(cache_ttl(600), 540);
        assert_eq!(cache_ttl(0), 0);
    }

    #[test]
    fn a_token_is_fetched_once_per_lifetime_and_refetched_when_forgotten() {
        let host = MemoryHost::new();
        let bearer = Bearer::new(&host, "test-token app-1");
        let fetches = std::cell::Cell::new(0);
        let fetch = || numbered(&fetches);
        assert_eq!(bearer.token(fetch).unwrap(), "t1");
        host.advance(3299);
        assert_eq!(bearer.token(fetch).unwrap(), "t1");
        host.advance(1);
        assert_eq!(
            bearer.token(fetch).unwrap(),
            "t2",
            "expired with its margin"
        );
        bearer.forget();
        assert_eq!(bearer.token(fetch).unwrap(), "t3");
        assert_eq!(fetches.get(), 3);
        let logs = host.logs();
        assert!(logs.iter().all(|l| !format!("{l:?}").contains("t1")));
        assert_eq!(logs.len(), 3);
    }

    #[test]
    fn a_401_drops_the_token_and_sends_once_more_with_a_new_one() {
        let host = MemoryHost::new();
        let bearer = Bearer::new(&host, "k");
        let fetches = std::cell::Cell::new(0);
        let fetch = || numbered(&fetches);
        host.push_http(Ok(Response::new(401, "")));
        host.push_http(Ok(Response::new(401, "")));
        let req = Request::get("https://api.example/x");
        let r = bearer.send(&req, fetch).unwrap();
        assert_eq!(r.status, 401, "a second 401 is the answer, not a loop");
        let auth: Vec<String> = host
            .requests()
            .iter()
            .map(|r| {
                r.parts()
                    .2
                    .iter()
                    .find(|(k, _)| k == "authorization")
                    .unwrap()
                    .1
                    .clone()
            })
            .collect();
        assert_eq!(auth, ["Bearer t1", "Bearer t2"]);
        host.push_http(Err(HttpError::Timeout));
        assert!(matches!(
            bearer.send(&req, fetch),
            Err(SendError::Lost(BackendError::Transient(_)))
        ));
        host.push_http(Err(HttpError::Denied("no".into())));
        assert!(matches!(
            bearer.send(&req, fetch),
            Err(SendError::NotSent(BackendError::Config(_)))
        ));
        assert_eq!(fetches.get(), 2, "the second token was kept");
    }

    #[test]
    fn a_failed_fetch_caches_nothing() {
        let host = MemoryHost::new();
        let bearer = Bearer::new(&host, "k");
        let e = bearer
            .token(|| Err(BackendError::transient("down")))
            .unwrap_err();
        assert_eq!(e, BackendError::Transient("down".into()));
        assert_eq!(host.cache_get("k"), None);
    }
}
