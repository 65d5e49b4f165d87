"""Preference and RL training (dpo, orpo, grpo) through mlx-lm-lora: its trainers driven with
our callbacks (`trainer`), GRPO's rewards from the eval's own scorer (`rewards`), and what
mlx-lm-lora needs to run on a Linux CPU (`upstream`). May import: lora and the layers below
train (never training.py, which calls it)."""
