"""mlplatform: the platform API, the runtime and the Jupyter server extension.

Nothing heavy is imported here: the runtime runs inside minimal images that have
only the standard library and tornado.
"""

__version__ = "0.1.0"


def _jupyter_server_extension_points():
    # An ExtensionApp, so that Jupyter stops the in-process platform on shutdown.
    from .extension import MLPlatformApp

    return [{"module": "mlplatform_server.extension", "app": MLPlatformApp}]


def _load_jupyter_server_extension(server_app):  # pragma: no cover - delegated
    from .extension import load_jupyter_server_extension

    load_jupyter_server_extension(server_app)
