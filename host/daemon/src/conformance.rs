//! A conformance run for a backend component: does it keep the contract?
//!
//! `compute-bridge components test FILE.wasm --config FILE` loads the
//! component the way `run` would (the config grants its capabilities and
//! points it at real or fake peers) and checks, in order:
//!
//! 1. `capabilities` is well formed;
//! 2. `can-satisfy` agrees with those capabilities (too big, unknown region,
//!    TDX it does not have → no; a small grant in its first region → yes);
//! 3. errors have the right kinds: an impossible grant is `no-capacity` or
//!    `rejected`, a garbage instance handle is a backend error, not a trap;
//! 4. the lifecycle: provision → status → terminate → terminate again
//!    (idempotent) → status is `gone` or `exited`;
//! 5. no call ran into its deadline.
//!
//! Each check is reported with pass or fail and the evidence.

use std::time::{Duration, Instant};

use compute_bridge_contract::backend::{
    Backend, BackendError, ErrorKind, GrantSpec, Instance, InstanceState, Offer, TdxRequirement,
    Workload,
};

/// One check's outcome.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Passed?
    pub passed: bool,
    /// What was seen.
    pub detail: String,
}

/// The whole run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Checks in order.
    pub checks: Vec<Check>,
}

impl Report {
    fn push(&mut self, name: &str, passed: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.to_string(),
            passed,
            detail: detail.into(),
        });
    }

    /// True if every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The report as text, one line per check.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(&format!(
                "{} {}: {}\n",
                if c.passed { "PASS" } else { "FAIL" },
                c.name,
                c.detail
            ));
        }
        let failed = self.checks.iter().filter(|c| !c.passed).count();
        out.push_str(&format!(
            "{}: {} checks, {} failed\n",
            if failed == 0 {
                "conformant"
            } else {
                "NOT conformant"
            },
            self.checks.len(),
            failed
        ));
        out
    }
}

/// Options for a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The backend's per-call deadline (a call reaching it fails the run).
    pub deadline: Duration,
    /// How long to wait for a provisioned instance to leave `starting`.
    pub start_timeout: Duration,
    /// Workload key to authorise.
    pub workload: Workload,
}

/// A workload whose key nobody holds (the conformance run never logs in).
pub fn sample_workload() -> Workload {
    Workload {
        ssh_user: "cb-conformance".into(),
        ssh_public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMfWNfIhgmoaenNotBFbe0jkD4fJVVSK2nspLRL5Irvc conformance".into(),
    }
}

fn grant(id: &str, cpu: u32, ram: u32, region: Option<String>, tdx: TdxRequirement) -> GrantSpec {
    GrantSpec {
        request_id: id.to_string(),
        cpu_millicores: cpu,
        ram_mib: ram,
        region,
        tdx,
        image: "registry.example/conformance@sha256:0000000000000000000000000000000000000000000000000000000000000000".into(),
        valid_to: compute_bridge_contract::clock::now_unix() + 600,
    }
}

fn is_deadline(e: &BackendError) -> bool {
    matches!(e, BackendError::Internal(m) if m.contains("deadline"))
}

fn is_trap(e: &BackendError) -> bool {
    matches!(e, BackendError::Internal(m) if m.contains("trapped"))
}

