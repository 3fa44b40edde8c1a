//! Nothing a component returns is trusted: a hostile component's instance
//! fields, error texts, offers and instance lists, each over its bound or
//! shaped to hurt whoever uses it next (the requester pasting an `ssh`
//! line, the journal's disk, the provider card), meet the host's checks
//! where its results enter the host. Usage clamping and saturating
//! counters are covered where they happen (the provider loop, end to end
//! in `tests/e2e/returns.rs`; the dashboard's and journal's unit tests).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use compute_bridge_contract::backend::{Backend, BackendError};
use compute_bridge_daemon::fleet::Fleet;
use compute_bridge_sandbox::ComponentBackend;
use compute_bridge_testkit::components;

use crate::support::*;

/// A valid host key line, and a second one an attacker would smuggle in.
const HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFNOL++V6ayesnKlyKywg+VwHP9Gk9Jc/LcRtrWmSSAm";
const ECDSA_KEY: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPVQgB6ZUJYwMu0KFsnhkmzsPOJflrlI2zsWyKGSUATmVFARs93chB7rwmmkLL2AkLB24rdDcLAaOLZ8WUNnjyI= host@x";
const ATTACKER_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMN0XwsgcbuEjiP3VMEcMDLaqctep+ypJkVrSaPgpA5F";

/// One hostile backend per `(name, [backends.config] lines)`, loaded
/// together (128 MiB each: the 24 MiB handle is built in guest memory).
fn hostiles(cases: &[(String, String)]) -> (tempfile::TempDir, Vec<Arc<ComponentBackend>>) {
    let state = tempfile::tempdir().unwrap();
    let text: String = cases
        .iter()
        .map(|(name, cfg)| {
            backend_toml(
                name,
                components::HOSTILE,
                &format!("memory_limit_mib = 128\n[backends.config]\n{cfg}\n"),
            )
        })
        .collect();
    let cfg = config(state.path(), &text);
    let (rt, backends) = load(&cfg);
    std::mem::forget(rt); // keep the engine's ticker for the test's life
    (state, backends)
}

/// Provision on `b`; the error's text if it failed `internal`, and how many
/// calls the host made for it (provision, plus terminate if it tore the
/// instance down).
async fn refused(b: &ComponentBackend) -> (Result<String, String>, u64) {
    let before = b.stats.calls.load(Ordering::Relaxed);
    let r = b.provision(&grant("req-returns"), &workload()).await;
    let calls = b.stats.calls.load(Ordering::Relaxed) - before;
    let r = match r {
        Err(BackendError::Internal(m)) => Ok(m),
        Err(other) => Err(format!("not internal: {other:?}")),
        Ok(i) => Err(format!(
            "accepted: user {:?}, host {:?}, port {}, host key {:?}, handle of {} bytes",
            short(&i.user),
            short(&i.public_host),
            i.ssh_port,
            short(&i.host_key),
            i.handle.len()
        )),
    };
    (r, calls)
}

fn short(s: &str) -> String {
    s.chars().take(80).collect()
}

#[tokio::test]
async fn an_instance_field_over_its_bound_fails_the_provision_naming_the_field_and_the_limit() {
    // (field, KiB appended, the host's limit in bytes)
    let fields = [
        ("instance_id", 1, 256),
        ("region", 1, 64),
        ("public_host", 1, 253),
        ("user", 1, 32),
        ("host_key", 16, 8192),
        // The journal's disk filler: 24 MiB per grant.
        ("handle", 24 * 1024, 16384),
    ];
    let cases: Vec<(String, String)> = fields
        .iter()
        .map(|(f, kib, _)| {
            (
                format!("pad-{}", f.replace('_', "-")),
                format!("attack = \"instance\"\npad_field = {f:?}\npad_kib = {kib}\n"),
            )
        })
        .collect();
    let (_state, backends) = hostiles(&cases);
    for ((field, _, limit), b) in fields.iter().zip(&backends) {
        let (r, calls) = refused(b).await;
        let msg = r.unwrap_or_else(|e| panic!("{field}: {e}"));
        assert!(
            msg.contains(&format!("`{field}`")) && msg.contains(&limit.to_string()),
            "{field}: the error names neither the field nor its limit: {msg}"
        );
        assert!(
            msg.len() < 1024,
            "{field}: the error carries the value ({} bytes)",
            msg.len()
        );
        assert_eq!(
            calls, 2,
            "{field}: provision, then terminate to tear it down"
        );
    }
}

