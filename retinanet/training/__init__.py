"""The reference training recipe: the Trainer loop, lr schedule, checkpoints and resume, stop requests."""
