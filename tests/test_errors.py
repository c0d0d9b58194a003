"""Broken models: each ends in one exact `FILE:LINE:COL: error: MESSAGE` (and hint).

Every case is a small .nn text compiled with compile_source(file="m.nn"); the
test pins the first line of the first diagnostic and its hint (None: no hint).
"""
from __future__ import annotations

import os
import random

import numpy as np
import pytest

import nncompile
from nncompile import CompileError

HEAD = "input x[2]\ntarget y[1]\n"
TRAIN = HEAD + "output p = dense(x, 1, sigmoid)\nloss mse(p, y)\ntrain {\n  data = xor\n"
KEYWORDS = "model, input, target, param, output, loss, train"
BRACKETS = "a statement continues over lines only inside ( ) or [ ]"
TOO_LARGE = "numbers must fit in float32: at most about 3.4e38"
EXPONENT = ("the exponent is a number, or numbers combined such as 2 ^ 3 or 1 / 2; a power by "
            "a value is exp(k * log(x))")
LR = "the learning rate is a positive number, e.g. sgd(lr = 0.01)"
SPLIT = "split is a fraction in [0, 1), e.g. split = 0.2"
BATCH = "batch is a whole number from 1 to 2147483647, e.g. batch = 32"
EPOCHS = "epochs is a whole number from 0 to 2147483647, e.g. epochs = 10"
SHAPE = "a shape lists sizes, whole numbers of 1 or more separated by commas: x[2], x[1, 8, 8]"
SIZES = "a shape lists whole numbers of 1 or more, e.g. x[2], x[1, 8, 8]"

