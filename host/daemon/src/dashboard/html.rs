//! `GET /dashboard`: the snapshot as the seed's ASCII layout in HTML.
//!
//! No JavaScript: the page reloads itself with `<meta http-equiv="refresh">`.
//! Every value goes through maud, which escapes it, so a backend that names
//! a region `<script>` shows that text and runs nothing. The only inline
//! markup not escaped is the page's own stylesheet, allowed by its hash in
//! the Content-Security-Policy.

use std::fmt::Write;
use std::sync::OnceLock;

use base64::Engine;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use sha2::Digest;

use super::snapshot::{BackendSnapshot, RecentKind, Snapshot};
use compute_bridge_contract::events::SwapOutcome;

/// The page's stylesheet (monospace, readable at 1280 px).
const STYLE: &str = "\
body{margin:0;background:#fbfbf8;color:#1d1d1b;font:15px/1.45 ui-monospace,\"DejaVu Sans Mono\",Menlo,Consolas,monospace}\
main{max-width:96ch;margin:1.5em auto;padding:0 1.5ch}\
h1{font-size:1.1em;margin:0 0 .2em;border-bottom:3px double currentColor;padding-bottom:.3em}\
h2{display:flex;align-items:center;gap:1ch;font-size:1em;font-weight:normal;margin:1.2em 0 .3em}\
h2::before,h2::after{content:\"\";flex:1;border-top:1px solid #888}\
h2::before{flex:0 0 6ch}\
pre{margin:.4em 0;font:inherit;white-space:pre-wrap}\
.bad{color:#b00020;font-weight:bold}\
footer{margin-top:1.5em;color:#666;font-size:.9em}\
a{color:inherit}";

/// The Content-Security-Policy sent with every response: nothing may load
/// or run except this page's own stylesheet.
pub fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let hash = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(STYLE.as_bytes()));
        format!(
            "default-src 'none'; script-src 'none'; style-src 'sha256-{hash}'; img-src 'none'; \
             connect-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
    })
}

/// The page for `s`.
pub fn render(s: &Snapshot) -> String {
    page(s).into_string()
}

fn page(s: &Snapshot) -> Markup {
    let p = &s.provider;
    let mrtd_bad = p.mrtd == super::MrtdState::Mismatch;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content=(s.refresh_seconds);
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { "compute-bridge · " (p.coalition) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                main {
                    h1 { "compute-bridge dashboard" }
                    pre #provider {
                        (two_col("Provider:", p.id_prefix.as_deref().unwrap_or("—"), "Status:", p.status.label()))
                        "\n"
                        (two_col("Coalition:", &p.coalition, "Module:", p.module_version.as_deref().unwrap_or("—")))
                        "\n"
                        (two_col_open("Uptime:", &duration(p.uptime_seconds), "MR_TD:"))
                        @if mrtd_bad { span.bad { (p.mrtd.label()) } } @else { (p.mrtd.label()) }
                    }
                    pre #grants { (grants_block(s)) }
                    h2 { "Backends" }
                    pre #backends { (backends_block(&s.backends, s.generated_at_unix)) }
                    h2 { "Last 24h" }
                    pre #window { (window_block(s)) }
                    h2 { "Recent events" }
                    pre #events { (events_block(s)) }
                    footer {
                        "Snapshot " (utc(s.generated_at_unix)) " UTC · reloads every "
                        (s.refresh_seconds) " s · "
                        a href="/snapshot.json" { "snapshot.json" } " · "
                        a href="/metrics" { "metrics" }
                    }
                }
            }
        }
    }
}

fn two_col_open(l1: &str, v1: &str, l2: &str) -> String {
    format!("{l1:<12}{v1:<30}{l2:<10}")
}

fn two_col(l1: &str, v1: &str, l2: &str, v2: &str) -> String {
    format!("{}{v2}", two_col_open(l1, v1, l2))
}

