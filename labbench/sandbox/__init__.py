"""Model-generated code: finding it in an answer (`codeextract`, pure text) and running it
contained, the evaluator side (`execution`) and the child side (`sandbox_runner`), which imports
only the standard library. May import: core."""
