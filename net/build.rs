//! Builds the pairing crate (`pake/`) for WebAssembly: the viewer page pairs with the same
//! code as the share and the native client. The module lands in `OUT_DIR/pake.wasm` and is
//! embedded by `assets.rs`. Built in its own target directory beside ours (a nested cargo
//! may not share the outer build's lock), with none of the outer build's flags or wrappers
//! (clippy, sanitizers, coverage are for the host code).

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    for path in ["pake/src", "pake/Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out: share one wasm target dir.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map_or_else(|| out_dir.join("wasm"), |t| t.join("wasm"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--locked",
        "--release",
        "-p",
        "porthole-pake",
        "--lib",
    ])
    .args(["--target", TARGET])
    .arg("--target-dir")
    .arg(&target_dir)
    .current_dir(&workspace)
    .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s")
    .env("CARGO_PROFILE_RELEASE_LTO", "true")
    .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
    .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
    .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
    .env("CARGO_PROFILE_RELEASE_STRIP", "true");
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_LLVM_COV",
        "LLVM_PROFILE_FILE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
    if !status.success() {
        panic!(
            "building the viewer page's pairing module failed. Is the WebAssembly target \
             installed? `rustup target add {TARGET}` (scripts/install-deps.sh does it)"
        );
    }
    let built = target_dir.join(TARGET).join("release").join("pake.wasm");
    copy(&built, &out_dir.join("pake.wasm"));
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", from.display(), to.display()));
}
