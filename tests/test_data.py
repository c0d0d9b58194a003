"""nncompile.train.data: built-in sets, file loaders, prepare()."""
from __future__ import annotations

import math

import numpy as np
import pytest

from datahelpers import write_csv, write_idx
from nncompile.diagnostics import DataError
from nncompile.train.data import (BUILTIN, Dataset, load, load_builtin, load_file,
                                  prepare)


# ---------------------------------------------------------------- built-in sets

@pytest.mark.parametrize("name, ys", [("and", [0, 0, 0, 1]), ("or", [0, 1, 1, 1]),
                                      ("nand", [1, 1, 1, 0]), ("xor", [0, 1, 1, 0])])
def test_gates_exact(name, ys):
    ds = load_builtin(name, seed=0)
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.float32
    assert ds.x.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert ds.y.tolist() == [[v] for v in ys]
    assert ds.labels is False and ds.source == name and ds.default_split == 0.0


def test_not_gate_exact():
    ds = load_builtin("not", seed=0)
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.float32
    assert (ds.x.tolist(), ds.y.tolist()) == ([[0], [1]], [[1], [0]])
    assert ds.labels is False and ds.source == "not" and ds.default_split == 0.0


def test_digits():
    ds = load_builtin("digits", seed=0)
    assert ds.x.shape == (1797, 64) and ds.x.dtype == np.float32
    assert ds.y.shape == (1797,) and np.issubdtype(ds.y.dtype, np.integer)
    assert ds.labels is True and ds.default_split == 0.2
    assert ds.x.min() == 0 and ds.x.max() == 16 and (ds.x == np.round(ds.x)).all()
    assert np.bincount(ds.y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    # the first image of the UCI set is a 0
    assert ds.y[0] == 0
    assert ds.x[0, :8].tolist() == [0, 0, 5, 13, 9, 1, 0, 0]


@pytest.mark.parametrize("name", ["circles", "spiral", "sine"])
def test_generated_sets_are_seeded(name):
    a, b, c = load_builtin(name, 1), load_builtin(name, 1), load_builtin(name, 2)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)
    assert a.x.dtype == np.float32 and a.default_split == 0.2


def test_generated_set_shapes():
    c = load_builtin("circles", 0)
    assert c.x.shape == (400, 2) and c.labels and np.bincount(c.y).tolist() == [200, 200]
    r = np.hypot(c.x[:, 0], c.x[:, 1])
    assert abs(r[c.y == 0].mean() - 1.0) < 0.05 and abs(r[c.y == 1].mean() - 0.5) < 0.05
    s = load_builtin("spiral", 0)
    assert s.x.shape == (300, 2) and s.y.tolist() == [0] * 100 + [1] * 100 + [2] * 100
    assert np.abs(s.x).max() <= 1.0 + 1e-6 and s.x[0].tolist() == [0.0, 0.0]
    w = load_builtin("sine", 0)
    assert w.x.shape == (256, 1) and w.y.shape == (256, 1) and not w.labels
    assert w.x.min() >= -math.pi and w.x.max() <= math.pi
    assert np.allclose(w.y, np.sin(w.x), atol=1e-6)


def test_load_dispatch_and_unknown_name():
    assert set(BUILTIN) == {"and", "or", "nand", "xor", "not", "digits", "circles", "spiral",
                            "sine"}
    assert load("xor", False, 0, 2, 1).source == "xor"
    with pytest.raises(DataError) as e:
        load("digit", False, 0, 64, 10)
    assert "unknown data set 'digit'" in str(e.value)
    assert "did you mean 'digits'?" in e.value.hint


# ---------------------------------------------------------------- csv

def test_csv_without_header(tmp_path):
    p = write_csv(tmp_path / "d.csv", [[1, 2, 0.5], [3, 4, 1.5]])
    ds = load_file(str(p), 2, 1)
    assert ds.x.tolist() == [[1, 2], [3, 4]] and ds.y.tolist() == [[0.5], [1.5]]
    assert not ds.labels and ds.source == str(p) and ds.default_split == 0.2


def test_csv_with_header_and_two_targets(tmp_path):
    p = write_csv(tmp_path / "d.csv", [[1, 2, 3, 4], [5, 6, 7, 8]], header=["a", "b", "t1", "t2"])
    ds = load_file(str(p), 2, 2)
    assert ds.x.tolist() == [[1, 2], [5, 6]] and ds.y.tolist() == [[3, 4], [7, 8]]
    assert not ds.labels


def test_csv_label_column_becomes_one_hot(tmp_path):
    p = write_csv(tmp_path / "d.csv", [[0.1, 0.2, 2], [0.3, 0.4, 0]], header=["u", "v", "class"])
    ds = load_file(str(p), 2, 3)
    assert ds.labels and ds.y.tolist() == [2, 0]
    sp = prepare(ds, (2,), (3,), 0.0, "none", 0)
    assert sp.y_train.tolist() == [[0, 0, 1], [1, 0, 0]]
    assert sp.x_train.dtype == np.float32


