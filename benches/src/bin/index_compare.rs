//! vsa-index on clustered synthetic embeddings: recall@10 against exact float search, scan
//! speed, insert rate and memory; writes the codes and float vectors so
//! `benches/compare/compare_faiss.py` can run faiss on exactly the same data.
//!
//! Data ("products"): `clusters` centres ~ N(0, diag(s²)) with s_j = 1/√(1 + j/16) over 1280
//! dims; each product = centre + 0.6·N(0, diag(s²)); each item (a photo) = product +
//! 0.6·N(0, diag(s²)); ten photos per product. Queries are fresh photos of random products,
//! held out of the index, so the exact top-10 is mostly the product's own photos.
//!
//! At 10M (`--dim 256`) the items are generated directly as 256-d vectors with the same
//! spectrum's leading 256 dimensions (10M × 1280 floats would be 51 GB); the encoder's PCA is
//! then a rotation and the exact reference is cosine on those 256-d vectors.
//!
//! Usage: `index_compare [--n N] [--queries Q] [--dim 1280|256] [--sweep-n N2] [--out DIR]
//! [--real FILE.f32]` (`--sweep-n 0` skips the code-length sweep; by default it runs on all N).

use std::io::Write;
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use vsa_index::{Encoder, EncoderConfig, Kernel, Query, QueryVector, SearchParams, Shard};

const D: usize = 1280;

struct Args {
    n: usize,
    queries: usize,
    sweep_n: usize,
    /// Dimension of the generated vectors: 1280 (the model's; reduced by the encoder) or 256
    /// (the reduced vectors made directly, for 10M where 10M × 1280 floats do not fit).
    dim: usize,
    out: String,
    real: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        n: 1_000_000,
        queries: 200,
        sweep_n: usize::MAX,
        dim: D,
        out: "target/index-compare".into(),
        real: None,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < v.len() {
        let val = v[i + 1].clone();
        match v[i].as_str() {
            "--n" => a.n = val.parse().unwrap_or(a.n),
            "--queries" => a.queries = val.parse().unwrap_or(a.queries),
            "--sweep-n" => a.sweep_n = val.parse().unwrap_or(a.sweep_n),
            "--dim" => a.dim = val.parse().unwrap_or(a.dim),
            "--out" => a.out = val,
            "--real" => a.real = Some(val),
            _ => {}
        }
        i += 2;
    }
    a
}

fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Items (n × d, normalised) and queries (q × d, normalised), deterministic. The spectrum
/// s_j = 1/√(1 + j/16) is the same whatever d, so d = 256 is the 1280-d model's leading part.
fn generate(n: usize, q: usize, d: usize) -> (Vec<f32>, Vec<f32>) {
    let clusters = 1000;
    let products = n.div_ceil(10).max(1);
    let scale: Vec<f32> = (0..d)
        .map(|j| 1.0 / (1.0 + j as f32 / 16.0).sqrt())
        .collect();
    let mut rng = StdRng::seed_from_u64(1);
    let centres: Vec<f32> = (0..clusters * d)
        .map(|i| {
            let g: f32 = StandardNormal.sample(&mut rng);
            g * scale[i % d]
        })
        .collect::<Vec<f32>>();
    let mut prods = vec![0f32; products * d];
    for (p, row) in prods.chunks_mut(d).enumerate() {
        let c = p % clusters;
        for j in 0..d {
            let g: f32 = StandardNormal.sample(&mut rng);
            row[j] = centres[c * d + j] + 0.6 * g * scale[j];
        }
    }
    let photo = |seed: u64, rows: &mut [f32], first: usize, product_of: &dyn Fn(usize) -> usize| {
        let mut rng = StdRng::seed_from_u64(seed);
        for (i, row) in rows.chunks_mut(d).enumerate() {
            let p = product_of(first + i);
            for j in 0..d {
                let g: f32 = StandardNormal.sample(&mut rng);
                row[j] = prods[p * d + j] + 0.6 * g * scale[j];
            }
            normalise(row);
        }
    };
    let mut items = vec![0f32; n * d];
    let chunk = 65_536;
    std::thread::scope(|s| {
        let halves: Vec<&mut [f32]> = {
            let mid = (n / 2 / chunk) * chunk * d;
            let (a, b) = items.split_at_mut(mid.min(n * d));
            vec![a, b]
        };
        let mut first = 0;
        for part in halves {
            let len = part.len() / d;
            let f = first;
            let photo = &photo;
            s.spawn(move || {
                for (c, rows) in part.chunks_mut(chunk * d).enumerate() {
                    photo(100 + (f / chunk + c) as u64, rows, f + c * chunk, &|i| {
                        i / 10
                    });
                }
            });
            first += len;
        }
    });
    let mut queries = vec![0f32; q * d];
    let mut pick = StdRng::seed_from_u64(7);
    let chosen: Vec<usize> = (0..q)
        .map(|_| (rand::Rng::random::<u64>(&mut pick) % products as u64) as usize)
        .collect();
    photo(99, &mut queries, 0, &|i| chosen[i]);
    (items, queries)
}

