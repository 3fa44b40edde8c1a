//! Sandboxed ÷ native on the same work, interleaved in one process: each
//! row runs rounds of calls of the shipped component through the real
//! runtime (a fresh instance per call) and of the same backend core
//! natively, in turn (sandboxed first in even rounds, native first in odd
//! ones), so load that drifts while the bench runs hits both sides; the
//! ratio is reported per round (median ÷ median) with its spread.
//!
//! - **fake**: `status` and `provision` of the `fake` test component beside
//!   `cb_fake::Fake` natively (`native_fake.rs`): a call that does almost
//!   nothing, i.e. the sandbox's fixed cost per call;
//! - **aws**: the shipped `aws.wasm` (`builtin:aws`) beside the `cb-aws`
//!   core natively, against one canned EC2 responder on 127.0.0.1: `status`
//!   (one SigV4-signed `DescribeInstances`, its XML parsed) and
//!   `list-instances` (the same with filters, a page of
//!   [`LIST_PAGE`] instances parsed);
//! - **gcp**: the shipped `gcp.wasm` beside the `cb-gcp` core natively,
//!   against the GCP API fake (`cb-gcp-fake`): `status` with the token
//!   cache emptied first (the RS256 service-account assertion signed with
//!   the pure-Rust `rsa` crate, in wasm or natively, then the token
//!   exchange and the instance read), and `status` with the token cached.
//!
//! The native side runs each call as the component's glue does (the config
//! parsed from the same JSON, the core built, the call made) over
//! `native_host.rs`, which sends with one pooled `reqwest` client and logs
//! as the host's capabilities do; what it leaves out (the instance, the
//! copies across the boundary, the http capability's policy checks) is the
//! sandbox's price. Both sides run under the production log subscriber
//! unless `BENCH_LOG=off`.
//!
//! ```sh
//! cargo bench -p compute-bridge --bench interleaved
//! # knobs: INTERLEAVE_ROUNDS (20) BENCH_LOG (off: no subscriber)
//! ```

mod common;
#[path = "native_fake.rs"]
mod native_fake;
#[path = "native_host.rs"]
mod native_host;

use common::{
    BENCH_PROVIDER, FAKE_CONFIG, INTERLEAVED_HEADER, Pair, fake_grant, gcp_toml, interleave, knob,
    load, loadavg, production_logging, workload,
};
use native_host::NativeHost;

use std::sync::Arc;

use cb_fake::sdk;
use compute_bridge_contract::backend::{
    Backend, GrantSpec, Instance, InstanceState, TdxRequirement,
};
use compute_bridge_sandbox::ComponentBackend;
use compute_bridge_testkit::fake_server::FakeServer;
use compute_bridge_testkit::gcp_fake::GcpFake;

/// Instances in the canned `DescribeInstances` page `list-instances` reads.
const LIST_PAGE: usize = 20;

fn sdk_instance(i: &Instance) -> sdk::Instance {
    native_fake::instance(i)
}

/// Run a native call on this worker, where its host may block on HTTP.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

// ---- fake -----------------------------------------------------------------

struct FakeStatus {
    sandboxed: Arc<dyn Backend>,
    native: Arc<dyn Backend>,
    instance: Instance,
}

impl Pair for FakeStatus {
    async fn sandboxed(&self) {
        self.sandboxed.status(&self.instance).await.expect("status");
    }
    async fn native(&self) {
        self.native.status(&self.instance).await.expect("status");
    }
}

struct FakeProvision(FakeStatus);

impl Pair for FakeProvision {
    async fn sandboxed(&self) {
        self.0
            .sandboxed
            .provision(&fake_grant(1), &workload())
            .await
            .expect("provision");
    }
    async fn native(&self) {
        self.0
            .native
            .provision(&fake_grant(1), &workload())
            .await
            .expect("provision");
    }
}

// ---- aws ------------------------------------------------------------------

/// One instance as `DescribeInstances` lists it, in the shape of the EC2 API
/// reference's example response
/// (<https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeInstances.html>),
/// tagged as the backend tags what it launches.
fn ec2_item(n: usize) -> String {
    format!(
        "<item><instanceId>i-0bench{n:09}</instanceId><imageId>ami-0bench</imageId>\
         <instanceState><code>16</code><name>running</name></instanceState>\
         <privateDnsName>ip-10-0-0-{n}.ec2.internal</privateDnsName>\
         <dnsName>ec2-54-0-0-{n}.compute-1.amazonaws.com</dnsName><reason/>\
         <amiLaunchIndex>0</amiLaunchIndex><productCodes/><instanceType>m5.large</instanceType>\
         <launchTime>2026-11-30T12:00:00.000Z</launchTime>\
         <placement><availabilityZone>us-east-1a</availabilityZone><groupName/><tenancy>default</tenancy></placement>\
         <monitoring><state>disabled</state></monitoring><subnetId>subnet-0bench</subnetId>\
         <vpcId>vpc-0bench</vpcId><privateIpAddress>10.0.0.{n}</privateIpAddress>\
         <ipAddress>54.0.0.{n}</ipAddress><sourceDestCheck>true</sourceDestCheck>\
         <groupSet><item><groupId>sg-0bench</groupId><groupName>default</groupName></item></groupSet>\
         <architecture>x86_64</architecture><rootDeviceType>ebs</rootDeviceType>\
         <rootDeviceName>/dev/xvda</rootDeviceName><virtualizationType>hvm</virtualizationType>\
         <tagSet><item><key>compute-bridge:provider</key><value>{BENCH_PROVIDER}</value></item>\
         <item><key>compute-bridge:request</key><value>req-{n}</value></item>\
         <item><key>compute-bridge:user</key><value>cb-w{n}</value></item>\
         <item><key>compute-bridge:valid-to</key><value>4102444800</value></item></tagSet>\
         <hypervisor>xen</hypervisor><ebsOptimized>false</ebsOptimized></item>"
    )
}

