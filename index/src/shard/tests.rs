use std::collections::HashSet;

use proptest::prelude::*;

use super::search::dot_f32_i8;
use super::*;
use crate::encoder::{Encoded, QueryVector};
use crate::filter::Filter;
use crate::linalg::Rng;
use crate::scan::Kernel;

const DIMS: usize = 8;

fn word(rng: &mut Rng, bias: u32) -> u64 {
    let mut w = rng.next_u64();
    for _ in 0..bias {
        w &= rng.next_u64();
    }
    w
}

fn item(rng: &mut Rng, bias: u32) -> Encoded<4> {
    let code = [
        word(rng, bias),
        word(rng, bias),
        word(rng, bias),
        word(rng, bias),
    ];
    let reduced = (0..DIMS).map(|_| (rng.next_u64() % 255) as i8).collect();
    Encoded {
        code,
        reduced,
        scale: 0.01,
        bias: (rng.next_u64() % 100) as f32 / 1000.0,
    }
}

fn query(rng: &mut Rng, nq: usize, bias: u32) -> Query<4> {
    Query {
        vectors: (0..nq)
            .map(|_| {
                let e = item(rng, bias);
                QueryVector {
                    code: e.code,
                    reduced: (0..DIMS).map(|_| rng.gaussian() as f32).collect(),
                    bias: 0.1,
                }
            })
            .collect(),
    }
}

fn attrs(rng: &mut Rng) -> Vec<(String, String)> {
    let mut a = vec![(
        "color".to_string(),
        ["red", "green", "blue"][(rng.next_u64() % 3) as usize].to_string(),
    )];
    if rng.next_u64().is_multiple_of(2) {
        a.push((
            "brand".to_string(),
            ["acme", "zeta"][(rng.next_u64() % 2) as usize].to_string(),
        ));
    }
    if rng.next_u64().is_multiple_of(40) {
        a.push(("tag".to_string(), "rare".to_string()));
    }
    a
}

/// The model: live items in row order.
type Attrs = Vec<(String, String)>;

#[derive(Default, Clone)]
struct Model {
    items: Vec<(u64, Encoded<4>, Attrs)>,
}

impl Model {
    fn insert(&mut self, id: u64, e: Encoded<4>, a: Vec<(String, String)>) {
        self.delete(id);
        self.items.push((id, e, a));
    }
    fn delete(&mut self, id: u64) {
        self.items.retain(|(i, _, _)| *i != id);
    }
    fn passes(a: &[(String, String)], f: Option<&Filter>) -> bool {
        f.is_none_or(|f| {
            f.clauses
                .iter()
                .all(|(k, vs)| a.iter().any(|(ak, av)| ak == k && vs.contains(av)))
        })
    }
    /// Naive search: all distances, sort by (distance, row), R, rerank, sort, k.
    fn search(&self, q: &Query<4>, p: &SearchParams, f: Option<&Filter>) -> Vec<Hit> {
        if q.vectors.is_empty() || p.k == 0 {
            return vec![];
        }
        let mut c: Vec<(u32, usize)> = self
            .items
            .iter()
            .enumerate()
            .filter(|(_, (_, _, a))| Self::passes(a, f))
            .map(|(row, (_, e, _))| {
                (
                    q.vectors
                        .iter()
                        .map(|v| crate::hamming(&e.code, &v.code))
                        .min()
                        .unwrap_or(0),
                    row,
                )
            })
            .collect();
        c.sort_unstable();
        c.truncate(p.candidates.max(p.k));
        if !p.rerank {
            c.truncate(p.k);
            return c
                .into_iter()
                .map(|(d, row)| {
                    let e = &self.items[row].1;
                    let j = q
                        .vectors
                        .iter()
                        .position(|v| crate::hamming(&e.code, &v.code) == d)
                        .unwrap_or(0);
                    Hit {
                        id: self.items[row].0,
                        score: 1.0 - 2.0 * d as f32 / 256.0,
                        hamming: d,
                        vector: j as u8,
                    }
                })
                .collect();
        }
        let mut hits: Vec<(Hit, usize)> = c
            .into_iter()
            .map(|(d, row)| {
                let e = &self.items[row].1;
                let (s, j) = q
                    .vectors
                    .iter()
                    .enumerate()
                    .map(|(j, v)| {
                        (
                            e.scale * dot_f32_i8(&v.reduced, &e.reduced) + e.bias + v.bias,
                            j,
                        )
                    })
                    .fold((f32::NEG_INFINITY, 0), |b, x| if x.0 > b.0 { x } else { b });
                (
                    Hit {
                        id: self.items[row].0,
                        score: s,
                        hamming: d,
                        vector: j as u8,
                    },
                    row,
                )
            })
            .collect();
        hits.sort_by(|a, b| b.0.score.total_cmp(&a.0.score).then(a.1.cmp(&b.1)));
        hits.truncate(p.k);
        hits.into_iter().map(|h| h.0).collect()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u64),
    Delete(u64),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![4 => (0u64..300).prop_map(Op::Insert), 1 => (0u64..300).prop_map(Op::Delete)],
        0..500,
    )
}