# (id, source, first line, hint)
CASES = [
    # syntax ------------------------------------------------------------------
    ("unclosed_bracket", "input x[2]\nh = dense(x, 4, tanh\noutput p = dense(h, 1)\n",
     "m.nn:2:10: error: '(' is not closed",
     f"close it with ')' before the next statement on line 3; {BRACKETS}"),
    ("unclosed_bracket_at_end", "input x[2]\nh = dense(x, 4, tanh\n",
     "m.nn:2:10: error: '(' is not closed",
     f"close it with ')' before the end of the file; {BRACKETS}"),
    ("unclosed_shape", "input x[2\ntarget y[1]\n",
     "m.nn:1:8: error: '[' is not closed",
     f"close it with ']' before the next statement on line 2; {BRACKETS}"),
    ("unclosed_train_block", TRAIN + "  epochs = 3\n",
     "m.nn:5:7: error: '{' is not closed",
     "close it with '}' before the end of the file; a train block ends with '}' on a line "
     "of its own"),
    ("statement_inside_train_block", TRAIN + "  epochs = 3\nloss mae(p, y)\n",
     "m.nn:5:7: error: '{' is not closed",
     "close it with '}' before the next statement on line 8; a train block ends with '}' "
     "on a line of its own"),
    ("missing_comma_arguments", "input x[2]\nh = dense(x 4)\n",
     "m.nn:2:13: error: unexpected number 4; expected an operator, ')' or ','",
     "is a ',' missing between two arguments?"),
    ("missing_comma_shape", "input x[2 3]\n",
     "m.nn:1:11: error: unexpected number 3; expected ',' or ']'",
     "is a ',' missing between two sizes?"),
    ("stray_character", "input x[2]\nh = x $ 2\n",
     "m.nn:2:7: error: unexpected character '$'",
     "'$' has no meaning in a model: the operators are + - * / @ ^, and a comment starts "
     "with '#'"),
    ("lookalike_character", "input x[2]\nh = x \u00d7 2\n",
     "m.nn:2:7: error: unexpected character U+00D7 (multiplication sign)",
     "did you mean '*'?"),
    ("no_break_space", "input x[2]\nh = x\u00a0* 2\n",
     "m.nn:2:6: error: unexpected character U+00A0 (no-break space)", "did you mean ' '?"),
    ("non_ascii_name", "input x[2]\ncaf\u00e9 = x * 2\n",
     "m.nn:2:4: error: unexpected character U+00E9 (latin small letter e with acute)",
     "outside comments and quoted paths a model is written in ASCII"),
    ("semicolon", "input x[2]\nh = x * 2;\n",
     "m.nn:2:10: error: unexpected character ';'",
     "a statement ends at the end of its line; no ';' is needed"),
    ("equals_twice", "input x[2]\nh = g = x\n",
     "m.nn:2:7: error: unexpected '='; expected an operator or the end of the line",
     "'=' appears once in a statement, after the name it defines: NAME = EXPR"),
    ("two_statements_on_one_line", "input x[2]\nh = x * 2 output p = h\n",
     "m.nn:2:11: error: unexpected keyword 'output'; expected an operator or the end of "
     "the line",
     "each statement goes on its own line; start 'output' on a new line"),
    ("bad_number", "input x[2]\nh = x * 1.2.3\n",
     "m.nn:2:9: error: '1.2.3' is not a number",
     "numbers are written like 3, 0.5, .5 or 1e-3"),
    ("number_glued_to_name", "input x[2]\nh = 2x\n",
     "m.nn:2:5: error: '2x' is not a number",
     "numbers are written like 3, 0.5, .5 or 1e-3; a product is written 2 * x"),
    ("exponent_without_digits", "input x[2]\nh = x * 1e\n",
     "m.nn:2:9: error: '1e' is not a number",
     "numbers are written like 3, 0.5, .5 or 1e-3"),
    ("missing_shape", "input x\n",
     "m.nn:1:7: error: 'x' needs a shape, e.g. x[4]",
     "the shape of one example, in brackets; the batch axis is never written"),
    ("missing_shape_param", "input x[2]\nparam w = zeros\n",
     "m.nn:2:7: error: 'w' needs a shape, e.g. w[4]",
     "the shape of one example, in brackets; the batch axis is never written"),
    ("empty_shape", "input x[]\n",
     "m.nn:1:7: error: the shape of 'x' is empty",
     "give the size of each axis of one example, e.g. x[4] (x[1] for one number); the batch "
     "axis is never written"),
    ("zero_size", "input x[0]\n",
     "m.nn:1:9: error: a size must be a positive whole number, got 0", SIZES),
    ("infinite_size", "input x[1e400]\n",
     "m.nn:1:9: error: a size must be a positive whole number, got 1e400", SIZES),
    ("huge_size", "input x[1e12]\n",
     "m.nn:1:9: error: a size of 1e12 is too large", "a size is at most 2147483647"),
    ("number_beyond_float32", "input x[2]\nh = x * -1e39\n",
     "m.nn:2:9: error: the number is too large: '-1e39'", TOO_LARGE),
    ("infinite_units", "input x[2]\nh = dense(x, 1e400)\n",
     "m.nn:2:14: error: the number of units is too large: '1e400'", TOO_LARGE),
    ("infinite_axis", "input x[2]\nh = sum(x, axis = 1e999)\n",
     "m.nn:2:19: error: the axis is too large: '1e999'", TOO_LARGE),
    ("unterminated_string", TRAIN + '  data = "xor.csv\n}\n',
     "m.nn:7:10: error: unexpected character '\"'",
     "a quoted path must end on the same line"),
    ("unmatched_closer", "input x[2]\nh = x * 2)\n",
     "m.nn:2:10: error: unexpected ')'; expected the end of the line",
     "this ')' closes nothing"),
    ("stray_brace", "input x[2]\n}\n",
     "m.nn:2:1: error: unexpected '}'; expected a statement or the end of the file",
     "this '}' closes nothing"),
    ("misspelt_keyword", "inptu x[2]\n",
     "m.nn:1:1: error: unknown keyword 'inptu'", "did you mean 'input'?"),
    ("not_a_statement", "frob x[2]\n",
     "m.nn:1:6: error: unexpected name 'x'; expected '='",
     f"a statement starts with a keyword ({KEYWORDS}) or defines a value: NAME = EXPR"),
    ("missing_operand", "input x[2]\nh = x +\n",
     "m.nn:2:8: error: unexpected end of the line; expected a value",
     "'+' needs a value on each side"),
    ("train_setting_without_equals", TRAIN + "  epochs 3\n}\n",
     "m.nn:7:10: error: unexpected number 3; expected '='",
     "a train setting is written KEY = VALUE"),
    # syntax faults the fuzzer (test_fuzz_models.py) found without a hint
    ("negative_size", "input x[-1]\n",
     "m.nn:1:9: error: unexpected '-'; expected a number or ']'", SHAPE),
    ("name_as_size", "input x[nan]\n",
     "m.nn:1:9: error: unexpected name 'nan'; expected a number or ']'", SHAPE),
    ("shape_ends_in_comma", "input x[2,]\n",
     "m.nn:1:11: error: unexpected ']'; expected a number", SHAPE),
    ("missing_first_argument", "input x[2]\nh = dense(, 1)\n",
     "m.nn:2:11: error: unexpected ','; expected a value or ')'",
     "a value is missing after '(': a name, a number, a call or ( ... )"),
    ("double_comma", "input x[2]\nh = dense(x, 4,, relu)\n",
     "m.nn:2:16: error: unexpected ','; expected a value",
     "a value is missing after ','; give it, or delete the ','"),
    ("doubled_operator", "input x[2]\nh = x @ @x\n",
     "m.nn:2:9: error: unexpected '@'; expected a value", "'@' needs a value on each side"),
    ("train_setting_without_value", TRAIN + "  epochs =\n}\n",
     "m.nn:7:11: error: unexpected end of the line; expected a value",
     "a value is missing after '=': a name, a number, a call or ( ... )"),
    ("train_setting_after_comma", TRAIN + "  ,epochs = 3\n}\n",
     "m.nn:7:3: error: unexpected ','; expected a name or '}'",
     "a train setting is written KEY = VALUE, one per line, e.g. epochs = 10"),
    ("declaration_without_name", "target [1]\n",
     "m.nn:1:8: error: unexpected '['; expected a name",
     "'target' is followed by the name it declares, e.g. target y[1]"),
    ("param_without_equals", "param b[1] zeros\n",
     "m.nn:1:12: error: unexpected name 'zeros'; expected '='",
     "write it as param w[2, 1] = zeros"),
    ("output_with_comma", "input x[2]\noutput y , = x\n",
     "m.nn:2:10: error: unexpected ','; expected the end of the line or '='",
     "write it as output p = dense(h, 1), or output p for a value defined before"),
    ("tuple_in_parentheses", "input x[2]\nh = (x, 10)\n",
     "m.nn:2:7: error: unexpected ','; expected ')'",
     "parentheses group one value; a call has its function's name before '(': dense(h, 10)"),
    ("indexing", "input x[2]\nloss x[1]\n",
     "m.nn:2:7: error: unexpected '['; expected an operator or the end of the line",
     "values are not indexed: [ ] gives a shape only after input, target and param"),
    ("brace_without_train", "input x[2]\n{\n",
     "m.nn:2:1: error: unexpected '{'; expected a statement or the end of the file",
     "'{' opens only a train block: train { ... }"),
    ("closed_too_early", "input x[2]\nh = dense(), 4, tanh)\n",
     "m.nn:2:12: error: unexpected ','; expected the end of the line",
     "the statement is complete before this ','; delete it, or check the brackets before it"),
    ("statement_starting_with_a_number", "input x[2]\n2 = x\n",
     "m.nn:2:1: error: unexpected number 2; expected a statement or the end of the file",
     f"a statement starts with a keyword ({KEYWORDS}) or defines a value: NAME = EXPR"),
    ("first_statement_starting_with_a_symbol", "@model m\n",
     "m.nn:1:1: error: unexpected '@'; expected a statement or the end of the line",
     f"a statement starts with a keyword ({KEYWORDS}) or defines a value: NAME = EXPR"),
    ("dot_outside_a_number", "input x[2]\nh = x.y\n",
     "m.nn:2:6: error: unexpected character '.'",
     "'.' appears only in numbers such as 0.5; a comment starts with '#'"),
    ("too_many_arguments_named", "input x[2]\nh = dropout(x, rate = 0.5, 3)\n",
     "m.nn:2:5: error: dropout takes a value and the fraction to drop: dropout(x, 0.5)",
     "this call gives 2 values and the named argument rate"),
    # names -------------------------------------------------------------------
    ("unknown_name", "input x[2]\nhidden = dense(x, 4)\noutput p = dense(hiden, 1)\n",
     "m.nn:3:18: error: unknown name 'hiden'", "did you mean 'hidden'?"),
    ("unknown_name_far_from_all", "input x[2]\noutput p = dense(q, 1)\n",
     "m.nn:2:18: error: unknown name 'q'",
     "define it with 'NAME = ...' or declare it with 'input', 'target' or 'param'"),
    ("use_before_definition", "input x[2]\noutput p = dense(h, 1)\nh = dense(x, 4)\n",
     "m.nn:2:18: error: 'h' is used before its definition on line 3",
     "define a name before using it"),
    ("defined_twice", "input x[2]\nh = x * 2\nh = x * 3\n",
     "m.nn:3:1: error: 'h' is already defined on line 2",
     "a name is defined once; choose another name"),
    ("keyword_assigned", "input x[2]\ninput = x\n",
     "m.nn:2:1: error: 'input' is a keyword, not a name",
     f"the keywords {KEYWORDS} start statements; pick another name"),
    ("keyword_used_as_value", "input x[2]\nh = dense(input, 3)\n",
     "m.nn:2:11: error: 'input' is a keyword, not a name",
     f"the keywords {KEYWORDS} start statements"),
    ("keyword_declared", "param loss[2] = zeros\n",
     "m.nn:1:7: error: 'loss' is a keyword, not a name", "pick another name"),
    ("function_used_as_value", "input x[2]\nh = relu + x\n",
     "m.nn:2:5: error: 'relu' is a function, not a value", "call it: relu(x)"),
    ("builtin_redefined", "input x[2]\nrelu = x * 2\n",
     "m.nn:2:1: error: 'relu' is the name of a built-in function", "choose another name"),
    # calls -------------------------------------------------------------------
    ("unknown_function", "input x[2]\nh = rleu(x)\n",
     "m.nn:2:5: error: unknown function 'rleu'", "did you mean 'relu'?"),
    ("unknown_function_lists_builtins", "input x[2]\nh = frobnicate(x)\n",
     "m.nn:2:5: error: unknown function 'frobnicate'",
     "the built-in functions are abs, avgpool, binary_cross_entropy, conv2d, cross_entropy, "
     "dense, dropout, exp, flatten, leaky_relu, log, log_softmax, mae, max, maxpool, mean, "
     "mse, perceptron, relu, sigmoid, softmax, sqrt, square, step, sum, tanh, transpose"),
    ("wrong_argument_count", "input x[2]\nh = relu(x, 2)\n",
     "m.nn:2:5: error: relu takes 1 argument, got 2", "write it as relu(x)"),
    ("loss_argument_count", HEAD + "p = dense(x, 1)\nloss mse(p)\n",
     "m.nn:4:6: error: mse takes 2 arguments, got 1", "write it as mse(prediction, target)"),
    ("dense_argument_count", "input x[2]\nh = dense(x)\n",
     "m.nn:2:5: error: dense takes a value, a number of units and an optional activation: "
     "dense(x, 10, relu)", "this call gives 1 value"),
    ("unknown_keyword_argument", "input x[2]\nh = sum(x, axes = 0)\n",
     "m.nn:2:12: error: sum has no argument 'axes'", "did you mean 'axis'?"),
    ("keyword_argument_not_taken", "input x[2]\nh = relu(x, slope = 2)\n",
     "m.nn:2:13: error: relu has no argument 'slope'", "relu takes no named arguments"),
    ("misspelt_activation", "input x[2]\nh = dense(x, 4, tanhh)\n",
     "m.nn:2:17: error: 'tanhh' is not an activation", "did you mean 'tanh'?"),
    ("layer_as_activation", "input x[2]\nh = dense(x, 4, dense)\n",
     "m.nn:2:17: error: 'dense' is not an activation",
     "activations: relu, sigmoid, tanh, step, leaky_relu, exp, log, abs, sqrt, square, "
     "softmax, log_softmax"),
    ("dense_on_non_vector", "input x[2, 3]\nh = dense(x, 4)\n",
     "m.nn:2:11: error: dense needs a vector per example, got [2, 3]",
     "flatten it first: dense(flatten(x), ...)"),
    ("units_not_whole", "input x[2]\nh = dense(x, 2.5)\n",
     "m.nn:2:14: error: the number of units must be a whole number of 1 or more, got 2.5",
     "the number of units is a whole number of 1 or more"),
    ("axis_out_of_range", "input x[2]\nh = sum(x, axis = 1)\n",
     "m.nn:2:19: error: axis 1 is out of range: one example of this value is [2], which "
     "has 1 axis",
     "axes count within one example, from 0; the batch axis is never counted"),
    ("quoted_path_outside_data", "input x[2]\nh = x * \"two\"\n",
     "m.nn:2:9: error: a quoted path is only allowed as the value of 'data'",
     "names of values are written without quotes"),
    ("exponent_not_a_number", "input x[2]\nh = x ^ x\n",
     "m.nn:2:9: error: the exponent of '^' must be a number", EXPONENT),
    # shapes ------------------------------------------------------------------
    ("matmul_mismatch", "input x[2]\nparam w[3, 4] = zeros\nh = x @ w\n",
     "m.nn:3:5: error: '@' cannot multiply [N, 2] by [3, 4]: 2 columns against 3 rows "
     "('x' on line 1 @ 'w' on line 2)",
     "the left operand's last size must equal the right operand's second-to-last size"),
    ("matmul_mismatch_one_row", "input x[2]\nparam w[1, 4] = zeros\nh = x @ w\n",
     "m.nn:3:5: error: '@' cannot multiply [N, 2] by [1, 4]: 2 columns against 1 row "
     "('x' on line 1 @ 'w' on line 2)",
     "the left operand's last size must equal the right operand's second-to-last size"),
    ("matmul_vector_mismatch", "input x[2]\ninput v[3]\nh = x @ v\n",
     "m.nn:3:5: error: '@' cannot multiply [N, 2] by [N, 3]: 2 columns against 3 rows "
     "('x' on line 1 @ 'v' on line 2)",
     "the left operand's last size must equal the right operand's size"),
    ("matmul_by_a_number", "input x[2]\nh = x @ 2\n",
     "m.nn:2:5: error: '@' multiplies vectors and matrices, and 2 is one number ('x' on "
     "line 1 @ 2)", "scale by a number with '*'"),
    ("matmul_of_a_number_per_example", "input x[2]\nparam w[1, 2] = ones\nh = sum(x) @ w\n",
     "m.nn:3:5: error: '@' multiplies vectors and matrices, and a [N] value is one number "
     "per example (a [N] value @ 'w' on line 2)", "scale by a number with '*'"),
    ("matmul_leading_axes", "input x[2, 3, 4]\nparam w[5, 4, 2] = ones\nh = x @ w\n",
     "m.nn:3:5: error: '@' multiplies the last two axes of each example and broadcasts the "
     "axes before them, and [2] and [5] do not broadcast ('x' on line 1 @ 'w' on line 2)",
     "those axes need equal sizes, or a size of 1, counted from the right"),
    ("init_expression", "param w[2] = 1 + 1\nloss sum(w)\n",
     "m.nn:1:14: error: '1 + 1' is not an initialiser",
     "an init is zeros, ones, normal(mean, std), uniform(lo, hi), xavier, he or a number"),
    ("broadcast_mismatch", "input x[2]\nparam b[3] = zeros\nh = x + b\n",
     "m.nn:3:5: error: shapes [N, 2] and [3] do not broadcast ('x' on line 1 + 'b' on "
     "line 2)",
     "elementwise operands need equal sizes, or a size of 1, in each axis counted from "
     "the right"),
    ("loss_shape_mismatch", "input x[2]\ntarget y[3]\nh = dense(x, 4)\nloss mse(h, y)\n",
     "m.nn:4:6: error: mse compares values of different shapes: 'h' on line 3 is [N, 4] "
     "but 'y' on line 2 is [N, 3]",
     "the prediction and the target need the same shape"),
    ("loss_not_one_number_per_example", "input x[2]\ntarget y[4]\nh = dense(x, 4)\nloss h - y\n",
     "m.nn:4:6: error: the loss must be one number, or one number per example; this "
     "expression has shape [N, 4]",
     "reduce it, e.g. loss mean((p - y) ^ 2)"),
    ("two_losses", HEAD + "p = dense(x, 1)\nloss mse(p, y)\nloss mae(p, y)\n",
     "m.nn:5:1: error: a model has exactly one 'loss' statement",
     "combine several terms into one expression with '+'"),
    ("output_without_input", "param w[2] = ones\noutput p = w * 2\n",
     "m.nn:2:8: error: output 'p' does not depend on an input",
     "an output is computed per example from the model's inputs"),
    # inits -------------------------------------------------------------------
    ("unknown_init", "param w[2] = gaussian(0, 1)\n",
     "m.nn:1:14: error: 'gaussian' is not an initialiser",
     "an init is zeros, ones, normal(mean, std), uniform(lo, hi), xavier, he or a number"),
    ("misspelt_init", "param w[2] = xavir\n",
     "m.nn:1:14: error: 'xavir' is not an initialiser", "did you mean 'xavier'?"),
    ("uniform_lo_above_hi", "param w[2] = uniform(1, -1)\n",
     "m.nn:1:14: error: uniform(lo, hi) needs lo <= hi, got 1 > -1",
     "swap them: uniform(-1, 1)"),
    ("normal_negative_std", "param w[2] = normal(0, -0.5)\n",
     "m.nn:1:24: error: normal(mean, std) needs std >= 0, got -0.5",
     "the standard deviation is a spread: 0 or more"),
    ("normal_argument_count", "param w[2] = normal(0)\n",
     "m.nn:1:14: error: normal takes two numbers: normal(mean, std)",
     "this call gives 1 value"),
    # train block -------------------------------------------------------------
    ("unknown_train_key", TRAIN + "  epoch = 3\n}\n",
     "m.nn:7:3: error: unknown train setting 'epoch'", "did you mean 'epochs'?"),
    ("misspelt_early_stop", TRAIN + "  early_stopping = 3\n}\n",
     "m.nn:7:3: error: unknown train setting 'early_stopping'", "did you mean 'early_stop'?"),
    ("early_stop_zero", TRAIN + "  early_stop = 0\n}\n",
     "m.nn:7:16: error: early_stop must be at least 1, got 0",
     "early_stop is a whole number from 1 to 2147483647, e.g. early_stop = 5"),
    ("early_stop_fraction", TRAIN + "  early_stop = 2.5\n}\n",
     "m.nn:7:16: error: early_stop must be a whole number of 1 or more, got 2.5",
     "early_stop is a whole number from 1 to 2147483647, e.g. early_stop = 5"),
    ("bad_optimizer", TRAIN + "  optimizer = rmsprop(lr = 0.1)\n}\n",
     "m.nn:7:15: error: 'rmsprop' is not an optimizer",
     "optimizer is sgd(lr, momentum = 0) or adam(lr)"),
    ("misspelt_optimizer", TRAIN + "  optimizer = adan(lr = 0.1)\n}\n",
     "m.nn:7:15: error: 'adan' is not an optimizer", "did you mean 'adam'?"),
    ("optimizer_number", TRAIN + "  optimizer = 3\n}\n",
     "m.nn:7:15: error: '3' is not an optimizer",
     "optimizer is sgd(lr, momentum = 0) or adam(lr)"),
    ("optimizer_without_brackets", TRAIN + "  optimizer = sgd\n}\n",
     "m.nn:7:15: error: sgd needs a learning rate in brackets: sgd(lr = 0.01)",
     "write optimizer = sgd(lr = 0.01)"),
    ("lr_missing", TRAIN + "  optimizer = sgd(momentum = 0.9)\n}\n",
     "m.nn:7:15: error: sgd needs a learning rate: sgd(lr = 0.01)",
     "lr comes first, by name or by place: sgd(lr = 0.01) or sgd(0.01)"),
    ("lr_negative", TRAIN + "  optimizer = adam(lr = -0.01)\n}\n",
     "m.nn:7:25: error: the learning rate must be positive, got -0.01", LR),
    ("lr_zero", TRAIN + "  optimizer = sgd(0)\n}\n",
     "m.nn:7:19: error: the learning rate must be positive, got 0", LR),
    ("lr_given_twice", TRAIN + "  optimizer = sgd(0.1, lr = 0.2)\n}\n",
     "m.nn:7:24: error: 'lr' is given twice", "give each argument once"),
    ("optimizer_unknown_setting", TRAIN + "  optimizer = sgd(lr = 0.1, beta1 = 0.9)\n}\n",
     "m.nn:7:29: error: sgd has no argument 'beta1'", "sgd accepts lr, momentum"),
    ("beta_not_below_one", TRAIN + "  optimizer = adam(lr = 0.1, beta2 = 1)\n}\n",
     "m.nn:7:38: error: 'beta2' must be below 1, got 1",
     "'beta2' is a fraction in [0, 1), e.g. adam(lr = 0.001, beta2 = 0.999)"),
    ("split_one", TRAIN + "  split = 1\n}\n",
     "m.nn:7:11: error: split must be below 1, got 1", SPLIT),
    ("split_negative", TRAIN + "  split = -0.5\n}\n",
     "m.nn:7:11: error: split must be at least 0, got -0.5", SPLIT),
    ("batch_zero", TRAIN + "  batch = 0\n}\n",
     "m.nn:7:11: error: batch must be at least 1, got 0", BATCH),
    ("epochs_fraction", TRAIN + "  epochs = 2.5\n}\n",
     "m.nn:7:12: error: epochs must be a whole number of 0 or more, got 2.5", EPOCHS),
    ("infinite_epochs", TRAIN + "  epochs = 1e400\n}\n",
     "m.nn:7:12: error: epochs is too large: '1e400'", TOO_LARGE),
    ("seed_name", TRAIN + "  seed = x\n}\n",
     "m.nn:7:10: error: seed must be a number",
     "seed is a whole number of 0 or more, e.g. seed = 1"),
    ("duplicate_key", TRAIN + "  batch = 4\n  batch = 8\n}\n",
     "m.nn:8:3: error: 'batch' is set twice in the train block",
     "it was first set on line 7; delete one of the two"),
    ("unknown_data_set", HEAD + "output p = dense(x, 1)\nloss mse(p, y)\ntrain {\n"
     "  data = xorr\n}\n",
     "m.nn:6:10: error: 'xorr' is not a built-in data set", "did you mean 'xor'?"),
    ("data_number", HEAD + "output p = dense(x, 1)\nloss mse(p, y)\ntrain {\n  data = 3\n}\n",
     "m.nn:6:10: error: data is a built-in set or a path in quotes",
     'e.g. data = xor or data = "train.csv"'),
    ("shuffle_not_a_word", TRAIN + "  shuffle = 1\n}\n",
     "m.nn:7:13: error: shuffle must be a word, not '1'", "shuffle is one of: true, false"),
    ("normalize_far_from_all", TRAIN + "  normalize = zscore\n}\n",
     "m.nn:7:15: error: 'zscore' is not a valid normalize",
     "normalize is one of: none, minmax, standardize"),
    ("device_misspelt", TRAIN + "  device = gpu\n}\n",
     "m.nn:7:12: error: 'gpu' is not a valid device", "did you mean 'cuda'?"),
    ("device_far_from_all", TRAIN + "  device = tpu_v4\n}\n",
     "m.nn:7:12: error: 'tpu_v4' is not a valid device", "device is one of: cpu, cuda, auto"),
    ("train_without_loss", HEAD + "output p = dense(x, 1)\ntrain {\n  data = xor\n}\n",
     "m.nn:4:1: error: this model trains but has no 'loss' statement",
     "add e.g. 'loss mse(p, y)' before the train block"),
    ("two_train_blocks", TRAIN + "}\ntrain {\n  epochs = 2\n}\n",
     "m.nn:8:1: error: a model has at most one 'train' block",
     "merge the settings into the first train block"),
    ("model_named_by_a_keyword", "model input\ninput x[2]\n",
     "m.nn:1:7: error: 'input' is a keyword, not a name", "pick another name for the model"),
    ("model_not_first", "input x[2]\nmodel late\n",
     "m.nn:2:1: error: 'model' must be the first statement",
     "move 'model NAME' to the top of the file (comments may come before it)"),
    # found by the fault audit -----------------------------------------------------
    ("named_argument_twice", "input x[2, 3]\na = sum(x, axis = 0, axis = 1)\n",
     "m.nn:2:22: error: 'axis' is given twice", "give each argument once"),
    ("dropout_rate_twice", "input x[2]\nd = dropout(rate = 0.5, rate = 0.3)\n",
     "m.nn:2:25: error: 'rate' is given twice", "give each argument once"),
    ("dropout_without_a_value", "input x[2]\nd = dropout(x = 1, rate = 0.3)\n",
     "m.nn:2:13: error: dropout has no argument 'x'", "dropout accepts rate"),
    ("slope_given_twice", "input x[2]\nh = leaky_relu(x, 0.1, slope = 0.2)\n",
     "m.nn:2:24: error: 'slope' is given twice", "give each argument once"),
    ("negative_leaky_slope", "input x[2]\nh = leaky_relu(x, -0.5)\n",
     "m.nn:2:19: error: the slope must be at least 0, got -0.5",
     "the slope is a number of 0 or more, e.g. leaky_relu(x, 0.01)"),
    ("dropout_of_a_param", HEAD + "param w[2] = ones\nh = dropout(w, 0.5)\n",
     "m.nn:4:13: error: dropout works on per-example values, and 'w' on line 3 does not "
     "depend on an input", "drop units of a layer's output: dropout(h, 0.5)"),
    ("batch_too_large", TRAIN + "  batch = 1e30\n}\n",
     "m.nn:7:11: error: batch must be at most 2147483647, got 1e30", BATCH),
    ("epochs_too_large", TRAIN + "  epochs = 1e12\n}\n",
     "m.nn:7:12: error: epochs must be at most 2147483647, got 1e12", EPOCHS),
    ("softmax_of_one_number_per_example", "input x[2]\noutput p = softmax(sum(x))\n",
     "m.nn:2:12: error: softmax and log_softmax normalise along the last axis of one example, "
     "and this value is one number per example",
     "apply it to a value with one entry per class, e.g. logits[10]"),
    ("output_reading_a_target", HEAD + "p = dense(x, 1)\noutput q = p + 100 * y\n"
     "loss mse(p, y)\n",
     "m.nn:4:8: error: output 'q' depends on the target 'y', which predict is not given",
     "compute outputs from the inputs and params only; targets are for the loss"),
    ("output_twice", "input x[2]\noutput p = x * 2\noutput p\n",
     "m.nn:3:8: error: 'p' is already an output", "declare each output once"),
    ("empty_model", "# nothing yet\n",
     "m.nn:1:1: error: the model declares nothing: no input, param, value, output or loss",
     "start with an input and a layer, e.g. input x[2] and output p = dense(x, 1); "
     "samples/xor.nn is a whole model"),
    ("control_character", "input x[2]\x00\n",
     "m.nn:1:11: error: unexpected character U+0000 (a control character)",
     "the file holds a control character here; delete it"),
    # found by the language audit ------------------------------------------------
    ("initialiser_name_assigned", "input x[2]\nzeros = x * 2\nparam w[2] = zeros\n",
     "m.nn:2:1: error: 'zeros' is the name of an initialiser",
     "choose another name: after 'param w[3] =', 'zeros' always means the initialiser"),
    ("initialiser_name_declared", "param he[2] = ones\n",
     "m.nn:1:7: error: 'he' is the name of an initialiser",
     "choose another name: after 'param w[3] =', 'he' always means the initialiser"),
    ("exponent_without_a_real_value", "input x[2]\nh = x ^ (0 ^ -1)\n",
     "m.nn:2:10: error: the exponent '0 ^ -1' does not work out to a real number float32 "
     "holds", EXPONENT),
    ("exponent_of_a_value_inside_a_sum", "input x[2]\nh = x ^ (2 + x)\n",
     "m.nn:2:14: error: the exponent of '^' must be a number", EXPONENT),
    ("train_without_brace", TRAIN.replace("train {\n  data = xor\n", "train\n") +
     "input z[2]\n",
     "m.nn:6:1: error: unexpected keyword 'input'; expected '{'",
     "the settings follow in braces, on the same line or the next: train { ... }"),
    ("train_setting_on_the_train_line", TRAIN.replace("train {\n  data = xor\n",
                                                      "train data = xor\n"),
     "m.nn:5:7: error: unexpected name 'data'; expected '{'",
     "the settings follow in braces, on the same line or the next: train { ... }"),
    ("epochs_negative", TRAIN + "  epochs = -3\n}\n",
     "m.nn:7:12: error: epochs must be at least 0, got -3", EPOCHS),
    ("epochs_as_written", TRAIN + "  epochs = 99999999999999999999\n}\n",
     "m.nn:7:12: error: epochs must be at most 2147483647, got 99999999999999999999", EPOCHS),
    ("clip_zero", TRAIN + "  clip = 0\n}\n",
     "m.nn:7:10: error: clip must be positive, got 0", "clip is a positive number, e.g. clip = 1.0"),
    ("seed_negative", TRAIN + "  seed = -1\n}\n",
     "m.nn:7:10: error: seed must be at least 0, got -1",
     "seed is a whole number of 0 or more, e.g. seed = 1"),
    ("accumulate_zero", TRAIN + "  accumulate = 0\n}\n",
     "m.nn:7:16: error: accumulate must be at least 1, got 0",
     "accumulate is a whole number from 1 to 2147483647, e.g. accumulate = 2"),
    ("momentum_negative", TRAIN + "  optimizer = sgd(lr = 0.1, momentum = -0.9)\n}\n",
     "m.nn:7:40: error: 'momentum' must be at least 0, got -0.9",
     "'momentum' is a number of 0 or more, e.g. sgd(lr = 0.01, momentum = 0.9)"),
    ("data_twice", TRAIN + "  data = digits\n}\n",
     "m.nn:7:3: error: 'data' is set twice in the train block",
     "it was first set on line 6; delete one of the two"),
    ("leaky_slope_keyword_negative", "input x[2]\nh = leaky_relu(x, slope = -1)\n",
     "m.nn:2:27: error: the slope must be at least 0, got -1",
     "the slope is a number of 0 or more, e.g. leaky_relu(x, 0.01)"),
    ("transpose_of_a_vector", "input x[3]\nh = transpose(x)\n",
     "m.nn:2:5: error: transpose needs an example with at least two axes, got [3] per example",
     "a vector needs no transpose: '@' takes it as a row on its left (x @ w) and as a column "
     "on its right (w @ x)"),
    ("loss_without_params", HEAD + "output p = dense(x, 1)\nloss 3\n",
     "m.nn:4:6: error: the loss does not depend on any param, so training has nothing to "
     "change", "the loss should compare a prediction made with params (a layer such as "
     "dense, or a param) with a target, e.g. loss mse(p, y)"),
    # semantic faults the fuzzer (test_fuzz_models.py) found
    ("softmax_of_a_number", "input x[2]\noutput p = softmax(30)\n",
     "m.nn:2:12: error: softmax of a single number: it normalises along the last axis of a "
     "value with one entry per class",
     "apply it to such a value, e.g. softmax(logits) with logits = dense(h, 10)"),
    ("softmax_over_one_entry", "input x[2]\nz = dense(x, 1)\noutput p = softmax(z)\n",
     "m.nn:3:12: error: softmax over a last axis of one entry is always 1: 'z' on line 2 is "
     "[N, 1]", "for a yes/no score use sigmoid (and binary_cross_entropy); for classes, give "
     "the value one entry per class"),
    ("log_softmax_layer_of_one_unit", "input x[2]\noutput p = dense(x, 1, log_softmax)\n",
     "m.nn:2:12: error: log_softmax over a last axis of one entry is always 0: its value is "
     "[N, 1]", "for a yes/no score use sigmoid (and binary_cross_entropy); for classes, give "
     "the value one entry per class"),
    ("dense_of_a_number", "input x[2]\noutput p = dense(0.2, 10)\n",
     "m.nn:2:18: error: dense needs a vector per example, but the number 0.2 does not depend "
     "on an input", "a layer takes a value computed from an input: dense(x, 10) with input x[64]"),
    ("conv_of_a_number", "input x[1, 8, 8]\noutput p = conv2d(1, 16, 3)\n",
     "m.nn:2:19: error: conv2d needs [channels, height, width] per example, but the number 1 "
     "does not depend on an input", "a layer takes a value computed from an input: "
     "conv2d(x, ...) with input x[1, 28, 28]"),
    ("maxpool_of_a_param", "param w[1, 4, 4] = ones\noutput p = maxpool(w, 2)\n",
     "m.nn:2:20: error: maxpool needs [channels, height, width] per example, but 'w' on line 1 "
     "does not depend on an input", "a layer takes a value computed from an input: "
     "maxpool(x, ...) with input x[1, 28, 28]"),
    ("dense_of_a_param", "param w[3] = ones\noutput p = dense(w, 10)\n",
     "m.nn:2:18: error: dense needs a vector per example, but 'w' on line 1 does not depend "
     "on an input", "a layer takes a value computed from an input: dense(x, 10) with input "
     "x[64]"),
    ("dense_of_one_number_per_example", "input x[2]\noutput p = dense(sum(x), 10)\n",
     "m.nn:2:18: error: dense needs a vector per example, got one number",
     "a vector of one number is declared with one entry, as input x[1]"),
]


