"""The model contract: notebook → module, Model discovery, hyperparameter schema and coercion."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from mlplatform_server import contract
from mlplatform_server.contract import CellReport, Hyperparameter, coerce_hyperparameters, extract, require_method
from mlplatform_server.errors import ContractError, HyperparameterError


# -- notebook builders --------------------------------------------------------------------------


def code(source: str | list[str], tags: list[str] | None = None) -> dict[str, Any]:
    return {"cell_type": "code", "metadata": {"tags": tags} if tags else {}, "source": source,
            "execution_count": None, "outputs": []}


def markdown(source: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {}, "source": source}


def nb(*cells: dict[str, Any]) -> str:
    return json.dumps({"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


MINIMAL_MODEL = """
class Model:
    hyperparameters = {"C": 1.0}

    def train(self):
        pass

    def batch_predict(self):
        pass

    def init_predict(self):
        pass

    def predict(self, features):
        return features
"""

REALISTIC_MODEL = '''
class Model:
    """Scores rows with a mean threshold."""

    hyperparameters = {"C": 1.0, "max_iter": 200, "penalty": "l2", "fit_intercept": True, "layers": (64, 32)}

    def train(self):
        rows = load_rows()  # the helper
        self.log_metric("mean", statistics.mean(r[FEATURES[0]] for r in rows))
        (self.artifacts / "model.json").write_text(json.dumps({"offset": OFFSET}))

    def batch_predict(self):
        for row in load_rows():
            print(self.predict(row))

    def init_predict(self):
        self.offset = json.loads((self.artifacts / "model.json").read_text())["offset"]

    def predict(self, features: dict):
        return {"label": int(sum(features[f] for f in FEATURES) > self.offset)}
'''


def realistic_notebook(model: str = REALISTIC_MODEL) -> str:
    return nb(
        markdown("# Scoring\nExploration first, then the model."),                                  # 1
        code("%matplotlib inline\n!pip install scikit-learn"),                                      # 2
        code("import json\nimport statistics\n\ntry:\n    import pandas as pd\nexcept ImportError:\n"
             "    pd = None\ntry:\n    import matplotlib.pyplot as plt\nexcept ImportError:\n    plt = None"),  # 3
        code('FEATURES = ["a", "b"]'),                                                             # 4
        code("def load_rows():\n    # two fixed rows\n    return [{\"a\": 1.0, \"b\": 2.0}, {\"a\": 3.0, \"b\": 0.5}]"),  # 5
        code('df = pd.read_csv("missing.csv")\ndf.head()'),                                        # 6
        code('plt.plot(df["a"], df["b"])'),                                                        # 7
        code("%%time\nrows = load_rows()\nprint(len(rows))"),                                       # 8
        code(model),                                                                                # 9
        code("class Model:\n    pass  # an old attempt", tags=["mlp-skip"]),                        # 10
        code("OFFSET = statistics.mean([1.0, 2.0])", tags=["mlp-include"]),                         # 11
        code("m = Model()\nm.train()"),                                                            # 12
    )


def py_model(*extra: str, model: str = MINIMAL_MODEL) -> str:
    return "\n".join(extra) + "\n" + model


def cells_by_index(info: contract.ModelInfo) -> dict[int, CellReport]:
    return {c.index: c for c in info.cells}


def contract_error(source: str, filename: str = "nb.ipynb") -> ContractError:
    with pytest.raises(ContractError) as caught:
        extract(source, filename)
    return caught.value


# -- a realistic notebook -----------------------------------------------------------------------


def test_realistic_notebook_reports_every_code_cell():
    cells = cells_by_index(extract(realistic_notebook(), "score.ipynb"))
    assert sorted(cells) == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]  # markdown cell 1 is not a code cell
    assert cells[2] == CellReport(2, False, "only magics and shell commands")
    assert cells[3] == CellReport(3, True, "kept")
    assert cells[4].kept and cells[5].kept and cells[9].kept
    assert cells[6] == CellReport(6, False, 'exploratory code dropped: df = pd.read_csv("missing.csv") (+1 more)')
    assert cells[7] == CellReport(7, False, 'exploratory code dropped: plt.plot(df["a"], df["b"])')
    assert cells[8] == CellReport(8, False, "cell magic %%time")
    assert cells[10] == CellReport(10, False, "tagged mlp-skip")
    assert cells[11] == CellReport(11, True, "tagged mlp-include")
    assert cells[12] == CellReport(12, False, "exploratory code dropped: m = Model() (+1 more)")


def test_realistic_notebook_module_holds_only_definitions():
    source = extract(realistic_notebook(), "score.ipynb").module_source
    assert source.startswith("# Model module generated by mlplatform from score.ipynb.")
    for kept in ("# --- cell 3 ---", "import statistics", "except ImportError:", 'FEATURES = ["a", "b"]',
                 "# --- cell 5 ---", "def load_rows():", "    # two fixed rows", "# --- cell 9 ---",
                 "class Model:", "rows = load_rows()  # the helper", "OFFSET = statistics.mean([1.0, 2.0])"):
        assert kept in source
    for dropped in ("%matplotlib", "pip install", "read_csv", "df.head", "plt.plot", "%%time",
                    "print(len(rows))", "an old attempt", "m.train()", "# --- cell 6 ---"):
        assert dropped not in source


def test_realistic_notebook_contract():
    info = extract(realistic_notebook(), "score.ipynb")
    assert [h.to_json() for h in info.hyperparameters] == [
        {"name": "C", "type": "float", "default": 1.0},
        {"name": "max_iter", "type": "int", "default": 200},
        {"name": "penalty", "type": "str", "default": "l2"},
        {"name": "fit_intercept", "type": "bool", "default": True},
        {"name": "layers", "type": "list", "default": [64, 32]},
    ]
    assert info.methods == {"train", "batch_predict", "init_predict", "predict"}
    assert not info.inherits_unknown and info.warnings == ()
    assert info.defaults()["layers"] == [64, 32]
    assert info.schema()["C"] == Hyperparameter("C", "float", 1.0)


def test_realistic_module_compiles_and_defines_model(tmp_path):
    info = extract(realistic_notebook(), "score.ipynb")
    namespace: dict[str, Any] = {"__name__": "model"}
    exec(compile(info.module_source, "model.py", "exec"), namespace)  # only definitions: safe to run
    model = namespace["Model"]()
    model.artifacts = tmp_path
    model.hyperparameters = dict(namespace["Model"].hyperparameters)
    metrics = {}
    model.log_metric = lambda name, value, step=None: metrics.__setitem__(name, value)
    model.train()
    model.init_predict()
    assert metrics == {"mean": 2.0}
    assert model.predict({"a": 1.0, "b": 1.0}) == {"label": 1}


def test_content_hash_is_deterministic_and_ignores_dropped_code():
    first = extract(realistic_notebook(), "score.ipynb")
    again = extract(realistic_notebook(), "score.ipynb")
    assert first.content_hash == again.content_hash
    assert first.content_hash.startswith("sha256:") and len(first.content_hash) == 7 + 64
    explored = extract(realistic_notebook().replace("df.head()", "df.tail()"), "score.ipynb")
    assert explored.content_hash == first.content_hash
    changed = extract(realistic_notebook(REALISTIC_MODEL.replace('"C": 1.0', '"C": 2.0')), "score.ipynb")
    assert changed.content_hash != first.content_hash


def test_generated_module_extracts_again_to_the_same_contract():
    info = extract(realistic_notebook(), "score.ipynb")
    again = extract(info.module_source, "model.py")  # what the services do with a stored version
    assert again.hyperparameters == info.hyperparameters and again.methods == info.methods
    assert again.module_source == info.module_source and again.content_hash == info.content_hash
    assert again.cells == (CellReport(1, True, "kept"),)


def test_to_json_shape():
    data = extract(realistic_notebook(), "score.ipynb").to_json()
    assert data["methods"] == ["batch_predict", "init_predict", "predict", "train"]
    assert data["hyperparameters"][0] == {"name": "C", "type": "float", "default": 1.0}
    assert data["cells"][0] == {"index": 2, "kept": False, "reason": "only magics and shell commands"}
    assert data["warnings"] == [] and data["inherits_unknown"] is False
    assert data["content_hash"].startswith("sha256:") and "class Model" in data["module_source"]
    json.dumps(data)


def test_extract_file_reads_notebooks_and_modules(tmp_path):
    (tmp_path / "score.ipynb").write_text(realistic_notebook())
    (tmp_path / "model.py").write_text(py_model("import json"))
    assert contract.extract_file(tmp_path / "score.ipynb").methods >= {"train", "predict"}
    info = contract.extract_file(str(tmp_path / "model.py"))
    assert info.module_source.startswith("# Model module generated by mlplatform from model.py.")
    assert "# --- cell" not in info.module_source and info.cells == (CellReport(1, True, "kept"),)


def test_source_given_as_list_of_lines():
    info = extract(nb(code(["import json\n", "X = 1\n"]), code(MINIMAL_MODEL.splitlines(keepends=True))), "n.ipynb")
    assert "import json\nX = 1" in info.module_source


def test_invalid_notebook_json():
    assert "not a valid notebook" in contract_error("{not json", "broken.ipynb").message
    assert "not a valid notebook" in contract_error('{"nbformat": 4}', "broken.ipynb").message


# -- magics -------------------------------------------------------------------------------------


def test_line_magics_shell_escapes_and_help_lines_are_removed():
    cell = ("%time total = 1\n!ls -la\nfiles = !ls\nt = %timeit -o sum([1])\njson?\njson.dumps??\n?json\n"
            "import json\n%load_ext autoreload")
    info = extract(nb(code(cell), code(MINIMAL_MODEL)), "n.ipynb")
    assert "# --- cell 1 ---\nimport json\n" in info.module_source
    assert not any(tok in info.module_source for tok in ("%", "!ls", "?"))
    assert extract(nb(code("%env A=1\n!echo hi"), code(MINIMAL_MODEL)), "n.ipynb").cells[0].reason == (
        "only magics and shell commands")


def test_magic_inside_indented_block_becomes_pass():
    helper = "def helper():\n    %time x = 1\n    if True:\n        !echo hi\n    return 2"
    source = extract(nb(code(helper), code(MINIMAL_MODEL)), "n.ipynb").module_source
    assert "def helper():\n    pass\n    if True:\n        pass\n    return 2" in source


def test_magic_lookalikes_inside_strings_and_brackets_are_kept():
    helper = ('QUERY = """\n%s\n!important\nwhat?\n"""\n'
              "def fmt(a):\n    return (a\n        % 3)\n")
    source = extract(nb(code(helper), code(MINIMAL_MODEL)), "n.ipynb").module_source
    assert 'QUERY = """\n%s\n!important\nwhat?\n"""' in source
    assert "return (a\n        % 3)" in source


def test_shell_command_continued_over_lines_is_removed():
    info = extract(nb(code("!pip install \\\n    numpy \\\n    scipy\nimport json"), code(MINIMAL_MODEL)), "n.ipynb")
    assert "numpy" not in info.module_source and "import json" in info.module_source


def test_cell_magic_drops_the_whole_cell():
    info = extract(nb(code("%%bash\necho hi"), code("%%writefile x.py\ndef helper():\n    pass"),
                      code(MINIMAL_MODEL)), "n.ipynb")
    assert [c.reason for c in info.cells[:2]] == ["cell magic %%bash", "cell magic %%writefile"]
    assert "helper" not in info.module_source


def test_include_tag_keeps_the_body_of_a_python_cell_magic():
    info = extract(nb(code("%%time\nLIMIT = max(1, 2)", tags=["mlp-include"]), code(MINIMAL_MODEL)), "n.ipynb")
    assert info.cells[0] == CellReport(1, True, "tagged mlp-include (cell magic %%time removed)")
    assert "LIMIT = max(1, 2)" in info.module_source and "%%time" not in info.module_source


# -- syntax errors ------------------------------------------------------------------------------


def test_syntax_error_names_cell_and_line():
    err = contract_error(nb(code("import json"), markdown("# fine"), code("x = 1\ndef f(:\n    pass"),
                            code(MINIMAL_MODEL)))
    assert err.message == "Syntax error in cell 3, line 2: invalid syntax"
    assert err.details == {"cell": 3, "line": 2}


def test_syntax_error_line_counts_removed_magics():
    err = contract_error(nb(code("%matplotlib inline\n!ls\nx = (")))
    assert err.details == {"cell": 1, "line": 3}


def test_syntax_error_in_python_file_names_the_line():
    err = contract_error("import json\n\nclass Model:\n    def train(self)\n        pass\n", "model.py")
    assert err.message.startswith("Syntax error in model.py, line 4:")
    assert err.details == {"line": 4}


def test_compile_errors_in_kept_code_name_the_cell():
    err = contract_error(nb(code(MINIMAL_MODEL), code("def helper():\n    x = 1\n    nonlocal x")))
    assert err.details["cell"] == 2 and err.message.startswith("Syntax error in cell 2")


def test_skipped_cells_are_never_parsed():
    info = extract(nb(code("this is (not python", tags=["mlp-skip"]), code(MINIMAL_MODEL)), "n.ipynb")
    assert info.cells[0] == CellReport(1, False, "tagged mlp-skip")


# -- what is kept -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement, kept",
    [
        ('name = "iris"', True),                      # literal
        ("sizes = [1, (2, 3), {'a': None}]", True),   # literal
        ("a, b = 1, 2", True),                        # literal, unpacked
        ("LIMIT: int = 10", True),                    # annotated literal
        ('DATA_DIR = BASE + "/data"', True),          # UPPER_CASE, no call
        ("SQUARE = lambda x: pow(x, 2)", True),       # calls in a lambda body do not run at load time
        ("LIMIT = compute()", False),                 # UPPER_CASE with a call
        ("threshold = BASE * 2", False),              # not literal, not UPPER_CASE
        ("obj.attr = 1", False),                      # attribute target
        ("table['k'] = 1", False),                    # subscript target
        ("total += 1", False),                        # augmented assignment
        ("for i in range(3):\n    print(i)", False),
        ("with open('f') as fh:\n    data = fh.read()", False),
        ('if __name__ == "__main__":\n    main()', False),
        ("try:\n    import yaml\nexcept ImportError:\n    yaml = None", True),
        ("try:\n    data = load()\nexcept OSError:\n    data = None", False),
        ("@staticmethod\ndef helper():\n    return 1", True),
        ("async def fetch():\n    return 1", True),
        ("print('hello')", False),
    ],
)
def test_top_level_keep_rules(statement, kept):
    source = py_model('BASE = "/tmp"\ntable = {}\ntotal = 0\n', statement)
    info = extract(source, "model.py")
    assert (statement in info.module_source) is kept


def test_decorators_and_comments_above_a_definition_are_copied():
    helper = "import functools\n\n# cached: expensive\n@functools.lru_cache()\ndef helper():\n    return 1  # one"
    source = extract(nb(code(helper), code(MINIMAL_MODEL)), "n.ipynb").module_source
    assert "# cached: expensive\n@functools.lru_cache()\ndef helper():\n    return 1  # one" in source


def test_statements_sharing_a_line_are_split():
    source = extract(nb(code("import json; df = json.loads('[]'); LIMIT = 3"), code(MINIMAL_MODEL)), "n.ipynb").module_source
    assert "import json\nLIMIT = 3" in source and "df" not in source


def test_future_imports_are_hoisted_to_the_top():
    source = extract(nb(code("import json"), code("from __future__ import annotations\n" + MINIMAL_MODEL)),
                     "n.ipynb").module_source
    assert source.split("\n")[2] == "from __future__ import annotations"
    compile(source, "model.py", "exec")


# -- Model --------------------------------------------------------------------------------------


def test_no_model_class():
    err = contract_error(nb(code("import json\nx = 1")), "iris.ipynb")
    assert err.message == ("No `class Model` found in iris.ipynb: define one class named Model "
                           "with a hyperparameters dict and train/predict methods")


def test_model_only_in_a_skipped_cell():
    err = contract_error(nb(code("import json"), code(MINIMAL_MODEL, tags=["mlp-skip"])))
    assert "Model is defined in cell 2, which is dropped: tagged mlp-skip" in err.message


def test_model_assigned_in_exploratory_code():
    err = contract_error(nb(code("def make():\n    return object"), code("Model = make()")))
    assert "Model is defined in cell 2, which is dropped: dropped as exploratory code" in err.message


def test_model_imported_instead_of_defined():
    err = contract_error(nb(code("from mylib import Model")))
    assert "`Model` is bound by `from mylib import Model` in cell 1" in err.message


def test_two_model_classes_are_refused():
    err = contract_error(nb(code(MINIMAL_MODEL), code(MINIMAL_MODEL)))
    assert err.message.startswith("`class Model` is defined 2 times in nb.ipynb (cell 1, cell 2)")


# -- hyperparameters ----------------------------------------------------------------------------


def test_hyperparameter_types_come_from_defaults():
    model = ('class Model:\n    hyperparameters = {"flag": False, "n": 3, "lr": 0.1, "name": "x", '
             '"sizes": (1, 2), "opts": {"a": [1]}, "seed": None, "neg": -1}\n    def train(self): pass\n')
    schema = extract(model, "model.py").schema()
    assert {n: h.type for n, h in schema.items()} == {
        "flag": "bool", "n": "int", "lr": "float", "name": "str", "sizes": "list", "opts": "dict",
        "seed": "any", "neg": "int"}
    assert schema["sizes"].default == [1, 2]


def test_missing_hyperparameters_is_a_warning():
    info = extract("class Model:\n    def train(self): pass\n    def predict(self, f): pass\n", "model.py")
    assert info.hyperparameters == ()
    assert any("no hyperparameters dict" in w for w in info.warnings)


def test_annotated_hyperparameters_are_read():
    info = extract('class Model:\n    hyperparameters: dict = {"k": 5}\n    def train(self): pass\n', "model.py")
    assert info.defaults() == {"k": 5}


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("dict(C=1.0)", "must be a literal dict"),
        ("[1, 2]", "must be a literal dict"),
        ("{1: 2}", "non-string name 1"),
        ('{"s": {1, 2}}', "'s' has a default that is a set"),
        ('{"b": b"x"}', "'b' has a default that is a bytes"),
        ('{"inf": 1e999}', "not a finite number"),
    ],
)
def test_unreadable_hyperparameters_are_refused(value, fragment):
    err = contract_error(nb(code("import json"), code(f"class Model:\n    hyperparameters = {value}\n")))
    assert fragment in err.message
    assert err.details["cell"] == 2 and err.details["line"] == 2


# -- methods and bases --------------------------------------------------------------------------


def test_methods_and_hyperparameters_inherited_from_a_class_in_the_notebook():
    base = 'class Base:\n    hyperparameters = {"k": 1}\n    def train(self): pass\n'
    info = extract(nb(code(base), code("class Model(Base):\n    def predict(self, f):\n        return f\n")), "n.ipynb")
    assert info.methods == {"train", "predict"} and not info.inherits_unknown
    assert info.defaults() == {"k": 1}
    require_method(info, "train")


def test_inheriting_from_an_imported_class_makes_methods_unknown():
    info = extract(nb(code("from mylib import BaseModel"), code("class Model(BaseModel):\n    pass\n")), "n.ipynb")
    assert info.inherits_unknown and info.methods == frozenset()
    assert any("inherits from BaseModel" in w for w in info.warnings)
    require_method(info, "serve")  # cannot tell: no refusal


def test_abc_base_keeps_methods_known():
    info = extract("import abc\nfrom abc import ABC\nclass Model(ABC, metaclass=abc.ABCMeta):\n"
                   "    def train(self): pass\n", "model.py")
    assert not info.inherits_unknown and info.methods == {"train"}


def test_missing_methods_give_warnings():
    info = extract('class Model:\n    hyperparameters = {}\n    def train(self): pass\n'
                   '    def predict(self, f): pass\n', "model.py")
    assert info.warnings == (
        "Model has no batch_predict method: cannot run batch prediction",
        "Model has no init_predict; serving will call predict without it",
    )
    info = extract('class Model:\n    hyperparameters = {}\n    def train(self): pass\n', "model.py")
    assert "Model has no predict method: cannot be deployed" in info.warnings


def test_require_method():
    info = extract('class Model:\n    hyperparameters = {}\n    def train(self): pass\n', "model.py")
    require_method(info, "train")
    with pytest.raises(ContractError) as caught:
        require_method(info, "serve")
    assert "Model has no predict method" in caught.value.message and "serve" in caught.value.message
    assert caught.value.details == {"action": "serve", "method": "predict"}
    with pytest.raises(ContractError, match="no batch_predict method.*batch-predict"):
        require_method(info, "batch-predict")
    with pytest.raises(ContractError, match="Unknown action 'fly'"):
        require_method(info, "fly")


# -- undefined names ----------------------------------------------------------------------------


def test_undefined_names_are_listed_with_the_cells_that_assign_them():
    model = ("class Model:\n    hyperparameters = {}\n    def train(self):\n"
             "        return df.shape, scaler.fit(df)\n")
    err = contract_error(nb(code("import json"), code("df = json.loads('[]')"), code(model)))
    assert err.message == (
        "Model uses names that the saved code never defines: df (assigned in cell 2, dropped as exploratory "
        "code — move it into a method, make it a constant, or tag the cell mlp-include), "
        "scaler (not defined in the notebook)")
    assert err.details == {"names": {"df": [2], "scaler": []}}


def test_undefined_names_in_python_files_name_lines():
    err = contract_error("import json\ndf = json.loads('[]')\nclass Model:\n    def train(self):\n        return df\n",
                         "model.py")
    assert "df (assigned on line 2, dropped as exploratory code — move it into a method or make it a constant)" in err.message
    assert err.details == {"names": {"df": [1]}, "lines": {"df": [2]}}


def test_undefined_names_explain_skip_magic_and_shell_cells():
    model = "class Model:\n    def train(self):\n        return a, b, files, display(a)\n"
    err = contract_error(nb(code("a = 1", tags=["mlp-skip"]), code("%%time\nb = 2"), code("files = !ls"), code(model)))
    assert "a (assigned in cell 1, tagged mlp-skip" in err.message
    assert "b (assigned in cell 2, dropped with its %%time cell magic" in err.message
    assert "files (assigned in cell 3, assigned from a shell command or magic" in err.message
    assert "display (an IPython name that does not exist outside Jupyter)" in err.message
    assert err.details["names"] == {"a": [1], "b": [2], "display": [], "files": [3]}


def test_names_reached_through_helpers_are_checked_and_others_are_not():
    helpers = ("def used():\n    return data.mean()\n"
               "def unused():\n    return plt.plot(data)\n")  # never called by Model: not checked
    model = "class Model:\n    def train(self):\n        return used()\n"
    err = contract_error(nb(code("data = load()"), code(helpers), code(model)))
    assert err.details == {"names": {"data": [1]}}
    assert "plt" not in err.message


def test_base_classes_decorators_and_defaults_are_checked():
    model = ("class Model(Missing):\n    @missing_decorator\n    def train(self, n=MISSING_DEFAULT):\n        pass\n")
    err = contract_error(nb(code(model)))
    assert set(err.details["names"]) == {"Missing", "missing_decorator", "MISSING_DEFAULT"}


def test_names_that_are_not_undefined():
    model = '''
import json as js
import os.path
from collections import OrderedDict as OD

COUNTER = 0

def bump():
    global COUNTER, CACHE
    COUNTER += 1
    CACHE = {}

class Model:
    hyperparameters = {"n": 1}
    LABELS = ["a", "b"]

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.extra = kwargs

    def train(self):
        bump()
        squares = [x * x for x in range(self.hyperparameters["n"])]
        table = {k: v for k, v in zip("ab", squares)}
        try:
            js.dumps(table)
        except (TypeError, ValueError) as exc:
            print(exc)
        if (size := len(squares)) > 0:
            print(size, CACHE, self.LABELS, __file__, os.path.join("a", "b"), OD())
        with open(os.devnull) as fh:
            fh.read()
        for i, item in enumerate(squares):
            del item
        def inner(y, factor=2):
            return lambda z: z * y * factor
        import math
        return inner(math.pi)(1)

    def predict(self, features):
        match features:
            case {"x": x}:
                return x
            case [first, *rest]:
                return first, rest
        return None
'''
    info = extract(nb(code(model)), "n.ipynb")
    assert info.methods == {"__init__", "train", "predict"}


def test_name_used_before_definition_at_load_time():
    err = contract_error(nb(code(MINIMAL_MODEL.replace("class Model:", "class Model(Base):")), code("class Base:\n    pass")))
    assert "before they are defined" in err.message and "Base (used in cell 1, defined in cell 2)" in err.message
    assert err.details == {"order": {"Base": {"used": [1], "defined": [2]}}}
    # inside methods the order does not matter: they run after the whole module is loaded
    info = extract(nb(code("class Model:\n    def train(self):\n        return helper()\n"),
                      code("def helper():\n    return 1")), "n.ipynb")
    assert info.methods == {"train"}


def test_star_import_turns_undefined_names_into_a_warning():
    info = extract(nb(code("from math import *"), code("class Model:\n    def train(self):\n        return sqrt(2)\n")),
                   "n.ipynb")
    assert any("import *" in w and "sqrt" in w for w in info.warnings)


def test_constant_reading_an_undefined_name_is_refused():
    err = contract_error(nb(code("PATHS = [ROOT]"), code(MINIMAL_MODEL)))
    assert err.message.startswith("The saved module uses names that it never defines: ROOT")


# -- coercion -----------------------------------------------------------------------------------


SCHEMA = {
    "C": Hyperparameter("C", "float", 1.0),
    "max_iter": Hyperparameter("max_iter", "int", 200),
    "penalty": Hyperparameter("penalty", "str", "l2"),
    "fit": Hyperparameter("fit", "bool", True),
    "layers": Hyperparameter("layers", "list", [64, 32]),
    "opts": Hyperparameter("opts", "dict", {"a": 1}),
    "seed": Hyperparameter("seed", "any", None),
}


def test_defaults_are_merged_with_overrides_and_not_shared():
    result = coerce_hyperparameters(SCHEMA, {"C": "0.5"})
    assert result == {"C": 0.5, "max_iter": 200, "penalty": "l2", "fit": True, "layers": [64, 32],
                      "opts": {"a": 1}, "seed": None}
    result["layers"].append(1)
    assert SCHEMA["layers"].default == [64, 32]


@pytest.mark.parametrize(
    "name, given, expected",
    [
        ("max_iter", 5, 5), ("max_iter", "5", 5), ("max_iter", " -3 ", -3),
        ("C", 2, 2.0), ("C", 0.25, 0.25), ("C", "1e-3", 0.001), ("C", "3", 3.0),
        ("fit", False, False), ("fit", "true", True), ("fit", "No", False), ("fit", "1", True),
        ("fit", "off", False), ("fit", "YES", True), ("fit", "on", True), ("fit", "0", False),
        ("penalty", "l1", "l1"), ("penalty", "", ""),
        ("layers", [1, 2, 3], [1, 2, 3]), ("layers", "[128]", [128]), ("layers", (1,), [1]),
        ("opts", {"b": 2}, {"b": 2}), ("opts", '{"b": [2]}', {"b": [2]}),
        ("seed", "42", 42), ("seed", "hello", "hello"), ("seed", "[1]", [1]), ("seed", 7, 7), ("seed", None, None),
    ],
)
def test_coercion_accepts(name, given, expected):
    value = coerce_hyperparameters(SCHEMA, {name: given})[name]
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    "name, given",
    [
        ("max_iter", "abc"), ("max_iter", 1.5), ("max_iter", "1.0"), ("max_iter", True), ("max_iter", None),
        ("C", "x"), ("C", True), ("C", [1.0]), ("C", "nan"), ("C", "inf"), ("C", float("nan")),
        ("fit", 1), ("fit", 0), ("fit", "maybe"),
        ("penalty", 5), ("penalty", None), ("penalty", ["l1"]),
        ("layers", "1,2"), ("layers", '{"a": 1}'), ("layers", {"a": 1}),
        ("opts", "[1]"), ("opts", "a=1"), ("opts", [1]),
    ],
)
def test_coercion_refuses(name, given):
    with pytest.raises(HyperparameterError) as caught:
        coerce_hyperparameters(SCHEMA, {name: given})
    err = caught.value
    assert err.message.startswith(f"Hyperparameter {name!r} expects {SCHEMA[name].type} (default ")
    assert err.details["name"] == name and err.details["expected"] == SCHEMA[name].type
    if not (isinstance(given, float) and math.isnan(given)):
        assert err.details["value"] == given


def test_coercion_error_message():
    with pytest.raises(HyperparameterError) as caught:
        coerce_hyperparameters(SCHEMA, {"max_iter": "abc"})
    assert caught.value.message == "Hyperparameter 'max_iter' expects int (default 200), got 'abc'"
    assert caught.value.details == {"name": "max_iter", "expected": "int", "value": "abc"}


def test_unknown_hyperparameter():
    schema = {n: SCHEMA[n] for n in ("C", "max_iter", "penalty")}
    with pytest.raises(HyperparameterError) as caught:
        coerce_hyperparameters(schema, {"gamma": 1})
    assert caught.value.message == "Unknown hyperparameter 'gamma': Model.hyperparameters defines C, max_iter, penalty"
    assert caught.value.details == {"name": "gamma", "known": ["C", "max_iter", "penalty"]}
    with pytest.raises(HyperparameterError, match="Model defines no hyperparameters"):
        coerce_hyperparameters({}, {"gamma": 1})


def test_coercion_from_an_extracted_schema():
    info = extract(realistic_notebook(), "score.ipynb")
    result = coerce_hyperparameters(info.schema(), {"C": "0.5", "fit_intercept": "false", "layers": "[8]"})
    assert result == {"C": 0.5, "max_iter": 200, "penalty": "l2", "fit_intercept": False, "layers": [8]}


def test_class_using_itself_while_being_defined():
    model = "class Model:\n    def clone(self) -> Model:\n        return Model()\n"
    err = contract_error(nb(code(model)))
    assert "Model (used in cell 1 while it is being defined)" in err.message
    fixed = extract(nb(code("from __future__ import annotations\n" + model)), "n.ipynb")
    assert fixed.methods == {"clone"}


def test_windows_line_endings_and_top_level_await():
    info = extract(nb(code("import asyncio\r\nawait asyncio.sleep(0)\r\n"), code(MINIMAL_MODEL.replace("\n", "\r\n"))),
                   "n.ipynb")
    assert info.cells[0] == CellReport(1, True, "exploratory code dropped: await asyncio.sleep(0)")
    assert "\r" not in info.module_source
