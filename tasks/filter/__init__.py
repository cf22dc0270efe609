"""The filter stage: keep teacher traces whose verdict matches the label and whose format is right."""