def test_csv_wrong_column_count_names_row(tmp_path):
    p = write_csv(tmp_path / "d.csv", [[1, 2, 3, 4, 5], [1, 2, 3, 4, 5], [1, 2, 3]], header=list("abcde"))
    with pytest.raises(DataError) as e:
        load_file(str(p), 4, 1)
    assert e.value.file == str(p) and e.value.row == 4
    assert str(e.value).startswith(f"{p}:4: error: row has 3 columns; "
                                   "the model needs 5 (4 features + 1 target)")


def test_csv_wrong_count_lists_both_layouts(tmp_path):
    p = write_csv(tmp_path / "d.csv", [[1, 2, 3]])
    with pytest.raises(DataError) as e:
        load_file(str(p), 4, 10)
    assert e.value.row == 1
    assert "row has 3 columns; the model needs 14 (4 features + 10 targets) " \
           "or 5 (4 features + 1 class label)" in str(e.value)


def test_csv_non_numeric_cell(tmp_path):
    p = write_csv(tmp_path / "d.csv", [[1, 2, 3], [4, "abc", 6]])
    with pytest.raises(DataError) as e:
        load_file(str(p), 2, 1)
    assert e.value.file == str(p) and e.value.row == 2
    assert "column 2: 'abc' is not a finite number" in str(e.value)


def test_csv_header_is_a_first_row_without_numbers(tmp_path):
    """A first row with no number is a header; one with a number and a typo is
    an example whose typo is reported (it was dropped as a header before)."""
    p = write_csv(tmp_path / "d.csv", [["a", "b", "c"], ["x", "1", "2"], [1, 2, 3]])
    with pytest.raises(DataError) as e:
        load_file(str(p), 2, 1)
    assert e.value.row == 2 and "column 1: 'x'" in str(e.value)
    p = write_csv(tmp_path / "t.csv", [[0, "1o", 1], [0, 1, 1], [1, 0, 1]])
    with pytest.raises(DataError) as e:
        load_file(str(p), 2, 1)
    assert (e.value.row, e.value.message) == (1, "column 2: '1o' is not a finite number")


def test_values_beyond_float32_are_named_not_turned_into_infinity(tmp_path):
    p = write_csv(tmp_path / "d.csv", [[0, 0, 0], [0, "1e39", 1]])
    with pytest.raises(DataError) as e:
        load_file(str(p), 2, 1)
    assert (e.value.row, e.value.message) == (2, "column 2: '1e39' is beyond what float32 "
                                                 "holds (about 3.4e38)")
    q = tmp_path / "d.npz"
    np.savez(q, x=np.array([[0.0, 1e39]]), y=np.array([[1.0]]))
    with pytest.raises(DataError, match=r"'x' example 0 \(counting from 0\) holds a value "
                                        "that is not a finite float32 number"):
        load_file(str(q), 2, 1)
    np.savez(q, x=np.array([[1 + 2j, 0]]), y=np.array([[1.0]]))
    with pytest.raises(DataError, match="array 'x' holds complex numbers"):
        load_file(str(q), 2, 1)


def test_api_inputs_and_weights_that_are_not_finite_float32_numbers():
    import nncompile
    m = nncompile.compile_source("input x[2]\noutput p = dense(x, 1)\n", device="cpu")
    for bad, what in ((np.array([[np.nan, 1.0]]), r"'x' example 0 \(counting from 0\) holds "
                                                  "a value that is not a finite float32 number"),
                      (np.array([[0, 0], [0, 1e39]]), r"'x' example 1 \(counting from 0\) holds"),
                      (np.array([[1j, 0]]), "'x' must hold real numbers, got complex128")):
        with pytest.raises(DataError, match=what):
            m.predict(bad)
    with pytest.raises(DataError, match="param 'p.weight' holds bool values, not real numbers"):
        m.set_params({"p.weight": np.ones((2, 1), bool)})
    with pytest.raises(DataError, match="holds values that are not finite float32 numbers"):
        m.set_params({"p.bias": np.array([1e39])})


def test_csv_nan_and_bad_label(tmp_path):
    p = write_csv(tmp_path / "d.csv", [[1, 2, 0], [1, "nan", 1]])
    with pytest.raises(DataError, match="column 2: 'nan' is not a finite number") as e:
        load_file(str(p), 2, 1)
    assert e.value.row == 2
    p = write_csv(tmp_path / "l.csv", [[1, 2, 0], [1, 2, 3]])
    with pytest.raises(DataError, match=r"class label '3' is not an integer in 0\.\.2") as e:
        load_file(str(p), 2, 3)
    assert e.value.row == 2
    p = write_csv(tmp_path / "f.csv", [[1, 2, 0.5]])
    with pytest.raises(DataError, match="class label '0.5'"):
        load_file(str(p), 2, 3)


