//! The AWS backend (`builtin:aws`) through the real host against a real
//! moto server with signature checking on: lifecycle, tags, user-data,
//! cheapest-fit, idempotent terminate, refused credentials, the allow-list
//! and the orphan sweep.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use compute_bridge_contract::backend::{
    Backend, BackendError, GrantSpec, InstanceState, TdxRequirement,
};
use compute_bridge_daemon::config::{BootConfig, Source};
use compute_bridge_sandbox::ComponentBackend;
use compute_bridge_testkit::moto::Moto;

use crate::support;
use crate::support::{load, workload};

pub const REGION: &str = "us-east-1";
/// moto accepts any image id; this one is in its default catalog.
const AMI: &str = "ami-12c6146b";
const IMAGE: &str =
    "ghcr.io/acme/job@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The catalog every test uses: t3.medium is the cheapest fit for 1.5 cores
/// and 3 GiB, though t3.small is cheaper and m5.large bigger.
const CATALOG: &str = r#"
[[backends.config.instance_types]]
type = "m5.large"
vcpu = 2
ram_mib = 8192
usd_per_hour = 0.096

[[backends.config.instance_types]]
type = "t3.small"
vcpu = 2
ram_mib = 2048
usd_per_hour = 0.0208

[[backends.config.instance_types]]
type = "t3.medium"
vcpu = 2
ram_mib = 4096
usd_per_hour = 0.0416
"#;

/// Knobs of one test's config.
struct Setup<'a> {
    allowed_hosts: Vec<String>,
    endpoint: Option<String>,
    secret: Option<&'a str>,
}

impl Setup<'_> {
    fn moto(moto: &Moto) -> Self {
        Self {
            allowed_hosts: vec![moto.endpoint.clone()],
            endpoint: Some(moto.endpoint.clone()),
            secret: None,
        }
    }
}

/// A boot config with one `builtin:aws` backend whose credentials come from
/// `${AWS_...}` references, expanded by the host from a test-only
/// environment.
fn config(state: &std::path::Path, moto: &Moto, s: Setup<'_>) -> BootConfig {
    let endpoint = s
        .endpoint
        .map(|e| format!("endpoint = {e:?}\n"))
        .unwrap_or_default();
    let text = format!(
        r#"[bridge]
state_dir = {state:?}

[[backends]]
name = "aws"
component = "builtin:aws"
sweep_orphans = true

[backends.http]
allowed_hosts = {allowed:?}

[backends.config]
access_key_id = "${{AWS_ACCESS_KEY_ID}}"
secret_access_key = "${{AWS_SECRET_ACCESS_KEY}}"
public_address_wait_sec = 20
{endpoint}
[[backends.config.regions]]
name = "{REGION}"
ami = "{AMI}"
{CATALOG}"#,
        state = state.display().to_string(),
        allowed = s.allowed_hosts,
    );
    let env: BTreeMap<&str, String> = [
        ("AWS_ACCESS_KEY_ID", moto.access_key_id.clone()),
        (
            "AWS_SECRET_ACCESS_KEY",
            s.secret
                .map_or_else(|| moto.secret_access_key.clone(), str::to_string),
        ),
    ]
    .into();
    BootConfig::from_source(&Source::embedded("aws-test.toml", &text), &|k| {
        env.get(k).cloned()
    })
    .unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"))
}

