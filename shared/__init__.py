"""What the producer, the worker and the reaper all need: the job model, settings, storage, the lock."""
