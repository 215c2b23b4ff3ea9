"""The one check of artifact paths (API, CLI, TensorBoard sync) and their URL form."""

from __future__ import annotations

import pytest

from mlplatform_server.artifact_paths import artifact_url_path, clean_relative
from mlplatform_server.errors import InvalidInput


@pytest.mark.parametrize("path, expected", [
    ("model.bin", "model.bin"), ("logs/./events.out.tfevents.1", "logs/events.out.tfevents.1"),
    ("a//b/", "a/b"), ("..hidden/x..y", "..hidden/x..y"),
])
def test_relative_paths_are_normalised(path, expected):
    assert clean_relative(path) == expected


@pytest.mark.parametrize("path, words", [
    ("", "must name a file"), ("/", "must name a file"), (".", "names no file"),
    ("../../etc/passwd", "'..' is not allowed"), ("logs/../../x", "'..' is not allowed"),
    ("/etc/passwd", "is absolute"), ("a\\..\\b", "backslash"), ("a\x00b", "NUL"),
])
def test_paths_leaving_the_artifacts_are_refused(path, words):
    with pytest.raises(InvalidInput, match=words.replace(".", r"\.").replace("'", "'")):
        clean_relative(path)


def test_url_form_keeps_dot_segments_for_the_server_to_judge():
    assert artifact_url_path("logs/a b#1") == "logs/a%20b%231"
    assert artifact_url_path("../x/./y") == "%2E%2E/x/%2E/y"
