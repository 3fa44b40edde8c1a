//! The bare-metal backend: workloads on operator-owned hosts, reached over
//! the host's `ssh` capability by label.
//!
//! # What it does
//!
//! A grant goes to the first configured host (see [`config`]) that matches
//! its region and TDX requirement and has room. Room is read from the host
//! itself, under a lock there: each grant leaves a small record of what it
//! holds in the host's state directory, and placement sums them. The
//! component keeps nothing between calls; the instance handle carries only
//! the host label and the grant id.
//!
//! # Runtimes
//!
//! - **`process`**: a per-grant Unix account `cb-<12 hex>` whose
//!   `authorized_keys` holds the workload key with a forced command. The
//!   workload *is* the login environment: no image runs, and the grant's
//!   `image` is ignored. Each login enters the grant's limits:
//!   - `systemd` (systemd running, cgroup v2): a transient unit
//!     `cb-<id>.service` with `CPUQuota`, `MemoryMax`, `TasksMax` and
//!     `Delegate=yes`; its supervisor moves the account's processes into
//!     the unit's `workload` cgroup;
//!   - `cgroup2` / `cgroup1` (root, a writable hierarchy): a cgroup per
//!     grant with a CPU quota, a memory limit and a process limit; under
//!     v1 the login moves itself in at once, and the supervisor sweeps in
//!     anything that escaped (new logins start as children of sshd);
//!   - `prlimit` (otherwise, and always for a non-root SSH user): each
//!     login runs under `RLIMIT_AS` (the grant's memory, per process) and,
//!     as root, `RLIMIT_NPROC`. CPU is not capped.
//!
//!   The limit mechanism that applied is logged at provisioning, kept in
//!   the handle, and reported by the host with every status.
//!   When the SSH user is not root (the embedded default on a laptop), no
//!   account can be created: the workload runs as that user, through one
//!   marked line in its own `authorized_keys`, and the log says so.
//! - **`podman`** (root; podman, runc and sudo on the host): the grant's
//!   image, pinned by digest, runs as the container `cb-<id>` under runc
//!   (`systemd-run --unit cb-<id> … podman run …` where systemd runs,
//!   `podman run --detach` with podman's cgroupfs manager and the cgroup
//!   parent `compute-bridge/<id>` otherwise) with `--cpus`, `--memory`
//!   and `--pids-limit`, and open-file and process rlimits the host can
//!   grant. The requester logs in to the grant's
//!   account; its forced command is `sudo` of a root-owned script that
//!   `podman exec`s into that container (the account's sudoers rule allows
//!   that script only, without arguments).
//! - **`vm`** (root; QEMU and perl on the host): each grant is a QEMU
//!   guest booted from the host's configured kernel and initramfs
//!   (`[hosts.vm]`; `scripts/guest/build-guest.sh` builds one), `-smp` and
//!   `-m` from the grant, `accel` `tcg` or `kvm` as configured (KVM is
//!   never assumed). The grant's user, authorised key and (plain VMs) a
//!   per-grant SSH host key reach the guest through fw_cfg; SSH is
//!   forwarded from an ephemeral port on `vm.bind_address`, and the
//!   instance carries that port and that host key. QEMU runs as the
//!   grant's account (`-runas`, no host login) inside a cgroup with the
//!   grant's CPU quota and memory plus [`script::VM_OVERHEAD_MIB`]; CPU and
//!   memory are measured from it. The grant's image is not run: the guest
//!   has busybox and dropbear, no container runtime. Teardown stops QEMU
//!   (QMP `quit`, then SIGKILL) and removes the guest's files.
//!
//! # TDX-required grants
//!
//! A TDX-required grant runs only in a TD guest, never as a Unix account
//! or a container on the host: a host may say `tdx_capable = true` only
//! with a TD runtime configured (`runtime = "vm"` with `vm.firmware`), or
//! the whole config is refused (`check-config` points at the key);
//! placement sends such grants only to those hosts; and the host library
//! refuses one on any other runtime whatever placement decided. A TD
//! guest gets the TDX machine (`-object tdx-guest`, the firmware as TDVF)
//! and no host-made host key: the host must not hold the key a TD answers
//! with, so the guest makes its own and the instance's `host_key` is
//! empty (publishing it with attestation evidence is not built yet). The
//! TD command line is tested by its arguments only: no TDX hardware here.
//! Each TD host's `mrtd` goes into the offer's `td-measurements` for its
//! region, as 96 lowercase hex digits ([`config::Config::offer`]); the
//! bridge publishes it in the provider card and on the dashboard. The
//! card carries one MR_TD per region, so two TD hosts of one region must
//! measure to the same MR_TD (the config is refused otherwise).
//!
//! # Usage: measured and estimated
//!
//! A supervisor per grant runs on the host (every `sample_interval_sec`)
//! and `usage` takes one more sample on the spot; counters live on the
//! host, survive counter resets, and a terminated grant's final figures
//! stay there for seven days.
//! - CPU: *measured* from the grant's cgroup (`cpuacct.usage` or
//!   `cpu.stat`) under `systemd`, `cgroup2`, `cgroup1` and `podman`. Under
//!   `prlimit` it is *sampled*: the largest `utime+stime` each of the
//!   grant's processes was seen with; processes that live less than one
//!   interval, and the last interval of each, are missed (an underestimate).
//! - Memory (MiB-seconds): *sampled* each interval and integrated — the
//!   cgroup's charge (including page cache), or the processes' resident
//!   sets under `prlimit`.
//! - Network: *measured* from the container's interfaces under `podman`;
//!   not measured for `process` (the workload shares the host's network),
//!   reported as 0.
//!
//! # Errors
//!
//! An unreachable host or a timeout is `transient`; a changed host key, a
//! refused login or a missing SSH section is `config` naming the label; a
//! full host is `no-capacity`. With several hosts, the grant goes to the
//! first that takes it, and a failure reports the most hopeful kind seen
//! (transient, then no-capacity, then config).
//!
//! A provision whose connection drops or times out mid-command may have
//! made the grant, in whole or in part: before the `transient` goes back,
//! the backend terminates that grant on that host (the host's lock makes
//! this wait for a script still running there), so a failover leaves
//! nothing behind. If the host cannot be reached for that, the next
//! provision on it removes any half-made grant first (under the lock, a
//! grant directory without its `env` was left by a provision that died);
//! a whole one is in `list-instances` for the orphan sweep.
//!
//! The logic here is plain Rust over a [`backend::Host`] so it runs (and is
//! tested) natively; the wasm glue in `component.rs` plugs in the SDK's
//! `ssh`, `log` and `config`.

pub mod backend;
pub mod config;
pub mod grant;
pub mod keys;
pub mod placement;
pub mod script;

#[cfg(target_arch = "wasm32")]
mod component;

/// Why a call failed; mirrors the WIT `backend-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// No room now.
    NoCapacity(String),
    /// A passing fault.
    Transient(String),
    /// This grant can never be served here.
    Rejected(String),
    /// The operator's configuration is wrong.
    Config(String),
    /// A bug, or a host that failed in a way nobody planned for.
    Internal(String),
}

impl Error {
    /// The message of any kind.
    pub fn message(&self) -> &str {
        match self {
            Self::NoCapacity(m)
            | Self::Transient(m)
            | Self::Rejected(m)
            | Self::Config(m)
            | Self::Internal(m) => m,
        }
    }

    /// How hopeful a failure is for the grant: the fleet fails over on the
    /// first two. Used to pick one error out of several hosts' failures.
    fn hope(&self) -> u8 {
        match self {
            Self::Transient(_) => 4,
            Self::NoCapacity(_) => 3,
            Self::Config(_) => 2,
            Self::Internal(_) => 1,
            Self::Rejected(_) => 0,
        }
    }
}
