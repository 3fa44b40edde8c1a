//! Write a compute-bridge provider backend as a WebAssembly component.
//!
//! A backend implements [`Backend`] on a unit struct and exports it with
//! [`export_backend!`]; everything else it needs comes from this crate's
//! wrappers over the host's capabilities:
//!
//! - [`http`]: outbound HTTP to the hosts the operator allowed, with JSON
//!   helpers, sent through the standard `wasi:http/outgoing-handler` (the
//!   SDK follows redirects itself, each hop checked by the host);
//! - [`ssh`]: commands on the hosts the operator assigned, by label;
//! - [`config`]: the backend's own section of the boot config;
//! - [`log`]: structured logging into the operator's log, through the
//!   standard `wasi:logging/logging`;
//! - [`cache`]: a small in-memory cache for credentials (OAuth tokens), the
//!   one thing that may outlive a call;
//! - [`bootstrap`]: the first-boot script that prepares a cloud VM for a
//!   workload (login, key, image pinned by digest);
//! - [`Host`]: the same imports as one trait, so a backend's logic can be
//!   written once as a *core* over `H: Host` and run over [`WasmHost`] in
//!   the sandbox and over [`MemoryHost`] in native tests.
//!
//! ```text
//! use compute_bridge_sdk::prelude::*;
//!
//! struct Hetzner;
//!
//! impl Backend for Hetzner {
//!     fn capabilities() -> Result<Offer> { /* ... */ }
//!     fn can_satisfy(grant: &GrantSpec) -> bool { /* ... */ }
//!     fn provision(grant: GrantSpec, workload: Workload) -> Result<Instance> { /* ... */ }
//!     fn status(instance: Instance) -> Result<InstanceState> { /* ... */ }
//!     fn usage(instance: Instance) -> Result<ResourceUsage> { /* ... */ }
//!     fn terminate(instance: Instance) -> Result<()> { /* ... */ }
//! }
//!
//! compute_bridge_sdk::export_backend!(Hetzner);
//! ```
//!
//! Every call runs in a fresh instance, so statics do not survive from one
//! call to the next: put whatever you need to find an instance again in
//! [`Instance::handle`].

#![warn(missing_docs)]

/// Raw bindings generated from the `compute-bridge:backend` WIT package.
/// Prefer the typed wrappers in this crate.
///
/// The world's standard imports that the [`wasip2`] crate binds
/// (`wasi:http`, and the `wasi:io` and `wasi:clocks` interfaces it uses) are
/// not generated here: wit-bindgen's `with:` maps them onto `wasip2`'s
/// types, so a component holds one copy of them and [`http`] can hand
/// `wasip2` values to the host. `wasi:logging` and `wasi:config` are not in
/// `wasip2` and are generated here (`bindings::wasi::logging`,
/// `bindings::wasi::config`), as are this package's own `ssh` and `cache`.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "compute-bridge:backend/backend@0.3.0",
        pub_export_macro: true,
        export_macro_name: "__export_backend_world",
        default_bindings_module: "compute_bridge_sdk::bindings",
        additional_derives: [PartialEq, Eq],
        with: {
            "wasi:http/types@0.2.12": wasip2::http::types,
            "wasi:http/outgoing-handler@0.2.12": wasip2::http::outgoing_handler,
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
        },
        generate_all,
    });
}

/// The `wasip2` crate the `wasi:http` bindings come from, for a component
/// that needs them below [`http`] (e.g. to build a request by hand).
pub use wasip2;

pub mod bootstrap;
pub mod cache;
pub mod config;
pub mod host;
pub mod http;
pub mod log;
pub mod ssh;
pub mod time;

pub use bindings::compute_bridge::backend::types::{
    BackendError, GrantSpec, Instance, InstanceState, Offer, ResourceUsage, TdMeasurement,
    TdxRequirement, Workload,
};

pub use host::Host;
#[cfg(not(target_arch = "wasm32"))]
pub use host::MemoryHost;
#[cfg(target_arch = "wasm32")]
pub use host::WasmHost;

/// Result of a backend call.
pub type Result<T, E = BackendError> = core::result::Result<T, E>;

/// The backend contract, as plain Rust.
///
/// Each method is one exported call of the `backend` interface; see the WIT
/// package for the full contract. The host calls them in a fresh sandbox each
/// time, so implementations are associated functions with no `self`.
pub trait Backend {
    /// What this backend offers right now.
    fn capabilities() -> Result<Offer>;

    /// A quick, side-effect-free check that this backend could serve
    /// `grant` (region, size, TDX). Avoid network calls here.
    fn can_satisfy(grant: &GrantSpec) -> bool;

    /// Create the workload and authorise `workload.ssh_public_key`.
    fn provision(grant: GrantSpec, workload: Workload) -> Result<Instance>;

