//! Compiles the vendored Zipkin and Jaeger schemas (`proto/`, see its README) with prost. protox
//! parses them in Rust, so no `protoc` is needed to build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/zipkin/zipkin.proto", "proto/jaeger/model.proto"];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(files, ["proto"])?;
    // Ordered maps: a span's Zipkin tags keep one order wherever they are listed.
    prost_build::Config::new().btree_map(["."]).compile_fds(descriptors)?;
    Ok(())
}
