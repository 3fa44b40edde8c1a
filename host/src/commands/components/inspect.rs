//! `compute-bridge components inspect`: a component's imports and exports
//! and whether the bridge will load it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use compute_bridge_sandbox::{CompileCache, Runtime, RuntimeOptions, policy};

pub(crate) fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let runtime = Runtime::new(&RuntimeOptions {
        cache_dir: None,
        max_concurrent_calls: 1,
        max_memory_mib: 64,
    })?;
    let header = || {
        println!("{}", file.display());
        println!(
            "  size {} bytes, sha256 {}",
            bytes.len(),
            CompileCache::digest(&bytes)
        );
    };
    let component = match wasmtime::component::Component::new(runtime.engine(), &bytes) {
        Ok(c) => c,
        Err(e) => {
            let e = anyhow::Error::from(e);
            // The sandbox's per-component limits refuse it before it can
            // be looked at: say so, with the reason, as a refusal.
            if let Some(why) = policy::explain_pool_refusal(&e) {
                header();
                println!("verdict: REFUSED");
                println!("  - {why}");
                return Ok(ExitCode::FAILURE);
            }
            return Err(e.context(format!(
                "{} is not a valid WebAssembly component",
                file.display()
            )));
        }
    };
    let report = policy::check(runtime.engine(), &component);
    header();
    if let Some(r) = &report.resources {
        println!(
            "  sandbox: {} linear memor{}, {} table{} per instance (at most {} and {})",
            r.memories,
            if r.memories == 1 { "y" } else { "ies" },
            r.tables,
            if r.tables == 1 { "" } else { "s" },
            policy::MAX_MEMORIES,
            policy::MAX_TABLES
        );
    }
    println!(
        "  world: {}",
        if report.conforms() {
            policy::WORLD
        } else {
            "(does not conform to the backend world)"
        }
    );
    println!("  imports:");
    for i in &report.imports {
        match &i.refused {
            None => println!("    ok      {}  ({})", i.name, i.purpose),
            Some(why) => println!("    REFUSED {}  ({why})", i.name),
        }
    }
    println!("  exports:");
    for e in &report.exports {
        println!("    {e}");
    }
    if report.conforms() {
        println!("verdict: the bridge will load this component");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("verdict: REFUSED");
        for v in &report.violations {
            println!("  - {v}");
        }
        Ok(ExitCode::FAILURE)
    }
}
