"""predict's --input file (nncompile.cli.read_input): each fault says what is
wrong with the input file in predict's terms, without numpy's own text."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import nncompile
from nncompile.cli import read_input
from nncompile.diagnostics import DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONE = "input x[2]\noutput p = dense(x, 1, sigmoid)\n"
TWO = "input a[2]\ninput b[2]\noutput p = dense(a, 1) + dense(b, 1)\n"


def fault(path, source=ONE):
    model = nncompile.compile_source(source, device="cpu")
    with pytest.raises(DataError) as e:
        read_input(str(path), model)
    assert e.value.file == str(path)
    return e.value


def test_a_folder_is_not_an_input_file(tmp_path):
    (tmp_path / "in.csv").mkdir()
    e = fault(tmp_path / "in.csv")
    assert (e.message, e.hint) == ("this is a folder, not an input file",
                                   "give a .npy, .npz or .csv file of input examples (or MNIST idx images)")


def test_the_first_bytes_say_what_the_file_is(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 2)))
    np.savez(tmp_path / "b.npz", x=np.zeros((2, 2)))
    npy, npz = (tmp_path / "a.npy").read_bytes(), (tmp_path / "b.npz").read_bytes()
    for name, content, message, hint in [
            ("npy.npz", npy, "the file is an .npy file, not an .npz archive",
             "rename it to {}.npy"),
            ("npz.npy", npz, "the file is an .npz archive, not an .npy file",
             "rename it to {}.npz"),
            ("npy.csv", npy, "the file is an .npy file, not csv text", "rename it to {}.npy"),
            ("text.npy", b"0,1\n1,1\n", "the file is not an .npy file: it does not start as "
             "numpy writes one", "np.save(path, array) writes an .npy; a text file of numbers "
             "is a .csv"),
            ("text.npz", b"0,1\n", "the file is not an .npz archive: it does not start as "
             "numpy writes one", "np.savez(path, x=array) writes an .npz; a text file of "
             "numbers is a .csv")]:
        path = tmp_path / name
        path.write_bytes(content)
        e = fault(path)
        assert (e.message, e.hint) == (message, hint.format(str(path)[:-4])), name


def test_an_object_array_is_not_numbers(tmp_path):
    np.save(tmp_path / "o.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    e = fault(tmp_path / "o.npy")
    assert e.message == "the array holds Python objects, not numbers"
    assert "allow_pickle" not in str(e)


def test_a_truncated_npy_or_npz_is_named_in_plain_words(tmp_path):
    """A file cut short says so in our words: an .npy by its size against what
    its header needs, an .npz as an incomplete zip archive; no numpy text."""
    np.save(tmp_path / "a.npy", np.zeros((3, 2), np.float32))
    np.savez(tmp_path / "b.npz", x=np.zeros((3, 2)))
    npy, npz = (tmp_path / "a.npy").read_bytes(), (tmp_path / "b.npz").read_bytes()
    assert len(npy) == 128 + 24
    npy_hint = "write it again with numpy.save; a copy cut short in transfer looks like this"
    for name, content, message, hint in [
            ("data.npy", npy[:-1], "truncated or corrupt .npy file: it holds 151 bytes, its "
             "header says 152", npy_hint),
            ("head.npy", npy[:128], "truncated or corrupt .npy file: it holds 128 bytes, its "
             "header says 152", npy_hint),
            ("header.npy", npy[:60], "truncated or corrupt .npy file (not a complete .npy "
             "header)", npy_hint),
            ("magic.npy", npy[:6], "truncated or corrupt .npy file (not a complete .npy "
             "header)", npy_hint),
            ("cut.npz", npz[:-1], "truncated or corrupt .npz file (not a complete zip archive)",
             "write it again with numpy.savez; a copy cut short in transfer looks like this"),
            ("head.npz", npz[:4], "truncated or corrupt .npz file (not a complete zip archive)",
             "write it again with numpy.savez; a copy cut short in transfer looks like this")]:
        path = tmp_path / name
        path.write_bytes(content)
        e = fault(path)
        assert (e.message, e.hint) == (message, hint), name


def test_csv_input_hints_say_nothing_of_targets_or_normalize(tmp_path):
    (tmp_path / "in.csv").write_text("")
    e = fault(tmp_path / "in.csv")
    assert (e.message, e.hint) == ("the file is empty", "give one input example per row, its "
                                                        "values separated by commas")
    (tmp_path / "in.csv").write_text("0,1e39\n")
    e = fault(tmp_path / "in.csv")
    assert e.row == 1 and "normalize" not in e.hint and "3.4e38" in e.hint


def test_a_model_of_two_inputs_is_told_of_an_npz_with_both(tmp_path):
    np.save(tmp_path / "in.npy", np.zeros((2, 2)))
    e = fault(tmp_path / "in.npy", TWO)
    assert (e.message, e.hint) == ("an .npy holds one array, but the model has inputs a, b",
                                   "give an .npz with arrays a, b")
    (tmp_path / "in.csv").write_text("0,1\n")
    e = fault(tmp_path / "in.csv", TWO)
    assert (e.message, e.hint) == ("a .csv feeds a model with one input",
                                   "give an .npz with arrays a, b")
    np.savez(tmp_path / "in.npz", a=np.zeros((2, 2)), b=np.ones((2, 2)))
    model = nncompile.compile_source(TWO, device="cpu")
    got = read_input(str(tmp_path / "in.npz"), model)
    assert set(got) == {"a", "b"} and got["b"].tolist() == [[1, 1], [1, 1]]


def test_the_command_line_says_it_without_a_traceback(tmp_path):
    (tmp_path / "two.nn").write_text("model two\n" + TWO)
    nncompile.compile(str(tmp_path / "two.nn"), device="cpu").save(str(tmp_path / "w.npz"))
    np.save(tmp_path / "in.npy", np.zeros((2, 2)))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "nncompile", "predict", "two.nn", "--weights",
                        "w.npz", "--input", "in.npy"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if not ln.startswith("nncompile: using")]
    assert lines == ["in.npy: error: an .npy holds one array, but the model has inputs a, b",
                     "hint: give an .npz with arrays a, b"]
