//! How EC2's error responses map onto the contract's kinds
//! ([`BackendError`], the SDK's, is the backend's only error type).
//!
//! EC2 answers a failed Query API call with
//! `<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>`
//! (<https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html>).
//! The code decides the kind: capacity codes are `no-capacity` (the host
//! fails over), throttling and server faults `transient`, refused
//! credentials and wrong operator settings `config` (naming the key, never a
//! secret's value), and whatever else is a request this component got wrong,
//! `internal`.

use compute_bridge_sdk::BackendError;

/// An EC2 error response, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ec2Error {
    /// HTTP status.
    pub status: u16,
    /// The error code (`InvalidInstanceID.NotFound`), empty if the body had
    /// none.
    pub code: String,
    /// AWS's message.
    pub message: String,
    /// AWS's request id, for support cases.
    pub request_id: Option<String>,
}

/// Codes that mean "no room for this launch in this region now": the
/// region's capacity, or the account's per-region quota, is exhausted. The
/// fleet then tries the backend's next region, then the next backend. The
/// whole taxonomy, with its sources, is in the crate's `README.md`
/// ("Capacity taxonomy"); codes from the EC2 API reference's error-code
/// page (<https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html>).
const NO_CAPACITY: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InstanceLimitExceeded",
    "VcpuLimitExceeded",
    "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientAddressCapacity",
    "InsufficientVolumeCapacity",
    "InsufficientFreeAddressesInSubnet",
    "MaxSpotInstanceCountExceeded",
];

/// Codes that pass by themselves.
const TRANSIENT: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "ServiceUnavailable",
    "Unavailable",
    "InternalError",
    "InternalFailure",
    "RequestTimeout",
];

