//! The embedder's speed: images/s at batch 1, 8, 32 with 1 and 2 intra-op threads, each
//! iteration reading the encoded files' bytes through decode + resize + normalise + model, and
//! the latency of one whole-photo 640×480 pass. The Python peer is `benches/python/embed_bench.py`
//! on the same files; `benches/run_embedder_compare.sh` runs both.

use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vsa_models::{Batch, DecodeLimits, Embedder, EmbedderOptions, Manifest, decode_rgb};

/// The files `run_embedder_compare.sh` gives the Python peer, in the same order: the first 12
/// demo-catalogue JPEGs (sorted) and the first 2 CC0 PNG photos of `models/testdata`.
fn sample_files() -> Vec<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let sorted = |dir: &str, ext: &str, n: usize| {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .expect("sample folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        files.sort();
        files.truncate(n);
        files
    };
    let files: Vec<PathBuf> = sorted("demo/catalog", "jpg", 12)
        .into_iter()
        .chain(sorted("models/testdata", "png", 2))
        .collect();
    assert_eq!(files.len(), 14, "expected 12 demo JPEGs and 2 test PNGs");
    files
        .iter()
        .map(|p| std::fs::read(p).expect("read sample"))
        .collect()
}

fn embedder(threads: usize) -> Embedder {
    vsa_models::runtime::init(None).expect("ONNX Runtime (run scripts/setup.sh)");
    let manifest = Manifest::bundled().expect("bundled model");
    Embedder::load(
        &manifest,
        &EmbedderOptions {
            intra_threads: threads,
        },
    )
    .expect("model")
}

fn pipeline(e: &mut Embedder, files: &[Vec<u8>], n: usize) -> usize {
    let limits = DecodeLimits::default();
    let (h, w) = e.input_size();
    let mut batch = Batch::new(h, w);
    for bytes in files.iter().cycle().take(n) {
        let img = decode_rgb(bytes, &limits).expect("decode");
        let small = e.preprocessor().resize(&img, None, w, h).expect("resize");
        batch.push(e.preprocessor(), &small).expect("push");
    }
    e.run(&batch).expect("run").embeddings.len()
}

fn bench_embed(c: &mut Criterion) {
    let files = sample_files();
    let mut group = c.benchmark_group("embed_224");
    group.sample_size(10);
    group.measurement_time(std::time::Duration::from_secs(6));
    for threads in [1usize, 2] {
        let mut e = embedder(threads);
        for batch in [1usize, 8, 32] {
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("threads{threads}"), batch),
                &batch,
                |b, &n| b.iter(|| pipeline(&mut e, &files, n)),
            );
        }
    }
    group.finish();

    let mut group = c.benchmark_group("whole_photo_640x480");
    group.sample_size(10);
    for threads in [1usize, 2] {
        let mut e = embedder(threads);
        let img = decode_rgb(&files[0], &DecodeLimits::default()).expect("decode");
        let big = e
            .preprocessor()
            .resize(&img, None, 640, 480)
            .expect("resize");
        let mut batch = Batch::new(480, 640);
        batch.push(e.preprocessor(), &big).expect("push");
        group.bench_function(format!("threads{threads}"), |b| {
            b.iter(|| e.run(&batch).expect("run"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_embed);
criterion_main!(benches);