    /// Where the instance is in its life.
    fn status(instance: Instance) -> Result<InstanceState>;

    /// Resources the instance used so far.
    fn usage(instance: Instance) -> Result<ResourceUsage>;

    /// Remove the instance and everything created for it; success if it is
    /// already gone.
    fn terminate(instance: Instance) -> Result<()>;

    /// Instances this backend runs for this provider, for reconciliation.
    /// The default lists none.
    fn list_instances() -> Result<Vec<Instance>> {
        Ok(Vec::new())
    }
}

/// Export a [`Backend`] implementation as the component's `provider`
/// interface. Use it once, at the crate root.
#[macro_export]
macro_rules! export_backend {
    ($ty:ident) => {
        impl $crate::bindings::exports::compute_bridge::backend::provider::Guest for $ty {
            fn capabilities() -> $crate::Result<$crate::Offer> {
                <$ty as $crate::Backend>::capabilities()
            }
            fn can_satisfy(grant: $crate::GrantSpec) -> bool {
                <$ty as $crate::Backend>::can_satisfy(&grant)
            }
            fn provision(
                grant: $crate::GrantSpec,
                workload: $crate::Workload,
            ) -> $crate::Result<$crate::Instance> {
                <$ty as $crate::Backend>::provision(grant, workload)
            }
            fn status(instance: $crate::Instance) -> $crate::Result<$crate::InstanceState> {
                <$ty as $crate::Backend>::status(instance)
            }
            fn usage(instance: $crate::Instance) -> $crate::Result<$crate::ResourceUsage> {
                <$ty as $crate::Backend>::usage(instance)
            }
            fn terminate(instance: $crate::Instance) -> $crate::Result<()> {
                <$ty as $crate::Backend>::terminate(instance)
            }
            fn list_instances() -> $crate::Result<::std::vec::Vec<$crate::Instance>> {
                <$ty as $crate::Backend>::list_instances()
            }
        }
        $crate::bindings::__export_backend_world!($ty with_types_in $crate::bindings);
    };
}

impl BackendError {
    /// No room for this grant now; the host tries the next backend.
    pub fn no_capacity(msg: impl Into<String>) -> Self {
        Self::NoCapacity(msg.into())
    }
    /// A passing fault; the host may retry or fail over.
    pub fn transient(msg: impl Into<String>) -> Self {
        Self::Transient(msg.into())
    }
    /// This grant can never be served by this backend.
    pub fn rejected(msg: impl Into<String>) -> Self {
        Self::Rejected(msg.into())
    }
    /// The operator's configuration is wrong; name the key, not a secret.
    pub fn config(msg: impl Into<String>) -> Self {
        Self::Config(msg.into())
    }
    /// A bug in the backend.
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::Internal(msg.into())
    }

    /// `kind: message` (`no capacity: …`, `transient: …`, `rejected: …`,
    /// `config: …`, `internal: …`), for a log field or a message that
    /// carries this error. (`Display` is wit-bindgen's, which prints the
    /// Rust form.)
    pub fn describe(&self) -> String {
        let kind = match self {
            Self::NoCapacity(_) => "no capacity",
            Self::Transient(_) => "transient",
            Self::Rejected(_) => "rejected",
            Self::Config(_) => "config",
            Self::Internal(_) => "internal",
        };
        format!("{kind}: {}", self.message())
    }

    /// The same kind with `msg` as its message (a backend adding what its
    /// cleanup did to the error it answers with).
    pub fn with_message(&self, msg: impl Into<String>) -> Self {
        let msg = msg.into();
        match self {
            Self::NoCapacity(_) => Self::NoCapacity(msg),
            Self::Transient(_) => Self::Transient(msg),
            Self::Rejected(_) => Self::Rejected(msg),
            Self::Config(_) => Self::Config(msg),
            Self::Internal(_) => Self::Internal(msg),
        }
    }

    /// The message carried by any kind.
    pub fn message(&self) -> &str {
        match self {
            Self::NoCapacity(m)
            | Self::Transient(m)
            | Self::Rejected(m)
            | Self::Config(m)
            | Self::Internal(m) => m,
        }
    }
}

impl core::fmt::Display for ResourceUsage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} core-s, {} MiB-s, {} B",
            self.cpu_core_seconds, self.ram_mib_seconds, self.net_bytes
        )
    }
}

/// Current wall-clock time in unix seconds (WASI's clock).
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Everything a backend usually needs, in one import.
pub mod prelude {
    pub use crate::{
        Backend, BackendError, GrantSpec, Host, Instance, InstanceState, Offer, ResourceUsage,
        Result, TdMeasurement, TdxRequirement, Workload, cache, config, http, log, ssh,
    };
}
