//! The bare-metal backend's TDX rule as an operator meets it: a host that
//! claims TDX without a TD runtime is refused by `check-config`, at the
//! file, line and column of its `tdx_capable` key, before anything runs.

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
