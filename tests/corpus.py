"""Where the shared real-world email corpus is: ``$HUB_EMAIL_CORPUS``, else
``../shared/corpus/email`` beside the repository, else ``/work/shared/corpus/email``."""

from __future__ import annotations

import os
from pathlib import Path

_CANDIDATES = [
    os.environ.get("HUB_EMAIL_CORPUS", ""),
    str(Path(__file__).resolve().parents[2] / "shared" / "corpus" / "email"),
    "/work/shared/corpus/email",
]


def email_corpus() -> Path:
    for candidate in _CANDIDATES:
        if candidate and Path(candidate, "MANIFEST.tsv").is_file():
            return Path(candidate)
    return Path(_CANDIDATES[1])  # absent: the tests that need it say so
