//! The model's classifier head read out of the ONNX file, so the ImageNet class
//! probabilities of any stored (pooled) embedding can be computed without running the model.
//!
//! The bundled export ends `embedding → Gemm(weight, bias) → logits`: the logits are an affine
//! function of the pooled embedding. [`ClassifierHead::from_onnx`] walks the protobuf just far
//! enough to find that Gemm node and its two initializers (no ONNX dependency: the wire format
//! is varints and length-delimited fields). [`CategoryCodebook`] uses it as a soft codebook
//! for category prediction: each catalogue category's share of each ImageNet class.

use crate::error::{ModelError, Result};

/// `logits = weight · e + bias` (`weight` row-major, `classes × dim`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierHead {
    /// Number of classes (rows).
    pub classes: usize,
    /// Embedding dimension (columns).
    pub dim: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl ClassifierHead {
    /// A head from its parts (`weight` row-major `classes × dim`).
    pub fn new(classes: usize, dim: usize, weight: Vec<f32>, bias: Vec<f32>) -> Result<Self> {
        if classes == 0 || dim == 0 || weight.len() != classes * dim || bias.len() != classes {
            return Err(ModelError::InvalidArgument(format!(
                "head of {classes}×{dim} needs {} weights and {classes} biases, got {} and {}",
                classes * dim,
                weight.len(),
                bias.len()
            )));
        }
        Ok(Self {
            classes,
            dim,
            weight,
            bias,
        })
    }

    /// The head of the Gemm node that produces `output` in an ONNX model (`None` when there
    /// is no such node, or its weights are not inline float tensors).
    pub fn from_onnx(bytes: &[u8], output: &str) -> Option<Self> {
        let graph = fields(bytes).find_map(|(f, v)| match (f, v) {
            (7, Value::Bytes(g)) => Some(g),
            _ => None,
        })?;
        let mut gemm: Option<(String, String, bool)> = None;
        let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
        for (f, v) in fields(graph) {
            let Value::Bytes(b) = v else { continue };
            match f {
                1 => {
                    if let Some(node) = gemm_node(b, output) {
                        gemm = Some(node);
                    }
                }
                5 => {
                    if let Some(t) = float_tensor(b) {
                        tensors.push(t);
                    }
                }
                _ => {}
            }
        }
        let (w_name, b_name, trans_b) = gemm?;
        let (_, w_dims, w) = tensors.iter().find(|t| t.0 == w_name)?;
        let (_, _, bias) = tensors.iter().find(|t| t.0 == b_name)?;
        let [r, c] = w_dims[..] else { return None };
        // Gemm computes e · Bᵀ with transB = 1 (B is classes × dim), else e · B (dim × classes).
        let (classes, dim, weight) = if trans_b {
            (r, c, w.clone())
        } else {
            let mut t = vec![0.0; r * c];
            for i in 0..r {
                for j in 0..c {
                    t[j * r + i] = w[i * c + j];
                }
            }
            (c, r, t)
        };
        Self::new(classes, dim, weight, bias.clone()).ok()
    }

    /// Softmax of the logits of `scale × v` (`v` of the head's dimension).
    pub fn probabilities(&self, v: &[f32], scale: f32) -> Vec<f32> {
        let mut logits: Vec<f32> = self
            .weight
            .chunks_exact(self.dim)
            .zip(&self.bias)
            .map(|(row, b)| scale * row.iter().zip(v).map(|(w, x)| w * x).sum::<f32>() + b)
            .collect();
        softmax_in_place(&mut logits);
        logits
    }
}

/// Softmax in place (max-subtracted).
pub fn softmax_in_place(v: &mut [f32]) {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in v.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    if sum > 0.0 {
        v.iter_mut().for_each(|x| *x /= sum);
    }
}

/// The classifier head as a soft codebook over catalogue categories: `P(category | class)`
/// from the catalogue's own items, so that a query with class probabilities `p` gets
/// `P(category | query) = Σₖ p(k) · P(category | k)`. No parameter is fitted: a category's
/// row is the summed class probabilities of its items, normalised per class over categories
/// (Bayes with the catalogue's category sizes as the prior).
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryCodebook {
    categories: Vec<String>,
    classes: usize,
    /// `classes × categories`, row-major: `P(category | class)`.
    posterior: Vec<f32>,
}

