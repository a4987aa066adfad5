//! The `vsa` binary: parses arguments, starts logging and hands over to `vsa_appliance`.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = vsa_appliance::cli::Cli::parse();
    vsa_appliance::logging::init(cli.verbose);
    let code = vsa_appliance::cli::run(cli)?;
    std::process::exit(code);
}
