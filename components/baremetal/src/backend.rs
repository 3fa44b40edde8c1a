//! The backend's calls over an abstract [`Host`]: the wasm glue plugs in
//! the SDK's `ssh` and `log`; tests plug in a fake.

use crate::Error;
use crate::config::Config;
use crate::grant::{Grant, GrantId, Handle, check_request_id};
use crate::keys::parse_public_key;
use crate::placement;
use crate::script::{self, EXIT_BUSY, EXIT_FULL, EXIT_UNSUPPORTED, ProvisionArgs, Target};

/// Log levels the backend uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Routine detail.
    Debug,
    /// What an operator wants to see.
    Info,
    /// Something the operator should look at.
    Warn,
}

/// A finished command.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Exit status.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Why a command did not run (the `ssh` capability's errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecError {
    /// The label has no SSH section.
    UnknownHost,
    /// The host presented another key than the pinned one.
    HostKeyMismatch,
    /// Could not connect, or the connection dropped.
    Unreachable(String),
    /// The host refused the operator's key.
    Auth(String),
    /// The command did not finish in time.
    Timeout,
}

/// What the backend needs from the bridge.
pub trait Host {
    /// Labels of the SSH hosts this backend was granted.
    fn labels(&self) -> Vec<String>;
    /// Run [`script::COMMAND`] on `label` with `script` as its input.
    fn exec(&self, label: &str, script: &str) -> Result<Output, ExecError>;
    /// Write to the operator's log.
    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]);
    /// Wait `secs` seconds (between attempts at a cleanup).
    fn pause(&self, secs: u64) {
        let _ = secs;
    }
}

/// A provisioned workload (the WIT `instance`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    /// The grant id.
    pub instance_id: String,
    /// The host's region.
    pub region: String,
    /// Where the requester connects.
    pub public_host: String,
    /// SSH port there.
    pub ssh_port: u16,
    /// Login name.
    pub user: String,
    /// The host's SSH host key, or empty if unknown.
    pub host_key: String,
    /// Encoded [`Handle`].
    pub handle: String,
}

/// Where a workload is (the WIT `instance-state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not yet running (a container being pulled).
    Starting,
    /// Running.
    Running,
    /// Finished with this code.
    Exited(i32),
    /// No longer on the host.
    Gone,
}

/// What a workload used (the WIT `resource-usage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// CPU, core-seconds (rounded to the nearest).
    pub cpu_core_seconds: u64,
    /// Memory, MiB-seconds.
    pub ram_mib_seconds: u64,
    /// Network bytes in and out.
    pub net_bytes: u64,
}

/// The backend for one configuration, bridge and host.
pub struct Baremetal<'h, H: Host> {
    cfg: Config,
    provider: String,
    backend: String,
    host: &'h H,
}