def _error(source: str, file: str = "m.nn") -> CompileError:
    with pytest.raises(CompileError) as info:
        nncompile.compile_source(source, file=file, device="cpu")
    return info.value


def _first(err: CompileError) -> tuple[str, str | None]:
    """The first diagnostic's `FILE:LINE:COL: error:` line and its hint (or None)."""
    text = err.diagnostics[0].render(err.source)
    lines = text.splitlines()
    hints = [ln[len("hint: "):] for ln in lines if ln.startswith("hint: ")]
    return lines[0], (hints[0] if hints else None)


def test_enough_broken_models():
    assert len(CASES) >= 25
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("source, line, hint", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_broken_model(source, line, hint):
    err = _error(source)
    assert len(err.diagnostics) == 1, str(err)
    assert _first(err) == (line, hint)
    # the exception's text is exactly the rendered diagnostic
    assert str(err) == err.diagnostics[0].render(source)
    assert str(err).startswith(line + "\n")
    assert "Traceback" not in str(err)


def test_a_per_example_scalar_broadcasts_over_each_example_not_the_batch():
    """sum(x) is one number per example ([N]); added to [N, 1] or multiplied
    with [N, 2] it is lined up with its own example, as numpy would for one
    example (it was [N, N] before: every example mixed with the batch)."""
    m = nncompile.compile_source("input x[2]\nq = x * sum(x)\np = dense(x, 1) + sum(x)\n"
                                 "output r = q\noutput s = p\n", device="cpu")
    assert m.outputs == {"r": (2,), "s": (1,)}
    x = np.float32([[1, 2], [3, 4]])
    w = m.params
    out = m.predict(x)
    np.testing.assert_array_equal(out["r"], [[3, 6], [21, 28]])
    np.testing.assert_allclose(out["s"], x @ w["p.weight"] + w["p.bias"] + [[3], [7]],
                               rtol=1e-6)
    from nncompile.check import gradient_check
    g = nncompile.compile_source("input x[2]\ntarget y[1]\nh = dense(x, 3, tanh)\n"
                                 "p = dense(x, 1) * sum(h) + mean(h, axis = 0)\n"
                                 "loss mse(p, y)\n", device="cpu")
    _, worst, ok = gradient_check(g)
    assert ok and worst < 1e-6       # through the reshape that lines sum(h) up


def test_rendering_shows_the_line_and_a_caret_under_the_fault():
    src = "input x[2]\nhidden = dense(x, 4)\noutput p = dense(hiden, 1)\n"
    assert str(_error(src)) == (
        "m.nn:3:18: error: unknown name 'hiden'\n"
        "    output p = dense(hiden, 1)\n"
        "                     ^^^^^\n"
        "hint: did you mean 'hidden'?")


def test_unclosed_bracket_caret_points_at_the_bracket():
    src = "input x[2]\nh = dense(x, 4, tanh\noutput p = dense(h, 1)\n"
    lines = str(_error(src)).splitlines()
    assert lines[1] == "    h = dense(x, 4, tanh"
    assert lines[2] == "             ^"
    assert lines[1][lines[2].index("^")] == "("


def test_crlf_and_tabs_are_accepted():
    src = ("# xor with CRLF line endings and tabs\r\n"
           "model\txor_crlf\r\n"
           "input\tx[2]\r\n"
           "target\ty[1]\r\n"
           "h\t=\tdense(x,\t4,\ttanh)\r\n"
           "output p = dense(h, 1, sigmoid)\r\n"
           "loss mse(p, y)\r\n"
           "train {\r\n"
           "\tdata\t= xor\r\n"
           "\toptimizer = sgd(lr = 0.5)\r\n"
           "\tepochs = 3\r\n"
           "}\r\n")
    model = nncompile.compile_source(src, file="m.nn", device="cpu")
    assert model.name == "xor_crlf"
    unnamed = src.replace("model\txor_crlf\r\n", "")
    assert nncompile.compile_source(unnamed, device="cpu").name == "model"   # no file, no line
    assert nncompile.compile_source(unnamed, file="m.nn", device="cpu").name == "m"
    assert model.inputs == {"x": (2,)} and model.outputs == {"p": (1,)}
    assert sorted(model.params) == ["h.bias", "h.weight", "p.bias", "p.weight"]
    assert model.train_config.epochs == 3 and model.train_config.lr == 0.5
    # the same model with LF endings compiles to the same program
    lf = nncompile.compile_source(src.replace("\r\n", "\n"), file="m.nn", device="cpu")
    assert str(model.ir) == str(lf.ir)


def test_error_positions_in_a_crlf_file_with_tabs():
    # a tab counts as one column, and the rendered line shows it as one space,
    # so the caret stays under the fault; no '\r' leaks into the message
    src = "input\tx[2]\r\nh\t=\tdense(x,\t4,\ttanhh)\r\n"
    text = str(_error(src))
    assert text == ("m.nn:2:17: error: 'tanhh' is not an activation\n"
                    "    h = dense(x, 4, tanhh)\n"
                    "                    ^^^^^\n"
                    "hint: did you mean 'tanh'?")
    assert "\r" not in text


def test_a_byte_order_mark_is_accepted_and_not_counted():
    model = nncompile.compile_source("\ufeffinput x[2]\noutput p = x * 2\n", file="m.nn",
                                     device="cpu")
    assert model.inputs == {"x": (2,)}
    text = str(_error("\ufeffinput x[2 3]\n"))
    assert text.splitlines()[:3] == [
        "m.nn:1:11: error: unexpected number 3; expected ',' or ']'",
        "    input x[2 3]",
        "              ^"]


def test_non_ascii_in_comments_is_fine():
    model = nncompile.compile_source("# caf\u00e9 \u00d7 \u2212\ninput x[2]\noutput p = x\n",
                                     file="m.nn", device="cpu")
    assert model.outputs == {"p": (2,)}


def test_old_mac_line_endings_are_lines_too():
    model = nncompile.compile_source("input x[2]\routput p = x * 2\r", file="m.nn",
                                     device="cpu")
    assert model.outputs == {"p": (2,)}


def test_output_of_an_existing_value():
    # `output NAME` without '=' once crashed the AST builder
    model = nncompile.compile_source("input x[2]\np = x * 2\noutput p\n", file="m.nn",
                                     device="cpu")
    assert model.outputs == {"p": (2,)}


def test_several_errors_are_reported_at_once_in_source_order():
    src = ("input x[2]\n"
           "target y[1]\n"
           "h = dense(x, 4, tanhh)\n"
           "output p = dense(q, 1)\n"
           "loss mse(p, y)\n"
           "train {\n"
           "  epoch = 3\n"
           "  batch = 0\n"
           "  optimizer = sgd\n"
           "}\n"
           "param w[2] = normal(0, -1)\n")
    err = _error(src)
    firsts = [d.render().splitlines()[0] for d in err.diagnostics]
    assert firsts == [
        "m.nn:3:17: error: 'tanhh' is not an activation",
        "m.nn:4:18: error: unknown name 'q'",
        "m.nn:7:3: error: unknown train setting 'epoch'",
        "m.nn:8:11: error: batch must be at least 1, got 0",
        "m.nn:9:15: error: sgd needs a learning rate in brackets: sgd(lr = 0.01)",
        "m.nn:11:24: error: normal(mean, std) needs std >= 0, got -1",
    ]
    text = str(err)
    assert text.count(": error: ") == 6
    assert text.index("did you mean 'tanh'?") < text.index("unknown name 'q'")


def test_a_failed_definition_is_not_reported_again_where_it_is_used():
    src = "input x[2]\nh = dense(x, 4, tanhh)\nz = h * 2\noutput p = dense(z, 1)\n"
    err = _error(src)
    assert [d.span.line for d in err.diagnostics] == [2]


def test_errors_in_a_model_file_name_the_file(tmp_path):
    path = tmp_path / "broken.nn"
    path.write_text("input x[2]\nh = rleu(x)\n")
    with pytest.raises(CompileError) as info:
        nncompile.compile(str(path), device="cpu")
    assert str(info.value).splitlines()[0] == f"{path}:2:5: error: unknown function 'rleu'"


def test_source_text_without_a_file_is_called_string():
    with pytest.raises(CompileError) as info:
        nncompile.compile_source("input x\n", device="cpu")
    assert str(info.value).startswith("<string>:1:7: error: 'x' needs a shape")


def _mutants(n: int, seed: int):
    import glob
    import os
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "samples")
    samples = [open(f).read() for f in sorted(glob.glob(os.path.join(root, "*.nn")))]
    pieces = list("()[]{},=+-*/@^#\"'\n\t.;") + [
        "relu", "dense", "x", "3", "-1", "1e9", "input", "loss", "train", "model", "sum(",
        "axis = 5", "flatten(", "lr", "N", "output", "param", "output p", "\r\n", "'f.csv'",
        "uniform(", "normal(", "epochs = ", "transpose(x)", "[1, 2]"]
    rng = random.Random(seed)
    for _ in range(n):
        s = rng.choice(samples)
        for _ in range(rng.randint(1, 3)):
            p = rng.randrange(len(s) + 1)
            r = rng.random()
            if r < 0.3:
                s = s[:p] + s[p + 1:]
            elif r < 0.8:
                s = s[:p] + rng.choice(pieces) + s[p:]
            else:
                q = rng.randrange(len(s) + 1)
                s = s[:p] + s[q:q + 10] + s[p:]
        yield s


