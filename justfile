# The lab bench for fine-tuning local coding models with MLX. Start here: `just --list`.
#
# Every recipe takes make-style words or flags, passed through to its script unchanged:
#   just eval model=models/tiny suite=baseline     just eval --model models/tiny --suite baseline

set positional-arguments

# Recipes run in the project root; paths the user types are relative to where they ran `just`.
# [continue] on serve and browse: Ctrl-C is their normal way to stop, not an error.
export LABBENCH_INVOCATION_DIR := invocation_directory()

# The Python that sits beside this `just` (the project's venv when just came from pip).
# Recipes `exec` their script, so Ctrl-C and SIGTERM sent to `just` reach the script itself.
python := if path_exists(parent_directory(just_executable()) / "python") == "true" { parent_directory(just_executable()) / "python" } else { "python3" }

# List the recipes
default:
    @"{{just_executable()}}" --list

# Evaluate a model on a suite: just eval model=... adapter=... suite=... url=A[,B] served_model=... replicas=N | resume=RUN
[no-exit-message]
eval *args:
    @exec "{{python}}" scripts/eval.py "$@"

# Serve a model in the foreground until Ctrl-C: just serve model=... adapter=... port=...
[no-exit-message]
[continue]
serve *args:
    @exec "{{python}}" scripts/serve.py "$@"

# Benchmark LoRA training speed, with a verdict: just bench model=... iters=... batch_size=... [np=2]
[no-exit-message]
bench *args:
    @exec "{{python}}" scripts/bench.py "$@"

# Train a LoRA adapter into adapters/<run-id>: just train model=... data=... iters=... eval_suite=... [seeds=0,1,2] [np=2 | hosts=FILE] | resume=RUN
[no-exit-message]
train *args:
    @exec "{{python}}" scripts/train.py "$@"

# Train a grid of settings x seeds, evaluate each, and judge the best: just sweep sweeps/NAME.toml
[no-exit-message]
sweep *args:
    @exec "{{python}}" scripts/sweep.py "$@"

# Fuse an adapter into its base, quantize, check, verify against the adapter: just fuse adapter=adapters/N [checkpoint=...] [bits=8] [verify=SUITE]
[no-exit-message]
fuse *args:
    @exec "{{python}}" scripts/fuse.py "$@"

# Write a deterministic chat-format dataset, leakage-checked: just dummy-data out=... n=... seed=...
[no-exit-message]
dummy-data *args:
    @exec "{{python}}" scripts/dummy_data.py "$@"

# Validate a dataset (file:line: problem): just check-data data/dummy
[no-exit-message]
check-data *args:
    @exec "{{python}}" scripts/check_data.py "$@"

# The whole loop offline: baseline eval, dummy data, LoRA training, eval with the adapter, journal [seeds=3]
[no-exit-message]
demo *args:
    @exec "{{python}}" scripts/demo.py "$@"

# Compare two eval runs prompt by prompt, with a paired test: just compare A B [--gate]
[no-exit-message]
compare *args:
    @exec "{{python}}" scripts/compare.py "$@"

# Add a note (or --goal) to a recorded run: just note RUN "text"
[no-exit-message]
note *args:
    @exec "{{python}}" scripts/note.py "$@"

# Regenerate journal/JOURNAL.md from the ledger (archive files too: --rebuild)
[no-exit-message]
journal *args:
    @exec "{{python}}" scripts/journal.py "$@"

# Browse the ledger in Datasette on 127.0.0.1, with titles, canned queries and charts
[no-exit-message]
[continue]
browse *args:
    @exec "{{python}}" scripts/browse.py "$@"

# Build the built-in tiny model into models/tiny (offline, deterministic); --chat pre-trains; --quantize 4: models/tiny-q4
[no-exit-message]
tiny-model *args:
    @exec "{{python}}" scripts/tiny_model.py "$@"

# Benchmark: throughput of the default `just eval url=...` against a bare 16-thread client
[no-exit-message]
bench-eval *args:
    @exec "{{python}}" benchmarks/bench_eval.py "$@"

# Benchmark: the same eval with and without executed tests (exec=false), the ratio on the last line
[no-exit-message]
bench-exec *args:
    @exec "{{python}}" benchmarks/bench_exec.py "$@"

# Benchmark: the journal's cost for one more run vs a full regeneration, 10,000 runs x 30 prompts
[no-exit-message]
bench-journal *args:
    @exec "{{python}}" benchmarks/bench_journal.py "$@"

# Benchmark: LoRA s/iter with and without the OpenBLAS preload (Linux), speed-up on the last line
[no-exit-message]
bench-blas *args:
    @exec "{{python}}" benchmarks/bench_blas.py "$@"

# Benchmark: the memory plan's predicted peak against mlx's measured one, 8 tiny trainings, the largest error last
[no-exit-message]
bench-memory *args:
    @exec "{{python}}" benchmarks/bench_memory.py "$@"

# Lint, format check, type check and the import contracts (ruff, ty, lint-imports)
[no-exit-message]
lint:
    @"{{python}}" -m ruff check .
    @"{{python}}" -m ruff format --check .
    @"{{python}}" -m ty check
    @"{{python}}" -c "from importlinter.cli import lint_imports_command; lint_imports_command()" --no-logo --no-cache

# Lint, then the whole test suite, two test files at a time (what CI runs): just test -k scoring
[no-exit-message]
test *args: lint
    @exec env -u LABBENCH_INVOCATION_DIR "{{python}}" -m pytest -n 2 --dist loadfile --no-loadscope-reorder "$@"

# The quick inner loop: the tests not marked slow (no servers, no training): just test-fast -x
[no-exit-message]
test-fast *args:
    @exec env -u LABBENCH_INVOCATION_DIR "{{python}}" -m pytest -m "not slow" "$@"
