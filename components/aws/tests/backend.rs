//! The backend's behaviour over a scripted EC2: what it asks for (type,
//! tags, user-data, region order) and what it makes of the answers.
//! The real thing, against moto through the host, is in the host's
//! runtime tests (`host/tests/runtime/aws.rs`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use cb_aws::{Aws, AwsConfig, Handle};
use compute_bridge_sdk::http::{HttpError, Response};
use compute_bridge_sdk::{
    BackendError as Error, GrantSpec, Host, Instance, InstanceState as State, MemoryHost,
    TdxRequirement, Workload,
};

/// One request as EC2 would see it.
#[derive(Debug, Clone)]
struct Seen {
    action: String,
    region: String,
    params: BTreeMap<String, String>,
}

/// A scripted EC2 behind a [`MemoryHost`]: every request the core sends is
/// parsed into a [`Seen`], kept, and answered by the test's responder.
struct Scripted {
    host: MemoryHost,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    fn logs(&self) -> Vec<String> {
        self.host
            .logs()
            .iter()
            .map(|l| format!("{} {:?}", l.message, l.fields))
            .collect()
    }
}

/// An EC2 answer, as the scripts write them.
#[derive(Clone)]
struct HttpResponse {
    status: u16,
    body: Vec<u8>,
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn env(respond: impl Fn(&Seen) -> HttpResponse + Send + 'static) -> Scripted {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let host = MemoryHost::new().on_http(move |req| {
        let (_, _, headers, body) = req.parts();
        let body = String::from_utf8(body.to_vec()).unwrap();
        let params: BTreeMap<String, String> = body
            .split('&')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (decode(k), decode(v))
            })
            .collect();
        let auth = &headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap()
            .1;
        // Credential=AKID/DATE/REGION/ec2/aws4_request
        let region = auth.split('/').nth(2).unwrap().to_string();
        let s = Seen {
            action: params["Action"].clone(),
            region,
            params,
        };
        kept.lock().unwrap().push(s.clone());
        let resp = respond(&s);
        if resp.status == TIMEOUT {
            return Err(HttpError::Timeout);
        }
        Ok(Response {
            status: resp.status,
            headers: Vec::new(),
            body: resp.body,
        })
    });
    assert_eq!(host.now(), 1_700_000_000);
    Scripted { host, seen }
}

fn w(key: &str) -> Workload {
    Workload {
        ssh_user: "cb-w1".into(),
        ssh_public_key: key.into(),
    }
}

fn inst(id: &str, handle: &str) -> Instance {
    Instance {
        instance_id: id.into(),
        region: String::new(),
        public_host: String::new(),
        ssh_port: 22,
        user: String::new(),
        host_key: String::new(),
        handle: handle.into(),
    }
}

fn config() -> AwsConfig {
    AwsConfig::from_json(
        r#"{"access_key_id": "AKID", "secret_access_key": "s3cr3t",
            "regions": [
                {"name": "us-east-1", "ami": "ami-east", "security_group_ids": ["sg-1"]},
                {"name": "eu-west-1", "ami": "ami-west", "subnet_id": "subnet-9", "security_group_ids": ["sg-2", "sg-3"]}
            ],
            "instance_types": [
                {"type": "m5.large", "vcpu": 2, "ram_mib": 8192, "usd_per_hour": 0.096},
                {"type": "t3.medium", "vcpu": 2, "ram_mib": 4096, "usd_per_hour": 0.0416},
                {"type": "c5.xlarge", "vcpu": 4, "ram_mib": 8192, "usd_per_hour": 0.17}
            ]}"#,
    )
    .unwrap()
}

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ cb";
const IMAGE: &str =
    "ghcr.io/acme/job@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn grant(cpu: u32, ram: u32, region: Option<&'static str>) -> GrantSpec {
    GrantSpec {
        request_id: "req-42".into(),
        cpu_millicores: cpu,
        ram_mib: ram,
        region: region.map(str::to_string),
        tdx: TdxRequirement::None,
        image: IMAGE.into(),
        valid_to: 1_700_003_600,
    }
}

/// A scripted "response" with this status stands for a transport timeout:
/// the request went out and no answer came back.
const TIMEOUT: u16 = 0;

fn timeout() -> HttpResponse {
    HttpResponse {
        status: TIMEOUT,
        body: Vec::new(),
    }
}

fn ok(body: &str) -> HttpResponse {
    HttpResponse {
        status: 200,
        body: body.as_bytes().to_vec(),
    }
}

fn ec2_error(status: u16, code: &str) -> HttpResponse {
    HttpResponse {
        status,
        body: format!(
            "<Response><Errors><Error><Code>{code}</Code><Message>m</Message></Error></Errors><RequestID>r</RequestID></Response>"
        )
        .into_bytes(),
    }
}

fn instance_xml(id: &str, state: &str, ip: Option<&str>, extra: &str) -> String {
    format!(
        "<item><instanceId>{id}</instanceId><instanceType>t3.medium</instanceType>\
         <instanceState><code>0</code><name>{state}</name></instanceState>\
         <launchTime>2023-11-14T22:13:20.000Z</launchTime>{}{extra}</item>",
        ip.map(|ip| format!("<ipAddress>{ip}</ipAddress>"))
            .unwrap_or_default()
    )
}