fn build(seed: u64, ops: &[Op], bias: u32) -> (Shard<4>, Model) {
    let mut rng = Rng::new(seed);
    let mut shard = Shard::<4>::new(DIMS);
    let mut model = Model::default();
    for op in ops {
        match *op {
            Op::Insert(id) => {
                let e = item(&mut rng, bias);
                let a = attrs(&mut rng);
                let was = model.items.iter().any(|(i, _, _)| *i == id);
                assert_eq!(shard.insert(id, &e, &a).unwrap(), was);
                model.insert(id, e, a);
            }
            Op::Delete(id) => {
                let was = model.items.iter().any(|(i, _, _)| *i == id);
                assert_eq!(shard.delete(id), was);
                model.delete(id);
            }
        }
    }
    (shard, model)
}

fn filters() -> Vec<Option<Filter>> {
    vec![
        None,
        Some(Filter::default()),
        Some(Filter::default().with("color", ["red"])),
        Some(
            Filter::default()
                .with("color", ["red", "blue"])
                .with("brand", ["acme"]),
        ),
        Some(Filter::default().with("brand", ["nope"])),
        Some(Filter::default().with("size", ["xl"])),
        Some(Filter::default().with("tag", ["rare"])),
        Some(
            Filter::default()
                .with("tag", ["rare"])
                .with("color", ["green"]),
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Search equals the naive reference exactly (ids, scores, distances, vectors, order) for
    /// every filter, both kernels, 1–3 threads, with and without rerank; deletes never come
    /// back; compaction and snapshots change nothing.
    #[test]
    fn search_matches_reference(seed in 0u64..10_000, ops in ops(), nq in 1usize..9, k in 0usize..40, r in 0usize..80, bias in 0u32..3) {
        let (shard, model) = build(seed, &ops, bias);
        prop_assert_eq!(shard.len(), model.items.len());
        let compacted = shard.compact();
        prop_assert_eq!(compacted.deleted_rows(), 0);
        let restored = Shard::<4>::from_bytes(&shard.to_bytes().unwrap()).unwrap();
        let mut rng = Rng::new(seed ^ 77);
        let q = query(&mut rng, nq, bias);
        for f in filters() {
            for rerank in [true, false] {
                let base = SearchParams { k, candidates: r, threads: 1, rerank, kernel: None };
                let want = model.search(&q, &base, f.as_ref());
                for threads in [1, 2, 3] {
                    for kernel in [Kernel::Portable, Kernel::Avx2, Kernel::Avx512] {
                        let p = SearchParams { threads, kernel: Some(kernel), ..base.clone() };
                        prop_assert_eq!(&shard.search(&q, &p, f.as_ref()).unwrap(), &want);
                    }
                }
                prop_assert_eq!(&compacted.search(&q, &base, f.as_ref()).unwrap(), &want);
                prop_assert_eq!(&restored.search(&q, &base, f.as_ref()).unwrap(), &want);
            }
        }
        // Everything: exactly the live set, never a deleted id.
        let all = SearchParams { k: 10_000, candidates: 10_000, threads: 2, rerank: false, kernel: None };
        let got: HashSet<u64> = shard.search(&q, &all, None).unwrap().into_iter().map(|h| h.id).collect();
        let live: HashSet<u64> = model.items.iter().map(|(i, _, _)| *i).collect();
        prop_assert_eq!(&got, &live);
        for id in 0..300 {
            prop_assert_eq!(shard.contains(id), live.contains(&id));
            prop_assert_eq!(compacted.contains(id), live.contains(&id));
        }
        // Live items with their attributes, in row order.
        let items: Vec<(u64, Vec<(String, String)>)> = shard.live_items().collect();
        let mut want_items: Vec<(u64, Vec<(String, String)>)> = model.items.iter().map(|(i, _, a)| (*i, a.clone())).collect();
        for (_, a) in &mut want_items { a.sort(); }
        let mut items = items;
        for (_, a) in &mut items { a.sort(); }
        prop_assert_eq!(items, want_items);
    }

    /// Filters are exact: with k = R = everything, the hit set is the model's filter set.
    #[test]
    fn filters_are_exact(seed in 0u64..10_000, ops in ops()) {
        let (shard, model) = build(seed, &ops, 0);
        let mut rng = Rng::new(seed);
        let q = query(&mut rng, 1, 0);
        let p = SearchParams { k: 1000, candidates: 1000, threads: 1, rerank: false, kernel: None };
        for f in filters() {
            let got: HashSet<u64> = shard.search(&q, &p, f.as_ref()).unwrap().into_iter().map(|h| h.id).collect();
            let want: HashSet<u64> = model.items.iter().filter(|(_, _, a)| Model::passes(a, f.as_ref())).map(|(i, _, _)| *i).collect();
            prop_assert_eq!(got, want);
        }
    }

    /// A multi-vector query's distance to each item is the minimum over single-vector scans.
    #[test]
    fn multi_vector_is_min_of_singles(seed in 0u64..10_000, ops in ops(), nq in 2usize..9) {
        let (shard, _) = build(seed, &ops, 1);
        let mut rng = Rng::new(seed);
        let q = query(&mut rng, nq, 1);
        let p = SearchParams { k: 1000, candidates: 1000, threads: 1, rerank: false, kernel: None };
        let multi = shard.search(&q, &p, None).unwrap();
        let singles: Vec<Vec<Hit>> = q.vectors.iter().map(|v| shard.search(&Query::single(v.clone()), &p, None).unwrap()).collect();
        for h in &multi {
            let per: Vec<u32> = singles.iter().map(|s| s.iter().find(|x| x.id == h.id).map(|x| x.hamming).unwrap()).collect();
            let min = *per.iter().min().unwrap();
            prop_assert_eq!(h.hamming, min);
            prop_assert_eq!(per[h.vector as usize], min);
        }
    }
}

#[test]
fn empty_shard_and_k_beyond_size() {
    let mut rng = Rng::new(1);
    let mut shard = Shard::<4>::new(DIMS);
    let q = query(&mut rng, 2, 0);
    let p = SearchParams {
        k: 50,
        ..SearchParams::default()
    };
    assert!(shard.is_empty());
    assert!(shard.search(&q, &p, None).unwrap().is_empty());
    assert!(shard.compact().is_empty());
    for id in 0..5 {
        shard.insert(id, &item(&mut rng, 0), &[]).unwrap();
    }
    let hits = shard.search(&q, &p, None).unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(
        shard
            .search(&Query { vectors: vec![] }, &p, None)
            .unwrap()
            .is_empty()
    );
    assert!(
        shard
            .search(&q, &SearchParams { k: 0, ..p.clone() }, None)
            .unwrap()
            .is_empty()
    );
    for id in 0..5 {
        assert!(shard.delete(id));
    }
    assert!(shard.is_empty());
    assert!(shard.search(&q, &p, None).unwrap().is_empty());
}

#[test]
fn upsert_replaces() {
    let mut rng = Rng::new(2);
    let mut shard = Shard::<4>::new(DIMS);
    let a = item(&mut rng, 0);
    let mut b = item(&mut rng, 0);
    b.code = [!a.code[0], !a.code[1], !a.code[2], !a.code[3]];
    assert!(
        !shard
            .insert(7, &a, &[("color".into(), "red".into())])
            .unwrap()
    );
    assert!(
        shard
            .insert(7, &b, &[("color".into(), "blue".into())])
            .unwrap()
    );
    assert_eq!(shard.len(), 1);
    assert_eq!(shard.rows(), 2);
    assert_eq!(shard.vector(7).unwrap().code, b.code);
    assert_eq!(
        shard.attributes(7).unwrap(),
        vec![("color".to_string(), "blue".to_string())]
    );
    let q = Query::single(QueryVector {
        code: a.code,
        reduced: vec![0.0; DIMS],
        bias: 0.0,
    });
    let hits = shard.search(&q, &SearchParams::default(), None).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].hamming, 256);
    let red = Filter::default().with("color", ["red"]);
    assert!(
        shard
            .search(&q, &SearchParams::default(), Some(&red))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn stored_vector_and_bad_input() {
    let mut rng = Rng::new(3);
    let mut shard = Shard::<4>::new(DIMS);
    let e = item(&mut rng, 0);
    shard.insert(1, &e, &[]).unwrap();
    let v = shard.vector(1).unwrap();
    assert_eq!(v.reduced.len(), DIMS);
    for (x, y) in v.reduced.iter().zip(&e.reduced) {
        assert_eq!(*x, f32::from(*y) * e.scale);
    }
    assert!(shard.vector(2).is_none());
    let hits = shard
        .search(
            &Query::single(v.into_query()),
            &SearchParams::default(),
            None,
        )
        .unwrap();
    assert_eq!((hits[0].id, hits[0].hamming), (1, 0));
    let mut short = e.clone();
    short.reduced.pop();
    assert!(shard.insert(2, &short, &[]).is_err());
    let q = query(&mut rng, 9, 0);
    assert!(shard.search(&q, &SearchParams::default(), None).is_err());
    assert!(shard.memory_bytes() > 0);
    assert!(Shard::<4>::from_bytes(b"garbage").is_err());
    assert!(Shard::<2>::from_bytes(&shard.to_bytes().unwrap()).is_err());
}

#[test]
fn many_rows_threads_and_compaction() {
    // Enough rows to split across threads even with the production threshold.
    let mut rng = Rng::new(4);
    let mut shard = Shard::<4>::new(DIMS);
    for id in 0..40_000u64 {
        shard
            .insert(id, &item(&mut rng, 1), &attrs(&mut rng))
            .unwrap();
    }
    for id in (0..40_000u64).step_by(3) {
        shard.delete(id);
    }
    let compacted = shard.compact();
    let q = query(&mut rng, 4, 1);
    let f = Filter::default().with("color", ["red", "green"]);
    let rare = Filter::default().with("tag", ["rare"]);
    for filter in [None, Some(&f), Some(&rare)] {
        let p = SearchParams {
            k: 20,
            candidates: 300,
            ..SearchParams::default()
        };
        let one = shard.search(&q, &p, filter).unwrap();
        assert_eq!(one.len(), 20);
        assert!(one.iter().all(|h| h.id % 3 != 0));
        for t in [2, 3, 4] {
            assert_eq!(
                shard
                    .search(
                        &q,
                        &SearchParams {
                            threads: t,
                            ..p.clone()
                        },
                        filter
                    )
                    .unwrap(),
                one
            );
        }
        assert_eq!(compacted.search(&q, &p, filter).unwrap(), one);
    }
}
