"""Evaluating a model on a suite: the runner (`evaluation`), asking the prompts concurrently
(`asking`), finishing a stopped eval (`evalresume`), one prompt's request, answer and score
(`prompting`), suites and the built-in ones, tool-call parsing, scoring, a suite's tests run on
an answer through the sandbox (`codetests`), BFCL (`bfcl/`), and the model an adapter runs on
(`adapterbase`, shared with serve and fuse).
May import: serving, sandbox, record, tiny, machine, core."""