impl Ec2Error {
    /// Parse an error body. Also accepts the `<ErrorResponse>` shape some
    /// endpoints (and moto) use for authentication failures.
    pub fn parse(status: u16, body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body);
        let mut e = Self {
            status,
            code: String::new(),
            message: String::new(),
            request_id: None,
        };
        if let Ok(doc) = roxmltree::Document::parse(&text) {
            let named = |n: &roxmltree::Node<'_, '_>, name: &str| {
                n.children()
                    .find(|c| c.tag_name().name() == name)
                    .and_then(|c| c.text())
                    .map(|t| t.trim().to_string())
            };
            if let Some(err) = doc
                .descendants()
                .find(|n| n.tag_name().name() == "Error" && named(n, "Code").is_some())
            {
                e.code = named(&err, "Code").unwrap_or_default();
                e.message = named(&err, "Message").unwrap_or_default();
            }
            e.request_id = doc
                .descendants()
                .find(|n| matches!(n.tag_name().name(), "RequestID" | "RequestId"))
                .and_then(|n| n.text())
                .map(|t| t.trim().to_string());
        }
        if e.code.is_empty() {
            e.message = text
                .chars()
                .take(200)
                .collect::<String>()
                .trim()
                .to_string();
        }
        e
    }

    /// True for the code EC2 gives an instance id it does not know.
    pub fn is_instance_not_found(&self) -> bool {
        self.code == "InvalidInstanceID.NotFound"
    }

    /// The contract's error for this response to `action`.
    pub fn into_error(self, action: &str) -> BackendError {
        let what = match &self.request_id {
            Some(id) => format!(
                "EC2 {action}: {} ({}; request id {id})",
                self.message, self.code
            ),
            None if self.code.is_empty() => {
                format!("EC2 {action}: HTTP {}: {}", self.status, self.message)
            }
            None => format!("EC2 {action}: {} ({})", self.message, self.code),
        };
        let code = self.code.as_str();
        if NO_CAPACITY.contains(&code) {
            return BackendError::NoCapacity(what);
        }
        // `Unsupported` to a launch is a placement refusal for this region:
        // the instance type is not offered in the zone EC2 chose (or the
        // region's AMI cannot boot it). Another region may take it; the
        // same code to any other call is a request this component got
        // wrong.
        if code == "Unsupported" && action == "RunInstances" {
            return BackendError::NoCapacity(format!(
                "{what}; the instance type is not offered here (or the region's AMI cannot \
                 boot it): check `instance_types` and `regions[].ami` if no region takes it"
            ));
        }
        if TRANSIENT.contains(&code) {
            return BackendError::Transient(what);
        }
        let config =
            |key: &str| BackendError::Config(format!("{what}; check `{key}` in [backends.config]"));
        match code {
            "AuthFailure"
            | "InvalidClientTokenId"
            | "InvalidAccessKeyId"
            | "UnrecognizedClientException"
            | "MissingAuthenticationToken"
            | "IncompleteSignature"
            | "SignatureDoesNotMatch" => BackendError::Config(format!(
                "AWS refused the credentials in `access_key_id` / `secret_access_key`: {what}"
            )),
            "ExpiredToken" | "InvalidToken" => config("session_token"),
            "RequestExpired" => BackendError::Config(format!(
                "{what}; the request's timestamp was off: check this machine's clock"
            )),
            "UnauthorizedOperation" | "OptInRequired" | "Blocked" | "PendingVerification" => {
                BackendError::Config(format!(
                    "{what}; the credentials in `access_key_id` may not call ec2:{action}: allow it in IAM"
                ))
            }
            c if c.starts_with("InvalidAMIID") => config("regions[].ami"),
            c if c.starts_with("InvalidSubnet") => config("regions[].subnet_id"),
            c if c.starts_with("InvalidGroup") || c.starts_with("InvalidSecurityGroup") => {
                config("regions[].security_group_ids")
            }
            "InvalidInstanceType" => config("instance_types"),
            "IdempotentParameterMismatch" => BackendError::Internal(format!(
                "{what}; the component reused a client token for a different request"
            )),
            _ if self.status >= 500 => BackendError::Transient(what),
            _ if self.code.is_empty() && matches!(self.status, 401 | 403) => {
                BackendError::Config(format!(
                    "AWS refused the credentials in `access_key_id` / `secret_access_key`: {what}"
                ))
            }
            _ => BackendError::Internal(what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error response as the EC2 API reference documents it.
    fn documented(code: &str, message: &str) -> Vec<u8> {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Response>
    <Errors>
        <Error>
            <Code>{code}</Code>
            <Message>{message}</Message>
        </Error>
    </Errors>
    <RequestID>ea966190-f9aa-478e-9ede-example</RequestID>
</Response>"#
        )
        .into_bytes()
    }

    fn kind(status: u16, code: &str) -> BackendError {
        Ec2Error::parse(status, &documented(code, "m")).into_error("RunInstances")
    }

    #[test]
    fn the_documented_format_parses() {
        let e = Ec2Error::parse(
            400,
            &documented(
                "InvalidInstanceID.NotFound",
                "The instance ID 'i-1a2b3c4d' does not exist",
            ),
        );
        assert_eq!(e.code, "InvalidInstanceID.NotFound");
        assert_eq!(e.message, "The instance ID 'i-1a2b3c4d' does not exist");
        assert_eq!(
            e.request_id.as_deref(),
            Some("ea966190-f9aa-478e-9ede-example")
        );
        assert!(e.is_instance_not_found());
    }

    #[test]
    fn capacity_codes_are_no_capacity() {
        for code in [
            "InsufficientInstanceCapacity",
            "InsufficientHostCapacity",
            "InsufficientReservedInstanceCapacity",
            "InsufficientVolumeCapacity",
            "InstanceLimitExceeded",
            "VcpuLimitExceeded",
            "MaxSpotInstanceCountExceeded",
            "Unsupported",
        ] {
            let e = kind(500, code);
            assert!(matches!(e, BackendError::NoCapacity(_)), "{code}: {e}");
            assert!(e.to_string().contains(code), "{e}");
        }
    }

    #[test]
    fn unsupported_is_a_placement_refusal_only_for_a_launch() {
        let BackendError::NoCapacity(m) = kind(400, "Unsupported") else {
            panic!()
        };
        assert!(
            m.contains("`instance_types`") && m.contains("`regions[].ami`"),
            "{m}"
        );
        let e =
            Ec2Error::parse(400, &documented("Unsupported", "m")).into_error("TerminateInstances");
        assert!(matches!(e, BackendError::Internal(_)), "{e}");
        assert!(matches!(
            kind(400, "IdempotentParameterMismatch"),
            BackendError::Internal(_)
        ));
    }

    #[test]
    fn throttling_and_server_faults_are_transient() {
        for (status, code) in [
            (503, "RequestLimitExceeded"),
            (500, "InternalError"),
            (503, "Unavailable"),
            (502, "SomethingNew"),
        ] {
            assert!(
                matches!(kind(status, code), BackendError::Transient(_)),
                "{code}"
            );
        }
        // A 5xx without an XML body at all (a proxy's HTML page).
        let e = Ec2Error::parse(502, b"<html>Bad Gateway</html>").into_error("DescribeInstances");
        assert!(matches!(e, BackendError::Transient(_)), "{e}");
    }

    #[test]
    fn refused_credentials_are_config_naming_the_keys() {
        for code in [
            "AuthFailure",
            "SignatureDoesNotMatch",
            "InvalidClientTokenId",
        ] {
            let e = kind(401, code);
            let BackendError::Config(m) = &e else {
                panic!("{code}: {e}")
            };
            assert!(m.contains("`secret_access_key`"), "{m}");
            assert!(m.contains("`access_key_id`"), "{m}");
        }
        let BackendError::Config(m) = kind(403, "UnauthorizedOperation") else {
            panic!()
        };
        assert!(m.contains("ec2:RunInstances"), "{m}");
        let BackendError::Config(m) = kind(400, "ExpiredToken") else {
            panic!()
        };
        assert!(m.contains("`session_token`"), "{m}");
        // moto's (and IAM's) shape for the same failure.
        let body = br#"<?xml version="1.0" encoding="utf-8"?>
<ErrorResponse><Errors><Error><Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message><Type>Sender</Type></Error></Errors></ErrorResponse>"#;
        let e = Ec2Error::parse(403, body).into_error("RunInstances");
        assert!(matches!(e, BackendError::Config(_)), "{e}");
    }

    #[test]
    fn wrong_operator_settings_are_config_naming_the_key() {
        for (code, key) in [
            ("InvalidAMIID.NotFound", "regions[].ami"),
            ("InvalidSubnetID.NotFound", "regions[].subnet_id"),
            ("InvalidGroup.NotFound", "regions[].security_group_ids"),
            ("InvalidInstanceType", "instance_types"),
        ] {
            let BackendError::Config(m) = kind(400, code) else {
                panic!("{code}")
            };
            assert!(m.contains(key), "{m}");
        }
    }

    #[test]
    fn other_client_errors_are_internal() {
        assert!(matches!(
            kind(400, "InvalidParameterValue"),
            BackendError::Internal(_)
        ));
        assert!(matches!(
            kind(400, "MissingParameter"),
            BackendError::Internal(_)
        ));
    }
}
