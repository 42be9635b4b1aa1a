"""Acceptance: TensorFlow's "Basic classification: classify images of clothing" tutorial, written from its
text with only the import changed, on a slice of the real Fashion-MNIST; and Keras's transfer-learning
pattern over a pretrained model's layers (the Sequential-model guide's "Transfer learning" section)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import xpnet as keras
from xpnet import layers

FASHION = Path("/usr/share/datasets/fashion-mnist")


def _fashion_mnist() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    if not FASHION.is_dir():
        pytest.skip(f"the Fashion-MNIST files are not installed in {FASHION}")
    return keras.datasets.fashion_mnist.load_data(download=False)  # type: ignore[no-any-return]


def test_basic_classification_tutorial_end_to_end_with_the_probability_model() -> None:
    (train_images, train_labels), (test_images, test_labels) = _fashion_mnist()
    class_names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag"]
    class_names.append("Ankle boot")
    assert train_images.shape == (60000, 28, 28) and len(train_labels) == 60000 and test_images.shape[0] == 10000
    # a slice, so the test runs in seconds (the tutorial trains on all 60000 for 10 epochs)
    train_images, train_labels = train_images[:6000], train_labels[:6000]
    test_images, test_labels = test_images[:2000], test_labels[:2000]
    train_images = train_images / 255.0
    test_images = test_images / 255.0

    keras.set_random_seed(0)
    model = keras.Sequential(
        [
            layers.Flatten(input_shape=(28, 28)),
            layers.Dense(128, activation="relu"),
            layers.Dense(10),
        ]
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(train_images, train_labels, epochs=3, verbose=0)
    test_loss, test_acc = model.evaluate(test_images, test_labels, verbose=2)
    assert 0.74 < test_acc < 0.95 and 0.2 < test_loss < 0.8  # the tutorial: ~0.88 after 10 full epochs

    probability_model = keras.Sequential([model, layers.Softmax()])
    predictions = probability_model.predict(test_images)
    assert predictions.shape == (2000, 10)
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-5)
    assert int(np.argmax(predictions[0])) == int(np.argmax(model.predict(test_images[:1])[0]))
    assert class_names[int(np.argmax(predictions[0]))] in class_names
    # the evaluated accuracy is the accuracy of the predicted classes
    np.testing.assert_allclose(np.mean(np.argmax(predictions, axis=1) == test_labels), test_acc, atol=1e-6)

    img = test_images[1]
    img = np.expand_dims(img, 0)  # a batch of one
    assert img.shape == (1, 28, 28)
    predictions_single = probability_model.predict(img)
    np.testing.assert_allclose(predictions_single[0], predictions[1], rtol=1e-5, atol=1e-7)
    assert int(np.argmax(predictions_single[0])) in range(10)


def test_transfer_learning_over_a_pretrained_models_layers() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 20)).astype("float32")
    w = rng.standard_normal((20, 8))
    y_old = np.argmax(x @ w, axis=1)  # the pretraining task: 8 classes
    y_new = np.argmax(x @ w[:, :5] + 0.3, axis=1)  # a related task with 5 classes

    pretrained = keras.Sequential(
        [
            keras.Input(shape=(20,)),
            layers.Dense(32, activation="relu"),
            layers.Dense(32, activation="relu"),
            layers.Dense(8),
        ],
        seed=1,
    )
    pretrained.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    pretrained.fit(x, y_old, epochs=15, batch_size=32, verbose=0)
    old_scores = pretrained.evaluate(x, y_old, verbose=0)

    # Keras's recipe: all the pretrained layers but the last, a new head; freeze the reused layers
    model = keras.Sequential(pretrained.layers[:-1] + [layers.Dense(5)])  # noqa: RUF005 (the guide's words)
    for layer in model.layers[:-1]:
        layer.trainable = False
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    frozen = [layer.get_weights() for layer in model.layers[:-1]]
    np.testing.assert_array_equal(frozen[0][0], pretrained.layers[0].get_weights()[0])  # shared, not re-drawn
    _, acc_before = model.evaluate(x[300:], y_new[300:], verbose=0)
    model.fit(x[:300], y_new[:300], epochs=20, batch_size=32, verbose=0)
    for layer, before in zip(model.layers[:-1], frozen, strict=True):
        for u, v in zip(layer.get_weights(), before, strict=True):
            np.testing.assert_array_equal(u, v)
    _, acc_transfer = model.evaluate(x[300:], y_new[300:], verbose=0)
    assert acc_transfer > max(0.6, acc_before + 0.2), (acc_before, acc_transfer)
    # the pretrained model still scores as before: the layers it shares were frozen
    np.testing.assert_allclose(pretrained.evaluate(x, y_old, verbose=0), old_scores, rtol=1e-6)
    lines: list[str] = []
    model.summary(print_fn=lines.append)
    assert any("Non-trainable params: 1,728" in ln for ln in lines), lines