HUGE = "input x[2]\ntarget y[1]\nh = dense(x, 1e12)\noutput p = dense(h, 1)\nloss mse(p, y)\n"
HUGE_LINE = ("m.nn:3:5: error: the model's params do not fit in memory: they take 14.6 TiB, "
             "7.3 TiB of it for h.weight [2, 1000000000000]")


def test_params_larger_than_memory_point_at_the_largest_layer():
    err = _error(HUGE)
    assert _first(err) == (HUGE_LINE, "make this layer smaller")


def test_params_whose_allocation_fails_point_at_the_largest_layer(monkeypatch):
    """Where the machine's memory is not known (or seems enough), a failed
    allocation is the same error, not a MemoryError."""
    from nncompile import api
    monkeypatch.setattr(api, "_physical_memory", lambda: float("inf"))
    err = _error(HUGE)
    assert _first(err) == (HUGE_LINE, "make this layer smaller")


def test_params_that_fit_are_not_checked_again(monkeypatch):
    from nncompile import api
    monkeypatch.setattr(api, "_physical_memory", lambda: 4.0 * (2 * 3 + 3 + 3 + 1))
    m = nncompile.compile_source("input x[2]\ntarget y[1]\nh = dense(x, 3)\n"
                                 "output p = dense(h, 1)\nloss mse(p, y)\n", file="m.nn",
                                 device="cpu")
    assert sum(v.size for v in m.params.values()) == 13
    monkeypatch.setattr(api, "_physical_memory", lambda: 4.0 * 12)
    with pytest.raises(CompileError, match="they take 52 bytes, 24 bytes of it for h.weight"):
        nncompile.compile_source("input x[2]\ntarget y[1]\nh = dense(x, 3)\n"
                                 "output p = dense(h, 1)\nloss mse(p, y)\n", file="m.nn",
                                 device="cpu")


