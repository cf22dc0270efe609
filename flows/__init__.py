"""Prefect flows (one per stage, and the pipeline), recipes and the `rmr1` command line.

Importing this package sets quiet, offline-friendly Prefect defaults unless the user set them: no
telemetry (there is no network on many workers) and a generous start-up timeout for the temporary
server Prefect starts when no `PREFECT_API_URL` is configured.
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
