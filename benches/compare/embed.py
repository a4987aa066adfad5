"""Embeddings of the clipart catalogue with models/efficientnet_lite0.onnx → OUT/real.f32.

Whole image resized to 224×224 (bilinear), RGB, (x − 127) / 128, NCHW; output `embedding`.
"""
import glob
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

model, images, out = sys.argv[1], sys.argv[2], sys.argv[3]
sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
files = sorted(glob.glob(f"{images}/*"))
embs = []
for i in range(0, len(files), 32):
    batch = []
    for f in files[i : i + 32]:
        im = Image.open(f).convert("RGB").resize((224, 224), Image.BILINEAR)
        x = (np.asarray(im, dtype=np.float32) - 127.0) / 128.0
        batch.append(x.transpose(2, 0, 1))
    (e,) = sess.run(["embedding"], {sess.get_inputs()[0].name: np.stack(batch)})
    embs.append(e.astype(np.float32))
e = np.concatenate(embs)
e.tofile(f"{out}/real.f32")
print(f"{e.shape[0]} embeddings of {e.shape[1]} dims → {out}/real.f32")
