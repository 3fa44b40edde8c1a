//! The EC2 Query API: requests as signed form POSTs, responses as XML.
//!
//! Only what the backend calls: `RunInstances`, `DescribeInstances`,
//! `TerminateInstances` and `GetConsoleOutput`, API version 2016-11-15.

use base64::Engine as _;

use crate::config::Endpoint;
use crate::error::Ec2Error;
use crate::sigv4::{self, Credentials};
use compute_bridge_sdk::BackendError;

/// The EC2 API version every request names.
pub const API_VERSION: &str = "2016-11-15";

/// An HTTP request ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Absolute URL.
    pub url: String,
    /// Headers, the signature's included.
    pub headers: Vec<(String, String)>,
    /// Form body.
    pub body: Vec<u8>,
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
}

/// One Query API call under construction: an action and its parameters.
#[derive(Debug, Clone)]
pub struct Query {
    action: &'static str,
    params: Vec<(String, String)>,
}

impl Query {
    /// A call of `action`.
    pub fn new(action: &'static str) -> Self {
        Self {
            action,
            params: Vec::new(),
        }
    }

    /// The action's name.
    pub fn action(&self) -> &'static str {
        self.action
    }

    /// Add a parameter.
    pub fn param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((key.into(), value.into()));
        self
    }

    /// The value of parameter `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The form body: `Action`, `Version`, then the parameters in order.
    pub fn body(&self) -> String {
        let mut out = format!("Action={}&Version={API_VERSION}", self.action);
        for (k, v) in &self.params {
            out.push('&');
            out.push_str(&sigv4::uri_encode(k));
            out.push('=');
            out.push_str(&sigv4::uri_encode(v));
        }
        out
    }

    /// The request, signed for `region` at `unix_time`. A request that
    /// cannot be signed (credentials with a character no header takes) is
    /// the operator's to fix: a `config` error.
    pub fn signed(
        &self,
        endpoint: &Endpoint,
        region: &str,
        creds: &Credentials,
        unix_time: u64,
    ) -> Result<HttpRequest, BackendError> {
        let body = self.body().into_bytes();
        let mut headers = vec![
            (
                "content-type".to_string(),
                "application/x-www-form-urlencoded; charset=utf-8".to_string(),
            ),
            ("host".to_string(), endpoint.host.clone()),
        ];
        let signed = sigv4::sign(
            &sigv4::Request {
                method: "POST",
                path: "/",
                query: "",
                headers: &headers,
                body: &body,
            },
            creds,
            region,
            "ec2",
            unix_time,
            sigv4::Options::default(),
        )
        .map_err(|e| BackendError::config(format!("{} for {}: {e}", self.action, endpoint.url)))?;
        headers.extend(signed.headers);
        Ok(HttpRequest {
            url: endpoint.url.clone(),
            headers,
            body,
        })
    }
}

/// An instance as `RunInstances` and `DescribeInstances` describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ec2Instance {
    /// `i-...`
    pub id: String,
    /// `t3.medium`
    pub instance_type: String,
    /// `pending`, `running`, `shutting-down`, `terminated`, `stopping`,
    /// `stopped`.
    pub state: String,
    /// Public IPv4 address, once assigned.
    pub public_ip: Option<String>,
    /// Public DNS name, once assigned.
    pub public_dns: Option<String>,
    /// Launch time, unix seconds.
    pub launch_time: Option<u64>,
    /// Why it last changed state; carries the time of user- and
    /// service-initiated stops (`User initiated (2024-05-01 12:30:00 GMT)`).
    pub state_transition_reason: String,
    /// EC2's code for the last state change (`stateReason/code`, botocore
    /// `ec2/2016-11-15/service-2.json` shape `StateReason`), such as
    /// `Server.InsufficientInstanceCapacity` for an instance terminated at
    /// launch for want of capacity; empty if none.
    pub state_reason_code: String,
    /// Its message (`stateReason/message`); empty if none.
    pub state_reason_message: String,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

impl Ec2Instance {
    /// The value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Where the requester connects: the public IP, else the public DNS
    /// name.
    pub fn public_host(&self) -> Option<&str> {
        self.public_ip
            .as_deref()
            .or(self.public_dns.as_deref())
            .filter(|h| !h.is_empty())
    }

