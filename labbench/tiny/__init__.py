"""The built-in tiny models, built offline: weights (`tinymodel`), tokenizer (`tinytokenizer`),
the tool-aware chat template, pre-training, and the word banks they share (`corpus`).
May import: machine, core."""
