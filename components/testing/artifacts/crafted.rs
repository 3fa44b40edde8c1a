//! Components made by hand for attacks the guest SDK cannot express (part
//! of the build script): core modules written in WAT, given the backend
//! world's `provider` export by `wit-component` (from the WIT in `wit/`),
//! and, for the many-memories attack, wrapped with `wasm-encoder` in a
//! component that carries more core modules of its own. None of them
//! imports anything, so the import policy lets each through: only the
//! sandbox's budget can stop them. Test-only; never shipped.

use std::path::Path;

use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::Resolve;

const PROVIDER: &str = "compute-bridge:backend/provider@0.3.0";

/// The provider's exports as a core module with memory `memory` of one page
/// and a table `$t` of one element: `capabilities` runs `grow` (WAT
/// instructions), then answers `Ok` with an empty offer; every other export
/// traps. A bump allocator serves `cabi_realloc`.
fn provider_module(grow: &str) -> String {
    provider_module_of(PROVIDER, grow)
}

/// [`provider_module`] exporting the interface named `provider`.
fn provider_module_of(provider: &str, grow: &str) -> String {
    let instance = "i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32";
    let grant = "i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i64";
    format!(
        r#"(module
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (local.get $p))
  (func (export "{provider}#capabilities") (result i32)
    {grow}
    ;; result<offer, backend-error> at 16: ok, no regions, not TDX, 1000
    ;; millicores, 1024 MiB.
    (i32.store8 (i32.const 16) (i32.const 0))
    (i32.store (i32.const 20) (i32.const 0))
    (i32.store (i32.const 24) (i32.const 0))
    (i32.store8 (i32.const 28) (i32.const 0))
    (i32.store (i32.const 32) (i32.const 1000))
    (i32.store (i32.const 36) (i32.const 1024))
    ;; no td-measurements (since 0.2.0): an empty list.
    (i32.store (i32.const 40) (i32.const 0))
    (i32.store (i32.const 44) (i32.const 0))
    (i32.const 16))
  (func (export "{provider}#can-satisfy") (param {grant}) (result i32) (i32.const 0))
  (func (export "{provider}#provision") (param {grant} i32 i32 i32 i32) (result i32) unreachable)
  (func (export "{provider}#status") (param {instance}) (result i32) unreachable)
  (func (export "{provider}#usage") (param {instance}) (result i32) unreachable)
  (func (export "{provider}#terminate") (param {instance}) (result i32) unreachable)
  (func (export "{provider}#list-instances") (result i32) unreachable)
)"#
    )
}

/// A component exporting the provider interface from `module` (WAT).
fn provider_component(wit: &Path, module: &str) -> Vec<u8> {
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve.push_dir(wit).expect("the WIT in wit/ parses");
    encode(resolve, pkg, module)
}

/// `module` (WAT) as a component of the `backend` world of `pkg`.
fn encode(resolve: Resolve, pkg: wit_parser::PackageId, module: &str) -> Vec<u8> {
    let mut core = wat::parse_str(module).expect("the WAT parses");
    let world = resolve
        .select_world(&[pkg], Some("backend"))
        .expect("the backend world");
    wit_component::embed_component_metadata(&mut core, &resolve, world, StringEncoding::UTF8)
        .expect("embedding the world");
    ComponentEncoder::default()
        .module(&core)
        .expect("a core module wit-component takes")
        .validate(true)
        .encode()
        .expect("a valid component")
}

/// Pages (64 KiB) in `mib` MiB.
fn pages(mib: u32) -> u32 {
    mib * 16
}

/// A backend whose `capabilities` grows its one memory to 64 KiB short of
/// `cap_mib`, then its table by `table_elements` elements (a word each):
/// within the cap of each, past the cap of both together.
pub fn memory_and_table(wit: &Path, cap_mib: u32, table_elements: u32) -> Vec<u8> {
    let grow = format!(
        "(if (i32.eq (memory.grow (i32.const {})) (i32.const -1)) (then unreachable))
    (if (i32.eq (table.grow $t (ref.null func) (i32.const {table_elements})) (i32.const -1))
      (then unreachable))",
        pages(cap_mib) - 2
    );
    provider_component(wit, &provider_module(&grow))
}

/// A backend that carries `extra` more core modules, each with its own
/// memory of `each_mib` MiB that its start function fills, all instantiated
/// with it: the attack that used 887 MB in one call under a 64 MiB cap. The
/// modules and their instances are appended to the provider component as
/// sections of its own (a component's sections may come in any order), so
/// they take the next module and instance indices and change nothing else.
pub fn many_memories(wit: &Path, extra: u32, each_mib: u32) -> Vec<u8> {
    let mut component = provider_component(wit, &provider_module(""));
    let hog = wat::parse_str(format!(
        "(module
           (memory {pages})
           (func $fill (memory.fill (i32.const 0) (i32.const 1) (i32.const {bytes})))
           (start $fill))",
        pages = pages(each_mib),
        bytes = each_mib << 20
    ))
    .expect("the WAT parses");
    let first = top_level_core_modules(&component);
    let mut more = wasm_encoder::Component::new();
    let mut instances = wasm_encoder::InstanceSection::new();
    for i in 0..extra {
        more.section(&wasm_encoder::RawSection {
            id: wasm_encoder::ComponentSectionId::CoreModule.into(),
            data: &hog,
        });
        instances.instantiate(first + i, Vec::<(&str, wasm_encoder::ModuleArg)>::new());
    }
    more.section(&instances);
    // Everything after the 8-byte preamble is sections.
    component.extend_from_slice(&more.finish()[8..]);
    component
}

/// Core modules defined at the top level of `component` (not inside a
/// nested component).
fn top_level_core_modules(component: &[u8]) -> u32 {
    let mut depth = 0;
    let mut modules = 0;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        match payload.expect("wit-component's output parses") {
            wasmparser::Payload::Version { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth -= 1,
            wasmparser::Payload::ModuleSection { .. } if depth == 1 => modules += 1,
            _ => {}
        }
    }
    modules
}

/// A backend as a build against version `version` of the WIT package
/// would be named: the WIT in `wit/` with its package version replaced
/// (the host tells a component's version by its interfaces' names, which
/// is all it reads before it refuses one), exporting
/// `compute-bridge:backend/provider@{version}`. For the test that a
/// component built for 0.1.0 is refused with the fix.
pub fn built_for(wit: &Path, version: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(wit.join("backend.wit")).expect("wit/backend.wit");
    let current = PROVIDER.rsplit_once('@').expect("a versioned name").1;
    let old = text.replace(
        &format!("package compute-bridge:backend@{current};"),
        &format!("package compute-bridge:backend@{version};"),
    );
    assert_ne!(old, text, "the WIT's package line names {current}");
    // The current package and its dependencies first (`wit/deps`: wasi:http,
    // wasi:logging, wasi:config, ...), which the renamed copy imports too.
    let mut resolve = Resolve::default();
    resolve.push_dir(wit).expect("the WIT in wit/ parses");
    let pkg = resolve
        .push_str(wit.join("backend.wit"), &old)
        .expect("the renamed WIT parses");
    let provider = format!("compute-bridge:backend/provider@{version}");
    encode(resolve, pkg, &provider_module_of(&provider, ""))
}
