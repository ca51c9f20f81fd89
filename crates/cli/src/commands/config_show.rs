//! `anomalyd config show`: the merged settings and where each value came from.

use crate::config::{ServerFlags, load, process_env};

/// Arguments of `anomalyd config`.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    action: ConfigAction,
}

#[derive(Debug, clap::Subcommand)]
enum ConfigAction {
    /// Print the merged settings (defaults < file < ANOMALYD_* env < flags) as TOML, each
    /// value commented with the layer it came from.
    Show(ServerFlags),
}

/// Runs `anomalyd config …`.
pub fn run(args: &ConfigArgs) -> anyhow::Result<()> {
    match &args.action {
        ConfigAction::Show(flags) => {
            let (settings, sources) = load(flags, &process_env())?;
            print!("{}", settings.show(&sources));
            Ok(())
        }
    }
}
