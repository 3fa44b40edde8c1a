//! OAuth 2.0 for a service account: a JWT assertion signed with the key
//! (RS256), exchanged at the token endpoint for an access token
//! (<https://developers.google.com/identity/protocols/oauth2/service-account#httprest>).
//!
//! The signature is made here, in the component, with the pure-Rust `rsa`
//! crate (constant-time `crypto-bigint` arithmetic, blinded with randomness
//! from WASI's `wasi:random`). Keeping it in the component keeps the host
//! free of any cloud's auth scheme; the private key never leaves this
//! backend's sandbox and its `[backends.config]`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use compute_bridge_sdk::BackendError;
use compute_bridge_sdk::http::{Request, Response};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::sha2::Sha256;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use serde::Deserialize;

use crate::config::ServiceAccountKey;

pub use cb_cloud::token::{Token, cache_ttl};

/// `grant_type` of the JWT-bearer exchange (RFC 7523).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Lifetime of an assertion; Google accepts at most an hour.
pub const ASSERTION_SECONDS: u64 = 3600;

/// A key ready to sign assertions.
pub struct Signer {
    key: SigningKey<Sha256>,
}

impl Signer {
    /// The RSA key of a service-account key file. The error names the
    /// config key, never the value.
    pub fn new(key: &ServiceAccountKey) -> Result<Self, BackendError> {
        let private = rsa::RsaPrivateKey::from_pkcs8_pem(&key.private_key).map_err(|_| {
            BackendError::config(
                "`service_account_key`: private_key is not a PKCS#8 RSA key in PEM \
                 (the value is not shown)",
            )
        })?;
        Ok(Self {
            key: SigningKey::new(private),
        })
    }

    /// RS256 over `message`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        let mut rng = getrandom::SysRng;
        self.key
            .try_sign_with_rng(&mut rng, message)
            .map(|s| s.to_vec())
            .map_err(|e| BackendError::internal(format!("signing the token assertion: {e}")))
    }
}

/// The signed JWT asking `aud` for an access token with `scope` for
/// `key`'s account, issued at `now` (unix seconds).
pub fn assertion(
    key: &ServiceAccountKey,
    signer: &Signer,
    scope: &str,
    aud: &str,
    now: u64,
) -> Result<String, BackendError> {
    let header = serde_json::json!({
        "alg": "RS256",
        "typ": "JWT",
        "kid": key.private_key_id,
    });
    let claims = serde_json::json!({
        "iss": key.client_email,
        "scope": scope,
        "aud": aud,
        "iat": now,
        "exp": now + ASSERTION_SECONDS,
    });
    let signing_input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let signature = signer.sign(signing_input.as_bytes())?;
    Ok(format!("{signing_input}.{}", B64.encode(signature)))
}

/// The token request: `POST token_url` with the assertion as a form.
pub fn token_request(token_url: &str, assertion: &str) -> Request {
    Request::post(token_url).form(&[("grant_type", GRANT_TYPE), ("assertion", assertion)])
}

#[derive(Deserialize)]
struct TokenErr {
    error: String,
    #[serde(default)]
    error_description: String,
}

/// The token endpoint's answer: a token, or the error classified
/// ([`cb_cloud::token::parse_token`]). A refused assertion
/// (`invalid_grant`, `invalid_client`, `unauthorized_client`) is the
/// operator's key to fix (`config`, naming `service_account_key`); 429 and
/// 5xx pass (`transient`).
pub fn parse_token(resp: &Response) -> Result<Token, BackendError> {
    cb_cloud::token::parse_token(resp, "token endpoint", |resp| {
        let detail = serde_json::from_slice::<TokenErr>(&resp.body)
            .map(|e| format!("{}: {}", e.error, e.error_description))
            .unwrap_or_else(|_| format!("HTTP {}", resp.status));
        BackendError::config(format!(
            "the token endpoint refused the credentials in `service_account_key` ({detail})"
        ))
    })
}

