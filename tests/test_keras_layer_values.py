"""The new layers against Keras 3 itself, where it is installed (skipped otherwise): the same constructor
code builds an xpnet layer and a Keras layer, both get xpnet's weights, and their outputs must agree;
and models of them move both ways through `.weights.h5` files.

Keras runs in a subprocess with KERAS_BACKEND=jax (or torch), so this test neither needs TensorFlow
nor changes which backend other tests' `import keras` would pick.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import layers

CASES = [
    # constructor code (valid for keras.layers and xpnet.layers alike), input shape without the batch
    ("layers.Conv1D(4, 3)", (9, 2)),
    ("layers.Conv1D(3, 4, strides=2, padding='same', activation='tanh')", (11, 3)),
    ("layers.Conv1D(3, 3, padding='causal', dilation_rate=2)", (10, 2)),
    ("layers.Conv1D(2, 2, padding='same', dilation_rate=3)", (10, 2)),
    ("layers.MaxPooling1D(3, strides=2, padding='same')", (8, 2)),
    ("layers.MaxPooling1D()", (8, 3)),
    ("layers.GlobalMaxPooling1D()", (6, 3)),
    ("layers.GlobalAveragePooling1D(keepdims=True)", (6, 3)),
    ("layers.GlobalMaxPooling2D()", (4, 5, 3)),
    ("layers.UpSampling2D((2, 3))", (3, 2, 2)),
    ("layers.UpSampling2D((2, 3), interpolation='bilinear')", (3, 4, 2)),
    ("layers.UpSampling2D(4, interpolation='bilinear')", (2, 5, 1)),
    ("layers.Conv2DTranspose(3, 3)", (4, 3, 2)),
    ("layers.Conv2DTranspose(3, 3, strides=2, padding='same')", (4, 3, 2)),
    ("layers.Conv2DTranspose(2, 4, strides=2, padding='same', activation='relu')", (3, 3, 2)),
    ("layers.Conv2DTranspose(2, (5, 2), strides=(2, 3), padding='same')", (3, 4, 2)),
    ("layers.Conv2DTranspose(2, (2, 3), strides=(3, 2))", (3, 4, 2)),
    ("layers.Conv2DTranspose(2, 1, strides=2)", (3, 3, 2)),
    ("layers.Conv2DTranspose(2, 3, strides=2, padding='same', output_padding=1)", (3, 4, 2)),
    ("layers.Conv2DTranspose(2, (4, 5), strides=(2, 3), padding='same', output_padding=(1, 2))", (3, 3, 2)),
    ("layers.Conv2DTranspose(2, (2, 3), strides=3, output_padding=(2, 1))", (3, 4, 2)),
    ("layers.Conv2DTranspose(2, 1, strides=3, padding='same', output_padding=2)", (2, 2, 2)),
]

MODELS = [
    (
        (16, 2),
        "[layers.Conv1D(4, 3, padding='causal', dilation_rate=2, activation='relu'), layers.MaxPooling1D(),"
        " layers.Conv1D(3, 3, strides=2, padding='same'), layers.GlobalMaxPooling1D(), layers.Dense(2)]",
    ),
    (
        (6, 6, 1),
        "[layers.Conv2D(4, 3, padding='same', activation='relu'), layers.MaxPooling2D(),"
        " layers.Conv2DTranspose(3, 3, strides=2, padding='same', activation='relu'), layers.UpSampling2D(),"
        " layers.Conv2D(2, 3), layers.GlobalMaxPooling2D(), layers.Dense(2)]",
    ),
]

KERAS_SIDE = """
import json, os, sys
import numpy as np
import keras
from keras import layers

data = np.load(sys.argv[1])
cases = json.loads(sys.argv[2])
out = {}
for i, (code, shape) in enumerate(cases):
    layer = eval(code, {"layers": layers})
    layer.build((None, *shape))
    n = sum(1 for k in data.files if k.startswith(f"w{i}_"))
    layer.set_weights([data[f"w{i}_{j}"] for j in range(n)])
    out[f"y{i}"] = keras.ops.convert_to_numpy(layer(data[f"x{i}"]))
folder = sys.argv[4]
for i, (shape, code) in enumerate(json.loads(sys.argv[5])):
    model = keras.Sequential([keras.Input(tuple(shape)), *eval(code, {"layers": layers})])
    model.load_weights(os.path.join(folder, f"xpnet{i}.weights.h5"))
    out[f"m{i}"] = model.predict(data[f"mx{i}"], verbose=0)
    theirs = keras.Sequential([keras.Input(tuple(shape)), *eval(code, {"layers": layers})])
    theirs.save_weights(os.path.join(folder, f"keras{i}.weights.h5"))
    out[f"k{i}"] = theirs.predict(data[f"mx{i}"], verbose=0)
np.savez(sys.argv[3], **out)
"""


def _keras_backend() -> str | None:
    if importlib.util.find_spec("keras") is None:
        return None
    for name in ("jax", "torch"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


@pytest.mark.slow
def test_new_layers_match_keras(tmp_path: Path) -> None:
    backend = _keras_backend()
    if backend is None:
        pytest.skip("keras with jax or torch not installed (pip install keras jax)")
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {}
    ours = []
    for i, (code, shape) in enumerate(CASES):
        layer = eval(code, {"layers": layers})
        model = xpnet.Sequential([xpnet.Input(shape), layer], seed=i)
        x = rng.standard_normal((3, *shape)).astype(np.float32)
        arrays[f"x{i}"] = x
        for j, w in enumerate(layer.get_weights()):
            # a nonzero bias, so that a misplaced bias shows
            arrays[f"w{i}_{j}"] = w if w.ndim > 1 else rng.standard_normal(w.shape).astype(np.float32)
        if layer.get_weights():
            layer.set_weights([arrays[f"w{i}_{j}"] for j in range(len(layer.get_weights()))])
        ours.append(model.predict(x, verbose=0))
    pytest.importorskip("h5py")
    models = []
    for i, (shape, code) in enumerate(MODELS):
        model = xpnet.Sequential([xpnet.Input(shape), *eval(code, {"layers": layers})], seed=i)
        model.save_weights(tmp_path / f"xpnet{i}.weights.h5")
        arrays[f"mx{i}"] = rng.standard_normal((4, *shape)).astype(np.float32)
        models.append(model)
    np.savez(tmp_path / "in.npz", **arrays)
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"}
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            KERAS_SIDE,
            str(tmp_path / "in.npz"),
            json.dumps(CASES),
            str(tmp_path / "out.npz"),
            str(tmp_path),
            json.dumps(MODELS),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    theirs = np.load(tmp_path / "out.npz")
    for i, (code, _) in enumerate(CASES):
        assert theirs[f"y{i}"].shape == ours[i].shape, code
        np.testing.assert_allclose(ours[i], theirs[f"y{i}"], rtol=1e-5, atol=1e-5, err_msg=code)
    for i, model in enumerate(models):
        x = arrays[f"mx{i}"]
        # Keras predicts with the weights xpnet wrote, and xpnet with the weights Keras wrote
        np.testing.assert_allclose(theirs[f"m{i}"], model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
        model.load_weights(tmp_path / f"keras{i}.weights.h5")
        np.testing.assert_allclose(model.predict(x, verbose=0), theirs[f"k{i}"], rtol=1e-5, atol=1e-6)
