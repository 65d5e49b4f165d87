"""Running model-generated code contained: the evaluator side (`execution`) and the child side
(`sandbox_runner`), which imports only the standard library. May import: core."""