/// Run every check against `backend`.
pub async fn run(backend: &dyn Backend, opts: &Options) -> Report {
    let mut r = Report::default();
    let mut slowest = Duration::ZERO;
    let mut timed = |d: Duration| slowest = slowest.max(d);

    // 1. capabilities
    let t = Instant::now();
    let caps = backend.capabilities().await;
    timed(t.elapsed());
    let caps: Offer = match caps {
        Ok(c) => {
            let mut problems = Vec::new();
            if c.regions.is_empty() {
                problems.push("no regions");
            }
            if c.regions.iter().any(|r| r.trim().is_empty()) {
                problems.push("an empty region name");
            }
            if c.max_cpu_millicores == 0 || c.max_ram_mib == 0 {
                problems.push("zero capacity");
            }
            r.push(
                "capabilities are well formed",
                problems.is_empty(),
                if problems.is_empty() {
                    format!(
                        "regions [{}], tdx {}, {}m / {} MiB",
                        c.regions.join(", "),
                        c.tdx_capable,
                        c.max_cpu_millicores,
                        c.max_ram_mib
                    )
                } else {
                    problems.join(", ")
                },
            );
            c
        }
        Err(e) => {
            r.push(
                "capabilities are well formed",
                false,
                format!("call failed: {e}"),
            );
            return r;
        }
    };
    let region = caps.regions.first().cloned();

    // 2. can-satisfy agrees with capabilities
    let small = grant(
        "conformance-small",
        100,
        64,
        region.clone(),
        TdxRequirement::None,
    );
    let cases = [
        ("a small grant in its first region", small.clone(), true),
        (
            "a grant larger than its capacity",
            grant(
                "conformance-huge",
                caps.max_cpu_millicores.saturating_add(1000),
                caps.max_ram_mib.saturating_add(1024),
                region.clone(),
                TdxRequirement::None,
            ),
            false,
        ),
        (
            "a grant for a region it does not list",
            grant(
                "conformance-region",
                100,
                64,
                Some("no-such-region-conformance".into()),
                TdxRequirement::None,
            ),
            false,
        ),
    ];
    for (what, g, expected) in cases {
        let t = Instant::now();
        let got = backend.can_satisfy(&g).await;
        timed(t.elapsed());
        r.push(
            &format!("can-satisfy: {what}"),
            got == expected,
            format!("answered {got}, expected {expected}"),
        );
    }
    if !caps.tdx_capable {
        let g = grant(
            "conformance-tdx",
            100,
            64,
            region.clone(),
            TdxRequirement::Required,
        );
        let got = backend.can_satisfy(&g).await;
        r.push(
            "can-satisfy: TDX required of a backend without TDX",
            !got,
            format!("answered {got}, expected false"),
        );
    }

    // 3. error kinds
    let huge = grant(
        "conformance-impossible",
        caps.max_cpu_millicores.saturating_add(1000),
        caps.max_ram_mib.saturating_add(1024),
        region.clone(),
        TdxRequirement::None,
    );
    let t = Instant::now();
    let res = backend.provision(&huge, &opts.workload).await;
    timed(t.elapsed());
    match res {
        Err(e) if matches!(e.kind(), ErrorKind::NoCapacity | ErrorKind::Rejected) => r.push(
            "an impossible grant is refused with no-capacity or rejected",
            true,
            e.to_string(),
        ),
        Err(e) => r.push(
            "an impossible grant is refused with no-capacity or rejected",
            false,
            format!("got {} ({e})", e.kind()),
        ),
        Ok(i) => {
            r.push(
                "an impossible grant is refused with no-capacity or rejected",
                false,
                format!("it provisioned {}; terminating it", i.instance_id),
            );
            let _ = backend.terminate(&i).await;
        }
    }
    let garbage = Instance {
        instance_id: "conformance-no-such-instance".into(),
        region: region.clone().unwrap_or_default(),
        public_host: String::new(),
        ssh_port: 0,
        user: String::new(),
        host_key: String::new(),
        handle: "\u{0}not a handle{".into(),
    };
    let t = Instant::now();
    let res = backend.status(&garbage).await;
    timed(t.elapsed());
    r.push(
        "a garbage instance handle is an error or gone, not a trap",
        match &res {
            Ok(InstanceState::Gone) => true,
            Ok(_) => false,
            Err(e) => !is_trap(e) && !is_deadline(e),
        },
        format!("{res:?}"),
    );

    // 4. lifecycle
    let t = Instant::now();
    let provisioned = backend.provision(&small, &opts.workload).await;
    timed(t.elapsed());
    match provisioned {
        Err(e) => r.push("provision a small grant", false, e.to_string()),
        Ok(instance) => {
            r.push(
                "provision a small grant",
                !instance.instance_id.is_empty() && !instance.user.is_empty(),
                format!(
                    "instance {} in {} for user {}",
                    instance.instance_id, instance.region, instance.user
                ),
            );
            let started = Instant::now();
            let state = loop {
                let t = Instant::now();
                let s = backend.status(&instance).await;
                timed(t.elapsed());
                match s {
                    Ok(InstanceState::Starting) if started.elapsed() < opts.start_timeout => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    other => break other,
                }
            };
            r.push(
                "status of the new instance",
                matches!(
                    state,
                    Ok(InstanceState::Running | InstanceState::Starting | InstanceState::Exited(_))
                ),
                format!("{state:?}"),
            );
            let t = Instant::now();
            let first = backend.terminate(&instance).await;
            timed(t.elapsed());
            r.push("terminate", first.is_ok(), format!("{first:?}"));
            let t = Instant::now();
            let second = backend.terminate(&instance).await;
            timed(t.elapsed());
            r.push(
                "terminate again is a no-op",
                second.is_ok(),
                format!("{second:?}"),
            );
            let after = backend.status(&instance).await;
            r.push(
                "status after terminate is gone or exited",
                matches!(after, Ok(InstanceState::Gone | InstanceState::Exited(_))),
                format!("{after:?}"),
            );
        }
    }

    // 5. deadlines
    r.push(
        "no call reached its deadline",
        slowest < opts.deadline,
        format!(
            "slowest call {:.2}s of {:.0}s allowed",
            slowest.as_secs_f64(),
            opts.deadline.as_secs_f64()
        ),
    );
    r
}
