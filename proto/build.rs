//! Generates the tonic/prost code for Harrow's services with a vendored
//! `protoc`, so a fresh machine needs nothing installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded; nothing else reads the
        // environment concurrently.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    let files = [
        "proto/harrow/v1/worker.proto",
        "proto/harrow/v1/client.proto",
        "proto/harrow/v1/shuffle.proto",
        "proto/harrow/v1/plugin.proto",
        "proto/harrow/v1/state.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    tonic_prost_build::configure().compile_protos(&files, &["proto"])?;
    Ok(())
}
