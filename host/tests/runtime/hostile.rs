//! Hostile components through the fleet: a forged instance handle that
//! names another backend's instance, and every attack at once under load
//! while healthy grants go on. (Each attack alone, against the sandbox and
//! the capabilities, is in `sandbox.rs`, `http.rs` and `ssh.rs`.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use compute_bridge::backend::{Backend, GrantSpec, InstanceState};
use compute_bridge::config::{BootConfig, Source};
use compute_bridge::fleet::{Ending, Fleet, WatchPolicy, now_unix};
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
        .watch_until_exit(&p.backend, &p.instance, now_unix() + 2, quick())
        .await
        .unwrap();
    assert_eq!(out.ending, Ending::Expired);
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
    let state = tempfile::tempdir().unwrap();
    let mut text = support::backend_toml(
        "good",
        components::FAKE,
        "[backends.config]\nregions = [\"good-1\"]\nrun_seconds = 0\n",
    );
    let (web, elsewhere) = (HttpServer::start(), HttpServer::start());
    let attacks = attacks(&web, &elsewhere);
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
    let good: Arc<compute_bridge::runtime::ComponentBackend> = backends[0].clone();

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
                .watch_until_exit(&p.backend, &p.instance, now_unix() + 60, quick())
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(("good".to_string(), p.backend, format!("{:?}", out.ending)))
        });
    }
    for (attack, _, _, _) in &attacks {
        let attack = *attack;
        for i in 0..PER_ATTACK {
            let fleet = fleet.clone();
            tasks.spawn(async move {
                let mut g = support::grant(&format!("{attack}-{i}"));
                g.region = Some(attack.to_string());
                g.valid_to = now_unix() + 2;
                match fleet.provision(&g, &workload()).await {
                    Ok(p) => {
                        let out = fleet
                            .watch_until_exit(&p.backend, &p.instance, g.valid_to, quick())
                            .await
                            .map_err(|e| e.to_string())?;
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

    assert_eq!(all.len(), HEALTHY + attacks.len() * PER_ATTACK);
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
    // The claim of u32::MAX is held at the ceiling, in routing and so in
    // the card.
    let claims = fleet
        .members()
        .into_iter()
        .find(|m| m.name == "hostile-claims")
        .and_then(|m| m.capabilities)
        .unwrap();
    assert_eq!(
        (claims.max_cpu_millicores, claims.max_ram_mib),
        (65_536_000, 1_073_741_824)
    );
    // Nothing reached the server off the list (directly or by redirect).
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
    let stopped: u64 = backends[1..]
        .iter()
        .map(|b| b.stats.traps.load(Ordering::Relaxed) + b.stats.deadlines.load(Ordering::Relaxed))
        .sum();
    assert_eq!(
        stopped,
        (5 * PER_ATTACK) as u64,
        "loop, memory, recursion, trap, panic"
    );
    drop(rt);
}
