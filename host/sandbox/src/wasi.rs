//! The WASI a backend gets besides its capabilities: every `wasi:io`,
//! `wasi:clocks`, `wasi:random`, `wasi:cli`, `wasi:filesystem` and
//! `wasi:sockets` interface of WASI 0.2 is linked, because language
//! runtimes (componentize-py's CPython, for one) import them whether or not
//! a backend uses them, and grants nothing: the call's `WasiCtx`
//! ([`ctx`]) has an empty environment, no arguments, no preopened
//! directory, empty standard input, and sockets that refuse every bind,
//! connect and name lookup. What a backend may import at all is
//! [`crate::policy`]'s to say, at load, with a reason.

use wasmtime::component::Linker;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiView};

/// Add the WASI 0.2 interfaces to `linker`.
pub fn add_to_linker<T: WasiView + 'static>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(l)
}

/// One call's WASI context: standard error into `stderr` (kept for trap
/// reports), and nothing else granted. The builder starts with no
/// environment, arguments or preopens; the network is closed explicitly:
/// no TCP, no UDP, no name lookup, and every address refused. `shape` is
/// the capabilities' turn ([`crate::capabilities::Capability::shape_wasi`])
/// before it is built.
pub fn ctx(stderr: MemoryOutputPipe, shape: impl FnOnce(&mut WasiCtxBuilder)) -> WasiCtx {
    let mut b = WasiCtx::builder();
    b.stderr(stderr)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    shape(&mut b);
    b.build()
}