    /// When it stopped running, if EC2 said so in the transition reason.
    pub fn stopped_at(&self) -> Option<u64> {
        let r = &self.state_transition_reason;
        let open = r.rfind('(')?;
        let close = r[open..].find(')')? + open;
        crate::utc::parse(&r[open + 1..close])
    }
}

/// The response body of a successful call as a parsed document, or the
/// error it carries.
fn document(action: &str, resp: &HttpResponse) -> Result<String, BackendError> {
    if !(200..300).contains(&resp.status) {
        return Err(Ec2Error::parse(resp.status, &resp.body).into_error(action));
    }
    String::from_utf8(resp.body.clone())
        .map_err(|_| BackendError::Internal(format!("EC2 {action}: the response is not UTF-8")))
}

fn parse_xml<'a>(action: &str, text: &'a str) -> Result<roxmltree::Document<'a>, BackendError> {
    roxmltree::Document::parse(text)
        .map_err(|e| BackendError::Internal(format!("EC2 {action}: unreadable response: {e}")))
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| c.tag_name().name() == name)
}

fn child_text(n: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    child(n, name)
        .and_then(|c| c.text())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

fn items<'a, 'i>(
    n: roxmltree::Node<'a, 'i>,
    set: &str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    child(n, set)
        .into_iter()
        .flat_map(|s| s.children().filter(|c| c.tag_name().name() == "item"))
}

fn instance(n: roxmltree::Node<'_, '_>) -> Ec2Instance {
    Ec2Instance {
        id: child_text(n, "instanceId").unwrap_or_default(),
        instance_type: child_text(n, "instanceType").unwrap_or_default(),
        state: child(n, "instanceState")
            .and_then(|s| child_text(s, "name"))
            .unwrap_or_default(),
        public_ip: child_text(n, "ipAddress"),
        public_dns: child_text(n, "dnsName"),
        launch_time: child_text(n, "launchTime").and_then(|t| crate::utc::parse(&t)),
        state_transition_reason: child_text(n, "reason").unwrap_or_default(),
        state_reason_code: child(n, "stateReason")
            .and_then(|r| child_text(r, "code"))
            .unwrap_or_default(),
        state_reason_message: child(n, "stateReason")
            .and_then(|r| child_text(r, "message"))
            .unwrap_or_default(),
        tags: items(n, "tagSet")
            .filter_map(|t| {
                Some((
                    child_text(t, "key")?,
                    child_text(t, "value").unwrap_or_default(),
                ))
            })
            .collect(),
    }
}

/// The instances a `RunInstances` response launched.
pub fn parse_run_instances(resp: &HttpResponse) -> Result<Vec<Ec2Instance>, BackendError> {
    let text = document("RunInstances", resp)?;
    let doc = parse_xml("RunInstances", &text)?;
    Ok(items(doc.root_element(), "instancesSet")
        .map(instance)
        .collect())
}

/// The instances of a `DescribeInstances` response, and the token of the
/// next page.
pub fn parse_describe_instances(
    resp: &HttpResponse,
) -> Result<(Vec<Ec2Instance>, Option<String>), BackendError> {
    let text = document("DescribeInstances", resp)?;
    let doc = parse_xml("DescribeInstances", &text)?;
    let root = doc.root_element();
    let instances = items(root, "reservationSet")
        .flat_map(|r| items(r, "instancesSet"))
        .map(instance)
        .collect();
    Ok((instances, child_text(root, "nextToken")))
}

/// Check a `TerminateInstances` response.
pub fn parse_terminate_instances(resp: &HttpResponse) -> Result<(), BackendError> {
    document("TerminateInstances", resp).map(|_| ())
}

/// The console output of a `GetConsoleOutput` response, decoded (empty if
/// EC2 has none yet).
pub fn parse_console_output(resp: &HttpResponse) -> Result<String, BackendError> {
    let text = document("GetConsoleOutput", resp)?;
    let doc = parse_xml("GetConsoleOutput", &text)?;
    let encoded = child_text(doc.root_element(), "output").unwrap_or_default();
    let cleaned: String = encoded.split_whitespace().collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cleaned)
        .map_err(|e| {
            BackendError::Internal(format!("EC2 GetConsoleOutput: output is not base64: {e}"))
        })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> HttpResponse {
        HttpResponse {
            status: 200,
            body: body.as_bytes().to_vec(),
        }
    }

    /// Trimmed from the DescribeInstances example in the EC2 API reference.
    const DESCRIBE: &str = r#"<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>8f7724cf-496f-496e-8fe3-example</requestId>
  <reservationSet>
    <item>
      <reservationId>r-1234567890abcdef0</reservationId>
      <ownerId>123456789012</ownerId>
      <groupSet/>
      <instancesSet>
        <item>
          <instanceId>i-1234567890abcdef0</instanceId>
          <imageId>ami-bff32ccc</imageId>
          <instanceState><code>80</code><name>stopped</name></instanceState>
          <privateDnsName>ip-192-168-1-88.eu-west-1.compute.internal</privateDnsName>
          <dnsName>ec2-54-194-252-215.eu-west-1.compute.amazonaws.com</dnsName>
          <reason>User initiated (2024-05-01 12:30:00 GMT)</reason>
          <instanceType>t2.micro</instanceType>
          <launchTime>2024-05-01T12:00:00.000Z</launchTime>
          <ipAddress>54.194.252.215</ipAddress>
          <blockDeviceMapping><item><deviceName>/dev/xvda</deviceName></item></blockDeviceMapping>
          <tagSet>
            <item><key>Name</key><value>compute-bridge-r1</value></item>
            <item><key>compute-bridge:provider</key><value>p1</value></item>
          </tagSet>
        </item>
      </instancesSet>
    </item>
  </reservationSet>
  <nextToken>page2</nextToken>
</DescribeInstancesResponse>"#;

    #[test]
    fn describe_instances_parses() {
        let (list, next) = parse_describe_instances(&ok(DESCRIBE)).unwrap();
        assert_eq!(next.as_deref(), Some("page2"));
        let i = &list[0];
        assert_eq!(list.len(), 1);
        assert_eq!(i.id, "i-1234567890abcdef0");
        assert_eq!(i.state, "stopped");
        assert_eq!(i.instance_type, "t2.micro");
        assert_eq!(i.public_host(), Some("54.194.252.215"));
        assert_eq!(i.launch_time, crate::utc::parse("2024-05-01T12:00:00Z"));
        assert_eq!(i.stopped_at(), Some(i.launch_time.unwrap() + 1800));
        assert_eq!(i.tag("compute-bridge:provider"), Some("p1"));
        assert_eq!(i.tag("Name"), Some("compute-bridge-r1"));
    }

    #[test]
    fn an_error_status_carries_the_mapped_error() {
        let resp = HttpResponse {
            status: 400,
            body: br#"<Response><Errors><Error><Code>InsufficientInstanceCapacity</Code><Message>none left</Message></Error></Errors><RequestID>x</RequestID></Response>"#.to_vec(),
        };
        assert!(matches!(
            parse_run_instances(&resp),
            Err(BackendError::NoCapacity(_))
        ));
    }

    #[test]
    fn the_body_is_a_form_with_action_and_version_first() {
        let q = Query::new("RunInstances")
            .param("TagSpecification.1.Tag.1.Value", "a b&c=d")
            .param("MinCount", "1");
        assert_eq!(
            q.body(),
            "Action=RunInstances&Version=2016-11-15&TagSpecification.1.Tag.1.Value=a%20b%26c%3Dd&MinCount=1"
        );
    }

    #[test]
    fn requests_are_signed_for_the_endpoint_host() {
        let ep = Endpoint::parse("http://127.0.0.1:5000").unwrap();
        let creds = Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: "secret".into(),
            session_token: None,
        };
        let r = Query::new("DescribeInstances")
            .signed(&ep, "eu-west-1", &creds, 1_440_938_160)
            .unwrap();
        assert_eq!(r.url, "http://127.0.0.1:5000/");
        let h = |k: &str| {
            r.headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(h("host").as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(h("x-amz-date").as_deref(), Some("20150830T123600Z"));
        let auth = h("authorization").unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/20150830/eu-west-1/ec2/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature="),
            "{auth}"
        );
        assert!(!auth.contains("secret"));
    }

    #[test]
    fn console_output_decodes() {
        let body = "<GetConsoleOutputResponse><instanceId>i-1</instanceId><output>Y29tcHV0ZS1icmlkZ2U6IHdvcmtsb2FkIGV4aXRlZCAz\n</output></GetConsoleOutputResponse>";
        assert_eq!(
            parse_console_output(&ok(body)).unwrap(),
            "compute-bridge: workload exited 3"
        );
    }
}
