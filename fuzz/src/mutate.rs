//! The mutator: turns the seed corpus into a stream of inputs, AFL "havoc" style.
//!
//! Each input is one of: random bytes (5 %), a seed as is (3 %), or a seed (or the splice of
//! two) with 1 to 16 stacked mutations: bit flips, bytes/words set to interesting values
//! (0, 0xff, 0x7f, 0x80, bincode's varint markers 0xfb–0xfe, lengths near the decoders'
//! limits), small arithmetic, random bytes, length-field edits (a u32 or varint set to the
//! bytes that follow, plus or minus a little), truncation, deletion, insertion, repeats of a
//! block, copies within the input and splices with another seed. The stream is a pure
//! function of the seed given to [`Mutator::new`], so a run can be repeated exactly.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const BYTES: &[u8] = &[
    0, 1, 0x10, 0x20, 0x40, 0x64, 0x7f, 0x80, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
];
const WORDS: &[u16] = &[
    0, 1, 0x80, 0xfa, 0xfb, 0xff, 0x100, 1000, 4096, 0x7fff, 0x8000, 0xffff,
];
const DWORDS: &[u32] = &[
    0,
    1,
    0xfb,
    0x8000,
    0xffff,
    0x1_0000,
    4 << 10,
    (4 << 10) + 1,
    16 << 20,
    (16 << 20) + 1,
    64 << 20,
    (64 << 20) + 1,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];
const QWORDS: &[u64] = &[0, 1 << 32, 1 << 40, i64::MAX as u64, u64::MAX];

/// A deterministic stream of inputs made from a corpus.
#[derive(Debug)]
pub struct Mutator {
    rng: SmallRng,
    max_len: usize,
}

impl Mutator {
    /// A mutator whose inputs are at most `max_len` bytes.
    pub fn new(seed: u64, max_len: usize) -> Mutator {
        Mutator {
            rng: SmallRng::seed_from_u64(seed),
            max_len,
        }
    }

    /// Writes the next input into `out`.
    pub fn next_input(&mut self, corpus: &[Vec<u8>], out: &mut Vec<u8>) {
        out.clear();
        let roll = self.rng.random_range(0..100u32);
        if corpus.is_empty() || roll < 5 {
            let len = self.small_len(self.max_len);
            out.extend((0..len).map(|_| self.rng.random::<u8>()));
            return;
        }
        if let Some(seed) = self.pick(corpus) {
            out.extend_from_slice(seed);
        }
        if roll >= 8 {
            let stack = 1usize << self.rng.random_range(0..5u32);
            for _ in 0..stack {
                self.mutate(out, corpus);
            }
        }
        out.truncate(self.max_len);
    }

    /// A length in `0..=max`, favouring short ones (half the time at most 32).
    fn small_len(&mut self, max: usize) -> usize {
        if max == 0 {
            return 0;
        }
        if self.rng.random_bool(0.5) {
            self.rng.random_range(0..=max.min(32))
        } else {
            self.rng.random_range(0..=max)
        }
    }

    /// A block length for an input of `len` bytes (at least 1 when `len > 0`).
    fn block(&mut self, len: usize) -> usize {
        1 + self.small_len(len.saturating_sub(1))
    }

    fn pos(&mut self, len: usize) -> usize {
        self.rng.random_range(0..len.max(1))
    }

