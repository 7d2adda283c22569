"""Deterministic kill points for fault-injection tests and the soak benchmark.

``checkpoint("write-back:after-delete")`` does nothing unless the environment variable
``CHURNLENS_FAULT_AT`` names that point (a comma-separated list may name several); then the
process sends itself SIGKILL there, as ``kill -9`` or an OOM kill would: no ``finally``, no
``atexit``, no flush. The variable is read at each call, never at import.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "CHURNLENS_FAULT_AT"

CHECKPOINTS: tuple[str, ...] = (
    "features:built",
    "shap:explained",
    "write-back:after-lease",
    "write-back:after-delete",
    "write-back:after-insert",
    "write-back:before-commit",
    "risk-lists:half-written",
    "risk-lists:before-rename",
    "risk-lists:after-rename",
)
"""Every point churnlens checks, in run order (the soak script picks from these)."""


def checkpoint(name: str) -> None:
    """SIGKILL this process if ``CHURNLENS_FAULT_AT`` names ``name``."""
    wanted = os.environ.get(FAULT_ENV)
    if wanted and name in {w.strip() for w in wanted.split(",")}:
        os.kill(os.getpid(), signal.SIGKILL)
