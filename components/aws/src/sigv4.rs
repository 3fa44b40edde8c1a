//! AWS Signature Version 4 (header signing), as the EC2 Query API needs it,
//! done by the `aws-sigv4` crate (`sign-http` and `http1` only, no
//! default features). This module turns a request as the backend builds it
//! (a path not yet percent-encoded, a query as sent, headers with `Host`)
//! into one `aws-sigv4` takes, and hands back the headers to add. It is
//! checked against AWS's published test suite (`tests/sigv4-suite`, run by
//! `tests/sigv4_suite.rs`).
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html>

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SessionTokenMode, SignableBody, SignableRequest,
    SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;

/// The signing algorithm's name, first word of the `Authorization` header.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// An access key. `Debug` never prints the secret or the session token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `AKIA...` access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials (STS), if any.
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The parts of an HTTP request that are signed.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path, not yet percent-encoded (`/`, `/example space/`).
    pub path: &'a str,
    /// The query string as sent, without `?` (may be empty).
    pub query: &'a str,
    /// Headers to sign, `Host` included (the signature covers it; there is
    /// no request to sign without it); names in any case.
    pub headers: &'a [(String, String)],
    /// The body.
    pub body: &'a [u8],
}

/// Choices the signing process leaves to the caller.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Remove `.`/`..` segments and repeated slashes from the path (every
    /// service but S3).
    pub normalize_path: bool,
    /// Add and sign `x-amz-content-sha256`.
    pub content_sha256_header: bool,
    /// Sign `x-amz-security-token` (some services want it added after).
    pub sign_session_token: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            normalize_path: true,
            content_sha256_header: false,
            sign_session_token: true,
        }
    }
}

/// The outcome of signing.
#[derive(Debug, Clone)]
pub struct Signed {
    /// Hex signature.
    pub signature: String,
    /// Headers to add to the request as sent (`x-amz-date`,
    /// `x-amz-content-sha256`, `x-amz-security-token`, then
    /// `authorization`, last).
    pub headers: Vec<(String, String)>,
}

/// Why a request could not be signed: no `Host` header, or a part
/// `aws-sigv4` refuses (a header value with a control character, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignError(pub String);

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot sign the request: {}", self.0)
    }
}

impl std::error::Error for SignError {}

/// Sign `req` for `service` in `region` at `unix_time`.
pub fn sign(
    req: &Request<'_>,
    creds: &Credentials,
    region: &str,
    service: &str,
    unix_time: u64,
    opts: Options,
) -> Result<Signed, SignError> {
    // Header values as a receiver sees them: RFC 9112 §5.2 turns a folded
    // line into a space, and SigV4 collapses runs of spaces and trims.
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.to_ascii_lowercase(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    let host = headers
        .iter()
        .find(|(n, _)| n == "host")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| SignError("no `host` header".into()))?;
    let uri = format!(
        "https://{host}{}{}",
        encode_path(req.path),
        encode_query(req.query)
    );

    let mut settings = SigningSettings::default();
    // The path is encoded once here, as SigV4 wants it in the canonical
    // request for every service this module signs for.
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = if opts.normalize_path {
        UriPathNormalizationMode::Enabled
    } else {
        UriPathNormalizationMode::Disabled
    };
    settings.payload_checksum_kind = if opts.content_sha256_header {
        PayloadChecksumKind::XAmzSha256
    } else {
        PayloadChecksumKind::NoHeader
    };
    settings.session_token_mode = if opts.sign_session_token {
        SessionTokenMode::Include
    } else {
        SessionTokenMode::Exclude
    };
    // The caller's headers are all signed (the crate leaves out
    // `user-agent` and a few more by default).
    settings.excluded_headers = Some(vec!["authorization".into()]);

    let identity = aws_credential_types::Credentials::new(
        &creds.access_key_id,
        &creds.secret_access_key,
        creds.session_token.clone(),
        None,
        "compute-bridge",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(UNIX_EPOCH + Duration::from_secs(unix_time))
        .settings(settings)
        .build()
        .map_err(|e| SignError(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        req.method,
        uri,
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::Bytes(req.body),
    )
    .map_err(|e| SignError(e.to_string()))?;
    let (instructions, signature) = aws_sigv4::http_request::sign(signable, &params)
        .map_err(|e| SignError(e.to_string()))?
        .into_parts();

    let mut added: Vec<(String, String)> = Vec::new();
    let mut authorization = None;
    for (name, value) in instructions.headers() {
        let pair = (name.to_ascii_lowercase(), value.to_string());
        if pair.0 == "authorization" {
            authorization = Some(pair);
        } else {
            added.push(pair);
        }
    }
    // A token left out of the signature still goes with the request.
    if let Some(token) = &creds.session_token
        && !added.iter().any(|(n, _)| n == "x-amz-security-token")
    {
        added.push(("x-amz-security-token".into(), token.clone()));
    }
    added.push(authorization.ok_or_else(|| SignError("no authorization header".into()))?);
    Ok(Signed {
        signature,
        headers: added,
    })
}

/// `path` percent-encoded once, segment by segment (`/` kept): SigV4's
/// `UriEncode` of each segment.
fn encode_path(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    path.split('/')
        .map(uri_encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// `?query` with each name and value decoded and encoded again as SigV4
/// wants them (a `+` stays a `+`, encoded), or nothing for an empty query.
fn encode_query(query: &str) -> String {
    let pairs: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            format!(
                "{}={}",
                uri_encode(&percent_decode(k)),
                uri_encode(&percent_decode(v))
            )
        })
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// Percent-encode every byte but RFC 3986's unreserved characters
/// (`A-Z a-z 0-9 - _ . ~`), upper-case hex: SigV4's `UriEncode`, and the
/// encoding of EC2 Query API form values.
pub fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decode `%XX` escapes (and nothing else: `+` stays `+`).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(hi), Some(lo)) = (hex_digit(b[i + 1]), hex_digit(b[i + 2]))
        {
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let c = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: Some("tok3n".into()),
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(!shown.contains("wJalr"), "{shown}");
        assert!(!shown.contains("tok3n"), "{shown}");
    }

    #[test]
    fn encoding_matches_rfc3986_unreserved() {
        assert_eq!(uri_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(uri_encode("a b+c/d=é"), "a%20b%2Bc%2Fd%3D%C3%A9");
        assert_eq!(percent_decode("%E1%88%B4x%2"), "\u{1234}x%2");
    }
}