fn run_response(ip: Option<&str>) -> HttpResponse {
    ok(&format!(
        "<RunInstancesResponse><instancesSet>{}</instancesSet></RunInstancesResponse>",
        instance_xml("i-0abc", "pending", ip, "")
    ))
}

fn describe_response(items: &str) -> HttpResponse {
    ok(&format!(
        "<DescribeInstancesResponse><reservationSet><item><instancesSet>{items}</instancesSet></item></reservationSet></DescribeInstancesResponse>"
    ))
}

#[test]
fn provision_launches_the_cheapest_fit_tagged_with_the_workload_user_data() {
    let e = env(|s| match s.action.as_str() {
        "RunInstances" => run_response(Some("54.1.2.3")),
        a => panic!("unexpected {a}"),
    });
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    let l = aws.provision(&grant(1500, 3000, None), &w(KEY)).unwrap();
    assert_eq!(l.instance_id, "i-0abc");
    assert_eq!(l.public_host, "54.1.2.3");
    assert_eq!(
        (l.region.as_str(), l.ssh_port, l.user.as_str()),
        ("us-east-1", 22, "cb-w1")
    );
    let h = Handle::parse(&l.handle).unwrap();
    assert_eq!(
        (h.instance_type.as_str(), h.vcpu, h.ram_mib),
        ("t3.medium", 2, 4096)
    );

    let seen = e.seen();
    let p = &seen[0].params;
    assert_eq!(seen[0].region, "us-east-1");
    assert_eq!(p["Version"], "2016-11-15");
    assert_eq!(p["InstanceType"], "t3.medium");
    assert_eq!(p["ImageId"], "ami-east");
    assert_eq!(p["SecurityGroupId.1"], "sg-1");
    assert_eq!(p["InstanceInitiatedShutdownBehavior"], "stop");
    let tags: BTreeMap<&str, &str> = (1..=5)
        .map(|i| {
            (
                p[&format!("TagSpecification.1.Tag.{i}.Key")].as_str(),
                p[&format!("TagSpecification.1.Tag.{i}.Value")].as_str(),
            )
        })
        .collect();
    assert_eq!(tags["compute-bridge:provider"], "prov-1");
    assert_eq!(tags["compute-bridge:request"], "req-42");
    assert_eq!(tags["compute-bridge:user"], "cb-w1");
    assert_eq!(p["TagSpecification.2.ResourceType"], "volume");
    let user_data = base64::engine::general_purpose::STANDARD
        .decode(&p["UserData"])
        .unwrap();
    let user_data = String::from_utf8(user_data).unwrap();
    assert!(user_data.starts_with("#cloud-config"));
    assert!(user_data.contains(KEY));
    assert!(user_data.contains(IMAGE));
    // The same grant gets the same idempotency token.
    let token = p["ClientToken"].clone();
    drop(seen);
    aws.provision(&grant(1500, 3000, None), &w(KEY)).unwrap();
    assert_eq!(e.seen()[1].params["ClientToken"], token);
}

#[test]
fn a_subnet_gets_a_network_interface_with_a_public_address() {
    let e = env(|_| run_response(Some("54.1.2.3")));
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    aws.provision(&grant(500, 256, Some("eu-west-1")), &w(KEY))
        .unwrap();
    let p = &e.seen()[0].params;
    assert_eq!(e.seen()[0].region, "eu-west-1");
    assert_eq!(p["NetworkInterface.1.SubnetId"], "subnet-9");
    assert_eq!(p["NetworkInterface.1.AssociatePublicIpAddress"], "true");
    assert_eq!(p["NetworkInterface.1.SecurityGroupId.2"], "sg-3");
    assert!(!p.contains_key("SecurityGroupId.1"));
}

#[test]
fn a_grant_without_a_region_is_placed_in_the_first_region_only() {
    // Region failover is the fleet's: it offers such a grant to each
    // region in turn and records every step. The component itself places
    // a direct call without a region in the first configured region, and a
    // capacity refusal there goes back as `no-capacity`, untried elsewhere.
    let e = env(|s| match s.region.as_str() {
        "us-east-1" => ec2_error(500, "InsufficientInstanceCapacity"),
        _ => run_response(Some("54.9.9.9")),
    });
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    let err = aws.provision(&grant(500, 256, None), &w(KEY)).unwrap_err();
    assert!(matches!(err, Error::NoCapacity(_)), "{err}");
    let regions: Vec<String> = e.seen().iter().map(|s| s.region.clone()).collect();
    assert_eq!(regions, ["us-east-1"]);
    // Served there, it lands there.
    let e = env(|_| run_response(Some("54.9.9.9")));
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    let l = aws.provision(&grant(500, 256, None), &w(KEY)).unwrap();
    assert_eq!(l.region, "us-east-1");
    // A grant pinned to the full region gets the capacity error itself.
    let e = env(|_| ec2_error(400, "InstanceLimitExceeded"));
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    let err = aws
        .provision(&grant(500, 256, Some("us-east-1")), &w(KEY))
        .unwrap_err();
    assert!(matches!(err, Error::NoCapacity(_)), "{err}");
    assert_eq!(e.seen().len(), 1);
}