def test_mangled_samples_fail_only_with_compile_errors():
    """Random edits of the samples either compile or raise CompileError whose every
    diagnostic has a real position: never another exception."""
    failed = 0
    for src in _mutants(400, seed=7):
        try:
            nncompile.compile_source(src, file="m.nn", device="cpu")
        except CompileError as e:
            failed += 1
            assert e.diagnostics
            for d in e.diagnostics:
                assert d.span is not None and d.span.file == "m.nn", src
                assert d.span.line >= 1 and d.span.column >= 1, src
                assert "something else" not in d.message, src
    assert failed > 200


# very deep models ---------------------------------------------------------------

DEEP_HEAD = "input x[2]\ntarget t[2]\nparam w[2] = 0.5\n"


def _nested(levels: int) -> str:
    """tanh(tanh(... x * w ...)): `levels` levels in all (the * and its operands too)."""
    k = levels - 2
    return DEEP_HEAD + "output y = " + "tanh(" * k + "x * w" + ")" * k + "\nloss mse(y, t)\n"


def test_an_expression_nested_200_deep_compiles_and_matches_numpy():
    from nncompile.frontend.parse import MAX_NESTING
    m = nncompile.compile_source(_nested(MAX_NESTING + 1), device="cpu")   # x, w at 201
    x = np.float32([[0.5, -2.0]])
    want = x * 0.5
    for _ in range(MAX_NESTING - 1):
        want = np.tanh(want)
    np.testing.assert_allclose(m.predict(x), want, rtol=1e-5)


