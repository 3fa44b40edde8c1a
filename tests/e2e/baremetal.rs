//! The bare-metal backend as an operator meets it: a host that claims TDX
//! without a TD runtime is refused by `check-config`, at the file, line and
//! column of its `tdx_capable` key, before anything runs; a host with a TD
//! runtime publishes its MR_TD in the card requesters read; and a `vm`
//! grant's guest, and a `podman` grant's container, outlive `kill -9` of
//! the bridge and are still torn down at `valid_to` by the restarted
//! bridge.

use compute_bridge_testkit::process::run;

use crate::bridge_bin;

/// Lines 1-16 of the config under test; the second host's extra keys
/// follow from line 17.
fn config(second_host: &str) -> String {
    format!(
        "[[backends]]\n\
         name = \"baremetal\"\n\
         component = \"builtin:baremetal\"\n\
         [backends.ssh.hosts.here]\n\
         transport = \"local\"\n\
         [backends.config]\n\
         [[backends.config.hosts]]\n\
         label = \"here\"\n\
         region = \"home\"\n\
         cpu_millicores = 1000\n\
         ram_mib = 1024\n\
         public_host = \"127.0.0.1\"\n\
         [[backends.config.hosts]]\n\
         label = \"here2\"\n\
         region = \"home\"\n\
         cpu_millicores = 1000\n\
         {second_host}\
         ram_mib = 1024\n\
         public_host = \"127.0.0.1\"\n\
         [backends.ssh.hosts.here2]\n\
         transport = \"local\"\n"
    )
}

const MRTD: &str = "mrtd = \"000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000abc\"\n";

#[test]
fn check_config_refuses_a_tdx_host_without_a_td_runtime_at_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    let p = path.to_str().unwrap();
    for runtime in ["process", "podman"] {
        // Line 17: runtime; line 18: tdx_capable (its value at column 15).
        std::fs::write(
            &path,
            config(&format!(
                "runtime = \"{runtime}\"\ntdx_capable = true\n{MRTD}"
            )),
        )
        .unwrap();
        let (code, out, err) = run(&bridge_bin(), &["check-config", "--config", p]);
        assert_ne!(code, 0, "a {runtime} host claiming TDX passed: {out}");
        assert!(out.contains("baremetal: refuses its config"), "{out}");
        assert!(
            err.contains(&format!(
                "{p}:18:15: `backends[0].config.hosts[1].tdx_capable`: a TDX-capable host needs \
                 a TD runtime (runtime = \"vm\" with vm.firmware"
            )),
            "{runtime}: {err}"
        );
    }

    // The same host without the claim is accepted, and offers no TDX.
    std::fs::write(&path, config("runtime = \"process\"\n")).unwrap();
    let (code, out, err) = run(&bridge_bin(), &["check-config", "--config", p]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("baremetal: regions home; TDX no; up to 2000 millicores, 2048 MiB"),
        "{out}"
    );
}

