//! A backend that imports what the backend world does not offer: sockets
//! (`std::net`) and files (`std::fs`, which needs filesystem preopens). The
//! host must refuse to load it.

#[cfg(target_arch = "wasm32")]
mod component;
