//! The bare-metal backend as an operator meets it: a host that claims TDX
//! without a TD runtime is refused by `check-config`, at the file, line and
//! column of its `tdx_capable` key, before anything runs; a host with a TD
//! runtime publishes its MR_TD in the card requesters read; and a `vm`
//! grant's guest outlives `kill -9` of the bridge and is still torn down
//! at `valid_to` by the restarted bridge.

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
    use compute_bridge::coalition::protocol::ProviderCard;
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

/// The `vm` runtime across `kill -9` of the bridge: the guest QEMU the
/// first bridge started keeps running, and the restarted bridge still
/// tears it down at `valid_to` (QEMU stopped, its files and account gone)
/// and reports the usage once.
#[test]
fn a_vm_guest_outlives_kill_9_and_the_restarted_bridge_tears_it_down_at_valid_to() {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use compute_bridge_testkit::coalition::TestCoalition;

    use crate::support::*;

    assert_root("the vm runtime makes a Unix account per grant for its QEMU");
    let guest = compute_bridge_testkit::guest::build();
    let net = TestCoalition::start(&network_name("vm-crash"));
    let dir = tempfile::tempdir().unwrap();
    let host_state = dir.path().join("host");
    std::fs::create_dir(&host_state).unwrap();
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
             cpu_millicores = 2000\nram_mib = 1024\nruntime = \"vm\"\npublic_host = \"127.0.0.1\"\n\
             [backends.config.hosts.vm]\nkernel = {:?}\ninitrd = {:?}\nbind_address = \"127.0.0.1\"\n",
            net.config_section(),
            compute_bridge_testkit::free_port(),
            host_state.display().to_string(),
            guest.kernel.display().to_string(),
            guest.initrd.display().to_string(),
        ),
    )
    .unwrap();
    let mut bridge = start_bridge(&config);
    let mut agent = agent_owned(&with_net(
        &net,
        &[
            "request",
            "--cpu",
            "1000",
            "--ram",
            "256",
            "--duration",
            "60s",
        ],
    ));
    agent.wait_for_log("access opened with the reply key", Duration::from_secs(120));
    bridge.wait_for_log("access handed out", Duration::from_secs(60));

    // The grant's QEMU, found through the host library's files.
    let grants = host_state.join("grants");
    let id = std::fs::read_dir(&grants)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("cb-"))
        .expect("a grant directory on the host");
    let pid: u32 = std::fs::read_to_string(grants.join(&id).join("vm/qemu.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let runs = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.starts_with("qemu-system-x86_64"))
    };
    assert!(runs(pid), "the grant's QEMU runs");
    // If the test fails before the bridge tears the grant down.
    // (QEMU runs as the grant's account.)
    struct Leftover(String);
    impl Drop for Leftover {
        fn drop(&mut self) {
            // Nothing to do (and nothing printed) once the bridge did it.
            let _ = std::process::Command::new("pkill")
                .args(["-KILL", "-U", &self.0])
                .stderr(std::process::Stdio::null())
                .status();
            let _ = std::process::Command::new("userdel")
                .args(["-f", &self.0])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
    let _leftover = Leftover(id.clone());

    bridge.signal("KILL");
    assert_eq!(
        bridge.wait(Duration::from_secs(60)),
        None,
        "killed by the signal"
    );
    assert!(runs(pid), "the guest outlives the bridge");

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
    assert!(!runs(pid), "QEMU (pid {pid}) still runs after valid_to");
    assert!(!grants.join(&id).exists(), "the grant's files are left");
    assert!(!account_exists(&id), "the grant's account is left");
    bridge.signal("TERM");
    assert_eq!(
        bridge.wait(Duration::from_secs(60)),
        Some(0),
        "{}",
        bridge.log()
    );
}