#[tokio::test]
async fn an_access_that_would_run_code_on_the_requesters_machine_fails_the_provision() {
    let two_lines = format!("{HOST_KEY}\n* {ATTACKER_KEY}");
    // (what, [backends.config] lines, the field the error must name)
    let bad: Vec<(&str, String, &str)> = vec![
        (
            "a login that is a shell command",
            "user = \"x $(touch ~/pwned) -oProxyCommand='touch /tmp/pwned'\"".into(),
            "user",
        ),
        (
            "a login that is an ssh option",
            "user = \"-oProxyCommand=sh\"".into(),
            "user",
        ),
        ("an empty login", "user = \"\"".into(), "user"),
        (
            "a host with an ssh option after it",
            "public_host = \"127.0.0.1 -oProxyCommand=sh\"".into(),
            "public_host",
        ),
        (
            "a host that is an ssh option",
            "public_host = \"-oProxyCommand=sh\"".into(),
            "public_host",
        ),
        ("no host", "public_host = \"\"".into(), "public_host"),
        ("port 0", "ssh_port = 0".into(), "ssh_port"),
        (
            "a host key with a second known_hosts line",
            format!("host_key = {two_lines:?}"),
            "host_key",
        ),
        (
            "a host key that does not parse",
            "host_key = \"ssh-ed25519 AAAA$(reboot)\"".into(),
            "host_key",
        ),
        (
            "a host key of an unknown type",
            "host_key = \"ssh-unknown AAAAC3NzaC1lZDI1NTE5AAAAIFNOL++V6ayesnKlyKywg+VwHP9Gk9Jc/LcRtrWmSSAm\""
                .into(),
            "host_key",
        ),
        (
            "a host key whose type is not the key's",
            "host_key = \"ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIFNOL++V6ayesnKlyKywg+VwHP9Gk9Jc/LcRtrWmSSAm\""
                .into(),
            "host_key",
        ),
    ];
    // What honest backends return passes.
    let good: Vec<(&str, String)> = vec![
        ("the suggested login, no host key", String::new()),
        (
            "a name and an ed25519 key",
            format!("public_host = \"workload-7.example.net\"\nhost_key = {HOST_KEY:?}"),
        ),
        (
            "an IPv6 address and an ECDSA key with a comment",
            format!("public_host = \"2001:db8::7\"\nssh_port = 2222\nhost_key = {ECDSA_KEY:?}"),
        ),
        (
            "a login with dots and underscores",
            "user = \"ubuntu_2.x\"".into(),
        ),
    ];
    let cases: Vec<(String, String)> = bad
        .iter()
        .map(|(_, c, _)| c.clone())
        .chain(good.iter().map(|(_, c)| c.clone()))
        .enumerate()
        .map(|(i, c)| (format!("case-{i}"), format!("attack = \"instance\"\n{c}\n")))
        .collect();
    let (_state, backends) = hostiles(&cases);
    for ((what, _, field), b) in bad.iter().zip(&backends) {
        let (r, calls) = refused(b).await;
        let msg = r.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(msg.contains(&format!("`{field}`")), "{what}: {msg}");
        assert!(
            !msg.contains('\n'),
            "{what}: the error carries a raw line break: {msg}"
        );
        assert_eq!(calls, 2, "{what}: provision, then terminate");
    }
    for ((what, _), b) in good.iter().zip(&backends[bad.len()..]) {
        b.provision(&grant("req-good"), &workload())
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

#[tokio::test]
async fn an_error_text_is_cut_at_its_bound() {
    let (_state, backends) = hostiles(&[(
        "long-error".into(),
        "attack = \"error\"\nerror_text = \"no room\"\npad_kib = 1024\n".into(),
    )]);
    let (r, _) = refused(&backends[0]).await;
    let msg = r.unwrap();
    assert!(msg.starts_with("no room"), "{}", short(&msg));
    assert!(
        msg.len() <= 4096 + 64,
        "a 1 MiB error text came through as {} bytes",
        msg.len()
    );
    assert!(msg.contains("bytes cut"), "{}", &msg[msg.len() - 80..]);
}

#[tokio::test]
async fn an_offer_over_its_bounds_is_refused_and_an_absurd_capacity_is_clamped() {
    let (_state, backends) = hostiles(&[
        // 4 MiB of region names: 65,536 of 64 bytes.
        (
            "many-regions".into(),
            "offer_regions = 65536\noffer_region_len = 64\n".into(),
        ),
        (
            "long-region".into(),
            "offer_regions = 2\noffer_region_len = 4096\n".into(),
        ),
        (
            "claims".into(),
            "offer_cpu = 4294967295\noffer_ram = 4294967295\n".into(),
        ),
    ]);
    for (b, field, limit) in [
        (&backends[0], "regions", "128"),
        (&backends[1], "region", "64"),
    ] {
        match b.capabilities().await {
            Err(BackendError::Internal(m)) => {
                assert!(m.contains(field) && m.contains(limit), "{m}");
                assert!(m.len() < 1024, "{} bytes", m.len());
            }
            Ok(c) => panic!(
                "{}: accepted {} regions, {} bytes of names",
                b.name(),
                c.regions.len(),
                c.regions.iter().map(String::len).sum::<usize>()
            ),
            Err(other) => panic!("{other:?}"),
        }
    }
    // A claim of u32::MAX millicores and MiB is published as 65,536 cores
    // and 1 PiB: 64 of the largest grants the protocol allows.
    let c = backends[2].capabilities().await.unwrap();
    assert_eq!(
        (c.max_cpu_millicores, c.max_ram_mib),
        (65_536_000, 1_073_741_824)
    );

    // The fleet (and so the card) never holds the refused offer.
    let cfg_members: Vec<(Arc<dyn Backend>, bool)> = backends
        .iter()
        .map(|b| (b.clone() as Arc<dyn Backend>, true))
        .collect();
    let fleet = Fleet::new(cfg_members, 8);
    fleet.refresh_capabilities().await;
    let m = fleet.members();
    assert!(m[0].offer.is_none() && m[1].offer.is_none());
    assert_eq!(
        m[2].offer.as_ref().map(|c| c.max_cpu_millicores),
        Some(65_536_000)
    );
}

#[tokio::test]
async fn a_huge_instance_list_is_refused() {
    let (_state, backends) = hostiles(&[("lister".into(), "list_count = 100000\n".into())]);
    match backends[0].list_instances().await {
        Err(BackendError::Internal(m)) => {
            assert!(m.contains("100000") && m.contains("10000"), "{m}")
        }
        Ok(v) => panic!("accepted a list of {} instances", v.len()),
        Err(other) => panic!("{other:?}"),
    }
}
