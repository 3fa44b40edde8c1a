//! A backend that reaches for what the backend world links but never
//! grants: sockets (`std::net`) and files (`std::fs`). Language runtimes
//! import both, so the host links them and loads this component; every
//! connect must then be refused and no file must be there to read. It
//! reports what each attempt got in `provision`'s error, so a test can see
//! the sandbox held.

#[cfg(target_arch = "wasm32")]
mod component;
