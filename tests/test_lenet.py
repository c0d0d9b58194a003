"""LeNet acceptance on the digits, and mnist_lenet.nn on small idx files."""
import os
import shutil

import numpy as np
import pytest

import nncompile
from datahelpers import write_idx


@pytest.mark.slow
def test_lenet_reaches_95_percent_held_out_on_digits(sample):
    m = nncompile.compile(sample("lenet"), device="cpu")
    history = m.fit()
    assert len(history) == 30
    assert history[-1]["test_accuracy"] >= 0.95
    assert history[-1]["loss"] < history[0]["loss"] / 10


def test_lenet_training_is_reproducible_from_its_seed(sample):
    runs = []
    for _ in range(2):
        m = nncompile.compile(sample("lenet"), device="cpu")
        h = m.fit(epochs=2)
        runs.append(([{k: v for k, v in r.items() if k != "time"} for r in h], m.params))
    assert runs[0][0] == runs[1][0]
    for k in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][k], runs[1][1][k])


def mnist_files(folder, n, seed):
    """n 28x28 images of class-dependent blobs, gzip idx, MNIST's file names."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 40, (n, 28, 28))
    for i, c in enumerate(labels):
        images[i, 2 * c:2 * c + 8, 4:24] += 200
    os.makedirs(folder, exist_ok=True)
    write_idx(os.path.join(folder, "train-images-idx3-ubyte.gz"), images, gzip=True)
    write_idx(os.path.join(folder, "train-labels-idx1-ubyte.gz"), labels, gzip=True)


def test_mnist_lenet_trains_one_epoch_on_idx_files_beside_it(sample, tmp_path):
    model = tmp_path / "mnist_lenet.nn"
    shutil.copy(sample("mnist_lenet"), model)
    mnist_files(tmp_path / "mnist", 150, seed=0)
    m = nncompile.compile(str(model), device="cpu")
    history = m.fit(epochs=1)
    assert len(history) == 1
    rec = history[0]
    assert np.isfinite(rec["loss"]) and np.isfinite(rec["test_loss"])
    assert 0.0 <= rec["train_accuracy"] <= 1.0 and 0.0 <= rec["test_accuracy"] <= 1.0
    assert m.predict(np.zeros((3, 1, 28, 28))).shape == (3, 10)


def test_mnist_lenet_without_its_files_is_a_data_error(sample, tmp_path):
    model = tmp_path / "mnist_lenet.nn"
    shutil.copy(sample("mnist_lenet"), model)
    m = nncompile.compile(str(model), device="cpu")
    with pytest.raises(nncompile.DataError, match="no such file or folder"):
        m.fit(epochs=1)
