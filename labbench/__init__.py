"""Shared code for the lab bench scripts: server control, suites, scoring, ledger, journal."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
