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
    with pytest.raises(nncompile.DataError, match="no such file or folder") as e:
        m.fit(epochs=1)
    assert e.value.hint.endswith("; docs/mnist.md says where to get MNIST's files")


def test_predict_reads_mnist_idx_images_as_training_reads_them(sample, tmp_path, capsys):
    """`nncompile predict mnist_lenet.nn --input t10k-images-idx3-ubyte.gz`:
    the raw 0..255 images, normalised as for training, the same outputs as
    Model.predict on those images as an array."""
    from nncompile.cli import main
    model = tmp_path / "mnist_lenet.nn"
    shutil.copy(sample("mnist_lenet"), model)
    mnist_files(tmp_path / "mnist", 80, seed=1)
    assert main(["run", str(model), "--epochs", "1", "--quiet"]) == 0
    images = np.random.default_rng(2).integers(0, 256, (5, 28, 28))
    test = write_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", images, gzip=True)
    out = tmp_path / "pred.npy"
    assert main(["predict", str(model), "--weights", str(tmp_path / "mnist_lenet.weights.npz"),
                 "--input", str(test), "--output", str(out)]) == 0
    m = nncompile.compile(str(model), device="cpu")
    m.load(str(tmp_path / "mnist_lenet.weights.npz"))
    want = m.predict(images.reshape(5, 1, 28, 28).astype(np.float32))
    np.testing.assert_array_equal(np.load(out), want)
    two = tmp_path / "two.nn"
    two.write_text("input a[1, 28, 28]\ninput b[1, 28, 28]\noutput p = flatten(a) + flatten(b)\n")
    np.savez(tmp_path / "none.npz")
    capsys.readouterr()
    assert main(["predict", str(two), "--weights", str(tmp_path / "none.npz"), "--input",
                 str(test)]) == 1
    assert capsys.readouterr().err == (
        f"{test}: error: an idx file holds one array, but the model has inputs a, b\n"
        "hint: give an .npz with arrays a, b\n")