@pytest.mark.parametrize("text, col", [
    ("tanh(" * 200 + "x * w" + ")" * 200, 1 + 200 * 5),     # the * below 200 tanh
    (" + ".join(["x"] * 202), 1),                            # the innermost (201st) +
    ("-" * 201 + "x", 201),                                  # the 201st minus
], ids=["calls", "sum", "minus"])
def test_an_expression_nested_deeper_than_200_is_an_error_not_a_crash(text, col):
    """Deeper expressions are refused as CPython refuses more than 200 nested
    brackets: a compile error at the first operation or call below level 200
    (names and numbers do not count)."""
    err = _error(DEEP_HEAD + "output y = " + text + "\nloss mse(y, t)\n")
    assert _first(err) == (
        f"m.nn:4:{col + 11}: error: this expression nests more than 200 operations and "
        "calls inside one another",
        "split it into named steps on lines of their own, e.g. a = x1 + x2 + x3 then "
        "s = a + x4")


def test_a_deep_expression_compiles_from_a_deep_caller():
    """The front end makes its own room on the stack: 800 frames already used
    by the caller (a notebook, a test runner) leave the 200 levels working."""
    def down(k):
        if k == 0:
            return nncompile.compile_source(_nested(200), device="cpu")
        return down(k - 1)
    assert down(800).outputs == {"y": (2,)}


