"""The run domain: a run's batches planned, leased, signed, stored and released, and the run
finished; the actors that carry SigningTriggered and SigningCompleted; the reaper that
recovers what a lost message or a killed worker left behind."""
