//! Hostile components through the fleet: a forged instance handle that
//! names another backend's instance, a backend slow to say what it offers
//! or whether it can take a grant, and every attack at once under load
//! while healthy grants go on. (Each attack alone, against the sandbox and
//! the capabilities, is in `sandbox.rs`, `http.rs` and `ssh.rs`.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use compute_bridge_contract::backend::{Backend, GrantSpec, InstanceState};
use compute_bridge_contract::clock::now_unix;
use compute_bridge_contract::protocol::WorkloadEnding;
use compute_bridge_daemon::config::{BootConfig, Source};
use compute_bridge_daemon::fleet::{Fleet, WatchPolicy};
use compute_bridge_testkit::components;
use compute_bridge_testkit::http_server::HttpServer;
use compute_bridge_testkit::moto::Moto;

use crate::support::{self, load, workload};

const REGION: &str = "us-east-1";
const IMAGE: &str =
    "ghcr.io/acme/job@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn quick() -> WatchPolicy {
    WatchPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        attempts: 3,
    }
}

/// A boot config with an AWS backend on `moto` followed by `more`.
fn aws_config(state: &std::path::Path, moto: &Moto, more: &str) -> BootConfig {
    let text = format!(
        r#"[bridge]
state_dir = {state:?}

[[backends]]
name = "aws"
component = "builtin:aws"

[backends.http]
allowed_hosts = [{endpoint:?}]

[backends.config]
access_key_id = "${{AWS_ACCESS_KEY_ID}}"
secret_access_key = "${{AWS_SECRET_ACCESS_KEY}}"
endpoint = {endpoint:?}

[[backends.config.regions]]
name = "{REGION}"
ami = "ami-12c6146b"

[[backends.config.instance_types]]
type = "t3.medium"
vcpu = 2
ram_mib = 4096
usd_per_hour = 0.0416

{more}"#,
        state = state.display().to_string(),
        endpoint = moto.endpoint,
    );
    let env: BTreeMap<&str, String> = [
        ("AWS_ACCESS_KEY_ID", moto.access_key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", moto.secret_access_key.clone()),
    ]
    .into();
    BootConfig::from_source(&Source::embedded("hostile.toml", &text), &|k| {
        env.get(k).cloned()
    })
    .unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"))
}

#[tokio::test]
async fn a_handle_naming_another_backends_instance_never_reaches_that_backend() {
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();

    // A real instance, provisioned by the AWS backend for some grant.
    let (_rt, first) = load(&aws_config(state.path(), &moto, ""));
    let victim_grant = GrantSpec {
        cpu_millicores: 1500,
        ram_mib: 3072,
        image: IMAGE.into(),
        ..support::grant("req-victim")
    };
    let victim = first[0]
        .provision(&victim_grant, &workload())
        .await
        .unwrap();
    assert_eq!(moto.instance(REGION, &victim.instance_id).state, "running");

    // A hostile backend that answers its own grants with that very
    // instance: its id, its AWS handle, its address.
    let hostile = support::backend_toml(
        "hostile",
        components::HOSTILE,
        &format!(
            "[backends.config]\nattack = \"foreign\"\nonly_region = \"hostile-1\"\n\
             foreign_id = {:?}\nforeign_handle = {:?}\nforeign_host = {:?}\n",
            victim.instance_id, victim.handle, victim.public_host
        ),
    );
    let cfg = aws_config(state.path(), &moto, &hostile);
    let (_rt2, backends) = load(&cfg);
    let fleet = Fleet::new(support::fleet_members(&cfg, &backends), 8);
    fleet.refresh_capabilities().await;
    let (aws, hostile) = (&backends[0], &backends[1]);

    let mut g = support::grant("req-hostile");
    g.region = Some("hostile-1".into());
    let p = fleet.provision(&g, &workload()).await.unwrap();
    // The fleet records who provisioned it, whatever the instance says.
    assert_eq!(p.backend, "hostile");
    assert_eq!(p.instance.instance_id, victim.instance_id);
    assert_eq!(p.instance.handle, victim.handle);
    let m = fleet.members();
    assert_eq!(
        (m[0].active_grants, m[1].active_grants),
        (0, 1),
        "capacity is held on the backend that provisioned"
    );

    // Watch it to its end: every status, usage and terminate call goes to
    // the hostile backend; the AWS backend is never asked about it.
    let aws_calls = aws.stats.calls.load(Ordering::Relaxed);
    let hostile_calls = hostile.stats.calls.load(Ordering::Relaxed);
    let out = fleet
        .watch_until_exit(&p.reservation, &p.instance, now_unix() + 2, quick())
        .await;
    assert_eq!(out.ending, WorkloadEnding::Expired);
    assert!(out.terminate_error.is_none());
    assert_eq!(aws.stats.calls.load(Ordering::Relaxed), aws_calls);
    assert!(hostile.stats.calls.load(Ordering::Relaxed) >= hostile_calls + 3);
    drop(p.reservation);

    // The victim's instance is untouched: still running in EC2, still the
    // AWS backend's to manage.
    assert_eq!(moto.instance(REGION, &victim.instance_id).state, "running");
    assert_eq!(aws.status(&victim).await.unwrap(), InstanceState::Running);
    aws.terminate(&victim).await.unwrap();
    assert_eq!(
        moto.instance(REGION, &victim.instance_id).state,
        "terminated"
    );
}

/// A hostile backend whose export `slow` holds until `hold` answers (its
/// own deadlines aside), listed before a healthy fake serving `good-1`.
fn slow_first(state: &std::path::Path, hold: &HttpServer, slow: &str) -> BootConfig {
    support::config(
        state,
        &[
            support::backend_toml(
                "slow",
                components::HOSTILE_SANDBOX,
                &format!(
                    "call_timeout_sec = 600\n[backends.http]\nallowed_hosts = [{origin:?}]\n\
                     timeout_sec = 600\n[backends.config]\nattack = \"hold\"\nslow = \"{slow}\"\n\
                     url = \"{origin}/hold\"\n",
                    origin = hold.origin()
                ),
            ),
            support::backend_toml(
                "good",
                components::FAKE,
                "[backends.config]\nregions = [\"good-1\"]\nrun_seconds = 0\n",
            ),
        ]
        .concat(),
    )
}

#[tokio::test]
async fn a_slow_can_satisfy_does_not_hold_up_routing_to_the_next_backend() {
    let hold = HttpServer::start();
    let state = tempfile::tempdir().unwrap();
    let cfg = slow_first(state.path(), &hold, "can-satisfy");
    let (_rt, backends) = load(&cfg);
    let fleet = Fleet::new(support::fleet_members(&cfg, &backends), 8);
    fleet.refresh_capabilities().await;
    // The healthy backend can take this grant; the slow one is asked first
    // and does not answer.
    let placed = tokio::time::timeout(
        Duration::from_secs(60),
        fleet.provision(&support::grant("g"), &workload()),
    )
    .await
    .expect("routing waited 60 s for the slow backend's can-satisfy")
    .unwrap_or_else(|d| panic!("declined: {d}"));
    assert_eq!(placed.backend, "good");
    assert!(hold.held() >= 1, "the slow backend was asked first");
}

#[tokio::test]
async fn a_slow_capabilities_holds_up_neither_the_refresh_nor_the_others_routing() {
    let hold = HttpServer::start();
    let state = tempfile::tempdir().unwrap();
    let cfg = slow_first(state.path(), &hold, "capabilities");
    let (_rt, backends) = load(&cfg);
    let fleet = Fleet::new(support::fleet_members(&cfg, &backends), 8);
    tokio::time::timeout(Duration::from_secs(60), fleet.refresh_capabilities())
        .await
        .expect("the refresh (and so the card) waited 60 s for the slow backend");
    let m = fleet.members();
    assert!(m[0].offer.is_none(), "{:?}", m[0]);
    assert!(m[1].offer.is_some(), "{:?}", m[1]);
    let p = fleet
        .provision(&support::grant("g"), &workload())
        .await
        .unwrap_or_else(|d| panic!("declined: {d}"));
    assert_eq!(p.backend, "good");
    // The next refresh neither asks it again while it is still answering
    // (its server still holds the one request) nor waits for it.
    tokio::time::timeout(Duration::from_secs(60), fleet.refresh_capabilities())
        .await
        .expect("the second refresh waited 60 s for the slow backend");
    assert_eq!(hold.held(), 1);
}

/// One hostile backend per attack, each taking only grants for the region
/// named after it: (region, `[backends.http]` lines, `[backends.config]`
/// lines, what the decline says; empty for the one attack that is served).
fn attacks(
    web: &HttpServer,
    elsewhere: &HttpServer,
) -> Vec<(&'static str, String, String, &'static str)> {
    let listed = format!("allowed_hosts = [{:?}]", web.origin());
    let ec2 = "allowed_hosts = [\"https://ec2.us-east-1.amazonaws.com\"]".to_string();
    vec![
        ("loop", ec2.clone(), String::new(), "exceeded its 1s deadline in provision"),
        ("memory", ec2.clone(), String::new(), "memory"),
        ("recursion", ec2.clone(), String::new(), "stack overflow"),
        ("trap", ec2.clone(), String::new(), "unreachable"),
        ("panic", ec2.clone(), String::new(), "hostile component panics mid-provision"),
        (
            "ssh",
            ec2.clone(),
            "label = \"someone-elses-host\"".into(),
            "no SSH host labelled `someone-elses-host`",
        ),
        (
            "metadata",
            ec2.clone(),
            "url = \"http://169.254.169.254/latest/meta-data/iam/\"".into(),
            "denied",
        ),
        (
            "unlisted",
            listed.clone(),
            format!("url = \"{}/ok\"", elsewhere.origin()),
            "not in this backend's allowed_hosts",
        ),
        (
            "redirect",
            listed.clone(),
            format!("url = \"{}/redirect?to={}/ok\"", web.origin(), elsewhere.origin()),
            "redirect refused",
        ),
        (
            "huge",
            format!("{listed}\nmax_response_bytes = 1048576"),
            format!("url = \"{}/big?mib=100\"", web.origin()),
            "larger than the host's cap",
        ),
        (
            "trickle",
            format!("{listed}\ntimeout_sec = 1"),
            format!("url = \"{}/trickle\"", web.origin()),
            "timed out",
        ),
        (
            "foreign",
            ec2.clone(),
            "foreign_id = \"fake-good-0\"\nforeign_host = \"127.0.0.1\"\nforeign_handle = \"{\\\"started\\\":0,\\\"cpu\\\":500,\\\"ram\\\":256}\"".into(),
            "",
        ),
        // What it returns (`returns.rs` has each alone).
        (
            "inject",
            ec2.clone(),
            "user = \"x $(touch ~/pwned) -oProxyCommand='touch /tmp/pwned'\"".into(),
            "is not a POSIX portable login name",
        ),
        (
            "hostkey",
            ec2.clone(),
            format!("host_key = {:?}", format!("{HOST_KEY}\n* {HOST_KEY}")),
            "`host_key`",
        ),
        (
            "filler",
            ec2.clone(),
            "pad_field = \"handle\"\npad_kib = 1024".into(),
            "the limit is 16384 bytes",
        ),
        (
            "errtext",
            ec2.clone(),
            "error_text = \"no room\"\npad_kib = 1024".into(),
            "more bytes cut",
        ),
        (
            "regions",
            ec2.clone(),
            "offer_regions = 65536\noffer_region_len = 64".into(),
            "hostile-regions: capabilities unknown",
        ),
        (
            "claims",
            ec2,
            "offer_cpu = 4294967295\noffer_ram = 4294967295".into(),
            "",
        ),
    ]
}

/// The attacks on what calls share (the log, the call slots, routing, the
/// card refresh, the memory budget, the http capability's origins and
/// headers): (name, `[[backends]]` lines after `name`, what the decline
/// says). Each backend is called `hostile-<name>` and takes only grants for
/// region `<name>`; `slow-can-satisfy` is listed before the healthy
/// backend, so every grant is asked of it first.
fn sandbox_attacks(
    web: &HttpServer,
    elsewhere: &HttpServer,
    hold: &HttpServer,
) -> Vec<(&'static str, String, String)> {
    let sandboxed = components::HOSTILE_SANDBOX;
    let holding = |name: &str, slow: &str, timeout: &str| {
        format!(
            "component = {sandboxed:?}\n{timeout}\n[backends.http]\nallowed_hosts = [{origin:?}]\n\
             timeout_sec = 600\n[backends.config]\nattack = \"hold\"\nslow = \"{slow}\"\n\
             url = \"{origin}/hold\"\nonly_region = \"{name}\"\n",
            origin = hold.origin()
        )
    };
    let table = components::CRAFTED_MEMORY_AND_TABLE;
    vec![
        (
            "port-hop",
            format!(
                "component = {:?}\n[backends.http]\n\
                 allowed_hosts = [{:?}, \"http://hop.example.test:{port}\"]\n\
                 resolve = {{ \"hop.example.test\" = \"127.0.0.1\" }}\n[backends.config]\n\
                 attack = \"http\"\nonly_region = \"port-hop\"\n\
                 url = \"http://hop.example.test:{port}/ok\"\n",
                components::HOSTILE,
                web.origin(),
                port = elsewhere.port
            ),
            "resolves only to forbidden addresses (127.0.0.1)".into(),
        ),
        (
            "ipv6",
            format!(
                "component = {:?}\n[backends.http]\n\
                 allowed_hosts = [\"http://v6.example.test:{port}\"]\n\
                 resolve = {{ \"v6.example.test\" = \"::ffff:0:7f00:1\" }}\n[backends.config]\n\
                 attack = \"http\"\nonly_region = \"ipv6\"\n\
                 url = \"http://v6.example.test:{port}/ok\"\n",
                components::HOSTILE,
                port = elsewhere.port
            ),
            "resolves only to forbidden addresses (::ffff:0:7f00:1)".into(),
        ),
        (
            "headers",
            format!(
                "component = {sandboxed:?}\n[backends.http]\nallowed_hosts = [{origin:?}]\n\
                 [backends.config]\nattack = \"headers\"\nonly_region = \"headers\"\n\
                 url = \"{origin}/headers\"\nheaders = [[\"Host\", \"internal.example\"], \
                 [\"Upgrade\", \"websocket\"], [\"Connection\", \"upgrade\"]]\n",
                origin = web.origin()
            ),
            format!("host: 127.0.0.1:{}", web.port),
        ),
        (
            "log-flood",
            format!(
                "component = {sandboxed:?}\n[backends.config]\nattack = \"log-flood\"\n\
                 only_region = \"log-flood\"\n"
            ),
            "logged 67108864 bytes".into(),
        ),
        (
            "log-forge",
            format!(
                "component = {sandboxed:?}\n[backends.config]\nattack = \"log-forge\"\n\
                 only_region = \"log-forge\"\n"
            ),
            format!("ok\\n{}", cb_hostile_sandbox::FORGED_LINE),
        ),
        (
            "hog",
            holding("hog", "provision", "call_timeout_sec = 20"),
            "exceeded its 20s deadline in provision".into(),
        ),
        (
            "slow-can-satisfy",
            holding("slow-can-satisfy", "can-satisfy", ""),
            "hostile-slow-can-satisfy: cannot satisfy".into(),
        ),
        (
            "slow-capabilities",
            holding("slow-capabilities", "capabilities", ""),
            "hostile-slow-capabilities: capabilities unknown".into(),
        ),
        (
            "memory-table",
            format!("component = {table:?}\nmemory_limit_mib = 16\n"),
            "hostile-memory-table: capabilities unknown".into(),
        ),
    ]
}

/// A valid host key line (its private half was thrown away).
const HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFNOL++V6ayesnKlyKywg+VwHP9Gk9Jc/LcRtrWmSSAm";

/// Attacks whose grants are served (and end on the attacking backend).
const SERVED: &[&str] = &["foreign", "claims"];

/// Attack grants per attack, and healthy grants, all in flight at once.
const PER_ATTACK: usize = 6;
const HEALTHY: usize = 200;

#[tokio::test]
async fn every_attack_at_once_is_contained_while_healthy_grants_are_served() {
    let (log, _capture) = support::capture_log();
    let state = tempfile::tempdir().unwrap();
    let (web, elsewhere, hold) = (
        HttpServer::start(),
        HttpServer::start(),
        HttpServer::start(),
    );
    let sandbox_attacks = sandbox_attacks(&web, &elsewhere, &hold);
    let sandbox_backend =
        |name: &str, lines: &str| format!("[[backends]]\nname = \"hostile-{name}\"\n{lines}\n");
    // Asked first for every grant, and slow to answer.
    let mut text = sandbox_attacks
        .iter()
        .filter(|(name, _, _)| *name == "slow-can-satisfy")
        .map(|(name, lines, _)| sandbox_backend(name, lines))
        .collect::<String>();
    // Room for every healthy grant at once: the slow can-satisfy ahead of
    // it lets them through together.
    text.push_str(&support::backend_toml(
        "good",
        components::FAKE,
        "[backends.config]\nregions = [\"good-1\"]\nrun_seconds = 0\nmax_cpu_millicores = 1000000\n",
    ));
    for (name, lines, _) in sandbox_attacks
        .iter()
        .filter(|(name, _, _)| *name != "slow-can-satisfy")
    {
        text.push_str(&sandbox_backend(name, lines));
    }
    let attacks = attacks(&web, &elsewhere);
    // RELIABILITY.md counts them: twelve of the first suite and six on what
    // a backend returns, nine on what calls share.
    assert_eq!((attacks.len(), sandbox_attacks.len()), (18, 9));
    for (attack, http, extra, _) in &attacks {
        let attack_name = match *attack {
            "metadata" | "unlisted" | "redirect" | "huge" | "trickle" => "http",
            "inject" | "hostkey" | "filler" | "claims" | "regions" => "instance",
            "errtext" => "error",
            a => a,
        };
        text.push_str(&support::backend_toml(
            &format!("hostile-{attack}"),
            components::HOSTILE,
            &format!(
                "memory_limit_mib = {}\ncall_timeout_sec = {}\n\
                 [backends.http]\n{http}\n\
                 [backends.config]\nattack = \"{attack_name}\"\nonly_region = \"{attack}\"\n{extra}\n",
                // 4 MiB of region names take more than 16 MiB to build.
                if *attack == "regions" { 64 } else { 16 },
                // The endless loop meets the call deadline; the others
                // meet the capability's limits well before theirs.
                if *attack == "loop" { 1 } else { 10 }
            ),
        ));
    }
    let cfg = support::config(state.path(), &text);
    let (rt, backends) = load(&cfg);
    let fleet = Fleet::new(support::fleet_members(&cfg, &backends), 1000);
    fleet.refresh_capabilities().await;
    let named = |name: &str| -> Arc<compute_bridge_sandbox::ComponentBackend> {
        let i = cfg.backends.iter().position(|b| b.name == name).unwrap();
        backends[i].clone()
    };
    let good = named("good");

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..HEALTHY {
        let fleet = fleet.clone();
        tasks.spawn(async move {
            let mut g = support::grant(&format!("good-{i}"));
            g.region = Some("good-1".into());
            let p = fleet
                .provision(&g, &workload())
                .await
                .map_err(|d| format!("healthy grant good-{i} declined: {d}"))?;
            let out = fleet
                .watch_until_exit(&p.reservation, &p.instance, now_unix() + 60, quick())
                .await;
            Ok::<_, String>(("good".to_string(), p.backend, format!("{:?}", out.ending)))
        });
    }
    let every_attack = attacks
        .iter()
        .map(|a| a.0)
        .chain(sandbox_attacks.iter().map(|a| a.0));
    for attack in every_attack {
        for i in 0..PER_ATTACK {
            let fleet = fleet.clone();
            tasks.spawn(async move {
                let mut g = support::grant(&format!("{attack}-{i}"));
                g.region = Some(attack.to_string());
                g.valid_to = now_unix() + 2;
                match fleet.provision(&g, &workload()).await {
                    Ok(p) => {
                        let out = fleet
                            .watch_until_exit(&p.reservation, &p.instance, g.valid_to, quick())
                            .await;
                        Ok((attack.to_string(), p.backend, format!("{:?}", out.ending)))
                    }
                    Err(d) => Ok((attack.to_string(), "declined".into(), d.to_string())),
                }
            });
        }
    }

    let all = tokio::time::timeout(Duration::from_secs(300), async {
        let mut v = Vec::new();
        while let Some(r) = tasks.join_next().await {
            v.push(r.expect("no task panics").expect("no task errs"));
        }
        v
    })
    .await
    .expect("hang detector: every grant ends");

    assert_eq!(
        all.len(),
        HEALTHY + (attacks.len() + sandbox_attacks.len()) * PER_ATTACK
    );
    let healthy: Vec<_> = all.iter().filter(|(k, _, _)| k == "good").collect();
    assert_eq!(healthy.len(), HEALTHY);
    for (_, backend, ending) in &healthy {
        assert_eq!((backend.as_str(), ending.as_str()), ("good", "Exited(0)"));
    }
    for (attack, _, _, says) in &attacks {
        let ours: Vec<_> = all.iter().filter(|(k, _, _)| k == attack).collect();
        assert_eq!(ours.len(), PER_ATTACK, "{attack}");
        for (_, backend, what) in ours {
            if SERVED.contains(attack) {
                // Served, watched and ended on the backend that made it.
                assert_eq!(
                    (backend.as_str(), what.as_str()),
                    (format!("hostile-{attack}").as_str(), "Expired")
                );
            } else {
                assert_eq!(backend, "declined", "{attack}: {what}");
                // Refused (a trap, a denial) or, for a timeout, failed
                // over with nowhere else to go: either way declined, naming
                // the backend and why.
                assert!(
                    what.contains(&format!("hostile-{attack}")) && what.contains(says),
                    "{attack}: {}",
                    what.chars().take(2000).collect::<String>()
                );
                // No decline carries what a backend returned at length.
                assert!(what.len() < 16 * 1024, "{attack}: {} bytes", what.len());
            }
        }
    }
    for (attack, _, says) in &sandbox_attacks {
        let ours: Vec<_> = all.iter().filter(|(k, _, _)| k == attack).collect();
        assert_eq!(ours.len(), PER_ATTACK, "{attack}");
        for (_, backend, what) in ours {
            assert_eq!(backend, "declined", "{attack}: {what}");
            assert!(
                what.contains(&format!("hostile-{attack}")) && what.contains(says.as_str()),
                "{attack}: {what}"
            );
            assert!(!what.contains("internal.example"), "{attack}: {what}");
        }
    }
    // The claim of u32::MAX is held at the ceiling, in routing and so in
    // the card.
    let claims = fleet
        .members()
        .into_iter()
        .find(|m| m.name == "hostile-claims")
        .and_then(|m| m.offer)
        .unwrap();
    assert_eq!(
        (claims.max_cpu_millicores, claims.max_ram_mib),
        (65_536_000, 1_073_741_824)
    );
    // Nothing reached the server off the list (directly, by redirect, or
    // through a listed name on its port).
    assert_eq!(elsewhere.requests.load(Ordering::Relaxed), 0);
    // The healthy backend took none of the attack grants, and everything
    // held was given back.
    assert!(good.stats.traps.load(Ordering::Relaxed) == 0);
    assert_eq!(fleet.active(), 0);
    for m in fleet.members() {
        assert_eq!(
            (m.active_grants, m.used_cpu_millicores, m.used_ram_mib),
            (0, 0, 0),
            "{}",
            m.name
        );
    }
    // The sandbox stopped each attack, once per grant.
    let stopped: u64 = ["loop", "memory", "recursion", "trap", "panic"]
        .iter()
        .map(|a| named(&format!("hostile-{a}")))
        .map(|b| b.stats.traps.load(Ordering::Relaxed) + b.stats.deadlines.load(Ordering::Relaxed))
        .sum();
    assert_eq!(
        stopped,
        (5 * PER_ATTACK) as u64,
        "loop, memory, recursion, trap, panic"
    );
    // The hog held its own call slots to their deadline, never more of them
    // than it has; the healthy backend never waited for one in vain.
    let hog = named("hostile-hog");
    assert_eq!(
        hog.stats.deadlines.load(Ordering::Relaxed),
        PER_ATTACK as u64
    );
    assert!(
        hog.stats.peak_in_flight.load(Ordering::Relaxed)
            <= u64::from(hog.limits().max_concurrent_calls)
    );
    assert_eq!(good.stats.busy.load(Ordering::Relaxed), 0);
    // The memory-and-table backend trapped at its budget in the refresh.
    assert!(
        named("hostile-memory-table")
            .stats
            .traps
            .load(Ordering::Relaxed)
            >= 1
    );
    // The host's log: each flooding call cut at its budget, with one line
    // saying so; nothing forged.
    let text = log.text();
    let flooded: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("backend=\"hostile-log-flood\""))
        .collect();
    let bytes: usize = flooded.iter().map(|l| l.len()).sum();
    assert!(
        bytes <= PER_ATTACK * 80 * 1024,
        "{bytes} bytes of log from {PER_ATTACK} flooding calls"
    );
    assert_eq!(
        flooded.iter().filter(|l| l.contains("dropped")).count(),
        PER_ATTACK
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with(cb_hostile_sandbox::FORGED_LINE)),
        "a forged line in the host's log"
    );
    drop(rt);
}
