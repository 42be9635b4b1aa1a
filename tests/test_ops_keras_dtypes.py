"""`xpnet.ops` result dtypes against `keras.ops` itself (JAX backend, in a subprocess so that no other
test's `import keras` changes backend), where Keras and JAX are installed; skipped otherwise.

The dtypes are those without 64-bit inputs: JAX (without x64) narrows int64 and float64 to 32 bits,
which is JAX's limit, not a Keras rule. Cases Keras refuses (sigmoid of an int array, bool − bool)
are left out: xpnet computes some of them."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from xpnet import ops

DTYPES = ["bool", "int8", "int32", "uint8", "float16", "float32"]
BINARY = ["add", "subtract", "multiply", "divide", "power", "maximum", "minimum", "matmul"]
UNARY = ["exp", "log", "sqrt", "square", "abs", "tanh", "relu", "negative", "sum", "mean", "max", "min", "logsumexp"]
SCALARS = {"pyint": 2, "pyfloat": 2.0}


def _cases() -> list[tuple[str, str, str]]:
    cases = []
    for name in BINARY:
        for a, b in itertools.product([*DTYPES, *SCALARS], repeat=2):
            if (a in SCALARS and b in SCALARS) or (name == "matmul" and (a in SCALARS or b in SCALARS)):
                continue
            cases.append((name, a, b))
    cases += [(name, a, "") for name in UNARY for a in DTYPES]
    cases += [("clip", a, s) for a in DTYPES for s in SCALARS]
    cases += [("where", a, b) for a, b in itertools.product(DTYPES, repeat=2)]
    return cases


def _value(kind: str) -> Any:
    return SCALARS[kind] if kind in SCALARS else np.ones((2, 2), dtype=kind)


def _run(module: Any, name: str, a: str, b: str) -> str:
    """The result dtype of module.name on (a, b), or "error"."""
    try:
        if name == "clip":
            out = module.clip(_value(a), 0 if b == "pyint" else 0.5, _value(b))
        elif name == "where":
            out = module.where(np.ones((2, 2), dtype=bool), _value(a), _value(b))
        elif b:
            out = getattr(module, name)(_value(a), _value(b))
        else:
            out = getattr(module, name)(_value(a))
    except Exception:
        return "error"
    return str(np.dtype(str(out.dtype)))


KERAS_SIDE = """
import json, sys
import numpy as np
from keras import ops
sys.path.insert(0, sys.argv[1])
from test_ops_keras_dtypes import _cases, _run
print(json.dumps([_run(ops, *c) for c in _cases()]))
"""


@pytest.mark.slow  # JAX compiles each op for each dtype: about a minute
@pytest.mark.skipif(
    importlib.util.find_spec("keras") is None or importlib.util.find_spec("jax") is None,
    reason="Keras 3 with JAX is not installed",
)
def test_result_dtypes_match_keras_ops() -> None:
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    here = os.path.dirname(os.path.abspath(__file__))
    done = subprocess.run(
        [sys.executable, "-c", KERAS_SIDE, here], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"Keras did not run here: {done.stderr.strip().splitlines()[-1:]}")
    keras_dtypes = json.loads(done.stdout.strip().splitlines()[-1])
    cases = _cases()
    assert len(keras_dtypes) == len(cases) > 250
    differ = [(c, k, x) for c, k in zip(cases, keras_dtypes, strict=True) if k != "error" and k != (x := _run(ops, *c))]
    assert differ == []


def test_keras_dtype_rules_that_numpy_does_not_follow() -> None:
    """The rules themselves, also where Keras is not installed (the values keras.ops gives)."""
    b, i8, i16 = np.ones(3, bool), np.ones((3, 3), np.int8), np.ones(3, np.int16)
    assert ops.add(b, 2).dtype == np.int32  # NumPy: int64
    assert ops.power(b, b).dtype == np.int32  # NumPy: int8
    assert ops.square(b).dtype == np.int32  # NumPy: bool
    assert ops.relu(i16).dtype == np.int16  # NumPy's maximum(x, 0.0): float64
    assert ops.sum(i8).dtype == np.int32 and ops.sum(np.ones(3, np.uint8)).dtype == np.uint32  # NumPy: 64 bits
    assert ops.matmul(i8, i8).dtype == np.int32  # NumPy: int8
    assert ops.matmul(np.ones((3, 3), np.int32), np.ones((3, 3), np.float32)).dtype == np.float32  # NumPy: float64
    assert ops.add(np.ones(3, np.int32), 2.0).dtype == np.float32
    np.testing.assert_array_equal(ops.relu(np.array([-2, 0, 3], np.int32)), [0, 0, 3])


def test_concatenate_and_stack_follow_keras_dtypes_not_numpys() -> None:
    """keras.ops (JAX) gives float32 for int32 joined with float32 and float16 for int16 with float16;
    NumPy's promotion gives float64 and float32."""
    i32, f32 = np.ones((2, 2), np.int32), np.ones((2, 2), np.float32)
    i16, f16 = np.ones((2, 2), np.int16), np.ones((2, 2), np.float16)
    for join in (ops.concatenate, ops.stack):
        assert join([i32, f32]).dtype == np.float32 and join([f32, i32]).dtype == np.float32
        assert join([i16, f16]).dtype == np.float16
        assert join([i32, i32]).dtype == np.int32
