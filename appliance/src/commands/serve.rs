//! `vsa serve`: starts the appliance (model workers, partitions, TCP server) and runs until
//! SIGINT or SIGTERM.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use vsa_models::Manifest;

use crate::settings::Settings;

/// Arguments of `vsa serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file (every setting; see docs/CONFIG.md).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address of the TCP protocol (overrides server.listen).
    #[arg(long)]
    pub listen: Option<String>,
    /// Data folder (overrides server.data_dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// libonnxruntime path (overrides model.ort_lib).
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
    /// Model manifest (overrides model.manifest).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Address of the HTTP side: health, readiness, metrics, JSON search (overrides
    /// server.http_listen).
    #[arg(long)]
    pub http_listen: Option<String>,
}

impl ServeArgs {
    /// Settings from defaults, file, environment, then these flags.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let mut s = Settings::load(self.config.as_deref())?;
        if let Some(l) = &self.listen {
            s.server.listen.clone_from(l);
        }
        if let Some(d) = &self.data_dir {
            s.server.data_dir.clone_from(d);
        }
        if let Some(p) = &self.ort_lib {
            s.model.ort_lib = Some(p.clone());
        }
        if let Some(p) = &self.model {
            s.model.manifest = Some(p.clone());
        }
        if let Some(h) = &self.http_listen {
            s.server.http_listen = Some(h.clone());
        }
        s.validate()?;
        Ok(s)
    }
}

/// Runs `vsa serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<i32> {
    let settings = args.settings()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vsa-io")
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&settings.server.listen)
            .await
            .with_context(|| format!("binding {}", settings.server.listen))?;
        let http = match &settings.server.http_listen {
            Some(a) => {
                Some(std::net::TcpListener::bind(a).with_context(|| format!("binding HTTP {a}"))?)
            }
            None => None,
        };
        let engine = start_engine(&settings).await?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "vsa listening");
        if let Some(h) = &http {
            let a = h.local_addr()?;
            tracing::info!(addr = %a, "vsa HTTP listening");
            println!("vsa http listening on {a}");
        }
        // Scripts and tests read this line to learn the port when listening on :0.
        println!("vsa listening on {addr}");
        std::io::stdout().flush().ok();
        crate::server::serve_all(engine, settings, listener, http, shutdown_signal()).await
    })?;
    Ok(0)
}

/// Loads ONNX Runtime and the model, and starts the actor system.
pub async fn start_engine(settings: &Settings) -> anyhow::Result<vsa_actors::Engine> {
    vsa_models::runtime::init(settings.model.ort_lib.as_deref())?;
    let manifest = match &settings.model.manifest {
        Some(p) => Manifest::load(p)?,
        None => Manifest::bundled()?,
    };
    let engine = vsa_actors::Engine::start(settings.engine(), manifest)
        .await
        .context("starting the engine")?;
    Ok(engine)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