impl CategoryCodebook {
    /// From each category's summed class probabilities (each of length `classes`).
    pub fn new(sums: Vec<(String, Vec<f32>)>) -> Option<Self> {
        let classes = sums.first()?.1.len();
        if classes == 0 || sums.iter().any(|(_, s)| s.len() != classes) {
            return None;
        }
        let n = sums.len();
        let mut posterior = vec![0.0f32; classes * n];
        for k in 0..classes {
            let total: f32 = sums.iter().map(|(_, s)| s[k]).sum();
            for (c, (_, s)) in sums.iter().enumerate() {
                posterior[k * n + c] = if total > 0.0 {
                    s[k] / total
                } else {
                    1.0 / n as f32
                };
            }
        }
        Some(Self {
            categories: sums.into_iter().map(|(c, _)| c).collect(),
            classes,
            posterior,
        })
    }

    /// Categories, in the order of the distribution's columns.
    pub fn categories(&self) -> &[String] {
        &self.categories
    }

    /// `P(category | query)` for a query's class probabilities, best first.
    pub fn distribution(&self, p: &[f32]) -> Vec<(String, f32)> {
        let n = self.categories.len();
        let mut out = vec![0.0f32; n];
        for (k, pk) in p.iter().enumerate().take(self.classes) {
            if *pk == 0.0 {
                continue;
            }
            for (o, q) in out.iter_mut().zip(&self.posterior[k * n..(k + 1) * n]) {
                *o += pk * q;
            }
        }
        let total: f32 = out.iter().sum();
        if total.is_nan() || total <= 0.0 {
            return Vec::new();
        }
        let mut d: Vec<(String, f32)> = self
            .categories
            .iter()
            .cloned()
            .zip(out.into_iter().map(|x| x / total))
            .collect();
        d.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        d
    }
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut r = 0u64;
    for shift in (0..64).step_by(7) {
        let c = *b.get(*i)?;
        *i += 1;
        r |= u64::from(c & 0x7f) << shift;
        if c < 0x80 {
            return Some(r);
        }
    }
    None
}

/// The top-level fields of one protobuf message; stops at the first malformed byte.
fn fields(b: &[u8]) -> impl Iterator<Item = (u64, Value<'_>)> {
    let mut i = 0usize;
    std::iter::from_fn(move || {
        if i >= b.len() {
            return None;
        }
        let key = varint(b, &mut i)?;
        let v = match key & 7 {
            0 => Value::Varint(varint(b, &mut i)?),
            1 | 5 => {
                i = i.checked_add(if key & 7 == 1 { 8 } else { 4 })?;
                (i <= b.len()).then_some(Value::Fixed)?
            }
            2 => {
                let len = usize::try_from(varint(b, &mut i)?).ok()?;
                let end = i.checked_add(len).filter(|e| *e <= b.len())?;
                let s = &b[i..end];
                i = end;
                Value::Bytes(s)
            }
            _ => return None,
        };
        Some((key >> 3, v))
    })
}

