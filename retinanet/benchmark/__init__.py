"""Speed and memory measured the way the published columns were."""
