//! Links spandsp, found through pkg-config (Debian package `libspandsp-dev`)

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    if let Err(e) = pkg_config::Config::new()
        .atleast_version("0.0.6")
        .probe("spandsp")
    {
        panic!("spandsp not found through pkg-config (install libspandsp-dev): {e}");
    }
}
