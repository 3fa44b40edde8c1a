//! The dashboard of a real `compute-bridge run`: loopback only, DNS
//! rebinding refused, no scripts, in a real browser.
//!
//! These check what a freshly started bridge on its own local coalition
//! shows; grants through the whole path are in `coalition.rs`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use compute_bridge_testkit::process::{Running, run};
use compute_bridge_testkit::{chromium, free_port, http};

use crate::bridge_bin;

fn write_config(dir: &Path, bind: &str, port: u16) -> std::path::PathBuf {
    let path = dir.join("bridge.toml");
    std::fs::write(
        &path,
        format!(
            r#"[bridge]
state_dir = "state"
concurrency_cap = 4
capacity_refresh_sec = 5

[coalition]
network = "e2e.test"
local = true

[dashboard]
bind = "{bind}"
port = {port}

[[backends]]
name = "fake"
component = {fake:?}

[backends.config]
regions = ["local"]
max_cpu_millicores = 4000
max_ram_mib = 8192

[[backends]]
name = "spare"
component = {fake:?}
enabled = false
"#,
            fake = compute_bridge_testkit::components::FAKE
        ),
    )
    .unwrap();
    path
}

/// Start the bridge on a free port and wait until its dashboard listens.
fn start(dir: &Path) -> (Running, SocketAddr) {
    let port = free_port();
    let cfg = write_config(dir, "127.0.0.1", port);
    let bridge = Running::spawn(
        &bridge_bin(),
        &["run", "--config", cfg.to_str().unwrap()],
        &[],
    );
    bridge.wait_for_log("dashboard listening", Duration::from_secs(120));
    bridge.wait_for_log("ready", Duration::from_secs(30));
    bridge.wait_for_log("provider card published", Duration::from_secs(60));
    (bridge, SocketAddr::from(([127, 0, 0, 1], port)))
}

#[test]
fn a_dashboard_bind_other_than_127_0_0_1_stops_the_bridge_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    for bind in ["0.0.0.0", "::", "192.168.1.10", "localhost"] {
        let cfg = write_config(dir.path(), bind, 8080);
        for cmd in ["run", "check-config"] {
            let (code, out, err) = run(&bridge_bin(), &[cmd, "--config", cfg.to_str().unwrap()]);
            assert_ne!(code, 0, "{cmd} accepted bind = {bind:?}: {out}{err}");
            for needle in [
                "bridge.toml:11:",
                "dashboard.bind",
                "the dashboard binds to 127.0.0.1 only",
                &format!("{bind:?}"),
                "ssh -L 8080:localhost:8080",
            ] {
                assert!(
                    err.contains(needle),
                    "{cmd} with {bind}: no {needle:?} in:\n{err}"
                );
            }
            assert!(!err.contains("dashboard listening"), "{err}");
        }
    }
}

