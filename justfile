# The lab bench for fine-tuning local coding models with MLX. Start here: `just --list`.
#
# Every recipe takes make-style words or flags, passed through to its script unchanged:
#   just eval model=models/tiny suite=baseline     just eval --model models/tiny --suite baseline

set positional-arguments

# The Python that sits beside this `just` (the project's venv when just came from pip).
python := if path_exists(parent_directory(just_executable()) / "python") == "true" { parent_directory(just_executable()) / "python" } else { "python3" }

# List the recipes
default:
    @"{{just_executable()}}" --list

# Evaluate a model on a suite: just eval model=... adapter=... suite=... url=... served_model=...
eval *args:
    "{{python}}" scripts/eval.py "$@"

# Serve a model in the foreground until Ctrl-C: just serve model=... adapter=... port=...
serve *args:
    "{{python}}" scripts/serve.py "$@"

# Build the built-in tiny model into models/tiny (offline, deterministic): just tiny-model seed=0
tiny-model *args:
    "{{python}}" scripts/tiny_model.py "$@"

# Compare two eval runs prompt by prompt, with a paired test: just compare A B [--gate]
compare *args:
    "{{python}}" scripts/compare.py "$@"

# Regenerate journal/JOURNAL.md from the ledger
journal *args:
    "{{python}}" scripts/journal.py "$@"

# Browse the ledger in Datasette on 127.0.0.1
browse *args:
    "{{python}}" -m datasette ledger.db --host 127.0.0.1 "$@"

# Lint, format check, type check, then the whole test suite: just test -k scoring
test *args:
    "{{python}}" -m ruff check .
    "{{python}}" -m ruff format --check .
    "{{python}}" -m ty check
    "{{python}}" -m pytest "$@"