#[test]
fn provision_waits_for_the_address_and_gives_up_cleanly() {
    // The address appears on the second look.
    let looks = AtomicU32::new(0);
    let e = env(move |s| match s.action.as_str() {
        "RunInstances" => run_response(None),
        "DescribeInstances" => {
            let looks = looks.fetch_add(1, Ordering::Relaxed) + 1;
            let ip = (looks >= 2).then_some("54.3.3.3");
            describe_response(&instance_xml("i-0abc", "pending", ip, ""))
        }
        a => panic!("unexpected {a}"),
    });
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    let l = aws.provision(&grant(500, 256, None), &w(KEY)).unwrap();
    assert_eq!(l.public_host, "54.3.3.3");

    // Never: the instance is terminated and the error is transient.
    let e = env(|s| match s.action.as_str() {
        "RunInstances" => run_response(None),
        "DescribeInstances" => describe_response(&instance_xml("i-0abc", "pending", None, "")),
        "TerminateInstances" => ok("<TerminateInstancesResponse/>"),
        a => panic!("unexpected {a}"),
    });
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    let err = aws.provision(&grant(500, 256, None), &w(KEY)).unwrap_err();
    assert!(matches!(err, Error::Transient(_)), "{err}");
    let seen = e.seen();
    assert_eq!(seen.last().unwrap().action, "TerminateInstances");
    assert_eq!(seen.last().unwrap().params["InstanceId.1"], "i-0abc");
}

#[test]
fn grants_it_cannot_serve_are_declined_without_a_call() {
    let e = env(|s| panic!("no call expected, got {}", s.action));
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    assert!(aws.can_satisfy(&grant(4000, 8192, None)));
    assert!(
        !aws.can_satisfy(&grant(4001, 1024, None)),
        "no type that big"
    );
    assert!(!aws.can_satisfy(&grant(500, 256, Some("ap-south-1"))));
    assert!(!aws.can_satisfy(&GrantSpec {
        tdx: TdxRequirement::Required,
        ..grant(500, 256, None)
    }));
    let bad = GrantSpec {
        image: "nginx:latest".into(),
        ..grant(500, 256, None)
    };
    assert!(matches!(
        aws.provision(&bad, &w(KEY)),
        Err(Error::Rejected(_))
    ));
    let caps = aws.offer();
    assert_eq!(caps.regions, ["us-east-1", "eu-west-1"]);
    assert_eq!(caps.max_cpu_millicores, 32_000);
}

fn handle() -> String {
    serde_json::json!({"region": "eu-west-1", "type": "t3.medium", "vcpu": 2, "ram_mib": 4096,
                       "launched": 1_700_000_000u64, "valid_to": 1_700_003_600u64})
    .to_string()
}

#[test]
fn status_follows_the_instance_state() {
    for (state, want) in [
        ("pending", State::Starting),
        ("running", State::Running),
        ("stopping", State::Running),
        ("shutting-down", State::Gone),
        ("terminated", State::Gone),
    ] {
        let e = env(move |_| describe_response(&instance_xml("i-0abc", state, None, "")));
        let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
        assert_eq!(
            aws.status(&inst("i-0abc", &handle())).unwrap(),
            want,
            "{state}"
        );
        assert_eq!(e.seen()[0].region, "eu-west-1");
    }
    // Stopped: the workload's exit code comes from the console.
    let e = env(|s| match s.action.as_str() {
        "DescribeInstances" => describe_response(&instance_xml("i-0abc", "stopped", None, "")),
        "GetConsoleOutput" => ok(&format!(
            "<GetConsoleOutputResponse><output>{}</output></GetConsoleOutputResponse>",
            base64::engine::general_purpose::STANDARD
                .encode("[ 9.1] compute-bridge: workload exited 3\nreboot: Power down\n")
        )),
        a => panic!("unexpected {a}"),
    });
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    assert_eq!(
        aws.status(&inst("i-0abc", &handle())).unwrap(),
        State::Exited(3)
    );
    // Unknown to EC2: gone.
    let e = env(|_| ec2_error(400, "InvalidInstanceID.NotFound"));
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    assert_eq!(aws.status(&inst("i-0abc", &handle())).unwrap(), State::Gone);
}

#[test]
fn usage_is_allocation_times_run_time() {
    // Launched 2023-11-14T22:13:20Z (1_700_000_000), stopped 30 minutes later.
    let e = env(|_| {
        describe_response(&instance_xml(
            "i-0abc",
            "stopped",
            None,
            "<reason>User initiated (2023-11-14 22:43:20 GMT)</reason>",
        ))
    });
    e.host.set_now(1_700_009_999);
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    let u = aws.usage(&inst("i-0abc", &handle())).unwrap();
    assert_eq!(u.cpu_core_seconds, 2 * 1800);
    assert_eq!(u.ram_mib_seconds, 4096 * 1800);
    assert_eq!(u.net_bytes, 0);
    // Still running: until now.
    let e = env(|_| describe_response(&instance_xml("i-0abc", "running", None, "")));
    e.host.set_now(1_700_000_600);
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    assert_eq!(
        aws.usage(&inst("i-0abc", &handle()))
            .unwrap()
            .cpu_core_seconds,
        1200
    );
}

