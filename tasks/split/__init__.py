"""The split stage: preference pairs into the distillation subset and the disjoint RL set."""
