"""What runs inside a job or a serving container: ``python -m mlplatform_server.runtime
train | batch-predict | serve``.

The runtime loads the module generated from the user's notebook, builds its ``Model``
(DESIGN.md §1) and runs one action. It imports only the standard library, tornado and
``mlplatform_server.errors``: it runs inside minimal images that have nothing else of ours.

Inputs (environment variables set by the backend; a flag of the same name, e.g.
``--module-path`` for ``MLP_MODULE_PATH``, overrides the variable for manual use):

``MLP_MODULE_PATH``      the module file (required); its directory goes first on sys.path
``MLP_ARTIFACTS``        artifacts directory (required); created for train, must exist otherwise
``MLP_HYPERPARAMETERS``  JSON object, already merged and coerced; unset: the class defaults
``MLP_RUN_ID``           the run (for serving: the training run whose artifacts are served)
``MLP_URL``, ``MLP_RUN_TOKEN``  platform API and run-scoped token; without both, metrics
                         are only printed (``MLP_METRIC {json}`` lines on stdout)
``MLP_RUN_TOKEN_FILE``   instead of ``MLP_RUN_TOKEN``: a file holding the token, read afresh
                         for each request (Kubernetes: the pod's projected service-account token)
``MLP_INPUTS``, ``MLP_OUTPUTS``  batch prediction paths (the parent of outputs is created)
``MLP_RESULT_PATH``      train / batch-predict: the JSON result file, written atomically on
                         every exit path the runtime controls
``MLP_PORT`` (8080), ``MLP_HOST`` (0.0.0.0), ``MLP_WORKERS`` (1)   serve
``MLP_METRICS_RETRY_SECONDS``  how long one batch of metrics is retried (default 8)
``MLP_STOP_GRACE_SECONDS``     serve: how long in-flight requests may run after SIGTERM (default 30)

Lines for log scrapers: ``MLP_START action=… run_id=… pid=…``, ``MLP_METRIC {json}``,
``MLP_END status=… exit_code=… [reason="…"]`` (train / batch-predict); ``MLP_SERVING port=…
host=… workers=… pid=…``, ``MLP_READY worker=… pid=…``, ``MLP_STOPPED …`` (serve, on stdout);
``MLP_ERROR …`` and ``MLP_WARNING …`` on stderr.

Exit codes: 0 success (serve: stopped by SIGTERM/SIGINT); 1 the user's code raised (Model(),
train, batch_predict, init_predict); 2 the run could not start: bad configuration, the module
could not be loaded, no ``Model`` class or no method for the action; 128+N killed by signal N
(train / batch-predict: 143 for SIGTERM, 130 for SIGINT).
"""