/// Exact top-k by inner product of each query against all items (both normalised).
fn exact_topk(items: &[f32], queries: &[f32], d: usize, k: usize) -> Vec<Vec<u32>> {
    let n = items.len() / d;
    let q = queries.len() / d;
    let chunk = 32_768;
    let chunks: Vec<(usize, &[f32])> = items.chunks(chunk * d).enumerate().collect();
    let parts: Vec<Vec<Vec<(f32, u32)>>> = std::thread::scope(|s| {
        let hs: Vec<_> = [0usize, 1]
            .iter()
            .map(|&t| {
                let chunks = &chunks;
                s.spawn(move || {
                    let mut best: Vec<Vec<(f32, u32)>> = vec![Vec::new(); q];
                    for (ci, rows) in chunks.iter().filter(|(ci, _)| ci % 2 == t) {
                        let m = rows.len() / d;
                        let mut c = vec![0f32; m * q];
                        // SAFETY: rows is m×d, queries q×d read transposed (d×q); c is m×q.
                        unsafe {
                            matrixmultiply::sgemm(
                                m,
                                d,
                                q,
                                1.0,
                                rows.as_ptr(),
                                d as isize,
                                1,
                                queries.as_ptr(),
                                1,
                                d as isize,
                                0.0,
                                c.as_mut_ptr(),
                                q as isize,
                                1,
                            );
                        }
                        for (i, row) in c.chunks(q).enumerate() {
                            for (j, &s) in row.iter().enumerate() {
                                let b = &mut best[j];
                                if b.len() < k || s > b[k - 1].0 {
                                    b.push((s, (ci * chunk + i) as u32));
                                    b.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
                                    b.truncate(k);
                                }
                            }
                        }
                    }
                    best
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("ground truth thread"))
            .collect()
    });
    let _ = n;
    (0..q)
        .map(|j| {
            let mut all: Vec<(f32, u32)> = parts.iter().flat_map(|p| p[j].clone()).collect();
            all.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
            all.into_iter().take(k).map(|x| x.1).collect()
        })
        .collect()
}

fn recall(got: &[Vec<u64>], truth: &[Vec<u32>]) -> f64 {
    let mut hit = 0usize;
    let mut total = 0usize;
    for (g, t) in got.iter().zip(truth) {
        total += t.len();
        hit += t.iter().filter(|id| g.contains(&u64::from(**id))).count();
    }
    hit as f64 / total.max(1) as f64
}

struct Built<const W: usize> {
    encoder: Encoder<W>,
    shard: Shard<W>,
    train_s: f64,
    encode_s: f64,
    insert_s: f64,
}

fn build<const W: usize>(items: &[f32], d: usize, itq_iterations: usize) -> Built<W> {
    let n = items.len() / d;
    let train_n = n.min(20_000);
    let step = n / train_n;
    let sample: Vec<f32> = (0..train_n)
        .flat_map(|i| items[i * step * d..(i * step + 1) * d].iter().copied())
        .collect();
    let cfg = EncoderConfig {
        itq_iterations,
        dims: 256.min(d),
        ..EncoderConfig::default()
    };
    let t = Instant::now();
    let encoder = Encoder::<W>::train(&sample, d, &cfg).expect("train");
    let train_s = t.elapsed().as_secs_f64();
    let mut shard = Shard::<W>::new(encoder.dims());
    shard.reserve(n);
    // Encode and insert a chunk at a time (10M encoded items at once would need ~3 GB more).
    let (mut encode_s, mut insert_s) = (0.0, 0.0);
    for (c, rows) in items.chunks(65_536 * d).enumerate() {
        let t = Instant::now();
        let encoded = encoder.encode_batch(rows, 2).expect("encode");
        encode_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        for (i, e) in encoded.iter().enumerate() {
            shard
                .insert((c * 65_536 + i) as u64, e, &[])
                .expect("insert");
        }
        insert_s += t.elapsed().as_secs_f64();
    }
    Built {
        encoder,
        shard,
        train_s,
        encode_s,
        insert_s,
    }
}

/// STREAM-like sequential read of `bytes` bytes ([`vsa_benches::read_sum`]), best of `reps`,
/// and the mean: the single-thread read bandwidth the scan is compared with, in the same run
/// (GB/s, 10⁹ bytes).
fn read_bandwidth(bytes: usize, reps: usize) -> (f64, f64) {
    let words: Vec<u64> = (0..bytes as u64 / 8).collect();
    let mut best = f64::MAX;
    let mut total = 0.0;
    for _ in 0..reps {
        let t = Instant::now();
        std::hint::black_box(vsa_benches::read_sum(&words));
        let e = t.elapsed().as_secs_f64();
        best = best.min(e);
        total += e;
    }
    (
        bytes as f64 / best / 1e9,
        bytes as f64 * reps as f64 / total / 1e9,
    )
}

fn queries_of<const W: usize>(enc: &Encoder<W>, queries: &[f32], d: usize) -> Vec<Query<W>> {
    queries
        .chunks(d)
        .map(|q| Query::single(enc.encode_query(q).expect("query")))
        .collect()
}

/// Passes over the query set per timed row; the fastest counts (compare_faiss.py does the
/// same), so a burst of load on the shared cores spoils one pass, not the row.
const PASSES: usize = 3;

/// Runs every query `PASSES` times; returns (ms per query of the fastest pass, hit ids per
/// query).
fn run<const W: usize>(
    shard: &Shard<W>,
    qs: &[Query<W>],
    p: &SearchParams,
) -> (f64, Vec<Vec<u64>>) {
    // One warm-up query.
    let _ = shard.search(&qs[0], p, None);
    let mut best = f64::MAX;
    let mut res = Vec::new();
    for _ in 0..PASSES {
        let t = Instant::now();
        res = qs
            .iter()
            .map(|q| {
                shard
                    .search(q, p, None)
                    .expect("search")
                    .into_iter()
                    .map(|h| h.id)
                    .collect()
            })
            .collect();
        best = best.min(t.elapsed().as_secs_f64() * 1000.0 / qs.len() as f64);
    }
    (best, res)
}

fn sweep<const W: usize>(
    items: &[f32],
    queries: &[f32],
    d: usize,
    truth: &[Vec<u32>],
    out: &mut Vec<String>,
) {
    let b = build::<W>(items, d, 20);
    let qs = queries_of(&b.encoder, queries, d);
    for r in [100, 500, 1000] {
        let p = SearchParams {
            k: 10,
            candidates: r,
            ..SearchParams::default()
        };
        let (ms, res) = run(&b.shard, &qs, &p);
        out.push(format!(
            "{{\"bits\": {}, \"R\": {r}, \"recall10\": {:.4}, \"ms\": {ms:.3}, \"train_s\": {:.2}}}",
            64 * W,
            recall(&res, truth),
            b.train_s
        ));
    }
}

fn write(path: &str, bytes: &[u8]) {
    let mut f = std::fs::File::create(path).expect("create output file");
    f.write_all(bytes).expect("write output file");
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Real embeddings: 100 random catalogue images are the queries, the rest the index.
fn real(path: &str, out: &str) {
    let bytes = std::fs::read(path).expect("read real embeddings");
    let all: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let n = all.len() / D;
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = StdRng::seed_from_u64(3);
    rand::seq::SliceRandom::shuffle(&mut order[..], &mut rng);
    let nq = 100.min(n / 4);
    let norm = |i: usize| {
        let mut v = all[i * D..(i + 1) * D].to_vec();
        normalise(&mut v);
        v
    };
    let queries: Vec<f32> = order[..nq].iter().flat_map(|&i| norm(i)).collect();
    let items: Vec<f32> = order[nq..].iter().flat_map(|&i| norm(i)).collect();
    let truth = exact_topk(&items, &queries, D, 10);
    let mut rows = Vec::new();
    let b = build::<4>(&items, D, 50);
    let qs = queries_of(&b.encoder, &queries, D);
    for r in [20, 50, 100, 500] {
        let p = SearchParams {
            k: 10,
            candidates: r,
            ..SearchParams::default()
        };
        let (ms, res) = run(&b.shard, &qs, &p);
        rows.push(format!(
            "{{\"R\": {r}, \"recall10\": {:.4}, \"ms\": {ms:.4}}}",
            recall(&res, &truth)
        ));
    }
    let json = format!(
        "{{\"items\": {}, \"queries\": {nq}, \"search\": [{}]}}\n",
        n - nq,
        rows.join(", ")
    );
    print!("real embeddings: {json}");
    write(&format!("{out}/real.json"), json.as_bytes());
}

fn main() {
    let a = args();
    std::fs::create_dir_all(&a.out).expect("out dir");
    if let Some(path) = &a.real {
        real(path, &a.out);
        return;
    }
    let mut json: Vec<String> = Vec::new();
    let d = a.dim;
    eprintln!("generating {} items + {} queries ({d}-d)", a.n, a.queries);
    let t = Instant::now();
    let (items, queries) = generate(a.n, a.queries, d);
    eprintln!("  {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let truth = exact_topk(&items, &queries, d, 10);
    let exact_ms = t.elapsed().as_secs_f64() * 1000.0 / a.queries as f64;
    eprintln!("exact top-10: {exact_ms:.2} ms/query (brute-force GEMM, 2 threads)");

    // Code-length sweep on the first sweep_n items (ground truth recomputed there if a subset).
    if a.sweep_n > 0 {
        let sn = a.sweep_n.min(a.n);
        let sub = &items[..sn * d];
        let st = if sn == a.n {
            truth.clone()
        } else {
            exact_topk(sub, &queries, d, 10)
        };
        let mut rows = Vec::new();
        eprintln!("code-length sweep on {sn} items");
        sweep::<1>(sub, &queries, d, &st, &mut rows);
        sweep::<2>(sub, &queries, d, &st, &mut rows);
        sweep::<4>(sub, &queries, d, &st, &mut rows);
        sweep::<8>(sub, &queries, d, &st, &mut rows);
        json.push(format!(
            "\"sweep_n\": {sn}, \"sweep\": [{}]",
            rows.join(", ")
        ));
    }

    eprintln!("building the 256-bit index on {} items", a.n);
    let b = build::<4>(&items, d, 50);
    let n = a.n;
    let mem = b.shard.memory_bytes();
    let (bw_best, bw_mean) = read_bandwidth(n * 32, 20);
    eprintln!(
        "read bandwidth over {} MB: best {bw_best:.1} GB/s, mean {bw_mean:.1} GB/s",
        n * 32 / 1_000_000
    );
    json.push(format!(
        "\"read_gbps_best\": {bw_best:.2}, \"read_gbps_mean\": {bw_mean:.2}, \"dim\": {d}"
    ));
    json.push(format!(
        "\"n\": {n}, \"queries\": {}, \"train_s\": {:.2}, \"encode_per_s\": {:.0}, \"insert_per_s\": {:.0}, \"bytes_per_item\": {:.1}, \"exact_gemm_ms\": {exact_ms:.2}",
        a.queries,
        b.train_s,
        n as f64 / b.encode_s,
        n as f64 / b.insert_s,
        mem as f64 / n as f64
    ));
    let qs = queries_of(&b.encoder, &queries, d);
    let mut rows = Vec::new();
    for threads in [1, 2] {
        for r in [100, 500, 1000] {
            let p = SearchParams {
                k: 10,
                candidates: r,
                threads,
                ..SearchParams::default()
            };
            let (ms, res) = run(&b.shard, &qs, &p);
            rows.push(format!(
                "{{\"R\": {r}, \"threads\": {threads}, \"ms\": {ms:.3}, \"recall10\": {:.4}}}",
                recall(&res, &truth)
            ));
        }
    }
    json.push(format!("\"search\": [{}]", rows.join(", ")));

    // Where is recall lost? Rerank the same Hamming top-R with (a) vsa's int8 256-d vectors,
    // (b) float 256-d PCA vectors, (c) the exact 1280-d cosine.
    let mut rows = Vec::new();
    for r in [100, 1000] {
        let p = SearchParams {
            k: r,
            candidates: r,
            rerank: false,
            ..SearchParams::default()
        };
        let (mut f32_res, mut exact_res) = (Vec::new(), Vec::new());
        for (qi, q) in qs.iter().enumerate() {
            let cands = b.shard.search(q, &p, None).expect("search");
            let qv = &queries[qi * d..(qi + 1) * d];
            let qr = &q.vectors[0];
            let mut f: Vec<(f32, u64)> = Vec::new();
            let mut e: Vec<(f32, u64)> = Vec::new();
            for h in &cands {
                let x = &items[h.id as usize * d..(h.id as usize + 1) * d];
                let y = b.encoder.encode_query(x).expect("encode");
                let s: f32 = qr
                    .reduced
                    .iter()
                    .zip(&y.reduced)
                    .map(|(a, b)| a * b)
                    .sum::<f32>()
                    + qr.bias
                    + y.bias;
                f.push((s, h.id));
                e.push((qv.iter().zip(x).map(|(a, b)| a * b).sum::<f32>(), h.id));
            }
            for (list, out) in [(&mut f, &mut f32_res), (&mut e, &mut exact_res)] {
                list.sort_by(|a, b| b.0.total_cmp(&a.0));
                out.push(list.iter().take(10).map(|x| x.1).collect::<Vec<u64>>());
            }
        }
        rows.push(format!(
            "{{\"R\": {r}, \"f32_pca\": {:.4}, \"exact\": {:.4}}}",
            recall(&f32_res, &truth),
            recall(&exact_res, &truth)
        ));
    }
    json.push(format!("\"rerank_ablation\": [{}]", rows.join(", ")));
    eprintln!("rerank ablation: {}", rows.join(", "));

    // Four "crops": the query plus three noisier views of it.
    let mut rng = StdRng::seed_from_u64(5);
    let q4: Vec<Query<4>> = queries
        .chunks(d)
        .map(|q| {
            let mut vectors: Vec<QueryVector<4>> = vec![b.encoder.encode_query(q).expect("query")];
            for _ in 0..3 {
                let crop: Vec<f32> = q
                    .iter()
                    .map(|x| {
                        let g: f32 = StandardNormal.sample(&mut rng);
                        x + 0.01 * g
                    })
                    .collect::<Vec<f32>>();
                vectors.push(b.encoder.encode_query(&crop).expect("query"));
            }
            Query { vectors }
        })
        .collect();
    let mut rows = Vec::new();
    let bytes = (n * 32) as f64;
    for (name, set) in [("1", &qs), ("4", &q4)] {
        let kernels = [
            (1, Some(Kernel::Avx512)),
            (1, Some(Kernel::Avx2)),
            (1, Some(Kernel::Portable)),
            (1, None),
            (2, None),
        ];
        for (threads, kernel) in kernels {
            if kernel.is_some_and(|k| !k.available::<4>()) {
                continue;
            }
            let p = SearchParams {
                k: 100,
                candidates: 100,
                threads,
                rerank: false,
                kernel,
            };
            let (ms, _) = run(&b.shard, set, &p);
            let kname = kernel.map_or("auto".to_string(), |k| format!("{k:?}").to_lowercase());
            rows.push(format!(
                "{{\"vectors\": {name}, \"threads\": {threads}, \"kernel\": \"{kname}\", \"ms\": {ms:.3}, \"gbps\": {:.2}}}",
                bytes / ms / 1e6
            ));
        }
        if name == "1" {
            let p = SearchParams {
                k: 1000,
                candidates: 1000,
                threads: 1,
                rerank: false,
                kernel: None,
            };
            let (ms, _) = run(&b.shard, set, &p);
            rows.push(format!(
                "{{\"vectors\": 1, \"threads\": 1, \"kernel\": \"auto\", \"k\": 1000, \"ms\": {ms:.3}, \"gbps\": {:.2}}}",
                bytes / ms / 1e6
            ));
        }
        for threads in [1, 2] {
            let p = SearchParams {
                k: 10,
                candidates: 1000,
                threads,
                ..SearchParams::default()
            };
            let (ms, res) = run(&b.shard, set, &p);
            rows.push(format!(
                "{{\"vectors\": {name}, \"threads\": {threads}, \"rerank_R\": 1000, \"ms\": {ms:.3}, \"recall10\": {:.4}}}",
                recall(&res, &truth)
            ));
        }
    }
    json.push(format!("\"hamming_k100\": [{}]", rows.join(", ")));

    // Hamming top-100 of each single-vector query, to check against faiss.
    let p = SearchParams {
        k: 100,
        candidates: 100,
        threads: 1,
        rerank: false,
        kernel: None,
    };
    let mut ham = Vec::new();
    for q in &qs {
        let hits = b.shard.search(q, &p, None).expect("search");
        for h in hits {
            ham.extend_from_slice(&(h.id as u32).to_le_bytes());
            ham.extend_from_slice(&h.hamming.to_le_bytes());
        }
    }
    write(&format!("{}/vsa_hamming_k100.bin", a.out), &ham);
    let codes: Vec<u8> = (0..n as u64)
        .flat_map(|id| b.shard.vector(id).map(|v| v.code).unwrap_or([0; 4]))
        .flat_map(|w| w.to_le_bytes())
        .collect();
    write(&format!("{}/codes.bin", a.out), &codes);
    let qcodes: Vec<u8> = qs
        .iter()
        .flat_map(|q| q.vectors[0].code)
        .flat_map(|w| w.to_le_bytes())
        .collect();
    write(&format!("{}/qcodes.bin", a.out), &qcodes);
    let q4codes: Vec<u8> = q4
        .iter()
        .flat_map(|q| q.vectors.iter().flat_map(|v| v.code))
        .flat_map(|w| w.to_le_bytes())
        .collect();
    write(&format!("{}/q4codes.bin", a.out), &q4codes);
    write(&format!("{}/queries.f32", a.out), &f32_bytes(&queries));
    let truth_bytes: Vec<u8> = truth
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    write(&format!("{}/truth10.bin", a.out), &truth_bytes);
    drop(b);
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(format!("{}/items.f32", a.out)).expect("create items.f32"),
    );
    for rows in items.chunks(1 << 20) {
        f.write_all(&f32_bytes(rows)).expect("write items.f32");
    }
    f.flush().expect("flush items.f32");
    write(
        &format!("{}/vsa.json", a.out),
        format!("{{{}}}\n", json.join(",\n ")).as_bytes(),
    );
    eprintln!("wrote {}/", a.out);
}
