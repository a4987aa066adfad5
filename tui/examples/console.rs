//! Runs the console without the `vsa` binary:
//! `cargo run -p vsa-tui --example console -- [ADDR] [ADMIN_TOKEN] [LOG_FILE]`.

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let defaults = vsa_tui::ConsoleOptions::default();
    vsa_tui::run(vsa_tui::ConsoleOptions {
        addr: args.next().unwrap_or(defaults.addr),
        admin_token: args.next(),
        log_file: args.next().map(Into::into),
        ..defaults
    })
}