    /// Applies one mutation.
    pub fn mutate(&mut self, d: &mut Vec<u8>, corpus: &[Vec<u8>]) {
        let op = self.rng.random_range(0..16u32);
        if d.is_empty() && op < 12 {
            d.push(self.rng.random());
            return;
        }
        let len = d.len();
        match op {
            0 => {
                let p = self.pos(len);
                d[p] ^= 1 << self.rng.random_range(0..8);
            }
            1 => {
                let p = self.pos(len);
                d[p] = BYTES[self.rng.random_range(0..BYTES.len())];
            }
            2 => {
                let v = WORDS[self.rng.random_range(0..WORDS.len())];
                let bytes = if self.rng.random() {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                self.put(d, &bytes);
            }
            3 => {
                let v = DWORDS[self.rng.random_range(0..DWORDS.len())];
                let bytes = if self.rng.random() {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                self.put(d, &bytes);
            }
            4 => {
                let v = QWORDS[self.rng.random_range(0..QWORDS.len())];
                self.put(d, &v.to_le_bytes());
            }
            5 => {
                let p = self.pos(len);
                let delta = self.rng.random_range(1..=35u8);
                d[p] = if self.rng.random() {
                    d[p].wrapping_add(delta)
                } else {
                    d[p].wrapping_sub(delta)
                };
            }
            6 => {
                // Arithmetic on a u32, either endianness.
                if len >= 4 {
                    let p = self.pos(len - 3);
                    let le = self.rng.random::<bool>();
                    let w = [d[p], d[p + 1], d[p + 2], d[p + 3]];
                    let v = if le {
                        u32::from_le_bytes(w)
                    } else {
                        u32::from_be_bytes(w)
                    };
                    let delta = self.rng.random_range(1..=35u32);
                    let v = if self.rng.random() {
                        v.wrapping_add(delta)
                    } else {
                        v.wrapping_sub(delta)
                    };
                    let b = if le { v.to_le_bytes() } else { v.to_be_bytes() };
                    d[p..p + 4].copy_from_slice(&b);
                }
            }
            7 => {
                let p = self.pos(len);
                d[p] = self.rng.random();
            }
            8 => {
                // Length-field edit: a u32 or a bincode varint at `p` set to the number of
                // bytes after it, give or take a little.
                let p = self.pos(len);
                let after = (len - p) as i64;
                let v = (after + self.rng.random_range(-8..=8i64)).max(0) as u64;
                match self.rng.random_range(0..3u32) {
                    0 => self.put_at(d, p, &(v as u32).to_le_bytes()),
                    1 => self.put_at(d, p, &(v as u32).to_be_bytes()),
                    _ if v < 251 => d[p] = v as u8,
                    _ => {
                        let mut b = vec![0xfb];
                        b.extend_from_slice(&(v as u16).to_le_bytes());
                        self.put_at(d, p, &b);
                    }
                }
            }
            9 => {
                let n = self.block(len);
                let p = self.pos(len - n + 1);
                d.drain(p..p + n);
            }
            10 => {
                let cut = self.pos(len);
                d.truncate(cut);
            }
            11 => {
                // Copy a block over another place.
                let n = self.block(len);
                let from = self.pos(len - n + 1);
                let to = self.pos(len - n + 1);
                d.copy_within(from..from + n, to);
            }
            12 => {
                // Insert random bytes or a run of one byte.
                let n = self.block(64);
                let p = self.pos(len + 1);
                let fill: Vec<u8> = if self.rng.random() {
                    (0..n).map(|_| self.rng.random()).collect()
                } else {
                    vec![BYTES[self.rng.random_range(0..BYTES.len())]; n]
                };
                d.splice(p..p, fill);
            }
            13 => {
                // Repeat a block 2–16 times in place.
                if len > 0 {
                    let n = self.block(len.min(256));
                    let from = self.pos(len - n + 1);
                    let times = self.rng.random_range(2..=16usize);
                    let block = d[from..from + n].to_vec();
                    let rep: Vec<u8> = block.repeat(times - 1);
                    d.splice(from + n..from + n, rep);
                }
            }
            14 => {
                // Splice: our head, another seed's tail.
                let Some(other) = self.pick(corpus) else {
                    return;
                };
                let cut = self.pos(len + 1);
                let from = self.pos(other.len() + 1).min(other.len());
                d.truncate(cut);
                d.extend_from_slice(&other[from..]);
            }
            _ => {
                // Insert a block of another seed.
                let Some(other) = self.pick(corpus) else {
                    return;
                };
                if !other.is_empty() {
                    let n = self.block(other.len());
                    let from = self.pos(other.len() - n + 1);
                    let p = self.pos(len + 1);
                    d.splice(p..p, other[from..from + n].iter().copied());
                }
            }
        }
        if d.len() > 2 * self.max_len {
            d.truncate(self.max_len);
        }
    }

    fn pick<'c>(&mut self, corpus: &'c [Vec<u8>]) -> Option<&'c [u8]> {
        if corpus.is_empty() {
            return None;
        }
        Some(&corpus[self.rng.random_range(0..corpus.len())])
    }

    /// Overwrites bytes at a random place (as many as fit).
    fn put(&mut self, d: &mut [u8], bytes: &[u8]) {
        let p = self.pos(d.len());
        self.put_at(d, p, bytes);
    }

    fn put_at(&mut self, d: &mut [u8], p: usize, bytes: &[u8]) {
        let n = bytes.len().min(d.len() - p);
        d[p..p + n].copy_from_slice(&bytes[..n]);
    }
}
