"""What this machine is (`hardware`) and a BLAS that works on every x86-64 CPU (`blas`).
May import: core."""
