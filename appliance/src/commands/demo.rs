//! `vsa demo`: the README's main job on the embedded default — an appliance in this process
//! on the bundled model, the built-in demo catalogue ingested over TCP, then a few generated
//! shopper photos searched and their results printed.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use vsa_models::image::{self, DynamicImage, ImageFormat, Rgb, RgbImage};
use vsa_protocol::{Client, ClientOptions, QueryInput, SearchRequest};

use crate::settings::Settings;

/// Arguments of `vsa demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of generated shopper photos to search with.
    #[arg(long, default_value_t = 6)]
    pub queries: usize,
    /// Folder to write the generated query photos into (default: a temporary folder).
    #[arg(long)]
    pub save_queries: Option<PathBuf>,
    /// libonnxruntime path.
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_lib: Option<PathBuf>,
}

/// The built-in demo catalogue folder (`demo/` of the project).
pub fn demo_dir() -> anyhow::Result<PathBuf> {
    vsa_models::project_roots()
        .into_iter()
        .map(|r| r.join("demo"))
        .find(|d| d.join("items.jsonl").is_file())
        .ok_or_else(|| anyhow::anyhow!("the demo catalogue (demo/items.jsonl) was not found; set VSA_HOME to the vsa folder"))
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<i32> {
    let dir = demo_dir()?;
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".into();
    // A throwaway catalogue: nothing written to disk.
    settings.server.in_memory = true;
    settings.model.ort_lib = args.ort_lib.clone();
    // Small catalogue: fit the binary encoder early so the demo runs through the real index.
    settings.index.fit_threshold = 64;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(demo(settings, dir, args))
}

async fn demo(settings: Settings, dir: PathBuf, args: DemoArgs) -> anyhow::Result<i32> {
    println!("vsa demo: starting an appliance with the bundled model (EfficientNet-Lite0)...");
    let listener = tokio::net::TcpListener::bind(&settings.server.listen).await?;
    let addr = listener.local_addr()?;
    let engine = super::serve::start_engine(&settings).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::serve(
        engine,
        settings,
        listener,
        async move {
            let _ = stop_rx.await;
        },
    ));
    println!("listening on {addr}\n");

    let manifest = dir.join("items.jsonl");
    let started = Instant::now();
    let summary = super::ingest::ingest_file(
        &addr.to_string(),
        &ClientOptions::default(),
        &manifest,
        16,
        false,
    )
    .await
    .context("ingesting the demo catalogue")?;
    println!(
        "ingested {} catalogue items ({} failed) in {:.1} s\n",
        summary.ok,
        summary.failed,
        started.elapsed().as_secs_f64()
    );

    let items = read_items(&manifest)?;
    let out_dir = match &args.save_queries {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("vsa-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&out_dir)?;
    let mut client = Client::connect(addr).await?;
    let step = (items.len() / args.queries.max(1)).max(1);
    let mut found = 0;
    let mut asked = 0;
    for (n, item) in items.iter().step_by(step).take(args.queries).enumerate() {
        let photo = shopper_photo(&dir.join(&item.image), n as u64)?;
        let path = out_dir.join(format!("query-{n}-{}.jpg", item.id));
        std::fs::write(&path, &photo)?;
        let r = client
            .search(SearchRequest::new(QueryInput::Image(photo), 5))
            .await?;
        asked += 1;
        let rank = r.hits.iter().position(|h| h.id == item.id);
        if rank == Some(0) {
            found += 1;
        }
        println!(
            "query {} — a photo of {} ({}), predicted category: {}",
            path.display(),
            item.id,
            item.category,
            r.category.as_ref().map_or("-".into(), |c| format!(
                "{} ({:.0}%)",
                c.category,
                c.confidence * 100.0
            ))
        );
        for (i, h) in r.hits.iter().enumerate() {
            let mark = if h.id == item.id {
                "  ← the photographed item"
            } else {
                ""
            };
            println!(
                "  {}. {}  {:.3}  {}{mark}",
                i + 1,
                h.id,
                h.score,
                h.category
            );
        }
        let total = r
            .timings
            .iter()
            .find(|(s, _)| s == "total")
            .map_or(0, |t| t.1);
        println!("  ({:.1} ms)\n", total as f64 / 1000.0);
    }
    println!("found the photographed item first in {found} of {asked} photos");
    let stats = client.stats().await?;
    println!(
        "appliance: {} items in {} shards, {} model batches, {} restarts",
        stats.items,
        stats.shards.len(),
        stats.inference.batches,
        stats.restarts
    );
    let _ = stop_tx.send(());
    server.await??;
    Ok(0)
}

struct DemoItem {
    id: String,
    image: String,
    category: String,
}

fn read_items(path: &Path) -> anyhow::Result<Vec<DemoItem>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)?;
            let s = |k: &str| {
                v[k].as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow::anyhow!("{k} missing"))
            };
            Ok(DemoItem {
                id: s("id")?,
                image: s("image")?,
                category: s("category")?,
            })
        })
        .collect()
}

