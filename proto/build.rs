//! Compiles `proto/flowgate/v1/*.proto` with protox (pure Rust, no system `protoc`)
//! and writes the descriptor set that the flow service serves through reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/flowgate/v1/flow.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(files, ["proto"])?;

    // `compile_fds` ignores `file_descriptor_set_path`, so the descriptor set for
    // reflection is written here by hand.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("flowgate_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Every RPC of the server trait gets a default answering UNIMPLEMENTED, so an
        // RPC added to the contract (optional ones such as `ListFlows`) leaves existing
        // implementations compiling, as it leaves them working on the wire.
        .generate_default_stubs(true)
        .compile_fds(fds)?;
    Ok(())
}
