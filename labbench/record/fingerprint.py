"""Fingerprints: hashes of exactly what a run used, so two runs can be proven comparable.

An eval's parts are the model's weights and config, the adapter, the suite file, the chat
template and the sampling settings. Two runs with the same fingerprint and different scores
reveal nondeterminism. Weights can be gigabytes, so file hashes are cached in the ledger by
(path, size, mtime). A training run's dataset has its own: dataset_fingerprint().
"""

import hashlib
import json
import os
from pathlib import Path

from sqlite_utils import Database

CHUNK = 1 << 20
MODEL_FILE_SUFFIXES = (".safetensors", ".json", ".jinja", ".model", ".txt")


def file_sha256(path: Path, db: Database | None = None) -> str:
    stat = path.stat()
    key = {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if db is not None:
        for row in db.query(
            "SELECT sha256 FROM file_hashes WHERE path = :path AND size = :size "
            "AND mtime_ns = :mtime_ns",
            key,
        ):
            return row["sha256"]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    sha = digest.hexdigest()
    if db is not None:
        db.table("file_hashes").upsert({**key, "sha256": sha}, pk="path")
    return sha


def directory_sha256(directory: Path, db: Database | None = None, suffixes=None) -> str:
    """One hash over the names and contents of a directory's files (recursively, sorted)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        if suffixes and not path.name.endswith(suffixes):
            continue
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(file_sha256(path, db).encode() + b"\0")
    return digest.hexdigest()


def dataset_fingerprint(path: Path) -> str:
    """sha256 over the names and contents of a dataset's .jsonl files (or of one file)."""
    path = Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        data = file.read_bytes()
        digest.update(f"{file.name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def hub_snapshot(model_id: str) -> Path | None:
    """The local snapshot of a Hugging Face id in the hub cache, if it was downloaded."""
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface"), "hub"
    )
    repo = Path(hub) / ("models--" + model_id.replace("/", "--"))
    ref = repo / "refs" / "main"
    if ref.is_file():
        snapshot = repo / "snapshots" / ref.read_text().strip()
        if snapshot.is_dir():
            return snapshot
    return None


def chat_template_text(model_dir: Path) -> str | None:
    parts = []
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        parts.append(jinja.read_text())
    config = model_dir / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text()).get("chat_template")
        if template:
            parts.append(json.dumps(template, sort_keys=True))
    return "\n".join(parts) or None


def eval_fingerprint(
    model: str | None,
    adapter: str | None,
    suite_path: Path,
    sampling: dict,
    db: Database | None = None,
    scope: dict | None = None,
) -> dict[str, str | None]:
    """The parts of an eval's fingerprint and their combined hash under "fingerprint".
    `scope` (a prompt limit, execution off) is a part only when given, so the fingerprints of
    plain runs stay what they were."""
    model_dir = None
    if model:
        model_dir = Path(model) if Path(model).is_dir() else hub_snapshot(model)
    template = chat_template_text(model_dir) if model_dir else None
    parts: dict[str, str | None] = {
        "model": directory_sha256(model_dir, db, MODEL_FILE_SUFFIXES) if model_dir else None,
        "adapter": directory_sha256(Path(adapter), db) if adapter else None,
        "suite": file_sha256(suite_path, db),
        "chat_template": text_sha256(template) if template else None,
        "sampling": text_sha256(json.dumps(sampling, sort_keys=True)),
    }
    if scope:
        parts["scope"] = text_sha256(json.dumps(scope, sort_keys=True))
    if model_dir is None:
        # Weights we cannot see (a --url server, a hub id not in the cache): the name stands in.
        parts["model_name"] = text_sha256(model or "")
    combined = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return {**parts, "fingerprint": combined[:16]}