/// A bare-TDX host's MR_TD, as an operator and a requester see it: the
/// second host has a TD runtime (`vm.firmware`; no TD is started, none can
/// be here), `check-config` prints its region's MR_TD, and
/// `coalition-agent providers` (text and JSON) shows it in the card of the
/// running bridge; the first host, without TDX, adds none.
#[test]
fn a_td_hosts_mrtd_is_in_the_card_the_agent_reads() {
    use compute_bridge_contract::protocol::ProviderCard;
    use compute_bridge_testkit::coalition::TestCoalition;

    use crate::support::*;

    let mrtd = "3f".repeat(48);
    let net = TestCoalition::start(&network_name("td-mrtd"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    let p = path.to_str().unwrap();
    let td = format!(
        "tdx_capable = true\nmrtd = \"{mrtd}\"\nruntime = \"vm\"\n\
         vm = {{ kernel = \"/td/vmlinuz\", initrd = \"/td/initrd.img\", accel = \"kvm\", \
         firmware = \"/usr/share/ovmf/OVMF.fd\" }}\n"
    );
    std::fs::write(
        &path,
        format!(
            "[bridge]\nstate_dir = \"state\"\n\n{}\n{}",
            net.config_section(),
            config(&td)
                .replacen("region = \"home\"", "region = \"plain\"", 1)
                .replace(
                    "[backends.config]\n",
                    &format!(
                        "[backends.config]\nstate_dir = {:?}\n",
                        dir.path().join("host")
                    ),
                )
        ),
    )
    .unwrap();
    let (code, out, err) = run(&bridge_bin(), &["check-config", "--config", p]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "baremetal: regions plain, home; TDX yes; up to 2000 millicores, 2048 MiB\n    \
             TD guests in home: mrtd {mrtd}\n"
        )),
        "{out}"
    );

    let mut bridge = start_bridge(&path);
    let agent = |args: &[&str]| {
        let (code, out, err) = run(
            &agent_bin(),
            &with_net(&net, args)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        assert_eq!(code, 0, "{err}");
        out
    };
    let cards: Vec<ProviderCard> =
        serde_json::from_str(&agent(&["providers", "--json", "--wait", "60s"])).unwrap();
    let offer = &cards[0].backends[0];
    assert_eq!(offer.regions, ["plain", "home"]);
    let measured: Vec<(&str, &str)> = (offer.td_measurements.iter())
        .map(|m| (m.region.as_str(), m.mrtd.as_str()))
        .collect();
    assert_eq!(
        measured,
        [("home", mrtd.as_str())],
        "none for the plain host"
    );
    let text = agent(&["providers", "--wait", "60s"]);
    assert!(
        text.contains(&format!("\n      TD guests in home: mrtd={mrtd}\n")),
        "{text}"
    );
    assert_eq!(text.matches("TD guests in").count(), 1, "{text}");
    bridge.signal("TERM");
    assert_eq!(
        bridge.wait(std::time::Duration::from_secs(60)),
        Some(0),
        "{}",
        bridge.log()
    );
}

/// A grant's workload as the host shows it, for the `kill -9` tests.
struct Workload {
    /// True while it runs (its QEMU, its container).
    runs: Box<dyn Fn() -> bool>,
    /// Removes what a failed test leaves of it (nothing, and silently,
    /// once the bridge tore it down).
    cleanup: Box<dyn Fn()>,
}

/// A grant through the real bridge and agent to a bare-metal host of this
/// machine (`local` transport; the host's runtime keys are `host_keys`,
/// the request's flags `request`), `kill -9` of the bridge while the
/// grant's workload runs (`workload` finds it from the host library's
/// grant directory and the grant's id), and the restarted bridge: the
/// workload survived the bridge and is torn down at `valid_to`, the agent
/// gets exactly one usage report, and nothing of the grant is left (its
/// workload, grant directory, account and cgroups). Returns the grant's
/// id.
fn outlives_kill_9(
    test: &str,
    host_keys: &str,
    request: &[&str],
    workload: impl Fn(&std::path::Path, &str) -> Workload,
) -> String {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use compute_bridge_testkit::coalition::TestCoalition;

    use crate::support::*;

    let net = TestCoalition::start(&network_name(test));
    let dir = tempfile::tempdir().unwrap();
    let host_state = dir.path().join("host");
    std::fs::create_dir(&host_state).unwrap();
    // The vm runtime's QEMU runs as the grant's account and reads its
    // files under the grant directory.
    std::fs::set_permissions(&host_state, std::fs::Permissions::from_mode(0o711)).unwrap();
    let config = dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[bridge]\nstate_dir = \"state\"\ncapacity_refresh_sec = 2\n\n{}\n\
             [dashboard]\nport = {}\n\n\
             [[backends]]\nname = \"baremetal\"\ncomponent = \"builtin:baremetal\"\n\
             [backends.ssh.hosts.here]\ntransport = \"local\"\n\
             [backends.config]\nstate_dir = {:?}\n\
             [[backends.config.hosts]]\nlabel = \"here\"\nregion = \"local\"\n\
             cpu_millicores = 2000\nram_mib = 1024\npublic_host = \"127.0.0.1\"\n{host_keys}",
            net.config_section(),
            compute_bridge_testkit::free_port(),
            host_state.display().to_string(),
        ),
    )
    .unwrap();
    let mut bridge = start_bridge(&config);
    let mut args = vec!["request", "--duration", "60s"];
    args.extend_from_slice(request);
    let mut agent = agent_owned(&with_net(&net, &args));
    agent.wait_for_log("access opened with the reply key", Duration::from_secs(120));
    bridge.wait_for_log("access handed out", Duration::from_secs(60));

    // The grant, found through the host library's files.
    let grants = host_state.join("grants");
    let id = std::fs::read_dir(&grants)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("cb-"))
        .expect("a grant directory on the host");
    let w = workload(&grants.join(&id), &id);
    // If the test fails before the bridge tears the grant down.
    struct Leftover<'a>(&'a Workload, String);
    impl Drop for Leftover<'_> {
        fn drop(&mut self) {
            (self.0.cleanup)();
            let _ = std::process::Command::new("userdel")
                .args(["-f", &self.1])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
    let _leftover = Leftover(&w, id.clone());
    // Access is handed out once the workload exists; a container may
    // still be starting then.
    compute_bridge_testkit::wait_for(
        "the grant's workload to run",
        Duration::from_secs(60),
        || (w.runs)().then_some(()),
    );

    bridge.signal("KILL");
    assert_eq!(
        bridge.wait(Duration::from_secs(60)),
        None,
        "killed by the signal"
    );
    assert!((w.runs)(), "the workload outlives the bridge");

    let mut bridge = restart_bridge(&config);
    bridge.wait_for_log("still running; watching again", Duration::from_secs(60));
    agent.wait_for_log(
        "usage report: expired at valid_to",
        Duration::from_secs(240),
    );
    assert_eq!(
        agent.wait(Duration::from_secs(60)),
        Some(0),
        "{}",
        agent.log()
    );
    bridge.wait_for_log("workload ended and torn down", Duration::from_secs(60));
    assert!(!(w.runs)(), "the workload still runs after valid_to");
    assert!(!grants.join(&id).exists(), "the grant's files are left");
    assert!(!account_exists(&id), "the grant's account is left");
    assert_eq!(
        compute_bridge_testkit::grant_cgroups_left(&id),
        Vec::<String>::new(),
        "the grant's cgroups are left"
    );
    bridge.signal("TERM");
    assert_eq!(
        bridge.wait(Duration::from_secs(60)),
        Some(0),
        "{}",
        bridge.log()
    );
    let reports = agent.log().matches("usage report: ").count();
    assert_eq!(reports, 1, "{}", agent.log());
    let sent = bridge.log().matches("usage report sent").count();
    assert_eq!(sent, 1, "the restarted bridge sent {sent} reports");
    id
}

