"""Evaluating a model on a suite: the runner (`evaluation`), one prompt's request, answer and
score (`prompting`), suites and the built-in ones, tool-call parsing, scoring and code tests.
May import: serving, sandbox, record, tiny, machine, core."""
