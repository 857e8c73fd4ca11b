//! Compiles the contract with protox (pure Rust: no protoc on the machine) and keeps the
//! descriptor set for gRPC reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "naast/v1/audit.proto",
        "naast/v1/consent.proto",
        "naast/v1/evaluation.proto",
        "naast/v1/event_log.proto",
        "naast/v1/households.proto",
        "naast/v1/operations.proto",
        "naast/v1/push.proto",
        "naast/v1/vocabulary.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["."])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    // compile_fds does not write the set itself; reflection needs it.
    std::fs::write(
        out.join("naast_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // A request that is not valid protobuf is the caller's fault: see `src/codec.rs`.
    tonic_prost_build::configure()
        .codec_path("crate::codec::StrictCodec")
        .compile_fds(fds)?;
    Ok(())
}
