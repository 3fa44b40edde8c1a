//! A private moto server (a real EC2 API emulator) on 127.0.0.1 with IAM
//! signature checking on.
//!
//! moto checks signatures once `INITIAL_NO_AUTH_ACTION_COUNT` actions have
//! run. [`Moto::start`] sets it to 4 and spends exactly those four on IAM
//! (create a user, a policy allowing `*` on `*`, attach it, create an access
//! key); from then on every request must be signed with that key, and a
//! wrong secret gets `AuthFailure`.
//!
//! [`Moto::instances`] reads moto's EC2 state back with boto3 (installed
//! with moto), an AWS client independent of the component under test.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_for, workspace_root};

/// The venv `scripts/install-test-peers.sh` creates.
const VENV: &str = "target/test-peers/venv";

/// A running moto server; stopped on drop.
pub struct Moto {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// `http://127.0.0.1:PORT`: the endpoint override and the allowed host.
    pub endpoint: String,
    /// Access key id of the IAM user created at start.
    pub access_key_id: String,
    /// Its secret.
    pub secret_access_key: String,
    python: PathBuf,
    child: Option<Child>,
    log: tempfile::NamedTempFile,
}

fn install_hint() -> ! {
    panic!(
        "moto_server is missing: the AWS tests need a real moto server. \
         Run scripts/install-test-peers.sh (it installs moto[server] into {VENV}) and try again."
    )
}

/// `moto_server` and the Python that has moto (and boto3) installed.
fn locate() -> (PathBuf, PathBuf) {
    let venv = workspace_root().join(VENV).join("bin");
    if venv.join("moto_server").exists() {
        return (venv.join("moto_server"), venv.join("python"));
    }
    let on_path = Command::new("sh")
        .args(["-c", "command -v moto_server"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    match on_path {
        Some(p) if !p.as_os_str().is_empty() => (p, PathBuf::from("python3")),
        _ => install_hint(),
    }
}

/// A form POST to IAM. Before signatures are enforced moto still routes by
/// the credential scope in `Authorization`, so the request names the `iam`
/// service there; its signature is not checked.
fn iam(endpoint: &str, form: &[(&str, &str)]) -> String {
    let mut pairs = vec![("Version", "2010-05-08")];
    pairs.extend_from_slice(form);
    ureq::post(endpoint)
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=bootstrap/20240101/us-east-1/iam/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .send_form(pairs)
        .unwrap_or_else(|e| panic!("moto IAM {form:?}: {e}"))
        .body_mut()
        .read_to_string()
        .expect("reading moto's IAM response")
}

fn xml_text<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        + open.len();
    let end = xml[start..].find('<').expect("closing tag") + start;
    &xml[start..end]
}

impl Moto {
    /// Start one and create the IAM user whose key the tests use.
    pub fn start() -> Self {
        let (server, python) = locate();
        let port = free_port();
        let log = tempfile::NamedTempFile::new().expect("moto log file");
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "4")
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("moto log"))
            .stderr(log.reopen().expect("moto log"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", server.display()));
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut moto = Self {
            port,
            endpoint: endpoint.clone(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            python,
            child: Some(child),
            log,
        };
        wait_for("moto to listen", Duration::from_secs(60), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });

        // The four unauthenticated actions.
        iam(
            &endpoint,
            &[("Action", "CreateUser"), ("UserName", "bridge")],
        );
        let policy = iam(
            &endpoint,
            &[
                ("Action", "CreatePolicy"),
                ("PolicyName", "everything"),
                (
                    "PolicyDocument",
                    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
                ),
            ],
        );
        let arn = xml_text(&policy, "Arn").to_string();
        iam(
            &endpoint,
            &[
                ("Action", "AttachUserPolicy"),
                ("UserName", "bridge"),
                ("PolicyArn", &arn),
            ],
        );
        let key = iam(
            &endpoint,
            &[("Action", "CreateAccessKey"), ("UserName", "bridge")],
        );
        moto.access_key_id = xml_text(&key, "AccessKeyId").to_string();
        moto.secret_access_key = xml_text(&key, "SecretAccessKey").to_string();
        moto
    }

    /// What moto logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Every EC2 instance moto holds in `region`, read with boto3 and the
    /// IAM user's key.
    pub fn instances(&self, region: &str) -> Vec<MotoInstance> {
        const SCRIPT: &str = r#"
import base64, json, os, boto3
ec2 = boto3.client("ec2", endpoint_url=os.environ["MOTO_ENDPOINT"], region_name=os.environ["MOTO_REGION"])
out = []
for r in ec2.describe_instances()["Reservations"]:
    for i in r["Instances"]:
        ud = ec2.describe_instance_attribute(InstanceId=i["InstanceId"], Attribute="userData")["UserData"].get("Value", "")
        out.append({
            "id": i["InstanceId"],
            "state": i["State"]["Name"],
            "instance_type": i["InstanceType"],
            "tags": {t["Key"]: t["Value"] for t in i.get("Tags", [])},
            "user_data": base64.b64decode(ud).decode("utf-8", "replace"),
        })
print(json.dumps(out))
"#;
        let out = Command::new(&self.python)
            .args(["-c", SCRIPT])
            .env("MOTO_ENDPOINT", &self.endpoint)
            .env("MOTO_REGION", region)
            .env("AWS_ACCESS_KEY_ID", &self.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_access_key)
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .output()
            .unwrap_or_else(|e| panic!("running {} for boto3: {e}", self.python.display()));
        assert!(
            out.status.success(),
            "boto3 describe_instances failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Vec<MotoInstance>>(&out.stdout).expect("boto3 script output")
    }

    /// One instance by id.
    pub fn instance(&self, region: &str, id: &str) -> MotoInstance {
        self.instances(region)
            .into_iter()
            .find(|i| i.id == id)
            .unwrap_or_else(|| panic!("moto has no instance {id} in {region}"))
    }
}

/// An instance as moto holds it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct MotoInstance {
    /// Instance id.
    pub id: String,
    /// State name.
    pub state: String,
    /// Instance type.
    pub instance_type: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// User-data, decoded.
    pub user_data: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