def test_a_long_source_line_is_shown_cut_around_the_fault():
    src = DEEP_HEAD + "output y = " + " + ".join(["x"] * 60) + " + z\nloss mse(y, t)\n"
    lines = str(_error(src)).splitlines()
    assert lines[0] == "m.nn:4:252: error: unknown name 'z'"
    assert lines[1] == "    ..." + ("output y = " + " + ".join(["x"] * 60) + " + z")[-100:]
    assert lines[2] == "    " + " " * 102 + "^"


def test_a_model_of_3000_statements_trains():
    """Graph passes walk with stacks of their own: a chain of 3000 statements
    (deeper than Python's recursion limit) compiles, trains and differentiates."""
    n = 3000
    src = DEEP_HEAD + "h0 = x * w\n" + "".join(f"h{i + 1} = h{i} * 1.0001 + 0.001\n"
                                               for i in range(n)) + \
        f"output y = h{n}\nloss mse(y, t)\n"
    m = nncompile.compile_source(src, device="cpu")
    x, t = np.float32([[1, 2]]), np.float32([[0, 0]])
    y = x * 0.5
    for _ in range(n):
        y = y * np.float32(1.0001) + np.float32(0.001)
    np.testing.assert_allclose(m.predict(x), y, rtol=1e-4)
    # loss = mean over 2 columns of y^2; dy/dw = x * 1.0001^n
    g = m.gradients({"x": x}, {"t": t})["w"]
    np.testing.assert_allclose(g, y[0] * x[0] * 1.0001 ** n, rtol=1e-3)
    m.fit(x={"x": x}, y={"t": t}, epochs=1, batch=1)
    assert m.params["w"][0] < 0.5


