//! Which hosts may take a grant.
//!
//! Placement is first fit in config order. This module answers the static
//! half (region, TDX, size, runtime); whether a host has room *now* is read
//! from the host itself when provisioning (see `host.sh`, `cb_reserve`),
//! under a lock there, so nothing is remembered between calls and two
//! bridges sharing a host cannot overbook it.

use crate::config::{Config, HostConfig, RuntimeKind};
use crate::grant::{Grant, check_image};

/// Hosts that could take `grant` if they had room, in placement order.
pub fn candidates<'c>(cfg: &'c Config, grant: &Grant<'_>) -> Vec<&'c HostConfig> {
    cfg.hosts.iter().filter(|h| fits(h, grant)).collect()
}

/// True if `host` could ever take `grant`. A TDX-required grant fits
/// only a host that runs it as a TD guest (config validation already
/// refuses `tdx_capable` without a TD runtime; this holds even without it).
pub fn fits(host: &HostConfig, grant: &Grant<'_>) -> bool {
    if grant.tdx_required && !(host.tdx_capable && host.has_td_runtime()) {
        return false;
    }
    if grant.region.is_some_and(|r| r != host.region) {
        return false;
    }
    if grant.cpu_millicores == 0 || grant.ram_mib == 0 {
        return false;
    }
    if grant.cpu_millicores > host.cpu_millicores || grant.ram_mib > host.ram_mib {
        return false;
    }
    host.runtime != RuntimeKind::Podman || check_image(grant.image).is_ok()
}

/// Why no host fits, for the `rejected` message.
pub fn why_not(cfg: &Config, grant: &Grant<'_>) -> String {
    let regional: Vec<&HostConfig> = cfg
        .hosts
        .iter()
        .filter(|h| grant.region.is_none_or(|r| r == h.region))
        .collect();
    if regional.is_empty() {
        return format!(
            "no host in region {:?} (regions: {})",
            grant.region.unwrap_or_default(),
            cfg.offer().regions.join(", ")
        );
    }
    if grant.tdx_required && !regional.iter().any(|h| h.tdx_capable && h.has_td_runtime()) {
        return "the grant requires TDX and no host there runs TD guests (a TDX-required grant \
                never runs as a Unix account or a container)"
            .into();
    }
    if grant.cpu_millicores == 0 || grant.ram_mib == 0 {
        return "the grant asks for no CPU or no memory".into();
    }
    if let Err(e) = check_image(grant.image)
        && regional.iter().all(|h| h.runtime == RuntimeKind::Podman)
    {
        return e.message().to_string();
    }
    format!(
        "no single host offers {}m CPU and {} MiB",
        grant.cpu_millicores, grant.ram_mib
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::from_json(
            r#"{"hosts": [
                {"label": "small", "region": "eu", "cpu_millicores": 1000, "ram_mib": 1024, "public_host": "a"},
                {"label": "big", "region": "eu", "cpu_millicores": 8000, "ram_mib": 8192, "public_host": "b"},
                {"label": "tdx", "region": "us", "cpu_millicores": 4000, "ram_mib": 4096, "public_host": "c",
                 "tdx_capable": true, "mrtd": "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000abcd",
                 "runtime": "vm", "vm": {"kernel": "/g/vmlinuz", "initrd": "/g/initrd.img", "accel": "kvm", "firmware": "/usr/share/ovmf/OVMF.fd"}},
                {"label": "pod", "region": "us", "cpu_millicores": 4000, "ram_mib": 4096, "public_host": "d", "runtime": "podman"}
            ]}"#,
        )
        .unwrap()
    }

    fn grant(cpu: u32, region: Option<&'static str>, tdx: bool) -> Grant<'static> {
        Grant {
            request_id: "r",
            cpu_millicores: cpu,
            ram_mib: 512,
            region,
            tdx_required: tdx,
            image: "app:latest",
            valid_to: 0,
        }
    }

    fn labels(c: &Config, g: &Grant<'_>) -> Vec<String> {
        candidates(c, g).iter().map(|h| h.label.clone()).collect()
    }

    #[test]
    fn first_fit_keeps_config_order() {
        let c = cfg();
        assert_eq!(
            labels(&c, &grant(500, None, false)),
            ["small", "big", "tdx"]
        );
        assert_eq!(labels(&c, &grant(2000, Some("eu"), false)), ["big"]);
    }

    #[test]
    fn tdx_required_only_goes_to_tdx_hosts() {
        let c = cfg();
        assert_eq!(labels(&c, &grant(500, None, true)), ["tdx"]);
        assert!(labels(&c, &grant(500, Some("eu"), true)).is_empty());
        assert!(why_not(&c, &grant(500, Some("eu"), true)).contains("TDX"));
    }

    #[test]
    fn a_tdx_host_without_a_td_runtime_never_takes_a_tdx_grant() {
        // Bypass validation (which refuses this host) to check that
        // placement holds on its own.
        let mut c = cfg();
        for h in &mut c.hosts {
            if h.label == "pod" {
                h.tdx_capable = true;
                h.mrtd = Some("ab".repeat(48));
            }
        }
        assert!(
            c.validate()
                .unwrap_err()
                .message()
                .starts_with("`hosts[3].tdx_capable`")
        );
        assert_eq!(labels(&c, &grant(500, Some("us"), true)), ["tdx"]);
        c.hosts.retain(|h| h.label != "tdx");
        assert!(labels(&c, &grant(500, Some("us"), true)).is_empty());
        let why = why_not(&c, &grant(500, Some("us"), true));
        assert!(
            why.contains("never runs as a Unix account or a container"),
            "{why}"
        );
    }

    #[test]
    fn podman_hosts_take_only_pinned_images() {
        let c = cfg();
        let mut g = grant(500, Some("us"), false);
        assert_eq!(labels(&c, &g), ["tdx"]);
        let pinned = format!("app@sha256:{}", "b".repeat(64));
        g.image = Box::leak(pinned.into_boxed_str());
        assert_eq!(labels(&c, &g), ["tdx", "pod"]);
    }

    #[test]
    fn unknown_region_and_oversize_say_why() {
        let c = cfg();
        assert!(why_not(&c, &grant(500, Some("mars"), false)).contains("no host in region"));
        assert!(why_not(&c, &grant(9000, None, false)).contains("9000m"));
    }
}
