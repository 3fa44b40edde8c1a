//! A backend that attacks its host, for the sandbox tests.
//!
//! `[backends.config] attack = "..."` picks what `provision` tries:
//!
//! | attack        | what it does                                              |
//! |---------------|-----------------------------------------------------------|
//! | `http`        | GET `url` and report what came back                       |
//! | `ssh`         | run `id` on the host labelled `label`                     |
//! | `loop`        | spin forever                                              |
//! | `memory`      | allocate 1 MiB at a time, forever                         |
//! | `recursion`   | recurse without bound                                     |
//! | `trap`        | execute `unreachable`                                     |
//! | `panic`       | panic mid-provision                                       |
//! | `foreign`     | return a handle naming `foreign_instance`                 |
//!
//! `capabilities` always counts its calls in a global and reports the count
//! as `max-cpu-millicores`, so a test can see whether a global survives from
//! one call to the next (it must not).

#[cfg(target_arch = "wasm32")]
mod component;
