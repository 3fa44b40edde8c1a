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
//! | `foreign`     | return `foreign_id`, `foreign_handle` and `foreign_host`: |
//! |               | another backend's instance, as if it were its own         |
//! | `instance`    | return an instance built from the keys below: a login     |
//! |               | that is a shell command, a host that is an ssh option, a  |
//! |               | host key with a second line, a field `pad_kib` KiB long   |
//! | `error`       | fail with an `internal` error `pad_kib` KiB long          |
//!
//! Attacks through what the other calls return (`src/returns.rs`):
//! `offer_regions`/`offer_region_len` (a 4 MiB offer), `offer_cpu`/
//! `offer_ram` (capacity claims up to `u32::MAX`), `usage_pow2` (usage of
//! 2^63 of everything), `list_count` (a huge instance list).
//!
//! With `only_region = "r"`, `can-satisfy` says yes only to grants asking
//! for region `r` (so a fleet routes chosen grants to it); otherwise to all.
//!
//! `capabilities` always counts its calls in a global and reports the count
//! in its region's name (`hostile-<count>`), so a test can see whether a
//! global survives from one call to the next (it must not: always
//! `hostile-1`).

#[cfg(target_arch = "wasm32")]
mod component;
#[cfg(target_arch = "wasm32")]
mod returns;
