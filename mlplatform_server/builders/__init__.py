"""Containerize a model version: its build context and the builders that turn it into an image.

- ``layer``  (builders.layer): append one code layer onto the environment image in the registry
- ``engine`` (builders.engine): ``docker build`` through the Docker Engine API, then push
- ``buildkit`` (builders.buildkit): a Kubernetes Job running rootless BuildKit daemonless, which pushes
"""

from .context import BuildContext, ContextTooLarge, make_context
from .layer import BuildResult

BUILDERS = ("layer", "engine", "buildkit", "auto")

__all__ = ["BUILDERS", "BuildContext", "BuildResult", "ContextTooLarge", "make_context"]