fn describe_response(items: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
         <requestId>8f7724cf-496f-496e-8fe3-example</requestId><reservationSet><item>\
         <reservationId>r-0bench</reservationId><ownerId>123456789012</ownerId><groupSet/>\
         <instancesSet>{items}</instancesSet></item></reservationSet></DescribeInstancesResponse>"
    )
}

/// A canned EC2 on 127.0.0.1: every `DescribeInstances` naming an instance
/// gets that one instance running; one with filters gets a page of
/// [`LIST_PAGE`]. It is not a fake of EC2 (it checks no signature and knows
/// no other action, answering 400 `InvalidAction` to one): it gives both
/// sides the same bytes to parse.
fn canned_ec2() -> FakeServer {
    let one = describe_response(&ec2_item(1));
    let page = describe_response(&(1..=LIST_PAGE).map(ec2_item).collect::<String>());
    let router = axum::Router::new().route(
        "/",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let (one, page) = (one.clone(), page.clone());
            async move {
                let signed = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 "));
                assert!(signed, "an unsigned request reached the canned EC2");
                let xml = [(axum::http::header::CONTENT_TYPE, "text/xml;charset=UTF-8")];
                if !body.contains("Action=DescribeInstances") {
                    return (axum::http::StatusCode::BAD_REQUEST, xml, "<Response><Errors><Error><Code>InvalidAction</Code><Message>canned</Message></Error></Errors><RequestID>r</RequestID></Response>".to_string());
                }
                let doc = if body.contains("InstanceId.1=") { one } else { page };
                (axum::http::StatusCode::OK, xml, doc)
            }
        }),
    );
    FakeServer::start("ec2-canned", router)
}

struct Aws {
    sandboxed: Arc<ComponentBackend>,
    config: String,
    host: NativeHost,
    instance: Instance,
}

