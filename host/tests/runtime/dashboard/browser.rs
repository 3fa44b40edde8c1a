//! Headless Chromium loads the page the dashboard serves for a real fleet.
//!
//! The provider loop is not on this branch, so grants are placed through
//! the fleet here and their events fed through the recording API, with the
//! dashboard's server running in-process. tests/e2e/dashboard.rs loads the
//! page from a real `compute-bridge run`; the fed-grants version of that
//! test lands with the provider loop.

use compute_bridge_contract::backend::Usage;
use compute_bridge_contract::events::{Event, EventSink};
use compute_bridge_daemon::dashboard::DashboardServer;
use compute_bridge_testkit::chromium;

use super::{Rig, grant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_the_fed_grants_and_cost_and_runs_no_script() {
    let state = tempfile::tempdir().unwrap();
    // A backend that reports a region holding markup: it must show as text.
    let hostile_region = "<script>alert('region')</script>";
    let rig = Rig::new(state.path(), &["us-east-1", hostile_region], true).await;

    // Five grants placed (each fails over from gcp to aws), one of them in
    // the hostile region; two complete with known usage.
    let mut placed = Vec::new();
    for i in 0..5 {
        let region = (i == 4).then_some(hostile_region);
        let g = grant(
            &format!("req-{i}"),
            "registry.example/app@sha256:00",
            region,
        );
        placed.push(
            rig.place(&g, &crate::support::workload())
                .await
                .expect("placed"),
        );
    }
    // 100 core-h and 200 GiB-h each at aws's $0.05/core-h and $0.01/GiB-h:
    // $7.00 each, $14.00 for the two.
    let usage = Usage {
        cpu_core_seconds: 100 * 3600,
        ram_mib_seconds: 200 * 1024 * 3600,
        net_bytes: 2_000_000_000,
    };
    for p in placed.drain(..2) {
        rig.complete(p, usage).await;
    }
    rig.dashboard.record(Event::RevenueSettled { usd: 20.5 });
    rig.dashboard.record(Event::SubscriberJoined);
    rig.dashboard.record(Event::SubscriberJoined);
    rig.dashboard
        .set_provider_id("5f3a9c0e7b214d6a8e90c1d2b3a4f5e6");
    rig.dashboard.sample_capacity();
    rig.clock.advance(60);
    rig.dashboard.sample_capacity();
    rig.clock.advance(60);

    let server = DashboardServer::start(rig.dashboard.clone(), "127.0.0.1", 0)
        .await
        .unwrap();
    let url = server.url();
    let shot = chromium::artifact("dashboard.png");
    let (dom, shot) = tokio::task::spawn_blocking(move || {
        let dom = chromium::dump_dom(&url);
        chromium::screenshot(&url, &shot);
        (dom, shot)
    })
    .await
    .unwrap();
    server.stop().await;

    assert!(dom.contains("compute-bridge dashboard"), "{dom}");
    assert!(
        !dom.to_ascii_lowercase().contains("<script"),
        "the rendered page has a script element:\n{dom}"
    );
    // The hostile region arrived and is shown as text.
    assert!(
        dom.contains("&lt;script&gt;alert('region')&lt;/script&gt;"),
        "{dom}"
    );
    // The text from `prefix` to the end of its line, without the tags
    // around a block's first and last lines.
    let line = |prefix: &str| -> String {
        dom.lines()
            .find_map(|l| {
                l.find(prefix).map(|i| {
                    let rest = &l[i..];
                    rest[..rest.find('<').unwrap_or(rest.len())].to_string()
                })
            })
            .unwrap_or_else(|| panic!("no line with {prefix:?} in:\n{dom}"))
    };
    assert!(
        line("Active grants:").trim_end().ends_with("3 / 8"),
        "{dom}"
    );
    assert!(
        line("Total grants served (lifetime):")
            .trim_end()
            .ends_with(" 5"),
        "{dom}"
    );
    assert!(line("Subscribers").trim_end().ends_with(" 2"), "{dom}");
    let cost = line("Estimated cost:");
    assert!(cost.contains("$14.00"), "{cost}");
    assert!(
        cost.contains("aws $14.00") && cost.contains("gcp $0.00"),
        "{cost}"
    );
    assert!(line("Settled revenue:").contains("$20.50"), "{dom}");
    assert!(
        line("Net:").contains("+$6.50") && line("Net:").contains("32% margin"),
        "{dom}"
    );
    assert!(dom.contains("azure       (disabled)"), "{dom}");
    assert!(line("Provider:").contains("5f3a9c0e7b21 "), "{dom}");
    // 1.5 of 112 declared cores reserved: one minute sampled above, the
    // next by the server's ticker when it starts (the clock is manual).
    assert!(line("Idle:").contains("99%"), "{dom}");
    assert!(line("Observed:").contains("2m 00s"), "{dom}");
    assert!(line("[t-2m]").contains("Subscriber joined"), "{dom}");
    assert!(
        dom.contains("http-equiv=\"refresh\" content=\"7\""),
        "reloads every capacity_refresh_sec: {dom}"
    );
    assert!(shot.exists());
}