#[test]
fn terminate_is_idempotent() {
    let e = env(|_| ec2_error(400, "InvalidInstanceID.NotFound"));
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    aws.terminate(&inst("i-0abc", &handle())).unwrap();
    let e = env(|_| ec2_error(503, "RequestLimitExceeded"));
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    assert!(matches!(
        aws.terminate(&inst("i-0abc", &handle())),
        Err(Error::Transient(_))
    ));
}

#[test]
fn list_instances_filters_by_provider_and_rebuilds_handles_from_tags() {
    let e = env(|s| {
        if s.region != "us-east-1" {
            return describe_response("");
        }
        let tags = |p: &str| {
            format!(
                "<tagSet><item><key>compute-bridge:provider</key><value>{p}</value></item>\
                 <item><key>compute-bridge:user</key><value>cb-w1</value></item>\
                 <item><key>compute-bridge:valid-to</key><value>1700003600</value></item></tagSet>"
            )
        };
        let page = if s.params.contains_key("NextToken") {
            instance_xml("i-2", "stopped", None, &tags("prov-1"))
        } else {
            instance_xml("i-1", "running", Some("54.0.0.1"), &tags("prov-1"))
                + &instance_xml("i-other", "running", None, &tags("someone-else"))
        };
        let next = if s.params.contains_key("NextToken") {
            ""
        } else {
            "<nextToken>t2</nextToken>"
        };
        ok(&format!(
            "<DescribeInstancesResponse><reservationSet><item><instancesSet>{page}</instancesSet></item></reservationSet>{next}</DescribeInstancesResponse>"
        ))
    });
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    let list = aws.list_instances().unwrap();
    let ids: Vec<&str> = list.iter().map(|l| l.instance_id.as_str()).collect();
    assert_eq!(ids, ["i-1", "i-2"]);
    assert_eq!(list[0].user, "cb-w1");
    let h = Handle::parse(&list[0].handle).unwrap();
    assert_eq!((h.vcpu, h.ram_mib, h.valid_to), (2, 4096, 1_700_003_600));
    let first = &e.seen()[0].params;
    assert_eq!(first["Filter.1.Name"], "tag:compute-bridge:provider");
    assert_eq!(first["Filter.1.Value.1"], "prov-1");
    assert!(!(1..=4).any(|i| first[&format!("Filter.2.Value.{i}")] == "terminated"));
}

#[test]
fn credentials_never_reach_a_log_line_or_an_error() {
    let e = env(|_| ec2_error(401, "AuthFailure"));
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    let err = aws.provision(&grant(500, 256, None), &w(KEY)).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!(err.describe().contains("secret_access_key"));
    assert!(!err.describe().contains("s3cr3t"));
    assert!(e.logs().iter().all(|l| !l.contains("s3cr3t")));
}

/// Tags as EC2 returns them on an instance this provider launched for
/// `request`.
fn request_tags(provider: &str, request: &str) -> String {
    format!(
        "<tagSet><item><key>compute-bridge:provider</key><value>{provider}</value></item>\
         <item><key>compute-bridge:request</key><value>{request}</value></item></tagSet>"
    )
}

fn actions(e: &Scripted) -> Vec<String> {
    e.seen().iter().map(|s| s.action.clone()).collect()
}

#[test]
fn a_lost_answer_to_run_instances_finds_the_instance_by_its_tags_and_terminates_it() {
    // RunInstances took effect but its answer was a 500 (or timed out):
    // the instance is found by the provider and request tags, terminated,
    // and the grant fails over.
    for lost in [ec2_error(500, "InternalError"), timeout()] {
        let e = env(move |s| match s.action.as_str() {
            "RunInstances" => lost.clone(),
            "DescribeInstances" => describe_response(&instance_xml(
                "i-0lost",
                "pending",
                None,
                &request_tags("prov-1", "req-42"),
            )),
            "TerminateInstances" => ok("<TerminateInstancesResponse/>"),
            a => panic!("unexpected {a}"),
        });
        let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
        let err = aws.provision(&grant(500, 256, None), &w(KEY)).unwrap_err();
        let Error::Transient(msg) = &err else {
            panic!("expected transient, got {err}")
        };
        assert!(msg.contains("terminated i-0lost it had launched"), "{msg}");
        assert_eq!(
            actions(&e),
            ["RunInstances", "DescribeInstances", "TerminateInstances"]
        );
        let seen = e.seen();
        let look = &seen[1].params;
        assert_eq!(look["Filter.1.Name"], "tag:compute-bridge:provider");
        assert_eq!(look["Filter.1.Value.1"], "prov-1");
        assert_eq!(look["Filter.2.Name"], "tag:compute-bridge:request");
        assert_eq!(look["Filter.2.Value.1"], "req-42");
        assert_eq!(seen[2].params["InstanceId.1"], "i-0lost");
    }
}