/// A deterministic pseudo-random stream (no dependency needed for a demo).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / ((1u64 << 24) as f32)
    }
}

/// A shopper-like photo of a catalogue image: the object (white treated as transparent) scaled
/// to 80–95 % of a 640×480 frame's height, rotated, placed off-centre on a cluttered procedural background,
/// JPEG quality 70.
pub fn shopper_photo(path: &Path, seed: u64) -> anyhow::Result<Vec<u8>> {
    let item = image::open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .to_rgb8();
    let mut rng = Lcg(seed.wrapping_mul(0x9E3779B97F4A7C15) ^ 0xD1B54A32D192ED03);
    let (w, h) = (640u32, 480u32);
    let base = [
        rng.next() * 120.0 + 60.0,
        rng.next() * 120.0 + 60.0,
        rng.next() * 120.0 + 60.0,
    ];
    let mut photo = RgbImage::from_fn(w, h, |x, y| {
        let g = (x as f32 / w as f32) * 40.0 - (y as f32 / h as f32) * 30.0;
        let n = (((x * 7 + y * 13) % 17) as f32) * 2.0;
        Rgb([
            (base[0] + g + n).clamp(0.0, 255.0) as u8,
            (base[1] - g + n).clamp(0.0, 255.0) as u8,
            (base[2] + g * 0.5 + n).clamp(0.0, 255.0) as u8,
        ])
    });
    // Clutter: a few coloured rectangles.
    for _ in 0..6 {
        let (rx, ry) = (
            (rng.next() * w as f32) as u32,
            (rng.next() * h as f32) as u32,
        );
        let (rw, rh) = (
            (rng.next() * 120.0 + 20.0) as u32,
            (rng.next() * 90.0 + 20.0) as u32,
        );
        let c = Rgb([
            (rng.next() * 255.0) as u8,
            (rng.next() * 255.0) as u8,
            (rng.next() * 255.0) as u8,
        ]);
        for y in ry..(ry + rh).min(h) {
            for x in rx..(rx + rw).min(w) {
                photo.put_pixel(x, y, c);
            }
        }
    }
    let side = (h as f32 * (0.8 + rng.next() * 0.15)) as u32;
    let small = image::imageops::resize(&item, side, side, image::imageops::FilterType::Triangle);
    let angle = (rng.next() - 0.5) * 30.0;
    let (s, c) = angle.to_radians().sin_cos();
    let ox = (rng.next() * (w - side) as f32) as i64;
    let oy = (rng.next() * (h - side) as f32) as i64;
    let half = side as f32 / 2.0;
    for y in 0..side {
        for x in 0..side {
            let (dx, dy) = (x as f32 - half, y as f32 - half);
            let sx = c * dx + s * dy + half;
            let sy = -s * dx + c * dy + half;
            if sx < 0.0 || sy < 0.0 || sx >= side as f32 || sy >= side as f32 {
                continue;
            }
            let p = small.get_pixel(sx as u32, sy as u32);
            let ink = 255 - p.0.iter().copied().min().unwrap_or(255);
            let a = (f32::from(ink) / 40.0).min(1.0);
            if a <= 0.0 {
                continue;
            }
            let (px, py) = (ox + i64::from(x), oy + i64::from(y));
            if let (Ok(px), Ok(py)) = (u32::try_from(px), u32::try_from(py))
                && px < w
                && py < h
            {
                let bg = photo.get_pixel(px, py).0;
                let mixed =
                    [0, 1, 2].map(|i| (f32::from(p.0[i]) * a + f32::from(bg[i]) * (1.0 - a)) as u8);
                photo.put_pixel(px, py, Rgb(mixed));
            }
        }
    }
    let mut out = Cursor::new(Vec::new());
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 70);
    enc.encode_image(&DynamicImage::ImageRgb8(photo))?;
    let _ = ImageFormat::Jpeg;
    Ok(out.into_inner())
}