#[test]
fn a_real_bridge_answers_only_loopback_hosts_and_forbids_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bridge, addr) = start(dir.path());
    let port = addr.port();

    let csp = |r: &http::Response| {
        let csp = r
            .header("content-security-policy")
            .unwrap_or_else(|| panic!("no CSP on a {} response: {:?}", r.status, r.headers));
        assert!(csp.contains("script-src 'none'"), "{csp}");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
    };

    // The names a tunnelled browser sends.
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let r = http::get(addr, "/dashboard", Some(&host));
        assert_eq!(r.status, 200, "Host {host}: {}", r.body);
        csp(&r);
    }
    // DNS rebinding: a page at evil.example resolving to 127.0.0.1.
    for (path, host) in [
        ("/dashboard", Some("evil.example".to_string())),
        ("/snapshot.json", Some(format!("evil.example:{port}"))),
        ("/metrics", Some(format!("localhost.evil.example:{port}"))),
        (
            "/dashboard",
            Some(format!("localhost:{}", port.wrapping_add(1))),
        ),
        ("/dashboard", None),
    ] {
        let r = http::get(addr, path, host.as_deref());
        assert_eq!(
            r.status, 403,
            "{path} with Host {host:?} was served: {}",
            r.body
        );
        assert!(!r.body.contains("Provider:"), "{}", r.body);
        assert!(
            r.body.contains(&format!("ssh -L {port}:localhost:{port}")),
            "{}",
            r.body
        );
        csp(&r);
    }
    // An absolute-form request naming another host, with a loopback Host.
    let r = http::send(
        addr,
        &format!(
            "GET http://evil.example/snapshot.json HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(r.status, 403, "{}", r.body);

    let page = http::get_local(addr, "/dashboard");
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        !page.body.to_ascii_lowercase().contains("<script"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("<meta http-equiv=\"refresh\" content=\"5\">"),
        "{}",
        page.body
    );
    assert!(page.body.contains("0 / 4"), "{}", page.body);
    assert!(
        page.body.contains("spare       (disabled)"),
        "{}",
        page.body
    );
    assert!(page.body.contains("cap=4c/8G"), "{}", page.body);

    let snap = http::get_local(addr, "/snapshot.json");
    assert_eq!(snap.status, 200);
    csp(&snap);
    let v: serde_json::Value = serde_json::from_str(&snap.body).unwrap();
    let id = crate::support::provider_id(&dir.path().join("state")).to_string();
    assert_eq!(v["provider"]["id_prefix"], id[..12]);
    assert_eq!(v["provider"]["coalition"], "e2e.test");
    assert_eq!(v["provider"]["mrtd"], "not-applicable");
    // Published once: registered (alive once it has been refreshed).
    assert!(
        ["registered", "alive"].contains(&v["provider"]["status"].as_str().unwrap()),
        "{v}"
    );
    // The protocol version the card speaks (4 since cards travel on a
    // stream).
    assert_eq!(v["provider"]["module_version"], "Compute v4");
    // The fake's measured component: the SHA-256 of the file it runs.
    let fake = std::fs::read(compute_bridge_testkit::components::FAKE).unwrap();
    assert_eq!(
        v["backends"][0]["component_sha256"],
        compute_bridge_contract::measurement::ComponentDigest::of(&fake).to_string()
    );
    assert_eq!(v["grants"]["cap"], 4);

    let metrics = http::get_local(addr, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("compute_bridge_grants_cap 4"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("compute_bridge_backend_enabled{backend=\"spare\"} 0"),
        "{}",
        metrics.body
    );

    // Only 127.0.0.1 listens: the same port on another local address is
    // closed (this machine's other addresses may not exist; 127.0.0.2 is
    // loopback but not the bound address).
    assert!(
        std::net::TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 2], port)),
            Duration::from_secs(2)
        )
        .is_err(),
        "something answers on 127.0.0.2:{port}"
    );

    bridge.signal("TERM");
    assert_eq!(
        bridge.wait(Duration::from_secs(30)),
        Some(0),
        "{}",
        bridge.log()
    );
    assert!(!bridge.log().contains("ERROR"), "{}", bridge.log());
}

#[test]
fn chromium_renders_a_real_bridges_dashboard_without_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bridge, addr) = start(dir.path());
    let url = format!("http://localhost:{}/dashboard", addr.port());
    let dom = chromium::dump_dom(&url);
    chromium::screenshot(&url, &chromium::artifact("dashboard-e2e.png"));
    bridge.signal("TERM");
    assert_eq!(
        bridge.wait(Duration::from_secs(30)),
        Some(0),
        "{}",
        bridge.log()
    );

    assert!(!dom.to_ascii_lowercase().contains("<script"), "{dom}");
    assert!(dom.contains("compute-bridge dashboard"), "{dom}");
    assert!(dom.contains("n/a (attestation off)"), "{dom}");
    assert!(dom.contains("e2e.test"), "{dom}");
    assert!(dom.contains("0 / 4"), "{dom}");
    assert!(dom.contains("[local]"), "{dom}");
}
