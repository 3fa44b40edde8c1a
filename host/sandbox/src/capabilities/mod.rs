//! Host capabilities a backend component can be given, one folder each:
//! `log` (`wasi:logging/logging`), `http` (`wasi:http/outgoing-handler`,
//! served by `wasmtime-wasi-http` with our policy in its hook), `ssh`,
//! `cache` (credentials only) and `config` (`wasi:config/store`).
//!
//! Everything about a capability lives in its folder, behind
//! [`Capability`]: its `[backends.<section>]` type and its validation, the
//! imports it serves, what one backend's calls share (built once per backend
//! by [`Capability::provide`]), one call's state (the type the generated
//! `Host` trait is implemented on) and its own `add_to_linker`. Nothing
//! outside this folder names a capability except the list at the bottom of
//! this file, from which the macro builds [`Sections`] (the config
//! iterates over it), [`Provided`], the per-call state and the linking.
//!
//! Adding a capability: a folder with its type implementing [`Capability`],
//! one line in the list; the WIT and the SDK only if it brings a new
//! interface (`docs/architecture.md`). Nothing here knows about grants, the
//! fleet or the dashboard.

pub mod cache;
pub mod config;
pub mod http;
pub mod log;
pub mod ssh;

use std::fmt::Debug;
use std::sync::Arc;

use compute_bridge_contract::keypath::Invalid;
use serde::de::{DeserializeOwned, MapAccess};
use sha2::{Digest, Sha256};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::WasiCtxBuilder;

use crate::call::CallState;
use crate::spec::LoadContext;

/// One host capability. Everything about it lives in its folder; nothing
/// outside names it except the list at the bottom of this file.
pub trait Capability: Sized + Send + Sync + 'static {
    /// Its `[backends.<SECTION>]` key; `None` for a capability the operator
    /// does not configure (no key is accepted for it).
    const SECTION: Option<&'static str>;
    /// Import-name prefixes it serves, and what each is for (the import
    /// policy and `components inspect`).
    const IMPORTS: &'static [(&'static str, &'static str)];
    /// Its section as the operator writes it (`Default`: the section is
    /// absent).
    type Config: DeserializeOwned + Default + Clone + Debug + Send + Sync + 'static;
    /// What one call's `Store` holds for it; the generated `Host` trait is
    /// implemented on it.
    type Call: Send + 'static;

    /// Check its section before anything starts; the path of the refusal is
    /// relative to the section.
    fn validate(_cfg: &Self::Config, _at: &LoadContext) -> Result<(), Invalid> {
        Ok(())
    }
    /// What every call of one backend shares (a client, pools, keys read
    /// now, counters).
    fn provide(cfg: &Self::Config, at: &LoadContext) -> anyhow::Result<Self>;
    /// One call's state, for a call of export `export`.
    fn start_call(this: &Arc<Self>, export: &'static str) -> Self::Call;
    /// Shape one call's WASI context before it is built, for a capability
    /// that governs a WASI interface rather than linking its own (a clock
    /// policy coarsening `wasi:clocks`, say). The base context grants
    /// nothing (`crate::wasi::ctx`); the default leaves it so.
    fn shape_wasi(_this: &Arc<Self>, _wasi: &mut WasiCtxBuilder) {}
    /// Link its imports; its state is reached through `T:` [`HasCall`].
    fn add_to_linker<T: HasCall<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()>;
    /// What the operator granted, in a few words for `check-config`
    /// (`None`: not shown).
    fn summary(_cfg: &Self::Config) -> Option<String> {
        None
    }
    /// What the start-up routing table lists of it, one word per granted
    /// thing (`http`: the allowed origins; `ssh`: the host labels); `None`:
    /// not listed.
    fn routing(_cfg: &Self::Config) -> Option<Vec<String>> {
        None
    }
    /// Feed its non-secret policy into `h`, deterministically (for a
    /// measurement of a backend's policy, issue 20). Never a secret.
    fn measure(_cfg: &Self::Config, _h: &mut Sha256) {}
    /// What the host has to add to the error of a call that failed, from
    /// this call's state (the `http` capability: why it denied a request,
    /// which the guest only saw as a code). `None`: nothing.
    fn failure_note(_call: &Self::Call) -> Option<String> {
        None
    }
}

/// Store data holding capability `C`'s per-call state.
pub trait HasCall<C: Capability>: Send + 'static {
    /// `C`'s state in this call.
    fn call_state(&mut self) -> &mut C::Call;
    /// `C`'s state in this call and the call's resource table (the one WASI
    /// uses), for a capability whose interfaces hand the guest resources
    /// that WASI streams and pollables refer to.
    fn call_state_and_table(&mut self) -> (&mut C::Call, &mut ResourceTable);
}

