"""Training: LoRA through mlx-lm's callbacks, its reports into the ledger, checkpoints with
their optimizer state and resuming from them (`trainstate`, `trainresume`), distributed ranks,
the trainer read-back checks, the training benchmark, fusing, the memory plan before training
(memoryplan, memorycheck) and the memory watchdog during it (memorywatch). May import: present,
data, eval and everything below them."""