/// The `vm` runtime across `kill -9` of the bridge: the guest QEMU the
/// first bridge started keeps running, and the restarted bridge still
/// tears it down at `valid_to` (QEMU stopped, its files and account gone)
/// and reports the usage once.
#[test]
fn a_vm_guest_outlives_kill_9_and_the_restarted_bridge_tears_it_down_at_valid_to() {
    crate::support::assert_root("the vm runtime makes a Unix account per grant for its QEMU");
    let guest = compute_bridge_testkit::guest::build();
    let _ = outlives_kill_9(
        "vm-crash",
        &format!(
            "runtime = \"vm\"\n[backends.config.hosts.vm]\nkernel = {:?}\ninitrd = {:?}\n\
             bind_address = \"127.0.0.1\"\n",
            guest.kernel.display().to_string(),
            guest.initrd.display().to_string(),
        ),
        &["--cpu", "1000", "--ram", "256"],
        |grant, id| {
            let pid: u32 = std::fs::read_to_string(grant.join("vm/qemu.pid"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let id = id.to_string();
            Workload {
                runs: Box::new(move || {
                    std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| c.starts_with("qemu-system-x86_64"))
                }),
                // QEMU runs as the grant's account.
                cleanup: Box::new(move || {
                    let _ = std::process::Command::new("pkill")
                        .args(["-KILL", "-U", &id])
                        .stderr(std::process::Stdio::null())
                        .status();
                }),
            }
        },
    );
}

/// The same for the `podman` runtime: the container of the grant's image
/// (imported without a registry, pinned by digest) keeps running while
/// the bridge is dead, and the restarted bridge removes it at `valid_to`
/// with its cgroups, account and files, and reports the usage once.
#[test]
fn a_podman_container_outlives_kill_9_and_the_restarted_bridge_tears_it_down_at_valid_to() {
    use compute_bridge_testkit::podman;

    crate::support::assert_root("the podman runtime makes a Unix account per grant");
    let image = podman::import_busybox("cb-e2e-crash");
    let pinned = image.pinned();
    let id = outlives_kill_9(
        "podman-crash",
        "runtime = \"podman\"\nmax_processes = 64\n",
        &["--cpu", "500", "--ram", "64", "--image", &pinned],
        |_, id| {
            let id = id.to_string();
            let running = id.clone();
            Workload {
                runs: Box::new(move || {
                    let out = podman::podman()
                        .args([
                            "ps",
                            "--filter",
                            &format!("label=compute-bridge.grant={running}"),
                            "--format",
                            "{{.ID}}",
                        ])
                        .output()
                        .unwrap();
                    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
                }),
                cleanup: Box::new(move || {
                    let _ = podman::podman()
                        .args(["rm", "--force", "--time", "0", &id])
                        .output();
                    let _ = std::fs::remove_file(format!("/etc/sudoers.d/{id}"));
                }),
            }
        },
    );
    assert_eq!(podman::containers_of(&id), Vec::<String>::new());
    assert_eq!(
        podman::stored_containers_of(&id),
        Vec::<String>::new(),
        "the container's layer is left in podman's storage"
    );
}
