//! The `vsa` binary: parses arguments, starts logging and hands over to `vsa_appliance`.

use clap::Parser;

fn main() {
    let cli = vsa_appliance::cli::Cli::parse();
    vsa_appliance::logging::init(cli.verbose);
    match vsa_appliance::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // One clear line (the cause chain), never a backtrace, whatever RUST_BACKTRACE says.
            eprintln!("vsa: error: {e:#}");
            std::process::exit(1);
        }
    }
}
