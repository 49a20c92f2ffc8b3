"""One training engine (lightning-fabric): schedules, EMA, early stopping, checkpoints, resume, objectives."""