#[test]
fn a_lost_answer_that_launched_nothing_is_looked_for_then_declined() {
    let e = env(|s| match s.action.as_str() {
        "RunInstances" => timeout(),
        "DescribeInstances" => describe_response(""),
        a => panic!("unexpected {a}"),
    });
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    let err = aws.provision(&grant(500, 256, None), &w(KEY)).unwrap_err();
    assert!(
        matches!(&err, Error::Transient(m) if m.contains("no instance was launched for this grant (looked 3 times)")),
        "{err}"
    );
    // EC2's listing can lag a launch: it looked three times, two seconds
    // apart, and launched nothing else.
    assert_eq!(
        actions(&e),
        [
            "RunInstances",
            "DescribeInstances",
            "DescribeInstances",
            "DescribeInstances"
        ]
    );
}

#[test]
fn an_instance_of_another_request_or_provider_is_never_taken_for_the_lost_one() {
    let e = env(|s| match s.action.as_str() {
        "RunInstances" => ec2_error(503, "Unavailable"),
        // EC2 ignoring the filters must not make it terminate others.
        "DescribeInstances" => describe_response(
            &(instance_xml(
                "i-other-req",
                "running",
                None,
                &request_tags("prov-1", "req-7"),
            ) + &instance_xml(
                "i-other-prov",
                "running",
                None,
                &request_tags("prov-2", "req-42"),
            )),
        ),
        a => panic!("unexpected {a}"),
    });
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    let err = aws.provision(&grant(500, 256, None), &w(KEY)).unwrap_err();
    assert!(matches!(err, Error::Transient(_)), "{err}");
    assert!(!actions(&e).contains(&"TerminateInstances".to_string()));
}

#[test]
fn a_refusal_that_launched_nothing_is_not_looked_for() {
    // A client error, a capacity code or refused credentials mean EC2
    // launched nothing: no lookup, and the error keeps its kind.
    for (resp, kind) in [
        (ec2_error(400, "InvalidParameterValue"), "internal"),
        (
            ec2_error(500, "InsufficientInstanceCapacity"),
            "no capacity",
        ),
        (ec2_error(401, "AuthFailure"), "config"),
    ] {
        let e = env(move |s| match s.action.as_str() {
            "RunInstances" => resp.clone(),
            a => panic!("unexpected {a}"),
        });
        let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
        let err = aws
            .provision(&grant(500, 256, Some("us-east-1")), &w(KEY))
            .unwrap_err();
        assert!(err.describe().starts_with(kind), "{err}");
        assert_eq!(actions(&e), ["RunInstances"]);
    }
}

#[test]
fn an_unreadable_success_is_treated_as_a_possible_launch() {
    let e = env(|s| match s.action.as_str() {
        "RunInstances" => ok("<RunInstancesResponse><instancesSet>"),
        "DescribeInstances" => describe_response(&instance_xml(
            "i-0half",
            "running",
            Some("54.9.9.9"),
            &request_tags("prov-1", "req-42"),
        )),
        "TerminateInstances" => ok("<TerminateInstancesResponse/>"),
        a => panic!("unexpected {a}"),
    });
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    let err = aws.provision(&grant(500, 256, None), &w(KEY)).unwrap_err();
    assert!(
        matches!(&err, Error::Transient(m) if m.contains("unreadable response") && m.contains("terminated i-0half")),
        "{err}"
    );
}

#[test]
fn a_fault_while_waiting_for_the_address_terminates_the_instance() {
    // Launched without an address; the next look fails: the instance is
    // terminated before the error goes back (it used to be left running).
    let e = env(|s| match s.action.as_str() {
        "RunInstances" => run_response(None),
        "DescribeInstances" => ec2_error(500, "InternalError"),
        "TerminateInstances" => ok("<TerminateInstancesResponse/>"),
        a => panic!("unexpected {a}"),
    });
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    let err = aws.provision(&grant(500, 256, None), &w(KEY)).unwrap_err();
    assert!(
        matches!(&err, Error::Transient(m) if m.contains("instance i-0abc terminated")),
        "{err}"
    );
    let seen = e.seen();
    assert_eq!(seen.last().unwrap().action, "TerminateInstances");
    assert_eq!(seen.last().unwrap().params["InstanceId.1"], "i-0abc");
}

#[test]
fn when_the_api_stays_down_the_error_says_what_still_cleans_up() {
    let e = env(|_| timeout());
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    let err = aws.provision(&grant(500, 256, None), &w(KEY)).unwrap_err();
    let Error::Transient(msg) = &err else {
        panic!("{err}")
    };
    assert!(msg.contains("could not check for an instance"), "{msg}");
    assert!(
        msg.contains("valid_to") && msg.contains("sweep_orphans"),
        "{msg}"
    );
    assert!(
        e.logs().iter().any(|l| l.contains("could not be checked")),
        "{:?}",
        e.logs()
    );
}

/// EC2's answer when the instance type is not offered in the zone it
/// picked: code `Unsupported` (a 400), with the message EC2 gives.
fn unsupported() -> HttpResponse {
    HttpResponse {
        status: 400,
        body: b"<Response><Errors><Error><Code>Unsupported</Code><Message>Your requested \
instance type (t3.medium) is not supported in your requested Availability Zone (us-east-1e). \
Please retry your request by not specifying an Availability Zone or choosing us-east-1a, \
us-east-1b, us-east-1c, us-east-1d, us-east-1f.</Message></Error></Errors>\
<RequestID>5a1c9f3e-unsupported</RequestID></Response>"
            .to_vec(),
    }
}

