//! `anomalyd bench`: placeholder until the side-by-side benchmark lands.

/// Arguments of `anomalyd bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

/// Runs `anomalyd bench`.
pub fn run(_args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench is not built yet")
}
