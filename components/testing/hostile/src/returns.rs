//! Attacks through what the component *returns* rather than what it does:
//! oversized or malformed instance fields, error texts, offers, usage and
//! instance lists. Each is chosen by keys of `[backends.config]`; with none
//! of them set, the component answers as before.

use compute_bridge_sdk::prelude::*;

/// The keys these attacks read (all optional).
#[derive(serde::Deserialize, Default)]
pub struct Cfg {
    /// `provision` under `attack = "instance"`: each set field replaces
    /// the honest value (the request id, `hostile-1`, `127.0.0.1`, 22, the
    /// suggested login, no host key, no handle).
    #[serde(default)]
    instance_id: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    public_host: Option<String>,
    #[serde(default)]
    ssh_port: Option<u16>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    host_key: Option<String>,
    #[serde(default)]
    handle: Option<String>,
    /// Under `attack = "instance"`: the field to inflate with `pad_kib` KiB
    /// (`instance_id`, `region`, `public_host`, `user`, `host_key`,
    /// `handle`).
    #[serde(default)]
    pad_field: Option<String>,
    #[serde(default)]
    pad_kib: usize,
    /// `provision` under `attack = "error"`: an `internal` error whose text
    /// is `error_text` followed by `pad_kib` KiB.
    #[serde(default)]
    error_text: String,
    /// `capabilities`: `offer_regions` regions of `offer_region_len` bytes
    /// each (4 MiB of names as 65,536 × 64), and these capacity claims.
    #[serde(default)]
    offer_regions: Option<usize>,
    #[serde(default = "default_region_len")]
    offer_region_len: usize,
    #[serde(default)]
    offer_cpu: Option<u32>,
    #[serde(default)]
    offer_ram: Option<u32>,
    /// `capabilities`: these `[region, mrtd]` pairs as the offer's
    /// `td-measurements` (the offer's regions otherwise as above).
    #[serde(default)]
    offer_td: Option<Vec<(String, String)>>,
    /// `usage`: 2^`usage_pow2` of every figure (63: the top bit of a u64).
    #[serde(default)]
    usage_pow2: Option<u32>,
    /// `list-instances`: this many instances.
    #[serde(default)]
    list_count: Option<usize>,
}

fn default_region_len() -> usize {
    64
}

fn cfg() -> Cfg {
    config::load().unwrap_or_default()
}

fn padded(mut s: String, kib: usize) -> String {
    s.push_str(&"x".repeat(kib * 1024));
    s
}

/// The offer, when the operator's config asks for an attack through it.
pub fn offer(region: String) -> Option<Offer> {
    let c = cfg();
    if c.offer_regions.is_none()
        && c.offer_cpu.is_none()
        && c.offer_ram.is_none()
        && c.offer_td.is_none()
    {
        return None;
    }
    let regions = match c.offer_regions {
        Some(n) => (0..n)
            .map(|i| {
                let mut r = format!("r{i}-");
                r.push_str(&"x".repeat(c.offer_region_len.saturating_sub(r.len())));
                r
            })
            .collect(),
        None => vec![region],
    };
    Some(Offer {
        regions,
        tdx_capable: false,
        max_cpu_millicores: c.offer_cpu.unwrap_or(1_000_000),
        max_ram_mib: c.offer_ram.unwrap_or(1_000_000),
        td_measurements: (c.offer_td.unwrap_or_default().into_iter())
            .map(|(region, mrtd)| TdMeasurement { region, mrtd })
            .collect(),
    })
}

/// `attack = "instance"`: an instance built from the config's fields.
pub fn instance(g: &GrantSpec, w: &Workload) -> Instance {
    let c = cfg();
    let mut i = Instance {
        instance_id: c.instance_id.unwrap_or_else(|| g.request_id.clone()),
        region: c.region.unwrap_or_else(|| "hostile-1".into()),
        public_host: c.public_host.unwrap_or_else(|| "127.0.0.1".into()),
        ssh_port: c.ssh_port.unwrap_or(22),
        user: c.user.unwrap_or_else(|| w.ssh_user.clone()),
        host_key: c.host_key.unwrap_or_default(),
        handle: c.handle.unwrap_or_default(),
    };
    let field = match c.pad_field.as_deref() {
        Some("instance_id") => &mut i.instance_id,
        Some("region") => &mut i.region,
        Some("public_host") => &mut i.public_host,
        Some("user") => &mut i.user,
        Some("host_key") => &mut i.host_key,
        Some("handle") => &mut i.handle,
        _ => return i,
    };
    *field = padded(std::mem::take(field), c.pad_kib);
    i
}

/// `attack = "error"`: an `internal` error with a long text.
pub fn error() -> BackendError {
    let c = cfg();
    BackendError::internal(padded(c.error_text, c.pad_kib))
}

/// The usage to report, when the config asks for an attack through it.
pub fn usage() -> Option<ResourceUsage> {
    let p = cfg().usage_pow2?;
    let v = 1u64.checked_shl(p).unwrap_or(u64::MAX);
    Some(ResourceUsage {
        cpu_core_seconds: v,
        ram_mib_seconds: v,
        net_bytes: v,
    })
}

/// The instances to list, when the config asks for an attack through it.
pub fn list() -> Option<Vec<Instance>> {
    let n = cfg().list_count?;
    Some(
        (0..n)
            .map(|k| Instance {
                instance_id: format!("listed-{k}"),
                region: "hostile-1".into(),
                public_host: "127.0.0.1".into(),
                ssh_port: 22,
                user: "cb-listed".into(),
                host_key: String::new(),
                handle: String::new(),
            })
            .collect(),
    )
}