/// A `[[backends]]` table for `builtin:aws` against `moto`, and the
/// environment its `${AWS_...}` references need (for other modules' fleets).
pub fn aws_toml(name: &str, moto: &Moto) -> (String, Vec<(&'static str, String)>) {
    let text = format!(
        r#"[[backends]]
name = "{name}"
component = "builtin:aws"

[backends.http]
allowed_hosts = [{endpoint:?}]

[backends.config]
access_key_id = "${{AWS_ACCESS_KEY_ID}}"
secret_access_key = "${{AWS_SECRET_ACCESS_KEY}}"
public_address_wait_sec = 20
endpoint = {endpoint:?}
[[backends.config.regions]]
name = "{REGION}"
ami = "{AMI}"
{CATALOG}"#,
        endpoint = moto.endpoint,
    );
    let env = vec![
        ("AWS_ACCESS_KEY_ID", moto.access_key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", moto.secret_access_key.clone()),
    ];
    (text, env)
}

fn backend(state: &std::path::Path, moto: &Moto, s: Setup<'_>) -> Arc<ComponentBackend> {
    let cfg = config(state, moto, s);
    let (_rt, mut backends) = load(&cfg);
    backends.remove(0)
}

fn grant(id: &str) -> GrantSpec {
    GrantSpec {
        cpu_millicores: 1500,
        ram_mib: 3072,
        image: IMAGE.into(),
        ..support::grant(id)
    }
}

/// Poll `status` until `want` (moto moves pending → running on a describe).
async fn wait_state(
    b: &ComponentBackend,
    i: &compute_bridge_contract::backend::Instance,
    want: InstanceState,
) {
    for _ in 0..40 {
        if b.status(i).await.unwrap() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{} never reached {want:?}", i.instance_id);
}

#[tokio::test]
async fn the_full_lifecycle_runs_through_the_host_against_moto() {
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let aws = backend(state.path(), &moto, Setup::moto(&moto));

    let caps = aws.capabilities().await.unwrap();
    assert_eq!(caps.regions, [REGION]);
    assert!(!caps.tdx_capable, "EC2 offers no TDX guests");
    let g = grant("req-lifecycle");
    assert!(aws.can_satisfy(&g).await);
    let tdx = GrantSpec {
        tdx: TdxRequirement::Required,
        ..grant("req-tdx")
    };
    assert!(!aws.can_satisfy(&tdx).await);

    let w = workload();
    let inst = aws.provision(&g, &w).await.unwrap();
    assert!(inst.instance_id.starts_with("i-"), "{inst:?}");
    assert_eq!(inst.region, REGION);
    assert_eq!(inst.ssh_port, 22);
    assert_eq!(inst.user, w.ssh_user);
    assert!(
        inst.public_host.parse::<std::net::Ipv4Addr>().is_ok(),
        "{inst:?}"
    );

    // What moto holds, read back with boto3.
    let m = moto.instance(REGION, &inst.instance_id);
    assert_eq!(m.instance_type, "t3.medium", "the cheapest type that fits");
    assert_eq!(m.tags["compute-bridge:provider"], "test-provider");
    assert_eq!(m.tags["compute-bridge:request"], "req-lifecycle");
    assert!(m.user_data.starts_with("#cloud-config"), "{}", m.user_data);
    assert!(m.user_data.contains(&w.ssh_public_key), "{}", m.user_data);
    assert!(m.user_data.contains(IMAGE));
    assert!(m.user_data.contains("--cpus 1.500 --memory 3072m"));

    wait_state(&aws, &inst, InstanceState::Running).await;
    let listed = aws.list_instances().await.unwrap();
    assert_eq!(
        listed.iter().map(|i| &i.instance_id).collect::<Vec<_>>(),
        [&inst.instance_id]
    );

    aws.terminate(&inst).await.unwrap();
    assert_eq!(aws.status(&inst).await.unwrap(), InstanceState::Gone);
    assert_eq!(moto.instance(REGION, &inst.instance_id).state, "terminated");
    // Terminating again, and once more after moto forgets it, is fine.
    aws.terminate(&inst).await.unwrap();
    let forgotten = compute_bridge_contract::backend::Instance {
        instance_id: "i-0123456789abcdef0".into(),
        ..inst.clone()
    };
    aws.terminate(&forgotten).await.unwrap();
    assert_eq!(aws.status(&forgotten).await.unwrap(), InstanceState::Gone);
    assert!(aws.list_instances().await.unwrap().is_empty());

    // Usage is the type's allocation × run time: 2 vCPUs and 4096 MiB.
    let u = aws.usage(&inst).await.unwrap();
    assert_eq!(u.ram_mib_seconds * 2, u.cpu_core_seconds * 4096, "{u:?}");
    assert_eq!(u.net_bytes, 0);
}

#[tokio::test]
async fn a_wrong_secret_key_is_a_config_error_naming_the_key_not_the_value() {
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let wrong = format!("{}x", moto.secret_access_key);
    let aws = backend(
        state.path(),
        &moto,
        Setup {
            secret: Some(&wrong),
            ..Setup::moto(&moto)
        },
    );
    let err = aws
        .provision(&grant("req-badkey"), &workload())
        .await
        .unwrap_err();
    let BackendError::Config(msg) = &err else {
        panic!("expected a config error, got {err:?}")
    };
    assert!(msg.contains("secret_access_key"), "{msg}");
    assert!(msg.contains("AuthFailure"), "{msg}");
    assert!(!msg.contains(&wrong), "{msg}");
    assert!(!msg.contains(&moto.secret_access_key), "{msg}");
    assert!(moto.instances(REGION).is_empty(), "nothing was launched");
}

#[tokio::test]
async fn the_host_refuses_every_endpoint_beyond_the_allow_list() {
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let other = format!("http://127.0.0.1:{}", compute_bridge_testkit::free_port());
    let cases = [
        // Another port on the same loopback IP.
        Setup {
            endpoint: Some(other),
            ..Setup::moto(&moto)
        },
        // The real regional endpoint, not listed: refused before any DNS.
        Setup {
            endpoint: None,
            ..Setup::moto(&moto)
        },
        // A name for moto's address: listed, but loopback is only reachable
        // when the IP itself is listed.
        Setup {
            allowed_hosts: vec![format!("http://localhost:{}", moto.port)],
            endpoint: Some(format!("http://localhost:{}", moto.port)),
            secret: None,
        },
    ];
    for setup in cases {
        let endpoint = setup.endpoint.clone();
        let aws = backend(state.path(), &moto, setup);
        let err = aws
            .provision(&grant("req-denied"), &workload())
            .await
            .unwrap_err();
        let BackendError::Config(msg) = &err else {
            panic!("{endpoint:?}: expected a config error, got {err:?}")
        };
        assert!(msg.contains("denied by the host"), "{endpoint:?}: {msg}");
        assert!(
            aws.granted().http.counters.denied.load(Ordering::Relaxed) >= 1,
            "{endpoint:?}"
        );
    }
    assert!(moto.instances(REGION).is_empty(), "nothing was launched");
}

#[tokio::test]
async fn the_orphan_sweep_terminates_only_what_the_journal_does_not_know() {
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let cfg = config(state.path(), &moto, Setup::moto(&moto));
    assert!(cfg.backends[0].sweep_orphans);
    let (_rt, backends) = load(&cfg);
    let aws = &backends[0];

    let known = aws
        .provision(&grant("req-known"), &workload())
        .await
        .unwrap();
    let orphan = aws
        .provision(&grant("req-orphan"), &workload())
        .await
        .unwrap();
    let journal: HashSet<String> = [known.instance_id.clone()].into();

    let swept = compute_bridge_daemon::grant::sweep_orphans(aws.as_ref(), &journal).await;
    assert_eq!(swept, std::slice::from_ref(&orphan.instance_id));
    assert_eq!(
        moto.instance(REGION, &orphan.instance_id).state,
        "terminated"
    );
    assert_ne!(
        moto.instance(REGION, &known.instance_id).state,
        "terminated"
    );

    // A second sweep finds nothing more to do.
    assert!(
        compute_bridge_daemon::grant::sweep_orphans(aws.as_ref(), &journal)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn the_aws_component_passes_the_conformance_run_against_moto() {
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let aws = backend(state.path(), &moto, Setup::moto(&moto));
    let report = compute_bridge_daemon::conformance::run(
        aws.as_ref(),
        &compute_bridge_daemon::conformance::Options {
            deadline: Duration::from_secs(60),
            start_timeout: Duration::from_secs(30),
            workload: compute_bridge_daemon::conformance::sample_workload(),
        },
    )
    .await;
    assert!(report.passed(), "{}", report.render());
}

/// The commented AWS section of `config/example.toml`, uncommented, is a
/// config the host accepts and the component reads: every key it documents
/// is one the component knows.
#[tokio::test]
async fn the_documented_example_is_a_config_the_component_accepts() {
    let section = support::example_section("aws");
    let state = tempfile::tempdir().unwrap();
    let text = format!(
        "[bridge]\nstate_dir = {:?}\n\n{section}",
        state.path().display().to_string()
    );
    let cfg = BootConfig::from_source(&Source::embedded("example-aws.toml", &text), &|k| {
        k.starts_with("AWS_").then(|| format!("example-{k}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(cfg.backends[0].component, "builtin:aws");
    let (_rt, backends) = load(&cfg);
    // capabilities() parses and validates the whole table without a call.
    let caps = backends[0].capabilities().await.unwrap();
    assert!(!caps.regions.is_empty());
    assert!(!caps.tdx_capable);
}
