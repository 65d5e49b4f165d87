import uuid
from pathlib import Path

import pytest
from helpers import PROCESS_TAG

from labbench.core.paths import INVOCATION_DIR_ENV


@pytest.fixture(autouse=True)
def isolated_ledger(tmp_path, monkeypatch) -> Path:
    """Every test gets its own ledger (and so its own journal/ beside it), and scripts it runs
    see no `just` around them, whatever ran pytest (`just test` exports the user's directory)."""
    ledger = tmp_path / "ledger.db"
    monkeypatch.setenv("LEDGER_DB", str(ledger))
    monkeypatch.delenv(INVOCATION_DIR_ENV, raising=False)
    return ledger


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The built-in tiny model, built once (it is cached in models/tiny like a user's)."""
    from labbench.tiny.tinymodel import ensure_tiny_model

    return ensure_tiny_model()


@pytest.fixture
def process_tag(monkeypatch) -> str:
    """Tag every process this test starts (scripts, and the servers they start), so that
    helpers.tagged_processes finds its own and no one else's."""
    value = uuid.uuid4().hex
    monkeypatch.setenv(PROCESS_TAG, value)
    return value
