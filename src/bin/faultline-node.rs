//! `faultline-node`: faultline's own Redis-Cluster-protocol node (the `faultline-node`
//! crate in `node/`), built with faultline so runs find it beside the `faultline` binary.

fn main() -> anyhow::Result<()> {
    faultline_node::main(std::env::args().skip(1).collect())
}