def test_csv_empty_and_header_only(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("\n\n")
    with pytest.raises(DataError, match="the file is empty") as e:
        load_file(str(p), 2, 1)
    assert e.value.file == str(p)
    p = write_csv(tmp_path / "h.csv", [], header=["a", "b", "t"])
    with pytest.raises(DataError, match="header but no data rows"):
        load_file(str(p), 2, 1)


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(DataError) as e:
        load(str(tmp_path / "nope.csv"), True, 0, 2, 1)
    assert e.value.file == str(tmp_path / "nope.csv") and "no such file" in str(e.value)
    assert e.value.hint and "looked for" in e.value.hint
    p = tmp_path / "d.txt"
    p.write_text("1,2,3\n")
    with pytest.raises(DataError, match="unsupported data file type '.txt'") as e:
        load_file(str(p), 2, 1)
    assert ".csv" in e.value.hint and ".npz" in e.value.hint and "idx" in e.value.hint


def test_csv_bad_byte_is_named_at_its_line_and_column(tmp_path):
    p = tmp_path / "bad8.csv"
    p.write_bytes(b"0,0,0\n1,\xff,1\n")
    with pytest.raises(DataError) as e:
        load_file(str(p), 2, 1)
    assert str(e.value) == (f"{p}:2: error: column 2: byte 0xff is not UTF-8 text\nhint: save "
                            "the file as UTF-8 text: one example per line, its numbers "
                            "separated by commas")
    p.write_bytes(b"\xef\xbb\xbf0,0,0\r\n1,1,1\r\n1,1,\xfe\r\n")     # BOM and CRLF
    with pytest.raises(DataError) as e:
        load_file(str(p), 2, 1)
    assert (e.value.row, e.value.message) == (3, "column 3: byte 0xfe is not UTF-8 text")


@pytest.mark.parametrize("text, row, message", [
    ("0;0;0\n1;1;1\n", 1,
     "cells are separated by ';'; nncompile reads comma-separated values"),
    ("a;b;y\n0;0,5;1\n", 1,
     "cells are separated by ';'; nncompile reads comma-separated values"),
    ("a\tb\ty\n0\t0\t1\n", 1,
     "cells are separated by tabs; nncompile reads comma-separated values"),
    ('"0,0,0\n1,1,1\n', 1,
     "column 1: unbalanced quote: a '\"' opens a cell that no '\"' closes"),
    ('0,0,0\n1,"1,1\n0,1,1\n', 2,
     "column 2: unbalanced quote: a '\"' opens a cell that no '\"' closes"),
    ('0,0,0\n1,"1\n2",1\n', 2,
     "column 2: a quoted cell runs from line 2 to line 3: is a '\"' unbalanced?"),
    ('"0"1,0,0\n', 1, "column 1: a quoted cell goes on after its closing '\"'"),
    ("1,2,label\n0,1,1\n", 1, "column 3: 'label' is not a finite number"),
])
def test_malformed_csv_is_named_at_its_line_not_taken_for_a_header(tmp_path, text, row, message):
    p = tmp_path / "d.csv"
    p.write_text(text)
    with pytest.raises(DataError) as e:
        load_file(str(p), 2, 1)
    assert (e.value.row, e.value.message) == (row, message)
    assert e.value.hint


def test_csv_quote_faults_name_their_column(tmp_path):
    """The column is the cell's, counted as csv counts cells: a quoted cell
    (with '""' for a '"' in it) holds commas and may span lines."""
    p = tmp_path / "d.csv"
    for text, row, message in [
            ('0,0,1\n1,1,"1\n', 2,
             "column 3: unbalanced quote: a '\"' opens a cell that no '\"' closes"),
            ('\n0,"a, b","c""\n', 2,
             "column 3: unbalanced quote: a '\"' opens a cell that no '\"' closes"),
            ('0,"1"2,1\n', 1, "column 2: a quoted cell goes on after its closing '\"'"),
            ('0,0,1\r\n"x, ""y""",1,"2" \r\n', 2,
             "column 3: a quoted cell goes on after its closing '\"'"),
            ('0,0,1\n0,"1\n2"x,1\n', 2, "column 2: a quoted cell goes on after its closing '\"'")]:
        p.write_text(text, encoding="utf-8", newline="")
        with pytest.raises(DataError) as e:
            load_file(str(p), 2, 1)
        assert str(e.value) == (f"{p}:{row}: error: {message}\nhint: numbers need no quotes: "
                                "remove the stray '\"'"), text


def test_the_separator_check_looks_outside_quotes(tmp_path):
    """A quoted header name may hold ';' or a tab; a ';'- or tab-separated
    file is still named at line 1, quoted names or not."""
    p = tmp_path / "d.csv"
    for text in ['"a;b",c,y\n0,0,1\n', '"a\tb", "c" ,"y;"\n0,0,1\n',
                 '\n"x ""1;2""",\tc\t,"\ty"\n0,0,1\n']:
        p.write_text(text, encoding="utf-8")
        ds = load_file(str(p), 2, 1)
        assert ds.x.tolist() == [[0, 0]] and ds.y.tolist() == [[1]], text
    hint = "save the file with ',' between cells (and '.' as the decimal mark: 0.5, not 0,5)"
    for text, row, name in [("a;b;y\n0;0;1\n", 1, "';'"), ('"a";b,y\n0,0,1\n', 1, "';'"),
                            ('"a";"b";"y"\n"0";"0";"1"\n', 1, "';'"),
                            ('\n\n"a;b";c;y\n0;0;1\n', 3, "';'"),
                            ('"a"\t"b"\t"y"\n0\t0\t1\n', 1, "tabs"),
                            ('"a\tb",c\td,y\n0,0,1\n', 1, "tabs")]:
        p.write_text(text, encoding="utf-8")
        with pytest.raises(DataError) as e:
            load_file(str(p), 2, 1)
        assert (e.value.row, e.value.message, e.value.hint) == (
            row, f"cells are separated by {name}; nncompile reads comma-separated values",
            hint), text


def test_a_first_row_with_numbers_and_names_says_both_readings(tmp_path):
    p = write_csv(tmp_path / "d.csv", [[1, 2, "label"], [0, 1, 1]])
    with pytest.raises(DataError) as e:
        load_file(str(p), 2, 1)
    assert e.value.hint == ("line 1 is an example, as it holds numbers ('1', '2'): every cell of "
                            "an example is a number such as 3, -0.5 or 1e-3, and no cell of a "
                            "header is (name a column x1, not 1)")


def test_real_headers_are_still_accepted(tmp_path):
    for i, text in enumerate(['"a, b",c,y\n0,0,1\n', "\n\nx1,x2,y\n\n0,0,1\n",
                              '"u","v","class"\r\n0,0,1\r\n', "\ufeffa,b,y\n0,0,1\n"]):
        p = tmp_path / f"h{i}.csv"
        p.write_text(text, encoding="utf-8")
        ds = load_file(str(p), 2, 1)
        assert ds.x.tolist() == [[0, 0]] and ds.y.tolist() == [[1]], text


@pytest.mark.parametrize("cell, what", [("1_0", "is not a plain decimal number"),
                                        ("\uff13", "is not a plain decimal number"),
                                        ("0x1f", "is not a finite number"),
                                        ("infinity", "is not a finite number")])
def test_csv_cells_must_be_plain_decimal_numbers(tmp_path, cell, what):
    p = tmp_path / "d.csv"
    p.write_text(f"0,0,0\n0,{cell},1\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_file(str(p), 2, 1)
    assert (e.value.row, e.value.message) == (2, f"column 2: '{cell}' {what}")
    assert e.value.hint.startswith("every cell is a number such as 3, -0.5 or 1e-3")
    p.write_text("1.,-.5,+2e-1\n", encoding="utf-8")
    assert load_file(str(p), 2, 1).x.tolist() == [[1.0, -0.5]]


def test_input_only_csv_hints_say_nothing_of_targets(tmp_path):
    p = tmp_path / "in.csv"
    p.write_text("")
    with pytest.raises(DataError) as e:
        load_file(str(p), 2, 0)
    assert e.value.hint == "give one input example per row, its values separated by commas"
    p.write_text("0,1e39\n")
    with pytest.raises(DataError) as e:
        load_file(str(p), 2, 0)
    assert (e.value.row, e.value.hint) == (1, "float32 holds numbers up to about 3.4e38; give "
                                              "the inputs in the units of the training data")


def test_check_and_trace_name_the_csv_row_of_data_that_did_not_load(tmp_path):
    import nncompile
    from nncompile.check import start_batch
    (tmp_path / "d.csv").write_text("0,0,0\n1,x,1\n")
    (tmp_path / "n.nn").write_text("input x[2]\ntarget y[1]\noutput p = dense(x, 1)\n"
                                   "loss mse(p, y)\ntrain {\n  data = \"d.csv\"\n}\n")
    model = nncompile.compile(str(tmp_path / "n.nn"), device="cpu")
    why = f"(the data did not load: {tmp_path / 'd.csv'}:2: column 2: 'x' is not a finite " \
          "number)"
    assert start_batch(model)[2].endswith(f" examples {why}")
    assert why in str(model.trace()).splitlines()[0]


def test_a_data_set_for_two_inputs_names_the_command_line_and_python():
    import nncompile
    m = nncompile.compile_source("input a[1]\ninput b[1]\ntarget y[1]\n"
                                 "output p = dense(a, 1) + dense(b, 1)\nloss mse(p, y)\n"
                                 "train {\n  data = not\n}\n", device="cpu")
    with pytest.raises(DataError) as e:
        m.fit(epochs=1)
    assert e.value.message == ("a data set feeds models with one input and one target; this "
                               "model has 2 inputs and 1 target")
    assert e.value.hint == ("the command line runs models with one input and one target from a "
                            "data set; from Python, pass dicts keyed by input and target name "
                            "to fit(x=..., y=...)")


# ---------------------------------------------------------------- npz

def test_npz_labels_and_values(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=np.arange(6).reshape(3, 2), y=np.array([1, 0, 2]))
    ds = load_file(str(p), 2, 3)
    assert ds.labels and ds.y.tolist() == [1, 0, 2] and ds.x.dtype == np.float32
    ds = load_file(str(p), 2, 1)                  # one target entry: values, not labels
    assert not ds.labels and ds.y.tolist() == [[1], [0], [2]] and ds.y.dtype == np.float32
    q = tmp_path / "v.npz"
    np.savez(q, x=np.zeros((2, 3, 3)), y=np.ones((2, 2)))
    ds = load_file(str(q), 9, 2)
    assert ds.x.shape == (2, 3, 3) and ds.y.tolist() == [[1, 1], [1, 1]]


def test_npz_errors(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, inputs=np.zeros((2, 2)), y=np.zeros(2))
    with pytest.raises(DataError, match=r"no array 'x' in the archive \(found: inputs, y\)") as e:
        load_file(str(p), 2, 1)
    assert e.value.file == str(p)
    np.savez(p, x=np.zeros((3, 2)), y=np.zeros(2))
    with pytest.raises(DataError, match="'x' has 3 examples but 'y' has 2"):
        load_file(str(p), 2, 1)
    np.savez(p, x=np.array([["a", "b"]]), y=np.zeros(1))
    with pytest.raises(DataError, match="must be numeric"):
        load_file(str(p), 2, 1)
    p.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_file(str(p), 2, 1)


def test_a_truncated_or_damaged_npz_is_named_in_plain_words(tmp_path):
    """Cut short anywhere (or with a byte changed inside an array), an .npz is
    named as such, without numpy's or zipfile's own text."""
    good = tmp_path / "good.npz"
    np.savez(good, x=np.arange(12.0).reshape(6, 2), y=np.zeros((6, 1)))
    raw = good.read_bytes()
    changed = bytearray(raw)
    changed[raw.index(b"\x93NUMPY") + 140] ^= 0xFF             # in x's values: a bad CRC
    p = tmp_path / "d.npz"
    for content in [raw[:n] for n in (0, 1, 3, 4, 30, len(raw) // 2, len(raw) - 1)] + \
            [bytes(changed)]:
        p.write_bytes(content)
        with pytest.raises(DataError) as e:
            load_file(str(p), 2, 1)
        assert str(e.value) == (f"{p}: error: truncated or corrupt .npz file (not a complete "
                                "zip archive)\nhint: write it again with numpy.savez; a copy "
                                "cut short in transfer looks like this"), len(content)
    assert load_file(str(good), 2, 1).x.tolist() == np.arange(12.0).reshape(6, 2).tolist()


def test_npz_label_hints_say_labels_are_0_to_n_minus_1(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=np.zeros((3, 2)), y=np.array([0, 1, -1]))
    with pytest.raises(DataError) as e:
        prepare(load_file(str(p), 2, 3), (2,), (3,), 0.0, "none", 0)
    assert str(e.value) == (f"{p}: error: class label -1 of example 2 (counting from 0) is "
                            "outside 0..2 for the target [3]\nhint: class labels are 0..N-1 "
                            "for a target y[N], one entry per class")


def test_npz_float_labels_are_class_labels_when_whole(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=np.zeros((3, 2)), y=np.array([0.0, 1.0, 2.0]))
    ds = load_file(str(p), 2, 3)
    assert ds.labels and ds.y.dtype == np.int64 and ds.y.tolist() == [0, 1, 2]
    assert prepare(ds, (2,), (3,), 0.0, "none", 0).y_train.tolist() == np.eye(3).tolist()
    ds = load_file(str(p), 2, 1)                  # one target entry: values, as before
    assert not ds.labels and ds.y.tolist() == [[0], [1], [2]]
    np.savez(p, x=np.zeros((3, 2)), y=np.array([0.0, 1.5, 2.0]))
    with pytest.raises(DataError) as e:
        load_file(str(p), 2, 3)
    assert str(e.value) == (f"{p}: error: a 1-D 'y' holds class labels for the 3-entry target, "
                            "but example 1 (counting from 0) is 1.5, not a whole number 0..2\n"
                            "hint: save the labels 0..2 as integers (y.astype(int)), or target "
                            "values as a 'y' of shape (n, 3)")


# ---------------------------------------------------------------- MNIST idx

def _mnist(n=5):
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    images, labels = _mnist()
    end = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{end}", images, gzip=gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{end}", labels, gzip=gz)
    ds = load_file(str(tmp_path / f"train-images-idx3-ubyte{end}"), 784, 10)
    assert ds.x.shape == (5, 28, 28) and ds.x.dtype == np.float32
    assert np.array_equal(ds.x, images.astype(np.float32))
    assert ds.labels and ds.y.tolist() == labels.tolist()
    assert ds.source == str(tmp_path / f"train-images-idx3-ubyte{end}")
    folder = load_file(str(tmp_path), 784, 10)             # a folder: the train files
    assert np.array_equal(folder.x, ds.x) and np.array_equal(folder.y, ds.y)
    sp = prepare(ds, (1, 28, 28), (10,), 0.0, "none", 0)
    assert sp.x_train.shape == (5, 1, 28, 28) and sp.y_train.sum(axis=1).tolist() == [1] * 5


def test_idx_dotted_names(tmp_path):
    images, labels = _mnist(3)
    write_idx(tmp_path / "t10k-images.idx3-ubyte", images)
    write_idx(tmp_path / "t10k-labels.idx1-ubyte", labels)
    ds = load_file(str(tmp_path / "t10k-images.idx3-ubyte"), 784, 10)
    assert ds.y.tolist() == labels.tolist()


def test_idx_errors(tmp_path):
    images, labels = _mnist(4)
    img = tmp_path / "train-images-idx3-ubyte"
    lab = tmp_path / "train-labels-idx1-ubyte"
    write_idx(img, images)
    with pytest.raises(DataError, match="labels file .*train-labels-idx1-ubyte is missing") as e:
        load_file(str(img), 784, 10)
    assert e.value.file == str(img)

    write_idx(lab, labels[:3])
    with pytest.raises(DataError, match="4 images but 3 labels") as e:
        load_file(str(img), 784, 10)
    assert e.value.file == str(img)

    write_idx(lab, labels)
    raw = img.read_bytes()
    img.write_bytes(raw[:-10])
    with pytest.raises(DataError, match="truncated idx file") as e:
        load_file(str(img), 784, 10)
    assert e.value.file == str(img)
    img.write_bytes(raw[:6])
    with pytest.raises(DataError, match="truncated idx file"):
        load_file(str(img), 784, 10)

    img.write_bytes(b"\x00\x00\x08\x01" + raw[4:])
    with pytest.raises(DataError, match="bad idx magic number 0x00000801; expected 0x00000803") as e:
        load_file(str(img), 784, 10)
    assert e.value.file == str(img)

    write_idx(img, images)
    write_idx(lab, images)                               # images where labels belong
    with pytest.raises(DataError, match="bad idx magic") as e:
        load_file(str(img), 784, 10)
    assert e.value.file == str(lab)


def test_idx_gzip_truncated_and_empty_folder(tmp_path):
    images, labels = _mnist(2)
    img = write_idx(tmp_path / "train-images-idx3-ubyte.gz", images, gzip=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels, gzip=True)
    img.write_bytes(img.read_bytes()[:-12])
    with pytest.raises(DataError, match="gzip"):
        load_file(str(img), 784, 10)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no train-images-idx3-ubyte") as e:
        load_file(str(empty), 784, 10)
    assert e.value.file == str(empty)


# ---------------------------------------------------------------- prepare

def _ds(x, y, labels=False):
    return Dataset(np.asarray(x, np.float32), np.asarray(y, np.int64 if labels else np.float32),
                   labels, "test", 0.2)


def test_prepare_reshape_and_shape_errors():
    ds = load_builtin("digits", 0)
    sp = prepare(ds, (1, 8, 8), (10,), 0.2, "none", 0)
    assert sp.x_train.shape == (1438, 1, 8, 8) and sp.x_test.shape == (359, 1, 8, 8)
    assert sp.y_train.shape == (1438, 10) and sp.y_train.dtype == np.float32
    assert (sp.y_train.sum(axis=1) == 1).all()
    for a in (sp.x_train, sp.y_train, sp.x_test, sp.y_test):
        assert a.dtype == np.float32 and a.flags.c_contiguous
    with pytest.raises(DataError) as e:
        prepare(ds, (2, 3), (10,), 0.2, "none", 0)
    assert "each example has 64 values but the model's input is [2, 3] (6 values)" in str(e.value)
    with pytest.raises(DataError, match="each target has 1 value but the model's target is "
                                        r"\[2\] \(2 values\)"):
        prepare(load_builtin("xor", 0), (2,), (2,), 0.0, "none", 0)


def test_prepare_labels():
    ds = _ds([[0], [1], [2]], [0, 1, 1], labels=True)
    sp = prepare(ds, (1,), (1,), 0.0, "none", 0)           # target [1]: the label as a value
    assert sp.y_train.tolist() == [[0], [1], [1]]
    sp = prepare(ds, (1,), (2,), 0.0, "none", 0)
    assert sp.y_train.tolist() == [[1, 0], [0, 1], [0, 1]]
    sp = prepare(ds, (1,), (1, 2), 0.0, "none", 0)
    assert sp.y_train.shape == (3, 1, 2)
    sp = prepare(ds, (1,), (1, 1), 0.0, "none", 0)        # one entry: still a value
    assert sp.y_train.tolist() == [[[0]], [[1]], [[1]]]
    with pytest.raises(DataError, match=r"class label 5 of example 2 \(counting from 0\) is "
                                        r"outside 0\.\.2"):
        prepare(_ds([[0], [1], [2]], [0, 1, 5], labels=True), (1,), (3,), 0.0, "none", 0)


def test_prepare_split_sizes_no_overlap_and_seeded():
    n = 50
    ds = _ds(np.arange(n).reshape(n, 1), np.arange(n).reshape(n, 1))
    sp = prepare(ds, (1,), (1,), 0.3, "none", 3)
    assert len(sp.x_train) == 35 and len(sp.x_test) == 15
    train, test = set(sp.x_train[:, 0].tolist()), set(sp.x_test[:, 0].tolist())
    assert not train & test and train | test == set(range(n))
    assert (sp.x_train == sp.y_train).all() and (sp.x_test == sp.y_test).all()
    assert sorted(sp.x_train[:, 0]) == sp.x_train[:, 0].tolist()  # data order kept
    expect = sorted(np.random.default_rng(3).permutation(n)[:15].tolist())
    assert sp.x_test[:, 0].tolist() == expect
    again = prepare(ds, (1,), (1,), 0.3, "none", 3)
    assert np.array_equal(again.x_test, sp.x_test)
    other = prepare(ds, (1,), (1,), 0.3, "none", 4)
    assert not np.array_equal(other.x_test, sp.x_test)


def test_prepare_split_zero_and_too_large():
    sp = prepare(load_builtin("and", 0), (2,), (1,), 0.0, "none", 0)
    assert sp.x_train.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert sp.x_test.shape == (0, 2) and sp.y_test.shape == (0, 1)
    assert sp.x_test.dtype == np.float32
    sp = prepare(load_builtin("digits", 0), (8, 8), (10,), 0.0, "none", 0)
    assert sp.x_test.shape == (0, 8, 8) and sp.y_test.shape == (0, 10)
    with pytest.raises(DataError, match="leaves no training rows"):
        prepare(load_builtin("and", 0), (2,), (1,), 0.9, "none", 0)
    with pytest.raises(DataError, match="split 1.0"):
        prepare(load_builtin("and", 0), (2,), (1,), 1.0, "none", 0)


def _seed_holding_out(n, row):
    """A seed whose permutation puts `row` first (so split 1/n holds out only it)."""
    return next(s for s in range(1000) if np.random.default_rng(s).permutation(n)[0] == row)


def test_normalize_uses_training_statistics_only():
    # feature 0: train 0, 2, 4 and the held-out outlier 100; feature 1: constant 5
    ds = _ds([[0, 5], [2, 5], [4, 5], [100, 5]], [[0], [1], [2], [3]])
    seed = _seed_holding_out(4, 3)
    sp = prepare(ds, (2,), (1,), 0.25, "minmax", seed)
    assert sp.y_test.tolist() == [[3]]
    assert sp.x_train.tolist() == [[0, 0], [0.5, 0], [1, 0]]
    assert sp.x_test.tolist() == [[25, 0]]                  # (100 - 0) / (4 - 0)
    sp = prepare(ds, (2,), (1,), 0.25, "standardize", seed)
    std = math.sqrt(8 / 3)                                  # of 0, 2, 4 (ddof 0)
    assert np.allclose(sp.x_train, [[-2 / std, 0], [0, 0], [2 / std, 0]], rtol=1e-6, atol=0)
    assert np.allclose(sp.x_test, [[98 / std, 0]], rtol=1e-6, atol=0)
    sp = prepare(ds, (2,), (1,), 0.25, "none", seed)
    assert sp.x_test.tolist() == [[100, 5]]


def test_normalize_exact_values_over_flattened_features():
    x = np.array([[[1, 2], [3, 4]], [[3, 2], [5, 8]]], np.float32)   # (2, 2, 2)
    ds = _ds(x, [[0], [1]])
    sp = prepare(ds, (4,), (1,), 0.0, "minmax", 0)
    assert sp.x_train.tolist() == [[0, 0, 0, 0], [1, 0, 1, 1]]
    sp = prepare(ds, (2, 2), (1,), 0.0, "standardize", 0)
    assert sp.x_train.tolist() == [[[-1, 0], [-1, -1]], [[1, 0], [1, 1]]]
    with pytest.raises(DataError) as e:
        prepare(ds, (4,), (1,), 0.0, "minmax2", 0)
    assert "unknown normalize 'minmax2'" in str(e.value) and "did you mean 'minmax'?" in e.value.hint


# ---------------------------------------------------------------- every fault has a hint

def _broken_files(d):
    """(name, load call) for one broken data file of each kind the loaders reject."""
    imgs = np.zeros((3, 2, 2), np.uint8)
    cases = []

    def csv_file(name, text):
        (d / name).write_text(text)
        return lambda: load_file(str(d / name), 2, 1)

    cases += [("csv_not_utf8", lambda: ((d / "b.csv").write_bytes(b"1,2,\xff\n"),
                                        load_file(str(d / "b.csv"), 2, 1))[1]),
              ("csv_header_only", csv_file("h.csv", "a,b,y\n")),
              ("csv_ragged", csv_file("r.csv", "1,2,3\n1,2\n")),
              ("csv_not_a_number", csv_file("n.csv", "1,2,3\n1,x,3\n")),
              ("csv_bad_label", lambda: ((d / "l.csv").write_text("1,2,7\n"),
                                         load_file(str(d / "l.csv"), 2, 3))[1])]

    def npz_file(name, **arrays):
        np.savez(d / name, **arrays)
        return lambda: load_file(str(d / name), 2, 1)

    (d / "junk.npz").write_bytes(b"not a zip")
    cases += [("npz_unreadable", lambda: load_file(str(d / "junk.npz"), 2, 1)),
              ("npz_missing_y", npz_file("m.npz", x=np.zeros((2, 2)))),
              ("npz_strings", npz_file("s.npz", x=np.array([["a", "b"]]), y=np.zeros(1))),
              ("npz_lengths", npz_file("l.npz", x=np.zeros((3, 2)), y=np.zeros(2))),
              ("npz_empty", npz_file("e.npz", x=np.zeros((0, 2)), y=np.zeros(0))),
              ("npz_nan_x", npz_file("nx.npz", x=np.array([[0, np.nan]]), y=np.zeros(1))),
              ("npz_nan_y", npz_file("ny.npz", x=np.zeros((2, 2)), y=np.array([0, np.inf])))]

    def idx_pair(name, images, labels):
        (d / f"{name}-images-idx3-ubyte").write_bytes(images)
        if labels is not None:
            (d / f"{name}-labels-idx1-ubyte").write_bytes(labels)
        return lambda: load_file(str(d / f"{name}-images-idx3-ubyte"), 4, 10)

    good_images = write_idx(d / "ok-images-idx3-ubyte", imgs).read_bytes()
    good_labels = write_idx(d / "ok-labels-idx1-ubyte", np.zeros(3, np.uint8)).read_bytes()
    cases += [("idx_empty", idx_pair("e", b"", good_labels)),
              ("idx_header_cut", idx_pair("h", good_images[:9], good_labels)),
              ("idx_body_cut", idx_pair("b", good_images[:-1], good_labels)),
              ("idx_bad_gzip", idx_pair("z", b"\x1f\x8b\x08junk", good_labels)),
              ("idx_counts", idx_pair("c", good_images, good_labels[:-1] + b"")),
              ("idx_no_labels", idx_pair("n", good_images, None))]
    no_images = write_idx(d / "none-images-idx3-ubyte", np.zeros((0, 2, 2), np.uint8))
    write_idx(d / "none-labels-idx1-ubyte", np.zeros(0, np.uint8))
    cases.append(("idx_no_images", lambda: load_file(str(no_images), 4, 10)))
    return cases


def test_every_data_file_fault_has_a_hint(tmp_path):
    """Each loader error names the file and ends in a hint saying what to do."""
    cases = _broken_files(tmp_path)
    assert len(cases) == 19
    for name, call in cases:
        with pytest.raises(DataError) as info:
            call()
        e = info.value
        assert e.file and str(tmp_path) in e.file, name
        assert e.hint, f"{name}: {e}"
        assert str(e).endswith("\nhint: " + e.hint), name


def test_preparation_faults_have_hints():
    ds = Dataset(np.zeros((4, 3), np.float32), np.array([0, 1, 5, 2]), True, "d.csv", 0.2)
    with pytest.raises(DataError) as info:
        prepare(ds, (3,), (4,), 0.2, "none", 0)
    assert str(info.value) == ("d.csv: error: class label 5 of example 2 (counting from 0) is "
                               "outside 0..3 for the target [4]\nhint: class labels are 0..N-1 "
                               "for a target y[N], one entry per class: labels 0..5 need "
                               "target y[6]")
    for args, text in [(((2,), (4,), 0.2), "change the model's input shape"),
                       (((3,), (0,), 0.2), r"declare the target as y\[6\]"),
                       (((3,), (6,), 1.0), "split is the held-out share")]:
        with pytest.raises(DataError, match=text):
            prepare(ds, *args, "none", 0)
    values = Dataset(np.zeros((4, 3), np.float32), np.zeros((4, 2), np.float32), False, "v.npz",
                     0.2)
    with pytest.raises(DataError, match="change the model's target shape"):
        prepare(values, (3,), (3,), 0.2, "none", 0)


def test_an_empty_idx_file_says_so(tmp_path):
    (tmp_path / "e-images-idx3-ubyte").write_bytes(b"")
    write_idx(tmp_path / "e-labels-idx1-ubyte", np.zeros(1, np.uint8))
    with pytest.raises(DataError, match=r"bad idx magic number missing \(the file has 0 "
                                        r"bytes\); expected 0x00000803 for images"):
        load_file(str(tmp_path / "e-images-idx3-ubyte"), 4, 10)
