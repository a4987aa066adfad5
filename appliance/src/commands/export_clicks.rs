//! `vsa export-clicks --out DIR`: training data mined from the click log, as Pailitao does
//! instead of paying annotators. Writes `DIR/triplets.jsonl` (one `{query_id, anchor,
//! positive, negative}` per line: anchor = the query's embedding, positive = a clicked result,
//! negative = a result shown above it and not clicked) and `DIR/virtual_ids.jsonl` (one
//! `{virtual_id, items}` per co-click cluster). Needs the admin token; pages through the
//! server's retained queries.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use vsa_protocol::AdminAction;

use super::client_common::{self, ConnArgs};

/// Arguments of `vsa export-clicks`.
#[derive(Debug, Args)]
pub struct ExportClicksArgs {
    /// Server address and session token.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The admin token.
    #[arg(long, env = "VSA_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// Output folder (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Queries per request.
    #[arg(long, default_value_t = 200)]
    pub page: u32,
}

/// Runs `vsa export-clicks`.
pub fn run(args: ExportClicksArgs) -> anyhow::Result<i32> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let triplets_path = args.out.join("triplets.jsonl");
    let virtual_path = args.out.join("virtual_ids.jsonl");
    let mut triplets = std::io::BufWriter::new(
        std::fs::File::create(&triplets_path)
            .with_context(|| format!("creating {}", triplets_path.display()))?,
    );
    let mut virtuals = std::io::BufWriter::new(
        std::fs::File::create(&virtual_path)
            .with_context(|| format!("creating {}", virtual_path.display()))?,
    );
    let addr = args.conn.addr.clone();
    let mut options = args.conn.options("export-clicks");
    options.admin_token = Some(args.admin_token.clone());
    let (n_triplets, n_virtual) = client_common::block_on(async {
        let mut client = client_common::connect(&addr, options).await?;
        let mut offset = 0u64;
        let (mut nt, mut nv) = (0usize, 0usize);
        loop {
            let reply = client
                .admin(AdminAction::ExportClicks {
                    offset,
                    limit: args.page.max(1),
                })
                .await
                .map_err(|e| {
                    anyhow::anyhow!("vsa at {addr} refused: {}", client_common::plain(&e))
                })?;
            let page: serde_json::Value =
                serde_json::from_str(reply.payload.as_deref().unwrap_or("{}"))
                    .context("the server's export page is not JSON")?;
            for t in page["triplets"].as_array().into_iter().flatten() {
                writeln!(triplets, "{t}")?;
                nt += 1;
            }
            for v in page["virtual_ids"].as_array().into_iter().flatten() {
                writeln!(virtuals, "{v}")?;
                nv += 1;
            }
            match page["next"].as_u64() {
                Some(next) if next > offset => offset = next,
                _ => break,
            }
        }
        anyhow::Ok((nt, nv))
    })??;
    triplets.flush()?;
    virtuals.flush()?;
    println!(
        "{n_triplets} triplets → {}, {n_virtual} virtual ids → {}",
        triplets_path.display(),
        virtual_path.display()
    );
    Ok(0)
}