# values of a batch that do not fit --------------------------------------------

SMALL = "input x[3]\ntarget y[2]\nh = dense(x, 40, relu)\np = dense(h, 2)\nloss mse(p, y)\n"
# a step at batch B keeps h and its gradient ([B, 40] each), p and its gradient
# ([B, 2] each), x [B, 3] and y [B, 2]: 356 bytes an example; the bias
# gradients and the loss take 176 bytes whatever B
SMALL_LINE = ("m.nn:3:5: error: one batch of 10 examples does not fit in memory: its values "
              "take 3.6 KiB, 1.6 KiB of it for 'h' [10, 40]")


def _small_data():
    return np.ones((50, 3), np.float32), np.ones((50, 2), np.float32)


def test_a_batch_larger_than_memory_is_an_error_at_the_largest_layer(monkeypatch):
    """Checked before allocating: Linux would hand out the buffers and kill
    the process when they are touched. (3000 - 176) // 356 = 7 examples fit."""
    from nncompile.backends.numpy import executor
    monkeypatch.setattr(executor, "physical_memory", lambda: 3000.0)
    m = nncompile.compile_source(SMALL, device="cpu", file="m.nn")
    x, y = _small_data()
    with pytest.raises(CompileError) as info:
        m.fit(x=x, y=y, batch=10, epochs=1)
    assert _first(info.value) == (SMALL_LINE, "a batch of at most about 7 examples fits; use "
                                  "a smaller batch or make this layer smaller")
    assert str(info.value).splitlines()[1] == "    h = dense(x, 40, relu)"
    m.fit(x=x, y=y, batch=7, epochs=1)         # 7 * 356 + 176 = 2668 bytes: it fits


def test_a_failed_allocation_of_a_batch_is_the_same_error(monkeypatch):
    from nncompile.backends.numpy import executor

    def refuse(*args):
        raise MemoryError
    monkeypatch.setattr(executor, "_Bound", refuse)
    m = nncompile.compile_source(SMALL, device="cpu", file="m.nn")
    with pytest.raises(CompileError) as info:
        m.fit(x=_small_data()[0], y=_small_data()[1], batch=10, epochs=1)
    assert _first(info.value) == (SMALL_LINE, "use a smaller batch or make this layer smaller")


def test_cli_run_reports_a_batch_that_does_not_fit_and_writes_nothing(tmp_path, monkeypatch,
                                                                      capsys):
    from nncompile import cli
    from nncompile.backends.numpy import executor
    x, y = _small_data()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    (tmp_path / "m.nn").write_text(SMALL + 'train {\n  data = "d.npz"\n  batch = 10\n'
                                   '  epochs = 1\n}\n')
    monkeypatch.setattr(executor, "physical_memory", lambda: 3000.0)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "m.nn", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "m.nn:3:5: error: one batch of 10 examples does not fit in memory" in err
    assert "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["d.npz", "m.nn"]