/// The cache key for `key`'s tokens from `token_url`.
pub fn cache_key(key: &ServiceAccountKey, token_url: &str) -> String {
    format!(
        "gcp-token {} {} {}",
        key.client_email, key.private_key_id, token_url
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    use rsa::signature::Verifier;

    fn key() -> (ServiceAccountKey, rsa::RsaPublicKey) {
        let mut rng = getrandom::rand_core::UnwrapErr(getrandom::SysRng);
        let private = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let public = private.to_public_key();
        let pem = private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        (
            ServiceAccountKey {
                kind: "service_account".into(),
                client_email: "bridge@my-project.iam.gserviceaccount.com".into(),
                private_key_id: "k1".into(),
                private_key: pem,
                token_uri: None,
            },
            public,
        )
    }

    #[test]
    fn the_assertion_is_a_verifiable_rs256_jwt_with_googles_claims() {
        let (k, public) = key();
        let signer = Signer::new(&k).unwrap();
        let jwt = assertion(
            &k,
            &signer,
            crate::config::SCOPE,
            "https://t.example/token",
            1000,
        )
        .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["kid"], "k1");
        let claims: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "bridge@my-project.iam.gserviceaccount.com");
        assert_eq!(claims["aud"], "https://t.example/token");
        assert_eq!(claims["scope"], "https://www.googleapis.com/auth/compute");
        assert_eq!(claims["iat"], 1000);
        assert_eq!(claims["exp"], 4600);
        let sig = Signature::try_from(B64.decode(parts[2]).unwrap().as_slice()).unwrap();
        let verifier = VerifyingKey::<Sha256>::new(public);
        let input = format!("{}.{}", parts[0], parts[1]);
        verifier.verify(input.as_bytes(), &sig).unwrap();
        // A changed claim no longer verifies.
        assert!(verifier.verify(b"x.y", &sig).is_err());
    }

    #[test]
    fn a_key_that_is_not_rsa_pkcs8_is_a_config_error_without_the_value() {
        let (mut k, _) = key();
        k.private_key =
            "-----BEGIN PRIVATE KEY-----\nMIIBsecret\n-----END PRIVATE KEY-----\n".into();
        let e = Signer::new(&k).err().unwrap();
        assert!(matches!(e, BackendError::Config(_)));
        assert!(e.message().contains("`service_account_key`"));
        assert!(!e.message().contains("MIIBsecret"));
    }

    #[test]
    fn the_token_request_is_a_jwt_bearer_form() {
        let r = token_request("https://oauth2.googleapis.com/token", "a.b.c");
        let (method, url, headers, body) = r.parts();
        assert_eq!(*method, compute_bridge_sdk::http::Method::Post);
        assert_eq!(url, "https://oauth2.googleapis.com/token");
        assert!(headers.contains(&(
            "content-type".into(),
            "application/x-www-form-urlencoded".into()
        )));
        assert_eq!(
            std::str::from_utf8(body).unwrap(),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c"
        );
    }

    #[test]
    fn token_responses_are_parsed_and_errors_classified() {
        let t = parse_token(&Response::new(
            200,
            r#"{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}"#,
        ))
        .unwrap();
        assert_eq!(t.access_token, "ya29.x");
        assert_eq!(t.expires_in, 3599);
        let e = parse_token(&Response::new(
            400,
            r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
        ))
        .unwrap_err();
        assert!(
            matches!(&e, BackendError::Config(m) if m.contains("`service_account_key`") && m.contains("Invalid JWT Signature")),
            "{e:?}"
        );
        cb_cloud::token::testing::assert_busy_answers_are_transient(parse_token);
    }

    #[test]
    fn tokens_are_kept_for_their_life_less_a_margin() {
        assert_eq!(cache_ttl(3599), 3299);
        assert_eq!(cache_ttl(600), 540);
        assert_eq!(cache_ttl(5), 5);
        assert_eq!(cache_ttl(0), 0);
    }
}