impl<'h, H: Host> Baremetal<'h, H> {
    /// A backend over `host`. `provider` and `backend` name this bridge and
    /// this backend (they scope grant ids and listings).
    pub fn new(cfg: Config, provider: &str, backend: &str, host: &'h H) -> Self {
        Self {
            cfg,
            provider: provider.to_string(),
            backend: backend.to_string(),
            host,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Check that every configured host has an SSH section.
    pub fn check(&self) -> Result<(), Error> {
        self.cfg.check_labels(&self.host.labels())
    }

    /// Could some host ever take `grant`? No host is contacted.
    pub fn can_satisfy(&self, grant: &Grant<'_>) -> bool {
        self.check().is_ok() && !placement::candidates(&self.cfg, grant).is_empty()
    }

    fn target<'a>(&'a self, id: &'a GrantId) -> Target<'a> {
        Target {
            state_dir: &self.cfg.state_dir,
            id,
            tick: self.cfg.sample_interval_sec,
        }
    }

    /// Place `grant` on the first host with room and authorise `key`.
    pub fn provision(&self, grant: &Grant<'_>, key: &str) -> Result<Provisioned, Error> {
        self.check()?;
        check_request_id(grant.request_id)?;
        let key = parse_public_key(key).ok_or_else(|| {
            Error::Rejected("the workload key is not an OpenSSH public key".into())
        })?;
        let candidates = placement::candidates(&self.cfg, grant);
        if candidates.is_empty() {
            return Err(Error::Rejected(placement::why_not(&self.cfg, grant)));
        }
        let id = GrantId::new(&self.provider, &self.backend, grant.request_id);
        let mut failures: Vec<Error> = Vec::new();
        for h in candidates {
            let script = script::provision(&ProvisionArgs {
                target: self.target(&id),
                host: h,
                grant,
                key: &key,
                provider: &self.provider,
                backend: &self.backend,
            });
            let out = match self.host.exec(&h.label, &script) {
                Err(e @ (ExecError::Unreachable(_) | ExecError::Timeout)) => {
                    // The command may have run, in part or whole: what it
                    // made must not outlive this failure.
                    let e = self.abandon(&h.label, &id, exec_error(&h.label, e));
                    self.host.log(
                        Level::Warn,
                        "connection to the host lost during provision",
                        &[
                            ("host", &h.label),
                            ("grant", id.as_str()),
                            ("why", e.message()),
                        ],
                    );
                    failures.push(e);
                    continue;
                }
                other => match self.checked(&h.label, "provision", other) {
                    Ok(out) => out,
                    Err(e) => {
                        let level = match e {
                            Error::NoCapacity(_) => Level::Info,
                            _ => Level::Warn,
                        };
                        self.host.log(
                            level,
                            "host did not take the grant",
                            &[
                                ("host", &h.label),
                                ("grant", id.as_str()),
                                ("why", e.message()),
                            ],
                        );
                        failures.push(e);
                        continue;
                    }
                },
            };
            let kv = script::parse_kv(&out.stdout);
            let (Some(user), Some(limits)) = (kv.get("user"), kv.get("limits")) else {
                failures.push(Error::Internal(format!(
                    "host {}: provision printed no user or limits: {}",
                    h.label,
                    out.stdout.trim()
                )));
                continue;
            };
            self.report_placement(h, &id, user, limits, &kv);
            // A VM is reached on its own forwarded port with its own host
            // key (none for a TD, which makes its own), not the host's.
            let vm = h.runtime == crate::config::RuntimeKind::Vm;
            let host_key = if vm {
                kv.get("host_key").map(String::as_str)
            } else {
                h.public_host_key
                    .as_deref()
                    .or(kv.get("host_key").map(String::as_str))
            }
            .and_then(parse_public_key)
            .unwrap_or_default();
            let ssh_port = if vm {
                match kv.get("port").and_then(|p| p.parse().ok()) {
                    Some(p) => p,
                    None => {
                        failures.push(Error::Internal(format!(
                            "host {}: provision printed no VM port: {}",
                            h.label,
                            out.stdout.trim()
                        )));
                        continue;
                    }
                }
            } else {
                h.public_port
            };
            let handle = Handle {
                label: h.label.clone(),
                id: id.clone(),
                runtime: h.runtime.into(),
                limits: limits.clone(),
            };
            return Ok(Provisioned {
                instance_id: id.to_string(),
                region: h.region.clone(),
                public_host: h.public_host.clone(),
                ssh_port,
                user: user.clone(),
                host_key,
                handle: handle.encode(),
            });
        }
        Err(failures
            .into_iter()
            .reduce(|a, b| {
                let (keep, other) = if b.hope() > a.hope() { (b, a) } else { (a, b) };
                let msg = format!("{}; {}", keep.message(), other.message());
                with_message(keep, msg)
            })
            .expect("at least one candidate"))
    }

    fn report_placement(
        &self,
        h: &crate::config::HostConfig,
        id: &GrantId,
        user: &str,
        limits: &str,
        kv: &std::collections::BTreeMap<String, String>,
    ) {
        self.host.log(
            Level::Info,
            "workload placed",
            &[
                ("host", &h.label),
                ("grant", id.as_str()),
                ("user", user),
                ("limits", limits),
                ("means", describe_limits(limits)),
            ],
        );
        if kv.get("root").is_some_and(|r| r == "0") {
            self.host.log(
                Level::Warn,
                "the SSH user on this host is not root: the workload runs as that user itself, \
                 without a per-grant account, and only prlimit limits apply",
                &[("host", &h.label), ("user", user)],
            );
        }
        let cpus: u64 = kv
            .get("host_cpus")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let ram: u64 = kv
            .get("host_ram_mib")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if cpus > 0 && u64::from(h.cpu_millicores) > cpus * 1000
            || ram > 0 && u64::from(h.ram_mib) > ram
        {
            self.host.log(
                Level::Warn,
                "the config offers more than this host has",
                &[
                    ("host", &h.label),
                    (
                        "offered",
                        &format!("{}m/{}MiB", h.cpu_millicores, h.ram_mib),
                    ),
                    ("host_has", &format!("{}m/{}MiB", cpus * 1000, ram)),
                ],
            );
        }
    }

    fn located(&self, handle: &str) -> Result<Handle, Error> {
        let h = Handle::decode(handle)?;
        if self.cfg.host(&h.label).is_none() {
            return Err(Error::Config(format!(
                "instance {} is on host {:?}, which is no longer in [backends.config] hosts",
                h.id, h.label
            )));
        }
        Ok(h)
    }

    /// Where the workload is, from the host.
    pub fn status(&self, handle: &str) -> Result<State, Error> {
        let h = self.located(handle)?;
        let out = self.run(&h.label, "status", &script::status(&self.target(&h.id)))?;
        let kv = script::parse_kv(&out.stdout);
        let state = match kv.get("state").map(String::as_str) {
            Some("running") => State::Running,
            Some("starting") => State::Starting,
            Some("gone") => State::Gone,
            Some("exited") => {
                State::Exited(kv.get("code").and_then(|c| c.parse().ok()).unwrap_or(-1))
            }
            _ => {
                return Err(Error::Internal(format!(
                    "host {}: status printed no state: {}",
                    h.label,
                    out.stdout.trim()
                )));
            }
        };
        self.host.log(
            Level::Debug,
            "status",
            &[
                ("host", &h.label),
                ("grant", h.id.as_str()),
                ("state", &format!("{state:?}")),
                ("limits", kv.get("limits").map_or("", String::as_str)),
            ],
        );
        Ok(state)
    }

    /// What the workload used so far (or in total, once terminated).
    pub fn usage(&self, handle: &str) -> Result<Usage, Error> {
        let h = self.located(handle)?;
        let out = self.run(&h.label, "usage", &script::usage(&self.target(&h.id)))?;
        let kv = script::parse_kv(&out.stdout);
        if kv.get("state").is_some_and(|s| s == "unknown") {
            return Err(Error::Rejected(format!(
                "host {} has no record of {} (never provisioned, or terminated more than 7 days ago)",
                h.label, h.id
            )));
        }
        let num = |k: &str| -> Result<u64, Error> {
            kv.get(k).and_then(|v| v.parse().ok()).ok_or_else(|| {
                Error::Internal(format!(
                    "host {}: usage printed no {k}: {}",
                    h.label,
                    out.stdout.trim()
                ))
            })
        };
        Ok(Usage {
            cpu_core_seconds: (num("cpu_usec")? + 500_000) / 1_000_000,
            ram_mib_seconds: num("ram_kib_s")? / 1024,
            net_bytes: num("net_bytes")?,
        })
    }

    /// Remove the workload, its account and its limits; its final usage
    /// stays on the host. Success if it is already gone.
    pub fn terminate(&self, handle: &str) -> Result<(), Error> {
        let h = self.located(handle)?;
        let out = self.run(
            &h.label,
            "terminate",
            &script::terminate(&self.target(&h.id)),
        )?;
        let kv = script::parse_kv(&out.stdout);
        match kv.get("state").map(String::as_str) {
            Some("terminated") => {
                self.host.log(
                    Level::Info,
                    "workload terminated",
                    &[("host", &h.label), ("grant", h.id.as_str())],
                );
                Ok(())
            }
            Some("gone") => Ok(()),
            _ => Err(Error::Internal(format!(
                "host {}: terminate printed no state: {}",
                h.label,
                out.stdout.trim()
            ))),
        }
    }

    /// This bridge's grants on every host, for reconciliation. Any host
    /// that cannot be asked makes the whole list fail: a partial list would
    /// read as instances gone.
    pub fn list(&self) -> Result<Vec<Provisioned>, Error> {
        self.check()?;
        let mut found = Vec::new();
        for h in &self.cfg.hosts {
            let out = self.run(
                &h.label,
                "list",
                &script::list(&self.cfg.state_dir, &self.provider, &self.backend),
            )?;
            for line in out.stdout.lines() {
                let kv = script::parse_list_line(line);
                let (Some(id), Some(user), Some(limits), Some(runtime)) = (
                    kv.get("grant"),
                    kv.get("user"),
                    kv.get("limits"),
                    kv.get("runtime"),
                ) else {
                    continue;
                };
                let Ok(id) = GrantId::try_from(id.clone()) else {
                    continue;
                };
                let (runtime, ssh_port) = match runtime.as_str() {
                    "podman" => (crate::grant::HandleRuntime::Podman, h.public_port),
                    "vm" => (
                        crate::grant::HandleRuntime::Vm,
                        kv.get("port").and_then(|p| p.parse().ok()).unwrap_or(0),
                    ),
                    _ => (crate::grant::HandleRuntime::Process, h.public_port),
                };
                let handle = Handle {
                    label: h.label.clone(),
                    id: id.clone(),
                    runtime,
                    limits: limits.clone(),
                };
                found.push(Provisioned {
                    instance_id: id.to_string(),
                    region: h.region.clone(),
                    public_host: h.public_host.clone(),
                    ssh_port,
                    user: user.clone(),
                    // A VM's own key is in its provision answer only.
                    host_key: h
                        .public_host_key
                        .as_deref()
                        .filter(|_| runtime != crate::grant::HandleRuntime::Vm)
                        .and_then(parse_public_key)
                        .unwrap_or_default(),
                    handle: handle.encode(),
                });
            }
        }
        Ok(found)
    }

    /// After a provision whose outcome is unknown (the connection dropped
    /// or timed out mid-command): terminate the grant on `label`, which
    /// removes a whole grant or the part of one a dead provision left, so
    /// a failover leaves nothing of it here. The host's lock makes this
    /// wait for a provision still running there. The error stays
    /// transient; its message says whether the cleanup happened.
    fn abandon(&self, label: &str, id: &GrantId, cause: Error) -> Error {
        let cleanup = script::terminate(&self.target(id));
        let mut outcome = self.run(label, "terminate", &cleanup);
        if matches!(outcome, Err(Error::Transient(_))) {
            // A pooled connection that died with the command is dropped on
            // the next try.
            self.host.pause(1);
            outcome = self.run(label, "terminate", &cleanup);
        }
        let what = match outcome {
            Ok(_) => format!("removed what it made of grant {id}"),
            Err(e) => format!(
                "could not remove what it may have made of grant {id} ({}); the next provision \
                 on this host removes a half-made grant, and list-instances reports a whole one \
                 to the orphan sweep",
                e.message()
            ),
        };
        Error::Transient(format!("{}; {what}", cause.message()))
    }

    /// Run one operation's script on `label` and map every failure.
    fn run(&self, label: &str, op: &str, script: &str) -> Result<Output, Error> {
        self.checked(label, op, self.host.exec(label, script))
    }

    /// Map a command's result: transport failures and exit statuses.
    fn checked(
        &self,
        label: &str,
        op: &str,
        result: Result<Output, ExecError>,
    ) -> Result<Output, Error> {
        let out = result.map_err(|e| exec_error(label, e))?;
        let err = || {
            let e = out.stderr.trim();
            if e.is_empty() {
                format!("exit status {}", out.code)
            } else {
                e.chars().take(600).collect()
            }
        };
        match out.code {
            0 => Ok(out),
            EXIT_FULL => Err(Error::NoCapacity(format!("host {label}: {}", err()))),
            EXIT_BUSY => Err(Error::Transient(format!("host {label}: {}", err()))),
            EXIT_UNSUPPORTED => Err(Error::Config(format!(
                "host {label} ([backends.config] hosts, label {label:?}): {}",
                err()
            ))),
            _ => Err(Error::Internal(format!(
                "host {label}: {op} failed: {}",
                err()
            ))),
        }
    }
}

/// A sentence for the limit mechanism a host reported.
pub fn describe_limits(limits: &str) -> &'static str {
    match limits {
        "systemd" => {
            "systemd unit cb-<id>.service (CPUQuota, MemoryMax, TasksMax); CPU and memory measured from its cgroup"
        }
        "cgroup2" => {
            "cgroup v2 per grant (cpu.max, memory.max, pids.max); CPU and memory measured from it"
        }
        "cgroup1" => {
            "cgroup v1 per grant (CFS quota, memory limit, pids limit); CPU and memory measured from cpuacct and memory"
        }
        "prlimit" => {
            "prlimit per login (address space, process count); CPU not capped, CPU and memory sampled"
        }
        "podman" => {
            "podman container (--cpus, --memory, --pids-limit); CPU, memory and network measured from the container"
        }
        _ => "unknown",
    }
}

fn with_message(e: Error, msg: String) -> Error {
    match e {
        Error::NoCapacity(_) => Error::NoCapacity(msg),
        Error::Transient(_) => Error::Transient(msg),
        Error::Rejected(_) => Error::Rejected(msg),
        Error::Config(_) => Error::Config(msg),
        Error::Internal(_) => Error::Internal(msg),
    }
}

fn exec_error(label: &str, e: ExecError) -> Error {
    match e {
        ExecError::UnknownHost => Error::Config(format!(
            "host {label}: no [backends.ssh.hosts.{label}] section for this backend"
        )),
        ExecError::HostKeyMismatch => Error::Config(format!(
            "host {label}: its SSH host key does not match the pinned \
             [backends.ssh.hosts.{label}] host_key; refusing to connect"
        )),
        ExecError::Auth(m) => Error::Config(format!(
            "host {label}: the host refused the configured key for \
             [backends.ssh.hosts.{label}] user: {m}"
        )),
        ExecError::Unreachable(m) => Error::Transient(format!("host {label}: unreachable: {m}")),
        ExecError::Timeout => Error::Transient(format!("host {label}: the command timed out")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A host that answers each label from a script of canned results and
    /// records what ran where.
    struct Fake {
        answers: Vec<(&'static str, Result<Output, ExecError>)>,
        ran: RefCell<Vec<(String, String)>>,
        logs: RefCell<Vec<String>>,
    }

    impl Host for Fake {
        fn labels(&self) -> Vec<String> {
            vec!["a".into(), "b".into()]
        }
        fn exec(&self, label: &str, script: &str) -> Result<Output, ExecError> {
            self.ran.borrow_mut().push((label.into(), script.into()));
            self.answers
                .iter()
                .find(|(l, _)| *l == label)
                .map(|(_, r)| r.clone())
                .unwrap_or(Err(ExecError::UnknownHost))
        }
        fn log(&self, _: Level, message: &str, fields: &[(&str, &str)]) {
            self.logs.borrow_mut().push(format!("{message} {fields:?}"));
        }
    }

    fn ok(stdout: &str) -> Result<Output, ExecError> {
        Ok(Output {
            code: 0,
            stdout: stdout.into(),
            stderr: String::new(),
        })
    }

    fn exit(code: i32, stderr: &str) -> Result<Output, ExecError> {
        Ok(Output {
            code,
            stdout: String::new(),
            stderr: stderr.into(),
        })
    }

    fn cfg() -> Config {
        Config::from_json(
            r#"{"hosts": [
                {"label": "a", "region": "eu", "cpu_millicores": 2000, "ram_mib": 2048, "public_host": "a.example", "public_port": 2222},
                {"label": "b", "region": "eu", "cpu_millicores": 2000, "ram_mib": 2048, "public_host": "b.example"}
            ]}"#,
        )
        .unwrap()
    }

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ test";

    fn grant() -> Grant<'static> {
        Grant {
            request_id: "req-1",
            cpu_millicores: 500,
            ram_mib: 256,
            region: Some("eu"),
            tdx_required: false,
            image: "",
            valid_to: 0,
        }
    }

    fn fake(answers: Vec<(&'static str, Result<Output, ExecError>)>) -> Fake {
        Fake {
            answers,
            ran: RefCell::default(),
            logs: RefCell::default(),
        }
    }

    #[test]
    fn a_full_first_host_passes_the_grant_to_the_next() {
        let f = fake(vec![
            ("a", exit(EXIT_FULL, "host full: 2000 of 2000 millicores")),
            (
                "b",
                ok(
                    "user=cb-x\nlimits=cgroup1\nhost_key=ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ\n",
                ),
            ),
        ]);
        let b = Baremetal::new(cfg(), "prov", "baremetal", &f);
        let p = b.provision(&grant(), KEY).unwrap();
        assert_eq!(p.public_host, "b.example");
        assert_eq!(p.ssh_port, 22);
        assert!(p.host_key.starts_with("ssh-ed25519 "));
        let h = Handle::decode(&p.handle).unwrap();
        assert_eq!((h.label.as_str(), h.limits.as_str()), ("b", "cgroup1"));
        let ran = f.ran.borrow();
        assert_eq!(
            ran.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        // The key went out without its comment.
        assert!(ran[1].1.contains("CB_KEY='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ'\n"));
    }

    #[test]
    fn errors_map_by_kind_and_the_most_hopeful_wins() {
        let both = |a, b| {
            let f = fake(vec![("a", a), ("b", b)]);
            Baremetal::new(cfg(), "p", "n", &f)
                .provision(&grant(), KEY)
                .unwrap_err()
        };
        assert!(matches!(
            both(exit(EXIT_FULL, "full"), exit(EXIT_FULL, "full")),
            Error::NoCapacity(_)
        ));
        assert!(matches!(
            both(
                exit(EXIT_FULL, "full"),
                Err(ExecError::Unreachable("refused".into()))
            ),
            Error::Transient(_)
        ));
        let e = both(
            Err(ExecError::HostKeyMismatch),
            Err(ExecError::HostKeyMismatch),
        );
        assert!(matches!(e, Error::Config(_)), "{e:?}");
        assert!(
            e.message().contains("[backends.ssh.hosts.a] host_key"),
            "{e:?}"
        );
        assert!(matches!(
            both(exit(EXIT_UNSUPPORTED, "no podman"), exit(1, "boom")),
            Error::Config(_)
        ));
        assert!(matches!(
            both(Err(ExecError::Timeout), exit(1, "boom")),
            Error::Transient(_)
        ));
    }

    #[test]
    fn a_bad_key_or_region_is_rejected_before_any_host_is_asked() {
        let f = fake(vec![]);
        let b = Baremetal::new(cfg(), "p", "n", &f);
        assert!(matches!(
            b.provision(&grant(), "ssh-ed25519 AAAA\nssh-rsa BBBB"),
            Err(Error::Rejected(_))
        ));
        let mut g = grant();
        g.region = Some("us");
        assert!(!b.can_satisfy(&g));
        assert!(matches!(b.provision(&g, KEY), Err(Error::Rejected(_))));
        assert!(f.ran.borrow().is_empty());
    }

    #[test]
    fn status_usage_and_terminate_read_the_host() {
        let handle = Handle {
            label: "a".into(),
            id: GrantId::new("p", "n", "r"),
            runtime: crate::grant::HandleRuntime::Process,
            limits: "prlimit".into(),
        }
        .encode();
        let f = fake(vec![(
            "a",
            ok(
                "limits=prlimit\nstate=exited\ncode=3\ncpu_usec=2600000\nram_kib_s=2048000\nnet_bytes=7\n",
            ),
        )]);
        let b = Baremetal::new(cfg(), "p", "n", &f);
        assert_eq!(b.status(&handle).unwrap(), State::Exited(3));
        assert_eq!(
            b.usage(&handle).unwrap(),
            Usage {
                cpu_core_seconds: 3,
                ram_mib_seconds: 2000,
                net_bytes: 7
            }
        );
        assert!(b.terminate(&handle).is_err(), "no state=terminated printed");
        let f = fake(vec![("a", ok("state=gone\n"))]);
        let b = Baremetal::new(cfg(), "p", "n", &f);
        assert_eq!(b.status(&handle).unwrap(), State::Gone);
        assert!(b.terminate(&handle).is_ok());
        assert!(matches!(
            b.status(&handle.replace("\"a\"", "\"zz\"")),
            Err(Error::Config(_))
        ));
    }

    /// A host whose answers come from a queue per label, in order.
    struct Scripted {
        answers: RefCell<Vec<(&'static str, Result<Output, ExecError>)>>,
        ran: RefCell<Vec<(String, String)>>,
    }

    impl Host for Scripted {
        fn labels(&self) -> Vec<String> {
            vec!["a".into(), "b".into()]
        }
        fn exec(&self, label: &str, script: &str) -> Result<Output, ExecError> {
            self.ran.borrow_mut().push((label.into(), script.into()));
            let mut a = self.answers.borrow_mut();
            let i = a
                .iter()
                .position(|(l, _)| *l == label)
                .expect("an answer left");
            a.remove(i).1
        }
        fn log(&self, _: Level, _: &str, _: &[(&str, &str)]) {}
    }

    fn op(script: &str) -> &str {
        script.lines().last().unwrap_or_default()
    }

    #[test]
    fn a_connection_lost_mid_provision_removes_what_it_made_before_moving_on() {
        let dropped = || {
            Err(ExecError::Unreachable(
                "a: connection closed before the command finished".into(),
            ))
        };
        let h = Scripted {
            answers: RefCell::new(vec![
                ("a", dropped()),
                // The first cleanup meets the dead pooled connection.
                ("a", dropped()),
                ("a", ok("state=terminated\n")),
                ("b", ok("user=cb-x\nlimits=prlimit\n")),
            ]),
            ran: RefCell::default(),
        };
        let p = Baremetal::new(cfg(), "p", "n", &h)
            .provision(&grant(), KEY)
            .unwrap();
        assert_eq!(p.public_host, "b.example");
        let ran: Vec<(String, String)> = h
            .ran
            .borrow()
            .iter()
            .map(|(l, s)| (l.clone(), op(s).to_string()))
            .collect();
        let want = [
            ("a", "cb_provision"),
            ("a", "cb_terminate"),
            ("a", "cb_terminate"),
            ("b", "cb_provision"),
        ];
        assert_eq!(
            ran,
            want.map(|(l, o)| (l.to_string(), o.to_string())).to_vec()
        );
        // The cleanup is for the very grant the provision was making.
        let id = GrantId::new("p", "n", "req-1");
        assert!(h.ran.borrow()[1].1.contains(&format!("CB_ID='{id}'")));
    }

    #[test]
    fn a_cleanup_that_cannot_reach_the_host_says_what_will_clean_up() {
        let h = Scripted {
            answers: RefCell::new(vec![
                ("a", Err(ExecError::Timeout)),
                ("a", Err(ExecError::Unreachable("a: refused".into()))),
                ("a", Err(ExecError::Unreachable("a: refused".into()))),
                ("b", Err(ExecError::Unreachable("b: refused".into()))),
                ("b", Err(ExecError::Unreachable("b: refused".into()))),
                ("b", Err(ExecError::Unreachable("b: refused".into()))),
            ]),
            ran: RefCell::default(),
        };
        let e = Baremetal::new(cfg(), "p", "n", &h)
            .provision(&grant(), KEY)
            .unwrap_err();
        let Error::Transient(m) = &e else {
            panic!("{e:?}")
        };
        assert!(m.contains("could not remove what it may have made"), "{m}");
        assert!(m.contains("the next provision on this host"), "{m}");
    }

    #[test]
    fn a_missing_ssh_section_is_a_config_error() {
        struct OneLabel;
        impl Host for OneLabel {
            fn labels(&self) -> Vec<String> {
                vec!["a".into()]
            }
            fn exec(&self, _: &str, _: &str) -> Result<Output, ExecError> {
                unreachable!()
            }
            fn log(&self, _: Level, _: &str, _: &[(&str, &str)]) {}
        }
        let b = Baremetal::new(cfg(), "p", "n", &OneLabel);
        let e = b.check().unwrap_err();
        assert!(e.message().contains("[backends.ssh.hosts.b]"), "{e:?}");
        assert!(!b.can_satisfy(&grant()));
    }
}
