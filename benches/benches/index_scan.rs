//! Binary index scan, insert and memory-bandwidth benchmarks (vsa-index).
//!
//! 1M × 256-bit codes with 256-d int8 rerank vectors; queries of 1 and 4 vectors, 1 and 2
//! threads, k = 10, R = 100/1000; a Hamming-only search at k = 100 (faiss's setting); insert
//! rate; and a STREAM-like sequential read of 32 MiB (the codes' size) and 256 MiB so the
//! scan's GB/s can be compared with what one core can read. And one query's encoding
//! (1 280-d embedding to a 256-bit code and 256-d rerank vector), which every search pays.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use vsa_benches::SplitMix;
use vsa_index::{Encoded, Encoder, EncoderConfig, Kernel, Query, QueryVector, SearchParams, Shard};

const N: usize = 1_000_000;
const DIMS: usize = 256;

fn item(rng: &mut SplitMix) -> Encoded<4> {
    let code = [
        rng.next_u64(),
        rng.next_u64(),
        rng.next_u64(),
        rng.next_u64(),
    ];
    let reduced = (0..DIMS / 8)
        .flat_map(|_| rng.next_u64().to_le_bytes())
        .map(|b| b as i8)
        .collect();
    Encoded {
        code,
        reduced,
        scale: 0.01,
        bias: 0.0,
    }
}

fn query(rng: &mut SplitMix, vectors: usize) -> Query<4> {
    Query {
        vectors: (0..vectors)
            .map(|_| QueryVector {
                code: [
                    rng.next_u64(),
                    rng.next_u64(),
                    rng.next_u64(),
                    rng.next_u64(),
                ],
                reduced: (0..DIMS)
                    .map(|_| (rng.next_u64() % 200) as f32 / 100.0 - 1.0)
                    .collect(),
                bias: 0.0,
            })
            .collect(),
    }
}

fn scan(c: &mut Criterion) {
    let mut rng = SplitMix(42);
    let mut shard = Shard::<4>::new(DIMS);
    shard.reserve(N);
    for id in 0..N as u64 {
        shard.insert(id, &item(&mut rng), &[]).expect("insert");
    }
    let mut g = c.benchmark_group("index_scan_1M_256bit");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Bytes((N * 32) as u64));
    for vectors in [1, 4] {
        let q = query(&mut rng, vectors);
        for threads in [1, 2] {
            for r in [100, 1000] {
                let p = SearchParams {
                    k: 10,
                    candidates: r,
                    threads,
                    rerank: true,
                    kernel: None,
                };
                g.bench_function(format!("v{vectors}_t{threads}_k10_R{r}"), |b| {
                    b.iter(|| black_box(shard.search(&q, &p, None).expect("search")))
                });
            }
        }
        // Hamming only, k = 100: the same work as faiss IndexBinaryFlat at k = 100, with each
        // kernel this CPU has.
        for kernel in [Kernel::Avx512, Kernel::Avx2, Kernel::Portable] {
            if !kernel.available::<4>() {
                continue;
            }
            let p = SearchParams {
                k: 100,
                candidates: 100,
                threads: 1,
                rerank: false,
                kernel: Some(kernel),
            };
            let name = format!("{kernel:?}").to_lowercase();
            g.bench_function(format!("v{vectors}_t1_hamming_k100_{name}"), |b| {
                b.iter(|| black_box(shard.search(&q, &p, None).expect("search")))
            });
        }
    }
    g.finish();
}

fn insert(c: &mut Criterion) {
    let mut rng = SplitMix(7);
    let items: Vec<Encoded<4>> = (0..10_000).map(|_| item(&mut rng)).collect();
    let attrs = vec![("color".to_string(), "red".to_string())];
    let mut g = c.benchmark_group("index_insert");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(items.len() as u64));
    g.bench_function("10k_into_empty_with_attr", |b| {
        b.iter_batched(
            || Shard::<4>::new(DIMS),
            |mut s| {
                for (id, e) in items.iter().enumerate() {
                    s.insert(id as u64, e, &attrs).expect("insert");
                }
                s
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn bandwidth(c: &mut Criterion) {
    let mut g = c.benchmark_group("memory_read");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for mib in [32usize, 256] {
        let words = mib << 17;
        let data: Vec<u64> = (0..words as u64).collect();
        g.throughput(Throughput::Bytes((words * 8) as u64));
        g.bench_function(format!("sum_{mib}MiB"), |b| {
            b.iter(|| black_box(vsa_benches::read_sum(&data)))
        });
    }
    g.finish();
}

/// One query's encoding: the projection and rotation products of a single row (the
/// per-search cost in front of the scan).
fn encode(c: &mut Criterion) {
    const INPUT: usize = 1280;
    let mut rng = SplitMix(7);
    let sample: Vec<f32> = (0..2000 * INPUT)
        .map(|_| (rng.next_u64() % 2000) as f32 / 1000.0 - 1.0)
        .collect();
    let encoder =
        Encoder::<4>::train(&sample, INPUT, &EncoderConfig::default()).expect("train the encoder");
    let q: Vec<f32> = sample[..INPUT].to_vec();
    let mut g = c.benchmark_group("encode_query");
    g.bench_function("1280_to_256bit", |b| {
        b.iter(|| black_box(encoder.encode_query(black_box(&q)).expect("encode")))
    });
    g.finish();
}

criterion_group!(benches, scan, insert, bandwidth, encode);
criterion_main!(benches);
