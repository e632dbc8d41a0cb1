"""absl flag-driven binaries (train, prune, finetune, export, evaluate, benchmark, slim)."""