impl Aws {
    fn native<T>(&self, f: impl FnOnce(&cb_aws::Aws<'_, NativeHost>) -> T) -> T {
        blocking(|| {
            let cfg = cb_aws::AwsConfig::from_json(&self.config).expect("aws config");
            f(&cb_aws::Aws::new(cfg, BENCH_PROVIDER, &self.host).expect("aws core"))
        })
    }
}

struct AwsStatus(Aws);

impl Pair for AwsStatus {
    async fn sandboxed(&self) {
        let s = self.0.sandboxed.status(&self.0.instance).await;
        assert_eq!(s.expect("status"), InstanceState::Running);
    }
    async fn native(&self) {
        let i = sdk_instance(&self.0.instance);
        let s = self.0.native(|a| a.status(&i)).expect("status");
        assert_eq!(s, sdk::InstanceState::Running);
    }
}

struct AwsList(Aws);

impl Pair for AwsList {
    async fn sandboxed(&self) {
        let l = self.0.sandboxed.list_instances().await.expect("list");
        assert_eq!(l.len(), LIST_PAGE);
    }
    async fn native(&self) {
        let l = self.0.native(|a| a.list_instances()).expect("list");
        assert_eq!(l.len(), LIST_PAGE);
    }
}

// ---- gcp ------------------------------------------------------------------

struct Gcp {
    sandboxed: Arc<ComponentBackend>,
    config: String,
    host: NativeHost,
    instance: Instance,
    /// Empty the token cache before each call.
    fetch_token: bool,
}

impl Pair for Gcp {
    async fn sandboxed(&self) {
        if self.fetch_token {
            self.sandboxed.granted().cache.clear();
        }
        let s = self.sandboxed.status(&self.instance).await;
        assert_eq!(s.expect("status"), InstanceState::Running);
    }
    async fn native(&self) {
        if self.fetch_token {
            self.host.clear_cache();
        }
        let i = sdk_instance(&self.instance);
        let s = blocking(|| {
            let cfg: cb_gcp::GcpConfig = sdk::config::parse(&self.config).expect("gcp config");
            cb_gcp::Gcp::new(cfg, BENCH_PROVIDER, "gcp", &self.host)
                .expect("gcp core")
                .status(&i)
        });
        assert_eq!(s.expect("status"), sdk::InstanceState::Running);
    }
}

// ---------------------------------------------------------------------------

fn main() {
    let mut log = production_logging("interleaved");
    let rounds = knob("INTERLEAVE_ROUNDS", 20);
    // The bridge's runtime shape: multi-threaded, one worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "interleaved bench: {} cores, load average {} at start",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    rt.block_on(async {
        let state = tempfile::tempdir().unwrap();
        let mut rows = Vec::new();

        // fake
        let toml = format!(
            "[[backends]]\nname = \"fake\"\ncomponent = {:?}\n[backends.config]\nregions = [\"bench-1\"]\nrun_seconds = 3600\n",
            compute_bridge_testkit::components::FAKE
        );
        let (_rt_fake, fake, _) = load(state.path(), &toml, Vec::new());
        let native: Arc<dyn Backend> = Arc::new(native_fake::NativeFake::new("fake", FAKE_CONFIG));
        let instance = native.provision(&fake_grant(0), &workload()).await.unwrap();
        let status = FakeStatus {
            sandboxed: fake,
            native,
            instance,
        };
        rows.push(
            interleave(&status, 2_000, rounds, 1_000)
                .await
                .row("fake `status`", "µs"),
        );
        let provision = FakeProvision(status);
        rows.push(
            interleave(&provision, 2_000, rounds, 1_000)
                .await
                .row("fake `provision`", "µs"),
        );
        println!("fake done, load average {}", loadavg());

        // aws
        let ec2 = canned_ec2();
        let url = ec2.url();
        let toml = format!(
            "[[backends]]\nname = \"aws\"\ncomponent = \"builtin:aws\"\n[backends.http]\nallowed_hosts = [\"{url}\"]\n\
             [backends.config]\naccess_key_id = \"AKIDBENCH\"\nsecret_access_key = \"${{SECRET}}\"\nendpoint = \"{url}\"\n\
             [[backends.config.regions]]\nname = \"us-east-1\"\nami = \"ami-0bench\"\n\
             [[backends.config.instance_types]]\ntype = \"m5.large\"\nvcpu = 2\nram_mib = 8192\nusd_per_hour = 0.096\n"
        );
        let (_rt_aws, sandboxed, config) = load(
            state.path(),
            &toml,
            vec![("SECRET", "bench-secret-not-a-key".into())],
        );
        let handle = serde_json::json!({"region": "us-east-1", "type": "m5.large", "vcpu": 2,
            "ram_mib": 8192, "launched": 1_796_040_000u64, "valid_to": 4_102_444_800u64});
        let instance = Instance {
            instance_id: "i-0bench000000001".into(),
            region: "us-east-1".into(),
            public_host: "54.0.0.1".into(),
            ssh_port: 22,
            user: "cb-w1".into(),
            host_key: String::new(),
            handle: handle.to_string(),
        };
        let aws = Aws {
            sandboxed,
            config,
            host: NativeHost::new("aws"),
            instance,
        };
        let status = AwsStatus(aws);
        rows.push(
            interleave(&status, 100, rounds, 100)
                .await
                .row("aws `status` (SigV4, one instance's XML)", "ms"),
        );
        let list = AwsList(status.0);
        rows.push(
            interleave(&list, 50, rounds, 50)
                .await
                .row(&format!("aws `list-instances` (SigV4, {LIST_PAGE} instances' XML)"), "ms"),
        );
        drop(list);
        drop(ec2);
        println!("aws done, load average {}", loadavg());

        // gcp
        let gcp = GcpFake::start("bridge-bench", &["us-central1-b"]);
        let url = gcp.url();
        let toml = gcp_toml(&url);
        let (_rt_gcp, sandboxed, config) =
            load(state.path(), &toml, vec![("KEY", gcp.key_json())]);
        let grant = GrantSpec {
            request_id: "bench".into(),
            cpu_millicores: 2000,
            ram_mib: 4096,
            region: None,
            tdx: TdxRequirement::Required,
            image: format!("ghcr.io/acme/worker@sha256:{}", "4f".repeat(32)),
            valid_to: u64::MAX,
        };
        let instance = sandboxed.provision(&grant, &workload()).await.expect("provision");
        let mut pair = Gcp {
            sandboxed,
            config,
            host: NativeHost::new("gcp"),
            instance,
            fetch_token: true,
        };
        rows.push(
            interleave(&pair, 3, rounds, 5)
                .await
                .row("gcp `status`, token fetched (RS256 signed, token exchanged)", "ms"),
        );
        pair.fetch_token = false;
        rows.push(
            interleave(&pair, 100, rounds, 100)
                .await
                .row("gcp `status`, token cached", "ms"),
        );
        assert!(gcp.rejections().is_empty(), "{:?}", gcp.rejections());
        println!("gcp done, load average {}", loadavg());

        println!("\n{INTERLEAVED_HEADER}");
        for r in rows {
            println!("{r}");
        }
    });
    println!("\nload average at end {}; {}", loadavg(), log.summary());
}