fn string(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A NodeProto that is a Gemm writing `output`: `(weight, bias, transB)`.
fn gemm_node(b: &[u8], output: &str) -> Option<(String, String, bool)> {
    let (mut inputs, mut outputs, mut op, mut trans_b) = (Vec::new(), Vec::new(), None, false);
    for (f, v) in fields(b) {
        match (f, v) {
            (1, Value::Bytes(s)) => inputs.push(string(s)),
            (2, Value::Bytes(s)) => outputs.push(string(s)),
            (4, Value::Bytes(s)) => op = Some(string(s)),
            (5, Value::Bytes(a)) => {
                let mut name = None;
                let mut int = 0;
                for (f, v) in fields(a) {
                    match (f, v) {
                        (1, Value::Bytes(s)) => name = Some(string(s)),
                        (3, Value::Varint(x)) => int = x,
                        _ => {}
                    }
                }
                if name.as_deref() == Some("transB") {
                    trans_b = int == 1;
                }
            }
            _ => {}
        }
    }
    (op.as_deref() == Some("Gemm") && outputs.iter().any(|o| o == output) && inputs.len() == 3)
        .then(|| (inputs[1].clone(), inputs[2].clone(), trans_b))
}

/// A TensorProto of FLOAT (data type 1) with its data inline: `(name, dims, values)`.
fn float_tensor(b: &[u8]) -> Option<(String, Vec<usize>, Vec<f32>)> {
    let (mut dims, mut name, mut data_type, mut raw, mut floats) =
        (Vec::new(), String::new(), 0, None, Vec::new());
    for (f, v) in fields(b) {
        match (f, v) {
            (1, Value::Varint(d)) => dims.push(usize::try_from(d).ok()?),
            (1, Value::Bytes(packed)) => {
                let mut i = 0;
                while i < packed.len() {
                    dims.push(usize::try_from(varint(packed, &mut i)?).ok()?);
                }
            }
            (2, Value::Varint(t)) => data_type = t,
            (4, Value::Bytes(packed)) => floats.extend(
                packed
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            (8, Value::Bytes(s)) => name = string(s),
            (9, Value::Bytes(r)) => raw = Some(r),
            _ => {}
        }
    }
    if data_type != 1 {
        return None;
    }
    let values = match raw {
        Some(r) => r
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        None => floats,
    };
    let count: usize = dims.iter().product();
    (count == values.len()).then_some((name, dims, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(field: u64, wire: u64) -> u8 {
        (field << 3 | wire) as u8
    }

    fn len_field(field: u64, body: &[u8]) -> Vec<u8> {
        let mut out = vec![key(field, 2), body.len() as u8];
        out.extend_from_slice(body);
        out
    }

    fn tensor(name: &str, dims: &[u8], values: &[f32]) -> Vec<u8> {
        let mut t = Vec::new();
        for d in dims {
            t.extend([key(1, 0), *d]);
        }
        t.extend([key(2, 0), 1]);
        t.extend(len_field(8, name.as_bytes()));
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        t.extend(len_field(9, &raw));
        len_field(5, &t)
    }

    /// A tiny model: `logits = Gemm(e, W, b)` with W 2×3, transB = 1.
    fn model() -> Vec<u8> {
        let mut node = Vec::new();
        for i in ["e", "W", "b"] {
            node.extend(len_field(1, i.as_bytes()));
        }
        node.extend(len_field(2, b"logits"));
        node.extend(len_field(4, b"Gemm"));
        let mut attr = len_field(1, b"transB");
        attr.extend([key(3, 0), 1]);
        node.extend(len_field(5, &attr));
        let mut graph = len_field(1, &node);
        graph.extend(tensor("W", &[2, 3], &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]));
        graph.extend(tensor("b", &[2], &[0.0, 0.5]));
        let mut m = vec![key(1, 0), 8];
        m.extend(len_field(7, &graph));
        m
    }

    #[test]
    fn reads_the_gemm_head_and_computes_probabilities() {
        let head = ClassifierHead::from_onnx(&model(), "logits").unwrap();
        assert_eq!((head.classes, head.dim), (2, 3));
        let p = head.probabilities(&[1.0, 0.0, 0.0], 2.0);
        // logits (2, 0.5): softmax.
        let e = (-1.5f32).exp();
        assert!((p[0] - 1.0 / (1.0 + e)).abs() < 1e-6, "{p:?}");
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(ClassifierHead::from_onnx(&model(), "embedding").is_none());
        assert!(ClassifierHead::from_onnx(b"\xff\xff\xff", "logits").is_none());
    }

    #[test]
    fn codebook_is_bayes_over_the_catalogue() {
        // Two classes; "a" holds most of class 0, "b" all of class 1.
        let book = CategoryCodebook::new(vec![
            ("a".into(), vec![3.0, 0.0]),
            ("b".into(), vec![1.0, 2.0]),
        ])
        .unwrap();
        let d = book.distribution(&[1.0, 0.0]);
        assert_eq!(d[0].0, "a");
        assert!((d[0].1 - 0.75).abs() < 1e-6, "{d:?}");
        let d = book.distribution(&[0.0, 1.0]);
        assert_eq!((d[0].0.as_str(), d[0].1), ("b", 1.0));
        let d = book.distribution(&[0.5, 0.5]);
        assert!((d.iter().map(|x| x.1).sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(CategoryCodebook::new(vec![]).is_none());
    }
}
