"""Notebooks used across the test suites, built as nbformat-4 JSON."""

from __future__ import annotations

import json
from typing import Any


def cell(source: str, kind: str = "code", tags: list[str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"cell_type": kind, "metadata": {"tags": tags} if tags else {}, "source": source}
    if kind == "code":
        data.update(execution_count=None, outputs=[])
    return data


def notebook(*cells: dict[str, Any]) -> str:
    return json.dumps(
        {
            "cells": list(cells),
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


MODEL_CLASS = '''
class Model:
    hyperparameters = {"C": 1.0, "max_iter": 200, "penalty": "l2", "fit_intercept": True}

    def train(self):
        X, y = load_data()
        clf = LogisticRegression(
            C=self.hyperparameters["C"],
            max_iter=self.hyperparameters["max_iter"],
            penalty=self.hyperparameters["penalty"],
            fit_intercept=self.hyperparameters["fit_intercept"],
            random_state=SEED,
        )
        for step in range(3):
            self.log_metric("loss", 1.0 / (step + 1), step=step)
        clf.fit(X, y)
        accuracy = float(clf.score(X, y))
        print(f"trained with C={self.hyperparameters['C']}: accuracy {accuracy:.3f}")
        self.log_metric("accuracy", accuracy)
        joblib.dump(clf, self.artifacts / "model.joblib")

    def batch_predict(self):
        clf = joblib.load(self.artifacts / "model.joblib")
        rows = [json.loads(line) for line in Path(self.inputs).read_text().splitlines() if line.strip()]
        with open(self.outputs, "w") as out:
            for row in rows:
                label = int(clf.predict([[row[f] for f in FEATURES]])[0])
                out.write(json.dumps({"label": label, "species": SPECIES[label]}) + "\\n")

    def init_predict(self):
        self.clf = joblib.load(self.artifacts / "model.joblib")

    def predict(self, features):
        label = int(self.clf.predict([[features[f] for f in FEATURES]])[0])
        return {"label": label, "species": SPECIES[label]}
'''


def realistic_notebook() -> str:
    """A notebook as researchers write them: exploration that would fail if run, magics, shell lines."""
    return notebook(
        cell("# Iris classifier\nExploration first, then the model.", "markdown"),
        cell("%matplotlib inline\n!pip install scikit-learn"),
        cell(
            "import json\nfrom pathlib import Path\n\nimport joblib\nimport numpy as np\n"
            "from sklearn.datasets import load_iris\nfrom sklearn.linear_model import LogisticRegression"
        ),
        cell('FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]\n'
             'SPECIES = ["setosa", "versicolor", "virginica"]\nSEED = 42'),
        cell("def load_data():\n    X, y = load_iris(return_X_y=True)\n    return X, y"),
        cell('df = np.loadtxt("does-not-exist.csv", delimiter=",")\ndf[:5]'),
        cell("%%time\nX, y = load_data()\nprint(X.shape)"),
        cell(MODEL_CLASS),
        cell("m = Model()\nm.train()  # would fail: no artifacts outside the platform"),
    )


IRIS_ROWS = [
    {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
    {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3},
    {"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 4.2, "petal_width": 1.5},
]
