//! `faultline bench`: placeholder replaced below.
use crate::cli::BenchArgs;
use crate::exit::Failure;
/// `faultline bench`.
pub async fn command(_args: BenchArgs) -> Result<u8, Failure> {
    Err(Failure::from(anyhow::anyhow!("bench: not built yet")))
}
