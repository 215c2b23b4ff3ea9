"""The model contract (DESIGN.md §1): notebook → module, `Model` discovery, hyperparameter schema and coercion.

A researcher's notebook holds one `class Model` with a `hyperparameters` dict and the methods
`train`, `batch_predict`, `init_predict` and `predict`. Nothing here ever runs the notebook:
everything is read from its syntax tree.

`extract` turns a notebook (or a .py file) into a module that holds only what is safe to import:

* code cells only; a cell that starts with a `%%` cell magic is dropped whole, and so is a cell
  tagged `mlp-skip`; a cell tagged `mlp-include` is kept whole;
* line magics (`%time f()`), shell escapes (`!pip install x`), `x = !ls` / `x = %sx ls`
  assignments and `obj?` help lines are removed (a removed line inside an indented block becomes
  `pass`, so the block stays valid; line numbers stay those of the cell);
* at top level, imports, `def`/`async def`/`class` statements, `try:` blocks whose body holds only
  imports, and constant assignments are kept; every other statement is exploratory and dropped.
  A constant is an assignment to plain names whose value is a literal (`ast.literal_eval`), or an
  assignment to UPPER_CASE names whose value calls nothing (calls inside a lambda body do not run
  when the module loads, so they do not count).

The module is then checked as the runtime will import it: it must compile, hold exactly one
`class Model`, whose `hyperparameters` is a literal dict, and every global name read while it
loads, or by `Model` and the helpers it reaches, must be defined by the module (or be a builtin).

Only the standard library and `mlplatform_server.errors` may be imported anywhere in this package:
the runtime imports it inside minimal container images.

Layout (each module does one job):

* `notebook` — reading a notebook into code cells; stripping magics, shell escapes and help lines;
* `statements` — top-level statements, and which of them the module keeps;
* `extraction` — `extract`: building and compiling the module, finding `class Model`;
* `names` — undefined-name analysis with `symtable`;
* `model_class` — the methods and `hyperparameters` attribute of `Model`, following its bases;
* `hyperparameters` — the hyperparameter schema, types and coercion of overrides;
* `model_info` — the dataclasses `extract` returns;
* `actions` — the methods each action calls, and `require_method`.
"""

from __future__ import annotations

from .actions import ACTION_METHODS, require_method
from .extraction import extract, extract_file
from .hyperparameters import HYPERPARAMETER_TYPES, coerce_hyperparameters
from .model_info import CellReport, Hyperparameter, ModelInfo
from .notebook import INCLUDE_TAG, PYTHON_CELL_MAGICS, SKIP_TAG

__all__ = [
    "ACTION_METHODS",
    "CellReport",
    "Hyperparameter",
    "ModelInfo",
    "coerce_hyperparameters",
    "extract",
    "extract_file",
    "require_method",
]