/// Push `(key, value)` for a capability that has a section and a value.
fn keyed<T>(out: &mut Vec<(&'static str, T)>, key: Option<&'static str>, value: Option<T>) {
    if let (Some(key), Some(value)) = (key, value) {
        out.push((key, value));
    }
}

/// A capability without a section.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
pub struct NoSection {}

/// The list, and everything built from it: `Sections` (one field per
/// capability, its config type), `Provided` (one `Arc` per capability),
/// `Calls` (one per-call state each), the `HasCall` impls on `CallState`,
/// `link_all` and `IMPORTS`.
macro_rules! capabilities {
    ($($field:ident: $cap:ty),* $(,)?) => {
        /// Every capability's section of one backend, as the operator wrote
        /// them under `[backends.<section>]`.
        #[derive(Debug, Clone, Default)]
        pub struct Sections {
            $(
                #[doc = concat!("The `", stringify!($field), "` capability's section.")]
                pub $field: <$cap as Capability>::Config,
            )*
        }

        impl Sections {
            /// The section keys a `[[backends]]` entry accepts, in list
            /// order.
            pub const KEYS: &'static [&'static str] = &{
                const ALL: &[Option<&str>] = &[$(<$cap as Capability>::SECTION),*];
                const N: usize = {
                    let mut n = 0;
                    let mut i = 0;
                    while i < ALL.len() {
                        if ALL[i].is_some() {
                            n += 1;
                        }
                        i += 1;
                    }
                    n
                };
                let mut out = [""; N];
                let (mut i, mut j) = (0, 0);
                while i < ALL.len() {
                    if let Some(k) = ALL[i] {
                        out[j] = k;
                        j += 1;
                    }
                    i += 1;
                }
                out
            };

            /// If `key` is a capability's section, read its value from
            /// `map` into it; `Ok(false)` if no capability owns `key`.
            pub fn take<'de, A: MapAccess<'de>>(
                &mut self,
                key: &str,
                map: &mut A,
            ) -> Result<bool, A::Error> {
                $(
                    if <$cap as Capability>::SECTION == Some(key) {
                        self.$field = map.next_value()?;
                        return Ok(true);
                    }
                )*
                Ok(false)
            }

            /// Each capability's check of its section, in list order; the
            /// first refusal wins, its path prefixed with the section key.
            pub fn validate(&self, at: &LoadContext) -> Result<(), Invalid> {
                $(
                    if let Err(mut e) = <$cap as Capability>::validate(&self.$field, at) {
                        if let Some(key) = <$cap as Capability>::SECTION {
                            e.path.insert(0, key.into());
                        }
                        return Err(e);
                    }
                )*
                Ok(())
            }

            /// What each capability grants, for `check-config`:
            /// `(section, words)` in list order.
            pub fn summaries(&self) -> Vec<(&'static str, String)> {
                let mut out = Vec::new();
                $(
                    keyed(&mut out, <$cap as Capability>::SECTION, <$cap as Capability>::summary(&self.$field));
                )*
                out
            }

            /// What the routing table lists of each capability:
            /// `(section, words)` in list order.
            pub fn routing(&self) -> Vec<(&'static str, Vec<String>)> {
                let mut out = Vec::new();
                $(
                    keyed(&mut out, <$cap as Capability>::SECTION, <$cap as Capability>::routing(&self.$field));
                )*
                out
            }

            /// SHA-256 of every capability's non-secret policy, in list
            /// order (each capability's part preceded by its name).
            pub fn measure(&self) -> [u8; 32] {
                let mut h = Sha256::new();
                $(
                    h.update(stringify!($field).as_bytes());
                    h.update([0]);
                    <$cap as Capability>::measure(&self.$field, &mut h);
                )*
                h.finalize().into()
            }
        }

        /// Everything one backend was provided: each capability built once
        /// from its section and shared by all its calls.
        pub struct Provided {
            /// The backend's name (tags its logs).
            pub name: Arc<str>,
            $(
                #[doc = concat!("The `", stringify!($field), "` capability.")]
                pub $field: Arc<$cap>,
            )*
        }

        impl Provided {
            /// Build every capability of the backend `at` describes from its
            /// sections.
            pub fn new(sections: &Sections, at: &LoadContext) -> anyhow::Result<Self> {
                Ok(Self {
                    name: at.backend.clone(),
                    $($field: Arc::new(<$cap as Capability>::provide(&sections.$field, at)?),)*
                })
            }

            /// Let every capability shape one call's WASI context, in list
            /// order.
            pub(crate) fn shape_wasi(&self, wasi: &mut WasiCtxBuilder) {
                $(<$cap as Capability>::shape_wasi(&self.$field, wasi);)*
            }

            /// One call's state of every capability.
            pub(crate) fn start_call(&self, export: &'static str) -> Calls {
                Calls {
                    $($field: <$cap as Capability>::start_call(&self.$field, export),)*
                }
            }
        }

        /// One call's state of every capability.
        pub(crate) struct Calls {
            $(pub(crate) $field: <$cap as Capability>::Call,)*
        }

        impl Calls {
            /// What the capabilities add to the error of this call, if it
            /// failed, in list order.
            pub(crate) fn failure_notes(&self) -> Vec<String> {
                let mut out = Vec::new();
                $(
                    if let Some(note) = <$cap as Capability>::failure_note(&self.$field) {
                        out.push(note);
                    }
                )*
                out
            }
        }

        $(
            impl HasCall<$cap> for CallState {
                fn call_state(&mut self) -> &mut <$cap as Capability>::Call {
                    &mut self.calls.$field
                }
                fn call_state_and_table(
                    &mut self,
                ) -> (&mut <$cap as Capability>::Call, &mut ResourceTable) {
                    (&mut self.calls.$field, &mut self.table)
                }
            }
        )*

        /// Link every capability's imports.
        pub(crate) fn link_all(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
            $(<$cap as Capability>::add_to_linker(linker)?;)*
            Ok(())
        }

        /// Every capability's imports, in list order.
        pub const IMPORTS: &[&[(&str, &str)]] = &[$(<$cap as Capability>::IMPORTS),*];
    };
}

// The list: the only place the capabilities are enumerated. Its order is
// the order sections are validated in (the first refusal wins) and shown.
capabilities! {
    log: log::LogCapability,
    http: http::HttpCapability,
    ssh: ssh::SshCapability,
    cache: cache::CacheCapability,
    config: config::ConfigCapability,
}