fn grants_block(s: &Snapshot) -> String {
    let rows = [
        (
            "Subscribers (coalition agents bonded to this card):",
            thousands(s.subscribers),
        ),
        (
            "Active grants:",
            format!("{} / {}", s.grants.active, s.grants.cap),
        ),
        (
            "Total grants served (lifetime):",
            thousands(s.lifetime.grants_served),
        ),
    ];
    rows.iter()
        .map(|(l, v)| format!("{l:<52}{v:>8}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn backends_block(backends: &[BackendSnapshot], now: u64) -> String {
    if backends.is_empty() {
        return "(no backends configured)".into();
    }
    let mut out = String::new();
    for b in backends {
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = write!(out, "{:<12}", b.name);
        backend_line(&mut out, b);
        if let Some(d) = &b.component_sha256 {
            let _ = write!(out, "\n{:<12}component {d}", "");
            if let Some(t) = b.component_loaded_at_unix {
                let _ = write!(out, ", loaded {}", ago(now.saturating_sub(t)));
            }
        }
    }
    out
}

/// One backend's line after its name, and its TD guests' MR_TDs.
fn backend_line(out: &mut String, b: &BackendSnapshot) {
    if !b.enabled {
        out.push_str("(disabled)");
        return;
    }
    let Some(c) = &b.capacity else {
        out.push_str("(capabilities unavailable)");
        return;
    };
    let mut regions = c.regions.join(", ");
    if c.tdx_capable {
        regions.push_str(" tdx-capable");
    }
    let used = if b.used.cpu_millicores == 0 && b.used.ram_mib == 0 {
        "0".to_string()
    } else {
        format!("{}/{}", cores(b.used.cpu_millicores), gib(b.used.ram_mib))
    };
    let _ = write!(
        out,
        "{:<26} cap={:<11} used={:<11} grants={}",
        format!("[{regions}]"),
        format!(
            "{}/{}",
            cores(u64::from(c.cpu_millicores)),
            gib(u64::from(c.ram_mib))
        ),
        used,
        b.active_grants
    );
    for m in &c.td_measurements {
        let _ = write!(
            out,
            "\n{:<12}TD guests in {}: mrtd={}",
            "", m.region, m.mrtd
        );
    }
}

fn window_block(s: &Snapshot) -> String {
    let w = &s.window;
    let mut out = String::new();
    let mut row = |label: &str, value: String| {
        let _ = writeln!(out, "{label:<22}{value}");
    };
    row("Grants served:", thousands(w.grants_served));
    let declines: Vec<String> = w
        .declines
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r} {}", thousands(*n)))
        .collect();
    row(
        "Grants declined:",
        if declines.is_empty() {
            thousands(w.grants_declined)
        } else {
            format!(
                "{:<10}({})",
                thousands(w.grants_declined),
                declines.join(", ")
            )
        },
    );
    row("Failovers:", thousands(w.failovers));
    row(
        "Usage:",
        format!(
            "cpu={} core-h   ram={} GiB-h   net={}",
            amount(super::cost::core_hours(w.cpu_core_seconds)),
            amount(super::cost::gib_hours(w.ram_mib_seconds)),
            bytes(w.net_bytes)
        ),
    );
    row(
        "Idle:",
        match w.idle_ratio {
            Some(r) => percent(r),
            None => "n/a (no capacity observed yet)".into(),
        },
    );
    let breakdown: Vec<String> = s
        .backends
        .iter()
        .map(|b| format!("{} {}", b.name, usd(b.window.estimated_cost_usd)))
        .collect();
    row(
        "Estimated cost:",
        format!(
            "{:<10}({})",
            usd(w.estimated_cost_usd),
            breakdown.join(", ")
        ),
    );
    row("Settled revenue:", usd(w.settled_revenue_usd));
    row(
        "Net:",
        format!(
            "{:<10}({})",
            signed_usd(w.net_usd),
            match w.margin_ratio {
                Some(m) => format!("{} margin", percent(m)),
                None => "no revenue yet".into(),
            }
        ),
    );
    let _ = write!(
        out,
        "{:<22}{} of the last 24h",
        "Observed:",
        duration(w.observed_seconds)
    );
    out
}

fn events_block(s: &Snapshot) -> String {
    if s.recent_events.is_empty() {
        return "(none yet)".into();
    }
    s.recent_events
        .iter()
        .map(|e| {
            let what = match &e.what {
                RecentKind::SubscriberJoined => "Subscriber joined".to_string(),
                RecentKind::SubscriberLeft => "Subscriber left".to_string(),
                RecentKind::GrantAccepted { backend, region } => {
                    format!("Grant accepted on {backend}:{region}")
                }
                RecentKind::GrantCompleted {
                    backend,
                    cpu_core_seconds,
                    ram_mib_seconds,
                    net_bytes,
                } => format!(
                    "Grant completed on {backend}; usage {} c-min, {} GiB-min, {}",
                    amount(*cpu_core_seconds as f64 / 60.0),
                    amount(*ram_mib_seconds as f64 / 1024.0 / 60.0),
                    bytes(*net_bytes)
                ),
                RecentKind::GrantDeclined { reason } => {
                    format!("Grant declined ({})", reason.as_str())
                }
                RecentKind::Failover {
                    from,
                    from_region,
                    to,
                    to_region,
                } => {
                    let from = place(from, from_region.as_deref());
                    match to {
                        Some(to) => {
                            format!("Failover {from} → {}", place(to, to_region.as_deref()))
                        }
                        None => format!("Failover from {from}; no backend left"),
                    }
                }
                RecentKind::RevenueSettled => "Revenue settled".to_string(),
                RecentKind::CardRefreshed => "Provider card refreshed".to_string(),
                RecentKind::ComponentSwap {
                    backend,
                    from,
                    to,
                    outcome,
                } => match outcome {
                    SwapOutcome::Live => {
                        format!("Component swap on {backend}: {from} → {to}, live")
                    }
                    SwapOutcome::Refused => {
                        format!(
                            "Component swap on {backend}: {to} refused at its check; {from} stays"
                        )
                    }
                    SwapOutcome::RolledBack => {
                        format!("Component swap on {backend}: {to} ROLLED BACK to {from}")
                    }
                },
            };
            let repeats = if e.count > 1 {
                let since = e.age_seconds + e.at_unix.saturating_sub(e.first_at_unix);
                format!(" ×{}, first {}", thousands(e.count), ago(since))
            } else {
                String::new()
            };
            format!("{:<9}{what}{repeats}", format!("[{}]", ago(e.age_seconds)))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `aws` or, with a region, `aws/us-east-1`.
fn place(backend: &str, region: Option<&str>) -> String {
    match region {
        Some(r) => format!("{backend}/{r}"),
        None => backend.to_string(),
    }
}

/// `1842` → `1,842`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A quantity: one decimal below 100, whole numbers with separators above.
pub fn amount(x: f64) -> String {
    if x < 100.0 {
        format!("{x:.1}")
    } else {
        thousands(x.round() as u64)
    }
}

/// `$1,234.56` (negative as `-$…`).
pub fn usd(x: f64) -> String {
    let cents = (x.abs() * 100.0).round() as u64;
    format!(
        "{}${}.{:02}",
        if x < 0.0 && cents > 0 { "-" } else { "" },
        thousands(cents / 100),
        cents % 100
    )
}

/// `+$81.48` / `-$12.00`.
pub fn signed_usd(x: f64) -> String {
    if x >= 0.0 || (x.abs() * 100.0).round() == 0.0 {
        format!("+{}", usd(x.abs()))
    } else {
        usd(x)
    }
}

/// `0.24` → `24%`.
pub fn percent(r: f64) -> String {
    format!("{:.0}%", r * 100.0)
}

/// Decimal bytes: `412 GB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1000.0 && u < UNITS.len() - 1 {
        x /= 1000.0;
        u += 1;
    }
    if u == 0 || x >= 100.0 {
        format!("{x:.0} {}", UNITS[u])
    } else {
        format!("{x:.1} {}", UNITS[u])
    }
}

fn trimmed(x: f64) -> String {
    if (x - x.round()).abs() < 0.05 {
        format!("{}", x.round() as u64)
    } else {
        format!("{x:.1}")
    }
}

/// Millicores as cores: `80c`, `2.5c`.
pub fn cores(millicores: u64) -> String {
    format!("{}c", trimmed(millicores as f64 / 1000.0))
}

/// MiB as GiB: `320G`, `0.5G`.
pub fn gib(mib: u64) -> String {
    format!("{}G", trimmed(mib as f64 / 1024.0))
}

/// `4d 02h`, `3h 12m`, `5m 03s`, `42s`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// `t-2m`, `t-3h`, `t-12s`, `t-2d`.
pub fn ago(secs: u64) -> String {
    if secs < 60 {
        format!("t-{secs}s")
    } else if secs < 3600 {
        format!("t-{}m", secs / 60)
    } else if secs < 86400 {
        format!("t-{}h", secs / 3600)
    } else {
        format!("t-{}d", secs / 86400)
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn utc(unix: u64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let days = (unix / 86400) as i64;
    let secs = unix % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_the_mock() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1842), "1,842");
        assert_eq!(thousands(18_420_000), "18,420,000");
        assert_eq!(usd(147.234), "$147.23");
        assert_eq!(usd(1234.5), "$1,234.50");
        assert_eq!(usd(-12.0), "-$12.00");
        assert_eq!(signed_usd(81.48), "+$81.48");
        assert_eq!(signed_usd(-0.001), "+$0.00");
        assert_eq!(signed_usd(-12.0), "-$12.00");
        assert_eq!(percent(0.2449), "24%");
        assert_eq!(bytes(412_000_000_000), "412 GB");
        assert_eq!(bytes(1_234_567), "1.2 MB");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(cores(80_000), "80c");
        assert_eq!(cores(2_500), "2.5c");
        assert_eq!(gib(327_680), "320G");
        assert_eq!(gib(512), "0.5G");
        assert_eq!(duration(4 * 86400 + 2 * 3600 + 59), "4d 02h");
        assert_eq!(duration(3 * 3600 + 12 * 60), "3h 12m");
        assert_eq!(duration(42), "42s");
        assert_eq!(ago(120), "t-2m");
        assert_eq!(ago(3 * 3600 + 5), "t-3h");
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_709_210_096), "2024-02-29 12:34:56");
        assert_eq!(amount(18_420.4), "18,420");
        assert_eq!(amount(0.46), "0.5");
    }

    #[test]
    fn the_policy_allows_exactly_the_page_stylesheet() {
        let csp = content_security_policy();
        assert!(csp.contains("script-src 'none'"));
        assert!(csp.contains("default-src 'none'"));
        assert!(!csp.contains("unsafe"));
        let hash = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(STYLE.as_bytes()));
        assert!(csp.contains(&format!("'sha256-{hash}'")));
    }
}