#[test]
fn an_instance_type_not_offered_in_the_region_is_a_placement_refusal() {
    // `Unsupported` to RunInstances says this region (its zone) does not
    // offer the type: `no-capacity`, so the fleet tries the next region and
    // then the next backend. It used to be `config`, which declined the
    // grant outright. Nothing was launched, so nothing is looked for.
    let e = env(|s| match s.action.as_str() {
        "RunInstances" => unsupported(),
        a => panic!("unexpected {a}"),
    });
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    let err = aws
        .provision(&grant(500, 256, Some("us-east-1")), &w(KEY))
        .unwrap_err();
    let Error::NoCapacity(msg) = &err else {
        panic!("expected no-capacity, got {err}")
    };
    assert!(msg.contains("(Unsupported;"), "{msg}");
    assert!(msg.contains("us-east-1e"), "{msg}");
    assert_eq!(actions(&e), ["RunInstances"]);
}

/// An instance EC2 terminated during launch, with its documented
/// `stateReason` (botocore `ec2/2016-11-15/service-2.json`, shape
/// `StateReason`: `code`, `message`; the codes are listed in the API
/// reference's `StateReason` page).
fn terminated_because(code: &str) -> String {
    instance_xml(
        "i-0abc",
        "terminated",
        None,
        &format!(
            "<stateReason><code>{code}</code><message>{code}: launch failed</message></stateReason>"
        ),
    )
}

#[test]
fn an_instance_terminated_for_capacity_while_waiting_is_no_capacity() {
    // RunInstances accepted the launch, then EC2 terminated the instance
    // for want of capacity before it had an address: the region is full,
    // so the fleet must try the next one (it used to get `transient`,
    // which skipped the backend's remaining regions).
    for (reason, kind) in [
        ("Server.InsufficientInstanceCapacity", "no capacity"),
        ("Client.VolumeLimitExceeded", "no capacity"),
        ("Server.InternalError", "transient"),
    ] {
        let e = env(move |s| match s.action.as_str() {
            "RunInstances" => run_response(None),
            "DescribeInstances" => describe_response(&terminated_because(reason)),
            "TerminateInstances" => ok("<TerminateInstancesResponse/>"),
            a => panic!("unexpected {a}"),
        });
        let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
        let err = aws
            .provision(&grant(500, 256, Some("us-east-1")), &w(KEY))
            .unwrap_err();
        assert!(err.describe().starts_with(kind), "{reason}: {err}");
        assert!(err.describe().contains(reason), "{reason}: {err}");
    }
}

/// A second workload key: each provision gets a fresh one.
const KEY2: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA6elQutTJy7PwFIMZMUGrCtAknDMhbpA+6fOy3V+tuU cb2";

/// `RunInstances` with EC2's documented idempotency ("Ensuring idempotency
/// in Amazon EC2 API requests",
/// <https://docs.aws.amazon.com/AWSEC2/latest/APIReference/Run_Instance_Idempotency.html>):
/// the same client token with the same parameters returns the original
/// launch (whatever its instance's state now); the same token with any
/// other parameter changed is `IdempotentParameterMismatch`. A token is
/// per region. Instances are numbered `i-1`, `i-2`, ...
fn idempotent_ec2() -> impl Fn(&Seen) -> HttpResponse + Send {
    // (region/token, the other parameters, the instance it launched)
    type Launch = (String, BTreeMap<String, String>, String);
    let launches: Mutex<Vec<Launch>> = Mutex::default();
    move |s: &Seen| match s.action.as_str() {
        "RunInstances" => {
            let token = format!("{}/{}", s.region, s.params["ClientToken"]);
            let mut rest = s.params.clone();
            rest.remove("ClientToken");
            let mut launches = launches.lock().unwrap();
            let id = match launches.iter().find(|(t, _, _)| *t == token) {
                Some((_, p, _)) if *p != rest => {
                    return ec2_error(400, "IdempotentParameterMismatch");
                }
                Some((_, _, id)) => id.clone(),
                None => {
                    let id = format!("i-{}", launches.len() + 1);
                    launches.push((token, rest, id.clone()));
                    id
                }
            };
            ok(&format!(
                "<RunInstancesResponse><instancesSet>{}</instancesSet></RunInstancesResponse>",
                instance_xml(&id, "pending", Some("54.1.2.3"), "")
            ))
        }
        "TerminateInstances" => ok("<TerminateInstancesResponse/>"),
        a => panic!("unexpected {a}"),
    }
}

#[test]
fn a_new_provision_of_a_grant_gets_a_new_client_token_and_a_retry_the_same() {
    let e = env(idempotent_ec2());
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    let g = grant(500, 256, Some("us-east-1"));
    let first = aws.provision(&g, &w(KEY)).unwrap();
    assert_eq!(first.instance_id, "i-1");
    // The very same request again (a retry) is the same launch.
    let again = aws.provision(&g, &w(KEY)).unwrap();
    assert_eq!(again.instance_id, "i-1");
    aws.terminate(&first).unwrap();
    // The grant provisioned anew, with the fresh workload key that every
    // provision gets: a new launch, not a mismatch or the old instance.
    let second = aws
        .provision(&g, &w(KEY2))
        .unwrap_or_else(|e| panic!("re-provision refused: {e}"));
    assert_eq!(second.instance_id, "i-2");
    let tokens: Vec<String> = e
        .seen()
        .iter()
        .filter(|s| s.action == "RunInstances")
        .map(|s| s.params["ClientToken"].clone())
        .collect();
    assert_eq!(tokens[0], tokens[1]);
    assert_ne!(tokens[0], tokens[2]);
    // Documented constraint: at most 64 ASCII characters.
    assert!(
        tokens.iter().all(|t| t.len() <= 64 && t.is_ascii()),
        "{tokens:?}"
    );
}

