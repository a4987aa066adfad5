//! The `vsa` binary: parses arguments, starts logging and hands over to `vsa_appliance`.

use clap::Parser;

fn main() {
    let cli = vsa_appliance::cli::Cli::parse();
    // The console owns the terminal and logs to a file of its own choosing.
    if !matches!(cli.command, vsa_appliance::cli::Command::Console(_)) {
        vsa_appliance::logging::init(cli.verbose);
    }
    match vsa_appliance::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // One clear line (the cause chain), never a backtrace, whatever RUST_BACKTRACE says.
            eprintln!("vsa: error: {e:#}");
            std::process::exit(1);
        }
    }
}
