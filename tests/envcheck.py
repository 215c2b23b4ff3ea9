"""A model whose train() and predict() report whether an environment variable is set, by its
SHA-256 only (never the value): how the credential tests see what a run or deployment received."""

from __future__ import annotations

import hashlib
from pathlib import Path

ENV_MODULE = '''
import hashlib
import os


class Model:
    hyperparameters = {"key": "DATA_TOKEN"}

    def train(self):
        value = os.environ.get(self.hyperparameters["key"])
        self.log_metric("has_token", 1.0 if value else 0.0)
        (self.artifacts / "token.sha256").write_text(hashlib.sha256(value.encode()).hexdigest() if value else "")

    def init_predict(self):
        pass

    def predict(self, features):
        value = os.environ.get(features["key"], "")
        return {"sha256": hashlib.sha256(value.encode()).hexdigest() if value else ""}
'''


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def token_sha(data_dir: Path, run_id: str) -> str:
    """What the run wrote: the SHA-256 of the variable's value, or "" when it was not set."""
    return (data_dir / "runs" / run_id / "artifacts" / "token.sha256").read_text()