/// botocore's EC2 model (`botocore/data/ec2/2016-11-15/service-2.json`,
/// the machine-readable form of the EC2 API reference), loaded with the
/// botocore that `scripts/install-test-peers.sh` installs beside moto.
fn ec2_model() -> serde_json::Value {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/test-peers/venv/bin/python");
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import json, botocore.loaders as l; \
             print(json.dumps(l.Loader().load_service_model('ec2', 'service-2', '2016-11-15')))",
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; this test reads botocore's EC2 model: run \
                 scripts/install-test-peers.sh (it installs moto[server], with botocore)",
                python.display()
            )
        });
    assert!(
        out.status.success(),
        "loading botocore's EC2 model failed (run scripts/install-test-peers.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("botocore's model is JSON")
}

/// Check one Query API request against the model, as botocore's `ec2`
/// protocol serializer names parameters: a structure member is named by its
/// `queryName`, else its `locationName` with the first letter capitalised,
/// else its own name; every list is flattened as `Name.N` (N from 1). Each
/// parameter must name a member path ending in a scalar whose value fits
/// its type (integer, boolean, enum, `max` length), and every structure the
/// request touches must have its `required` members. Returns the problems.
fn check_against_model(
    model: &serde_json::Value,
    action: &str,
    params: &BTreeMap<String, String>,
) -> Vec<String> {
    use serde_json::Value;
    let shapes = &model["shapes"];
    let op = &model["operations"][action];
    if op.is_null() {
        return vec![format!("{action}: no such operation")];
    }
    let input = op["input"]["shape"].as_str().unwrap();
    let wire_name = |name: &str, m: &Value| -> String {
        if let Some(q) = m["queryName"].as_str() {
            return q.to_string();
        }
        let base = m["locationName"].as_str().unwrap_or(name);
        let mut c = base.chars();
        c.next()
            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
            .unwrap_or_default()
    };
    let mut problems = Vec::new();
    // Structures reached, by the parameter prefix that reached them.
    let mut structures: BTreeMap<String, String> =
        BTreeMap::from([(String::new(), input.to_string())]);
    for (key, value) in params {
        if matches!(key.as_str(), "Action" | "Version") {
            continue;
        }
        let mut shape_name = input.to_string();
        let mut prefix = String::new();
        let mut ok = true;
        for seg in key.split('.') {
            let shape = &shapes[&shape_name];
            match shape["type"].as_str() {
                Some("structure") => {
                    structures.insert(prefix.clone(), shape_name.clone());
                    let found = shape["members"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .find(|(n, m)| wire_name(n, m) == seg);
                    match found {
                        Some((_, m)) => shape_name = m["shape"].as_str().unwrap().to_string(),
                        None => {
                            problems.push(format!(
                                "{action}: {key}: {shape_name} has no member serialized as {seg:?}"
                            ));
                            ok = false;
                            break;
                        }
                    }
                }
                Some("list") => {
                    if seg.parse::<u32>().map_or(true, |n| n == 0) {
                        problems.push(format!(
                            "{action}: {key}: list index {seg:?} is not 1, 2, ..."
                        ));
                        ok = false;
                        break;
                    }
                    shape_name = shape["member"]["shape"].as_str().unwrap().to_string();
                }
                other => {
                    problems.push(format!(
                        "{action}: {key}: {shape_name} is a {other:?}, not a container"
                    ));
                    ok = false;
                    break;
                }
            }
            prefix = if prefix.is_empty() {
                seg.to_string()
            } else {
                format!("{prefix}.{seg}")
            };
        }
        if !ok {
            continue;
        }
        let shape = &shapes[&shape_name];
        let fits = match shape["type"].as_str() {
            Some("integer" | "long") => value.parse::<i64>().is_ok_and(|n| {
                shape["min"].as_i64().is_none_or(|m| n >= m)
                    && shape["max"].as_i64().is_none_or(|m| n <= m)
            }),
            Some("boolean") => matches!(value.as_str(), "true" | "false"),
            Some("string") => {
                shape["enum"]
                    .as_array()
                    .is_none_or(|e| e.iter().any(|v| v == value.as_str()))
                    && shape["max"]
                        .as_u64()
                        .is_none_or(|m| value.chars().count() as u64 <= m)
            }
            other => {
                problems.push(format!(
                    "{action}: {key}: {shape_name} is a {other:?}, not a scalar"
                ));
                continue;
            }
        };
        if !fits {
            problems.push(format!(
                "{action}: {key}={value:?} does not fit {shape_name} {shape}"
            ));
        }
    }
    for (prefix, shape_name) in &structures {
        let shape = &shapes[shape_name];
        for req in shape["required"].as_array().into_iter().flatten() {
            let req = req.as_str().unwrap();
            let wire = wire_name(req, &shape["members"][req]);
            let full = if prefix.is_empty() {
                wire
            } else {
                format!("{prefix}.{wire}")
            };
            if !params
                .keys()
                .any(|k| k == &full || k.starts_with(&format!("{full}.")))
            {
                problems.push(format!("{action}: {shape_name} requires {full}"));
            }
        }
    }
    problems
}

#[test]
fn every_request_matches_the_published_ec2_model() {
    // Drive every call the component makes: a launch in each region (with
    // and without a subnet), the address wait, a lost answer's lookup, the
    // status of a stopped instance (its console), usage, listing (both
    // pages) and terminate; then check each request as sent.
    let e = env(|s| match s.action.as_str() {
        "RunInstances" if s.region == "us-east-1" => run_response(None),
        "RunInstances" => ec2_error(500, "InternalError"),
        "DescribeInstances"
            if s.params.contains_key("MaxResults") && !s.params.contains_key("NextToken") =>
        {
            ok(
                "<DescribeInstancesResponse><reservationSet/><nextToken>t2</nextToken></DescribeInstancesResponse>",
            )
        }
        "DescribeInstances" => {
            describe_response(&instance_xml("i-0abc", "stopped", Some("54.1.2.3"), ""))
        }
        "GetConsoleOutput" => {
            ok("<GetConsoleOutputResponse><output></output></GetConsoleOutputResponse>")
        }
        "TerminateInstances" => ok("<TerminateInstancesResponse/>"),
        a => panic!("unexpected {a}"),
    });
    let aws = Aws::new(config(), "prov-1", &e.host).unwrap();
    let l = aws.provision(&grant(1500, 3000, None), &w(KEY)).unwrap();
    let _ = aws.provision(&grant(500, 256, Some("eu-west-1")), &w(KEY));
    aws.status(&inst(&l.instance_id, &handle())).unwrap();
    aws.usage(&inst(&l.instance_id, &handle())).unwrap();
    aws.list_instances().unwrap();
    aws.terminate(&inst(&l.instance_id, &handle())).unwrap();

    let model = ec2_model();
    assert_eq!(model["metadata"]["apiVersion"], "2016-11-15");
    assert_eq!(model["metadata"]["protocol"], "ec2");
    let seen = e.seen();
    let mut problems = Vec::new();
    let mut checked = std::collections::BTreeSet::new();
    for s in seen.iter() {
        assert_eq!(s.params["Version"], "2016-11-15");
        problems.extend(check_against_model(&model, &s.action, &s.params));
        checked.insert(s.action.clone());
        if s.action == "DescribeInstances" {
            // The API reference: MaxResults cannot go with instance ids.
            assert!(
                !(s.params.contains_key("MaxResults") && s.params.contains_key("InstanceId.1"))
            );
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(
        checked.into_iter().collect::<Vec<_>>(),
        [
            "DescribeInstances",
            "GetConsoleOutput",
            "RunInstances",
            "TerminateInstances"
        ]
    );
    // Both network shapes of a launch were among them.
    let launches: Vec<_> = seen.iter().filter(|s| s.action == "RunInstances").collect();
    assert!(
        launches
            .iter()
            .any(|s| s.params.contains_key("SecurityGroupId.1"))
    );
    assert!(
        launches
            .iter()
            .any(|s| s.params.contains_key("NetworkInterface.1.SubnetId"))
    );
}

#[test]
fn the_model_check_finds_what_ec2_would_refuse() {
    // The check itself: a misspelt member, a list not numbered from 1, a
    // value outside an enum and a missing required member are all found.
    let model = ec2_model();
    let params = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let good = params(&[
        ("ImageId", "ami-1"),
        ("MinCount", "1"),
        ("MaxCount", "1"),
        ("InstanceType", "t3.medium"),
    ]);
    assert!(check_against_model(&model, "RunInstances", &good).is_empty());
    for (bad, why) in [
        (
            vec![
                ("MinCount", "1"),
                ("MaxCount", "1"),
                ("SecurityGroupIds.1", "sg-1"),
            ],
            "SecurityGroupIds",
        ),
        (
            vec![
                ("MinCount", "1"),
                ("MaxCount", "1"),
                ("SecurityGroupId.0", "sg-1"),
            ],
            "list index",
        ),
        (
            vec![
                ("MinCount", "1"),
                ("MaxCount", "1"),
                ("InstanceInitiatedShutdownBehavior", "halt"),
            ],
            "does not fit",
        ),
        (vec![("MinCount", "1"), ("MaxCount", "one")], "does not fit"),
        (vec![("MinCount", "1")], "requires MaxCount"),
        (
            vec![
                ("MinCount", "1"),
                ("MaxCount", "1"),
                ("TagSpecification.1.Tag.1.Name", "x"),
            ],
            "Tag",
        ),
    ] {
        let problems = check_against_model(&model, "RunInstances", &params(&bad));
        assert!(
            problems.iter().any(|p| p.contains(why)),
            "{bad:?}: {problems:?}"
        );
    }
}
