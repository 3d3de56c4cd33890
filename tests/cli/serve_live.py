"""`python -m tests.cli.serve_live`: the live server of the CLI tests, in its own process so its
log lines can never mix with the CLI's stdout. Settings come as JSON in ATLILITH_TEST_SETTINGS;
the test-only actions (tests/support/billing.py) are registered, and the relay runs jobs."""

from __future__ import annotations

import os

import uvicorn

from core.config import Settings
from servers.app import create_app
from tests.support import billing as _test_actions  # noqa: F401  (registers the `tests` actions)


def main() -> None:
    settings = Settings.model_validate_json(os.environ["ATLILITH_TEST_SETTINGS"])
    app = create_app(settings, run_relay=True)
    uvicorn.run(app, host="127.0.0.1", port=settings.port, log_level="error", lifespan="on")


if __name__ == "__main__":
    main()
