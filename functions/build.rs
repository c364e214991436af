//! Builds `native/memcpy.c`: the static musl build's `memcpy` (musl's is slow for the
//! short copies polars makes by the million); elsewhere the same code under another name,
//! for its unit test (`src/native_memcpy.rs`).

fn main() {
    println!("cargo:rerun-if-changed=native/memcpy.c");
    let target = |key: &str| std::env::var(key).unwrap_or_default();
    if target("CARGO_CFG_TARGET_ARCH") != "x86_64" {
        return;
    }
    let mut build = cc::Build::new();
    build
        .file("native/memcpy.c")
        .opt_level(2)
        .flag("-fno-builtin")
        .flag_if_supported("-fno-tree-loop-distribute-patterns");
    if target("CARGO_CFG_TARGET_ENV") == "musl" {
        build
            .define("FLOWFORGE_MEMCPY", "memcpy")
            .define("FLOWFORGE_MEMCPY_FWD", None);
    }
    build.compile("flowforge_memcpy");
}
