"""Training: one process's LoRA set-up and trainer loop (`lora`), a training as a ledger run
with its checkpoint evals (`training`), its reports (`trainreports`), checkpoints with their
optimizer state and resuming from them (`trainstate`, `trainresume`), distributed ranks, the
trainer read-back checks, the training benchmarks (`benchmark`, `prefbench`), fusing, and two
sub-areas: `memory` (the plan before training, the watchdog during it) and `preference` (dpo,
orpo and grpo through mlx-lm-lora). May import: present, data, eval and everything below them."""
