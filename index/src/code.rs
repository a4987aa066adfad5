//! Binary codes: `[u64; W]` (W = 4 → 256 bits), Hamming distance, serde for const-size arrays.

/// A `64·W`-bit binary code.
pub type Code<const W: usize> = [u64; W];

/// Hamming distance: popcount of xor (compiled to `popcnt` on x86-64-v2).
#[inline(always)]
pub fn hamming<const W: usize>(a: &Code<W>, b: &Code<W>) -> u32 {
    let mut d = 0;
    for i in 0..W {
        d += (a[i] ^ b[i]).count_ones();
    }
    d
}

/// serde for `[u64; W]` (serde's own array impls stop at 32 and are not const-generic).
pub(crate) mod serde_words {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::ser::SerializeTuple;
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer, const W: usize>(
        code: &[u64; W],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(W)?;
        for w in code {
            t.serialize_element(w)?;
        }
        t.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const W: usize>(
        d: D,
    ) -> Result<[u64; W], D::Error> {
        struct V<const W: usize>;
        impl<'de, const W: usize> Visitor<'de> for V<W> {
            type Value = [u64; W];
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{W} u64 words")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u64; W], A::Error> {
                let mut out = [0u64; W];
                for (i, o) in out.iter_mut().enumerate() {
                    *o = seq
                        .next_element()?
                        .ok_or_else(|| A::Error::invalid_length(i, &self))?;
                }
                Ok(out)
            }
        }
        d.deserialize_tuple(W, V::<W>)
    }
}

/// 64 bytes, 64-byte aligned: the unit of code storage, so SIMD loads never split a cache line.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Block([u64; 8]);

/// Contiguous codes in 64-byte-aligned storage, viewed as `&[Code<W>]`.
#[derive(Debug, Clone, Default)]
pub(crate) struct CodeStore<const W: usize> {
    blocks: Vec<Block>,
    len: usize,
}

impl<const W: usize> CodeStore<W> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn words_to_blocks(words: usize) -> usize {
        words.div_ceil(8)
    }

    pub(crate) fn reserve(&mut self, additional: usize) {
        let need = Self::words_to_blocks((self.len + additional) * W);
        self.blocks.reserve(need.saturating_sub(self.blocks.len()));
    }

    pub(crate) fn push(&mut self, code: Code<W>) {
        let start = self.len * W;
        let need = Self::words_to_blocks(start + W);
        if self.blocks.len() < need {
            self.blocks.resize(need, Block::default());
        }
        for (i, w) in code.into_iter().enumerate() {
            let at = start + i;
            self.blocks[at / 8].0[at % 8] = w;
        }
        self.len += 1;
    }

    pub(crate) fn as_slice(&self) -> &[Code<W>] {
        // SAFETY: blocks are plain u64 words, contiguous, and hold at least len·W initialised
        // words; [u64; W] needs 8-byte alignment and blocks give 64.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr().cast::<Code<W>>(), self.len) }
    }

    pub(crate) fn capacity_bytes(&self) -> usize {
        self.blocks.capacity() * 64
    }
}

impl<const W: usize> FromIterator<Code<W>> for CodeStore<W> {
    fn from_iter<I: IntoIterator<Item = Code<W>>>(iter: I) -> Self {
        let mut s = Self::default();
        for c in iter {
            s.push(c);
        }
        s
    }
}
