"""Names a course's Keras code uses, with `import xpnet as keras`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import xpnet as keras


def test_datasets_and_utils_are_reachable_without_importing_them() -> None:
    code = "import xpnet as keras; print(keras.datasets.fashion_mnist.__name__, keras.utils.to_categorical([1]).shape)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["xpnet.datasets.fashion_mnist", "(1,", "2)"]
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        keras.nope  # noqa: B018


def test_import_xpnet_does_not_import_the_lazy_modules() -> None:
    code = "import sys, xpnet; print(sorted(m for m in sys.modules if m in ('xpnet.datasets', 'xpnet.search')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_to_categorical_as_keras() -> None:
    got = keras.utils.to_categorical([0, 2, 1, 2])
    np.testing.assert_array_equal(got, np.eye(3, dtype=np.float32)[[0, 2, 1, 2]])
    assert got.dtype == np.float32
    assert keras.utils.to_categorical(np.array([[1], [0]]), num_classes=4).shape == (2, 4)  # trailing 1 dropped
    assert keras.utils.to_categorical(np.zeros((2, 3), int), 5).shape == (2, 3, 5)
    with pytest.raises(ValueError, match="label 3 is out of range for num_classes=3"):
        keras.utils.to_categorical([3], num_classes=3)
    with pytest.raises(ValueError, match=">= 0"):
        keras.utils.to_categorical([-1, 1])
    with pytest.raises(ValueError, match="integer class labels"):
        keras.utils.to_categorical([0.5])


@pytest.mark.parametrize("cls", [keras.optimizers.SGD, keras.optimizers.RMSprop, keras.optimizers.Adam])
def test_the_lr_keyword_of_keras_2_sets_the_learning_rate(cls: type) -> None:
    opt = cls(lr=0.05)
    assert opt.learning_rate == 0.05 and "lr" not in opt.get_config()
