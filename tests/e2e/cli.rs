//! The commands an operator types first.

use std::time::Duration;

use compute_bridge_testkit::process::{Running, run};

use crate::bridge_bin;

#[test]
fn run_on_the_embedded_default_logs_its_routing_table_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let bin = bridge_bin();
    // The embedded default keeps its state in ./.compute-bridge.
    // A free dashboard port: 8080 may be taken on a shared machine.
    let mut bridge = Running::spawn_in(
        Some(dir.path()),
        &bin,
        &["run", "--dashboard-port", "0"],
        &[],
    );
    bridge.wait_for_log("routing table", Duration::from_secs(120));
    bridge.wait_for_log("ready", Duration::from_secs(30));
    let log = bridge.log();
    assert!(log.contains("1. baremetal"), "{log}");
    assert!(log.contains("regions=[local]"), "{log}");
    assert!(log.contains("ssh=[local]"), "{log}");
    assert!(log.contains("dashboard listening on 127.0.0.1:"), "{log}");
    bridge.signal("TERM");
    assert_eq!(
        bridge.wait(Duration::from_secs(30)),
        Some(0),
        "{}",
        bridge.log()
    );
    assert!(bridge.log().contains("shutting down"));
}

#[test]
fn version_and_help_read_well() {
    let (code, out, _) = run(&bridge_bin(), &["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("compute-bridge "), "{out}");
    let (code, out, _) = run(&bridge_bin(), &["--help"]);
    assert_eq!(code, 0);
    for cmd in ["run", "check-config", "components"] {
        assert!(out.contains(cmd), "--help lacks {cmd}: {out}");
    }
}

#[test]
fn a_second_start_loads_components_from_the_compile_cache() {
    let dir = tempfile::tempdir().unwrap();
    for expected in ["cache=\"miss\"", "cache=\"hit\""] {
        let mut bridge = Running::spawn_in(Some(dir.path()), &bridge_bin(), &["run"], &[]);
        bridge.wait_for_log("ready", Duration::from_secs(120));
        assert!(
            bridge.log().contains(expected),
            "expected {expected}:\n{}",
            bridge.log()
        );
        bridge.signal("TERM");
        assert_eq!(
            bridge.wait(Duration::from_secs(30)),
            Some(0),
            "{}",
            bridge.log()
        );
    }
}

#[test]
fn a_broken_config_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(
        &path,
        "[bridge]\nconcurrency_cap = 4\n\n[[backends]]\nname = \"cloud\"\ncomponent = \"builtin:aws\"\n\n[backends.http]\nallowed_hosts = [\"https://api.example.com/v1\"]\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    for cmd in [
        &["check-config", "--config", p][..],
        &["run", "--config", p][..],
    ] {
        let (code, _out, err) = run(&bridge_bin(), cmd);
        assert_ne!(code, 0, "{cmd:?} accepted a broken config");
        assert!(
            err.contains(&format!("{p}:9:18: `backends[0].http.allowed_hosts[0]`"))
                && err.contains("no path or query"),
            "{cmd:?}: {err}"
        );
    }
}

#[test]
fn check_config_asks_each_backend_and_locates_the_key_it_refuses() {
    use compute_bridge_testkit::components;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    // The fake's `regions` is a list: a string is refused by the component
    // itself, which only check-config (or a running bridge) can ask.
    std::fs::write(
        &path,
        format!(
            "[[backends]]\nname = \"good\"\ncomponent = {fake:?}\n[backends.config]\nregions = [\"eu\", \"us\"]\n\n\
             [[backends]]\nname = \"bad\"\ncomponent = {fake:?}\n[backends.config]\nregions = \"eu\"\n",
            fake = components::FAKE
        ),
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let (code, out, err) = run(&bridge_bin(), &["check-config", "--config", p]);
    assert_ne!(code, 0, "a backend refusing its config passed: {out}");
    assert!(
        out.contains("good: regions eu, us; TDX no"),
        "the good backend's offer: {out}"
    );
    assert!(
        err.contains(&format!(
            "{p}:11:11: `backends[1].config.regions`: invalid type: string"
        )),
        "{err}"
    );
}

/// The test backend `fake` advertises capacity that does not exist: the
/// binary does not carry it, and a config naming it as a builtin is
/// refused at its line, saying how to get its file and where it is.
#[test]
fn check_config_refuses_builtin_fake_and_says_where_its_file_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(
        &path,
        "[[backends]]\nname = \"demo\"\ncomponent = \"builtin:fake\"\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let (code, out, err) = run(&bridge_bin(), &["check-config", "--config", p]);
    assert_ne!(code, 0, "builtin:fake passed: {out}");
    assert!(
        err.contains(&format!("{p}:3:")) && err.contains("`builtin:fake` is a test backend"),
        "{err}"
    );
    assert!(
        err.contains("cargo build --release -p compute-bridge-test-components")
            && err.contains(compute_bridge_testkit::components::FAKE),
        "{err}"
    );
}

/// A GCP catalog with a zone in a region that has no subnetwork: every
/// grant placed there would fail, so check-config refuses the config and
/// points at the `subnetworks` table, by file, line and key.
#[test]
fn check_config_refuses_a_gcp_region_without_a_subnetwork() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(
        &path,
        "[[backends]]\n\
         name = \"gcp\"\n\
         component = \"builtin:gcp\"\n\
         [backends.http]\n\
         allowed_hosts = [\"https://compute.googleapis.com\", \"https://oauth2.googleapis.com\"]\n\
         [backends.config]\n\
         project = \"my-project\"\n\
         service_account_key = \"not read: the catalog is refused first\"\n\
         network = \"global/networks/bridge-vpc\"\n\
         subnetworks = { us-central1 = \"bridge-us\" }\n\
         [[backends.config.machine_types]]\n\
         name = \"c3-standard-4\"\n\
         cpus = 4\n\
         ram_mib = 16384\n\
         tdx = true\n\
         zones = [\"us-central1-a\", \"europe-west4-b\"]\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let (code, out, err) = run(&bridge_bin(), &["check-config", "--config", p]);
    assert_ne!(code, 0, "a region without a subnetwork passed: {out}");
    assert!(out.contains("gcp: refuses its config"), "{out}");
    assert!(
        err.contains(&format!(
            "{p}:10:15: `backends[0].config.subnetworks`: region europe-west4 (zone \
             europe-west4-b of `machine_types[0]`) has no subnetwork"
        )),
        "{err}"
    );
}

#[test]
fn check_config_prints_the_routing_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    // A component from a file may have only `ssh` labels (a `local` one is
    // refused at load): one with a real key pair.
    let key = dir.path().join("rack-1.key");
    ssh_keygen(&key);
    let host_key = std::fs::read_to_string(key.with_extension("key.pub")).unwrap();
    std::fs::write(
        &path,
        format!(
            "[[backends]]\nname = \"first\"\ncomponent = {fake:?}\n[backends.http]\nallowed_hosts = [\"https://api.example.com\"]\n\
             [backends.ssh.hosts.rack-1]\naddress = \"127.0.0.1\"\nuser = \"nobody\"\nhost_key = {host_key:?}\n\
             private_key_file = {key:?}\n\n[[backends]]\nname = \"second\"\ncomponent = {fake:?}\nenabled = false\n",
            fake = compute_bridge_testkit::components::FAKE,
            host_key = host_key.trim(),
            key = key.display().to_string(),
        ),
    )
    .unwrap();
    let (code, out, err) = run(
        &bridge_bin(),
        &["check-config", "--config", path.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    let first = out.find("1. first").expect(&out);
    let second = out.find("2. second").expect(&out);
    assert!(first < second);
    assert!(
        out.contains("http: https://api.example.com") && out.contains("ssh: rack-1 (ssh)"),
        "{out}"
    );
    assert!(out.contains("[disabled]"), "{out}");
}

#[test]
fn components_inspect_gives_a_verdict() {
    use compute_bridge_testkit::components;
    let (code, out, _) = run(&bridge_bin(), &["components", "inspect", components::FAKE]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("world: compute-bridge:backend/backend@0.3.0") && out.contains("will load"),
        "{out}"
    );
    // Sockets and files are linked for language runtimes and say that
    // they grant nothing.
    let (code, out, _) = run(
        &bridge_bin(),
        &["components", "inspect", components::HOSTILE_IMPORTS],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok      wasi:sockets/tcp")
            && out.contains("every bind, connect and lookup is refused")
            && out.contains("no directory is preopened"),
        "{out}"
    );
    // A component built for an older contract is refused, with the fix.
    let (code, out, _) = run(
        &bridge_bin(),
        &["components", "inspect", components::CRAFTED_BUILT_FOR_0_1_0],
    );
    assert_ne!(code, 0);
    assert!(
        out.contains("verdict: REFUSED") && out.contains("rebuild it against the 0.3.0 WIT"),
        "{out}"
    );
    let (code, _, err) = run(&bridge_bin(), &["components", "inspect", "/etc/hostname"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("is not a valid WebAssembly component"),
        "{err}"
    );
}

#[test]
fn check_config_refuses_an_azure_region_without_a_network_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    let p = path.to_str().unwrap();
    let sub = "11111111-2222-3333-4444-555555555555";
    let subnet = |vnet: &str| {
        format!(
            "/subscriptions/{sub}/resourceGroups/bridge/providers/Microsoft.Network/virtualNetworks/{vnet}/subnets/default"
        )
    };
    // Lines 1-11; the TDX size is offered in two regions (lines 12-17).
    let head = format!(
        "[[backends]]\nname = \"azure\"\ncomponent = \"builtin:azure\"\n[backends.http]\n\
         allowed_hosts = [\"https://management.azure.com\", \"https://login.microsoftonline.com\"]\n\
         [backends.config]\ntenant_id = \"72f988bf-86f1-41af-91ab-2d7cd011db47\"\n\
         client_id = \"00000000-0000-0000-0000-000000000001\"\nclient_secret = \"not-a-secret\"\n\
         subscription_id = \"{sub}\"\nresource_group = \"bridge\"\n"
    );
    let sizes = "[[backends.config.vm_sizes]]\nname = \"Standard_DC4es_v5\"\ncpus = 4\n\
                 ram_mib = 16384\ntdx = true\nregions = [\"eastus\", \"westeurope\"]\n";
    let check = |text: String| {
        std::fs::write(&path, text).unwrap();
        let (code, out, err) = run(&bridge_bin(), &["check-config", "--config", p]);
        assert_ne!(code, 0, "check-config accepted it: {out}");
        assert!(out.contains("azure: refuses its config"), "{out}");
        err
    };

    // A network for eastus only: westeurope's NICs would have none.
    let err = check(format!(
        "{head}{sizes}[backends.config.networks.eastus]\nsubnet_id = \"{}\"\n",
        subnet("bridge-eastus")
    ));
    assert!(
        err.contains(&format!(
            "{p}:18:18: `backends[0].config.networks`: region westeurope (in `vm_sizes[0].regions`) has no network"
        )),
        "{err}"
    );

    // The single subnet of earlier versions, for both regions.
    let err = check(format!(
        "{head}subnet_id = \"{}\"\n{sizes}",
        subnet("bridge-eastus")
    ));
    assert!(
        err.contains(&format!(
            "{p}:12:13: `backends[0].config.subnet_id`: replaced by `networks`, one per region"
        )),
        "{err}"
    );

    // One subnet under two regions: at most one of them is right.
    let err = check(format!(
        "{head}{sizes}[backends.config.networks.eastus]\nsubnet_id = \"{s}\"\n\
         [backends.config.networks.westeurope]\nsubnet_id = \"{s}\"\n",
        s = subnet("bridge-eastus")
    ));
    assert!(
        err.contains(&format!(
            "{p}:21:13: `backends[0].config.networks.westeurope.subnet_id`: the same as `networks.eastus.subnet_id`"
        )),
        "{err}"
    );
}

/// What an operator reads, word for word: both binaries' help, each
/// command's, and `check-config` of the two shipped configs. The re-cut into
/// crates (issue 18) moves code, not text; any change here is a CLI change.
#[test]
fn help_and_check_config_texts_are_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("rack.key");
    ssh_keygen(&key);
    let key = std::fs::read_to_string(&key).unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/example.toml");
    let (bridge, agent) = (bridge_bin(), crate::support::agent_bin());
    let runs: Vec<(&std::path::Path, Vec<&str>)> = vec![
        (&bridge, vec!["--help"]),
        (&bridge, vec!["help", "run"]),
        (&bridge, vec!["help", "check-config"]),
        (&bridge, vec!["help", "attest"]),
        (&bridge, vec!["help", "components"]),
        (&bridge, vec!["components", "help", "inspect"]),
        (&bridge, vec!["components", "help", "new"]),
        (&bridge, vec!["components", "help", "test"]),
        (&bridge, vec!["components", "help", "swap"]),
        (&bridge, vec!["check-config"]),
        (&bridge, vec!["check-config", "--config", example]),
        (&agent, vec!["--help"]),
        (&agent, vec!["help", "providers"]),
        (&agent, vec!["help", "request"]),
        (&agent, vec!["help", "settle"]),
    ];
    let mut out = String::new();
    for (bin, args) in runs {
        let o = std::process::Command::new(bin)
            .args(&args)
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .env("RACK1_SSH_KEY", &key)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {o:?}");
        let name = bin.file_name().unwrap().to_string_lossy();
        let text = format!(
            "== {name} {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&o.stdout)
        );
        out.push_str(&text.replace(example, "config/example.toml"));
    }
    let expected = include_str!("pins/cli.txt");
    if out != expected {
        let seen = std::env::temp_dir().join("cli.txt.seen");
        std::fs::write(&seen, &out).unwrap();
        panic!(
            "the CLI's text differs from tests/e2e/pins/cli.txt (seen: {})",
            seen.display()
        );
    }
}

/// A fresh ed25519 key pair at `key` and `key`.pub, with no passphrase.
fn ssh_keygen(key: &std::path::Path) {
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(key)
        .status()
        .expect("ssh-keygen (apt-get install openssh-client)");
    assert!(made.success());
}
