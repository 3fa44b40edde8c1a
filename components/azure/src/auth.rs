//! Client credentials at the Microsoft identity platform: the app's id and
//! secret exchanged for an access token to Azure Resource Manager
//! (<https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow>).

use compute_bridge_sdk::BackendError;
use compute_bridge_sdk::http::{Request, Response, url_encode};
use serde::Deserialize;

use crate::config::{AzureConfig, SCOPE};

pub use cb_cloud::token::{Token, cache_ttl};

/// `POST {login}/{tenant}/oauth2/v2.0/token` with the client-credentials
/// form.
pub fn token_request(cfg: &AzureConfig) -> Request {
    Request::post(token_url(cfg)).form(&[
        ("client_id", &cfg.client_id),
        ("scope", SCOPE),
        ("client_secret", &cfg.client_secret),
        ("grant_type", "client_credentials"),
    ])
}

/// The tenant's token endpoint.
pub fn token_url(cfg: &AzureConfig) -> String {
    format!(
        "{}/{}/oauth2/v2.0/token",
        cfg.login_url.trim_end_matches('/'),
        url_encode(&cfg.tenant_id)
    )
}

#[derive(Deserialize)]
struct TokenErr {
    error: String,
    #[serde(default)]
    error_description: String,
    #[serde(default)]
    error_codes: Vec<u64>,
}

/// The token endpoint's answer: a token, or the error classified
/// ([`cb_cloud::token::parse_token`]). Refused credentials are `config`
/// naming the key to fix (AADSTS7000215 and 7000222: `client_secret`;
/// 700016: `client_id`; 90002: `tenant_id`); 429 and 5xx are `transient`.
pub fn parse_token(resp: &Response) -> Result<Token, BackendError> {
    cb_cloud::token::parse_token(resp, "identity platform", |resp| {
        let Ok(err) = serde_json::from_slice::<TokenErr>(&resp.body) else {
            return BackendError::config(format!(
                "the identity platform refused the credentials (`tenant_id`, `client_id`, \
                 `client_secret`): HTTP {}",
                resp.status
            ));
        };
        let key = match err.error_codes.first() {
            Some(7_000_215 | 7_000_222) => "`client_secret`",
            Some(700_016) => "`client_id`",
            Some(90_002) => "`tenant_id`",
            _ => "`tenant_id`, `client_id` and `client_secret`",
        };
        // The first line of the description carries the AADSTS code and
        // the reason; the rest is trace ids.
        let reason = err.error_description.lines().next().unwrap_or("").trim();
        BackendError::config(format!(
            "the identity platform refused the app's credentials; check {key} ({}: {reason})",
            err.error
        ))
    })
}

/// The cache key for this app's tokens.
pub fn cache_key(cfg: &AzureConfig) -> String {
    format!(
        "azure-token {} {} {}",
        cfg.login_url, cfg.tenant_id, cfg.client_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AzureConfig {
        serde_json::from_value(serde_json::json!({
            "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "client_id": "00000000-0000-0000-0000-000000000001",
            "client_secret": "s3cret+/=",
            "subscription_id": "11111111-2222-3333-4444-555555555555",
            "resource_group": "rg",
            "subnet_id": "/subscriptions/x/providers/Microsoft.Network/virtualNetworks/v/subnets/s",
        }))
        .unwrap()
    }

    #[test]
    fn the_request_is_a_client_credentials_form() {
        let r = token_request(&cfg());
        let (_, url, headers, body) = r.parts();
        assert_eq!(
            url,
            "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token"
        );
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "content-type" && v == "application/x-www-form-urlencoded")
        );
        assert_eq!(
            std::str::from_utf8(body).unwrap(),
            "client_id=00000000-0000-0000-0000-000000000001\
             &scope=https%3A%2F%2Fmanagement.azure.com%2F.default\
             &client_secret=s3cret%2B%2F%3D&grant_type=client_credentials"
        );
    }

    #[test]
    fn errors_name_the_key_and_never_the_secret() {
        let body = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1\r\nCorrelation ID: 2","error_codes":[7000215]}"#;
        let e = parse_token(&Response::new(401, body)).unwrap_err();
        let BackendError::Config(m) = &e else {
            panic!("{e:?}")
        };
        assert!(
            m.contains("`client_secret`") && m.contains("AADSTS7000215"),
            "{m}"
        );
        assert!(!m.contains("Trace ID") && !m.contains("s3cret"), "{m}");
        let body = r#"{"error":"unauthorized_client","error_description":"AADSTS700016: Application not found","error_codes":[700016]}"#;
        assert!(
            parse_token(&Response::new(400, body))
                .unwrap_err()
                .message()
                .contains("`client_id`")
        );
        cb_cloud::token::testing::assert_busy_answers_are_transient(parse_token);
        let t = parse_token(&Response::new(200, r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0"}"#)).unwrap();
        assert_eq!((t.access_token.as_str(), t.expires_in), ("eyJ0", 3599));
    }

    #[test]
    fn ttl_keeps_a_margin() {
        assert_eq!(cache_ttl(3599), 3299);
        assert_eq!(cache_ttl(4), 4);
    }
}
