//! `vsa admin`: operator actions over the protocol, with the admin token: take a snapshot now,
//! and (when the server allows fault injection) panic or stall an actor for rehearsals.
//! Prints the server's answer; exit 0 on success, 1 when the server refused.

use clap::{Args, Subcommand};
use vsa_protocol::AdminAction;

use super::client_common::{self, ConnArgs};

/// Arguments of `vsa admin`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Server address and session token.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The admin token (the server's `admin.token`).
    #[arg(long, env = "VSA_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// What to do.
    #[command(subcommand)]
    pub action: AdminCommand,
}

/// Admin actions.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Snapshot every shard now and truncate the log behind it (a checkpoint).
    Snapshot,
    /// Fault injection: panic an actor (`p/<category>/<shard>`, or `inference-worker`).
    Panic {
        /// The actor's name.
        name: String,
    },
    /// Set reranking weights live: `visual=1 colour=1 quality=0.2 ctr=0.5` (none: show them).
    Weights {
        /// `component=weight` pairs.
        pairs: Vec<String>,
    },
    /// Click totals, rejected clicks and the top items by CTR (JSON).
    Clicks {
        /// How many top items.
        #[arg(long, default_value_t = 10)]
        top: u32,
    },
    /// Rebalance shards: compute a plan (default), apply it, watch it, cancel it.
    Rebalance {
        /// Compute and print a plan (the default).
        #[arg(long)]
        plan: bool,
        /// Apply the plan with this id.
        #[arg(long, value_name = "PLAN_ID")]
        apply: Option<u64>,
        /// Print the progress of the running (or last) apply.
        #[arg(long)]
        status: bool,
        /// Cancel the running apply (before its switch).
        #[arg(long)]
        cancel: bool,
    },
    /// Fault injection: stall a shard actor for a while.
    Stall {
        /// The actor's name.
        name: String,
        /// How long (ms).
        #[arg(long, default_value_t = 5000)]
        ms: u64,
    },
}

/// Runs `vsa admin`.
pub fn run(args: AdminArgs) -> anyhow::Result<i32> {
    let addr = args.conn.addr.clone();
    let mut options = args.conn.options("admin");
    options.admin_token = Some(args.admin_token.clone());
    options.request_timeout = Some(std::time::Duration::from_secs(3600));
    let action = match args.action {
        AdminCommand::Snapshot => AdminAction::Snapshot,
        AdminCommand::Panic { name } => AdminAction::PanicActor { name },
        AdminCommand::Stall { name, ms } => AdminAction::StallActor { name, millis: ms },
        AdminCommand::Weights { pairs } => {
            let mut changes = Vec::new();
            for p in pairs {
                let (k, v) = p
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("expected component=weight, got {p:?}"))?;
                let w: f32 = v
                    .parse()
                    .map_err(|_| anyhow::anyhow!("weight of {k} is not a number: {v:?}"))?;
                changes.push((k.to_string(), w));
            }
            AdminAction::SetRerankWeights(changes)
        }
        AdminCommand::Clicks { top } => AdminAction::ClickStats { top },
        AdminCommand::Rebalance {
            apply,
            status,
            cancel,
            ..
        } => match (apply, status, cancel) {
            (Some(plan_id), false, false) => AdminAction::RebalanceApply { plan_id },
            (None, true, false) => AdminAction::RebalanceStatus,
            (None, false, true) => AdminAction::RebalanceCancel,
            (None, false, false) => AdminAction::RebalancePlan,
            _ => anyhow::bail!("give one of --plan, --apply ID, --status, --cancel"),
        },
    };
    let outcome = client_common::block_on(async {
        let mut client = client_common::connect(&addr, options).await?;
        anyhow::Ok(client.admin(action).await)
    })??;
    match outcome {
        Ok(reply) => {
            println!("{}", reply.message);
            if let Some(p) = reply.payload {
                println!("{p}");
            }
            Ok(0)
        }
        Err(e) => {
            eprintln!("vsa at {addr} refused: {}", client_common::plain(&e));
            Ok(1)
        }
    }
}

/// Arguments of `vsa rebalance` (the same as `vsa admin rebalance`).
#[derive(Debug, Args)]
pub struct RebalanceArgs {
    /// Server address and session token.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The admin token (the server's `admin.token`).
    #[arg(long, env = "VSA_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// Compute and print a plan (the default).
    #[arg(long)]
    pub plan: bool,
    /// Apply the plan with this id.
    #[arg(long, value_name = "PLAN_ID")]
    pub apply: Option<u64>,
    /// Print the progress of the running (or last) apply.
    #[arg(long)]
    pub status: bool,
    /// Cancel the running apply (before its switch).
    #[arg(long)]
    pub cancel: bool,
}

/// Runs `vsa rebalance`.
pub fn run_rebalance(args: RebalanceArgs) -> anyhow::Result<i32> {
    run(AdminArgs {
        conn: args.conn,
        admin_token: args.admin_token,
        action: AdminCommand::Rebalance {
            plan: args.plan,
            apply: args.apply,
            status: args.status,
            cancel: args.cancel,
        },
    })
}
