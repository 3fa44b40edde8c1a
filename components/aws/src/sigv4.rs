//! AWS Signature Version 4 (header signing), as the EC2 Query API needs it.
//!
//! Why not the `aws-sigv4` crate: for `wasm32-wasip2` it pulls in
//! `aws-smithy-async` and with it tokio, futures and ~70 crates, to sign one
//! form POST. This module is the documented algorithm and nothing else; it
//! is checked against AWS's published test suite
//! (`tests/sigv4-suite`, run by `tests/sigv4_suite.rs`).
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html>

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::utc::Utc;

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
    /// Headers to sign, `Host` included; names in any case.
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

/// The outcome of signing, with the intermediate strings for tests.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The canonical request.
    pub canonical_request: String,
    /// The string to sign.
    pub string_to_sign: String,
    /// Hex signature.
    pub signature: String,
    /// Headers to add to the request as sent (`x-amz-date`,
    /// `x-amz-security-token`, `x-amz-content-sha256`, `authorization`).
    pub headers: Vec<(String, String)>,
}

/// Sign `req` for `service` in `region` at `unix_time`.
pub fn sign(
    req: &Request<'_>,
    creds: &Credentials,
    region: &str,
    service: &str,
    unix_time: u64,
    opts: Options,
) -> Signed {
    let now = Utc::from_unix(unix_time);
    let amz_date = now.amz_date_time();
    let date = now.amz_date();
    let payload_hash = hex::encode(Sha256::digest(req.body));

    let mut added: Vec<(String, String)> = vec![("x-amz-date".into(), amz_date.clone())];
    if opts.content_sha256_header {
        added.push(("x-amz-content-sha256".into(), payload_hash.clone()));
    }
    let token = creds
        .session_token
        .as_ref()
        .map(|t| ("x-amz-security-token".to_string(), t.clone()));
    if opts.sign_session_token
        && let Some(t) = &token
    {
        added.push(t.clone());
    }

    // Lower-case names; values trimmed, inner whitespace runs collapsed;
    // repeated names joined by commas in order; sorted by name.
    let mut headers: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in req.headers.iter().chain(added.iter()) {
        let name = name.to_ascii_lowercase();
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        match headers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value),
            None => headers.push((name, vec![value])),
        }
    }
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let canonical_headers: String = headers
        .iter()
        .map(|(n, v)| format!("{n}:{}\n", v.join(",")))
        .collect();
    let signed_headers = headers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");

    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        req.method,
        canonical_uri(req.path, opts.normalize_path),
        canonical_query(req.query),
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );

    let k_date = hmac(
        format!("AWS4{}", creds.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));

    if !opts.sign_session_token
        && let Some(t) = token
    {
        added.push(t);
    }
    added.push((
        "authorization".into(),
        format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            creds.access_key_id
        ),
    ));
    Signed {
        canonical_request,
        string_to_sign,
        signature,
        headers: added,
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
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

fn canonical_uri(path: &str, normalize: bool) -> String {
    let path = if path.is_empty() { "/" } else { path };
    let segments: Vec<&str> = if normalize {
        let mut kept: Vec<&str> = Vec::new();
        for seg in path.split('/') {
            match seg {
                "" | "." => {}
                ".." => {
                    kept.pop();
                }
                s => kept.push(s),
            }
        }
        // A path that ended on a directory keeps its trailing slash.
        let ends_in_dir = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
        if ends_in_dir && !kept.is_empty() {
            kept.push("");
        }
        kept
    } else {
        path.split('/').skip(1).collect()
    };
    let mut out = String::new();
    for seg in &segments {
        out.push('/');
        out.push_str(&uri_encode(seg));
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k)),
                uri_encode(&percent_decode(v)),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
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
