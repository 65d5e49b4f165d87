from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_ledger(tmp_path, monkeypatch) -> Path:
    """Every test gets its own ledger (and so its own journal/ beside it)."""
    ledger = tmp_path / "ledger.db"
    monkeypatch.setenv("LEDGER_DB", str(ledger))
    return ledger


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The built-in tiny model, built once (it is cached in models/tiny like a user's)."""
    from labbench.tinymodel import ensure_tiny_model

    return ensure_tiny_model()
