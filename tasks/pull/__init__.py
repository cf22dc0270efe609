"""Pull stage: load preference sources and normalise them into `preference_pairs`."""
