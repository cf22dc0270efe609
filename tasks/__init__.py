"""Pipeline stages of the RM-R1 reproduction: plain functions that Prefect flows wrap."""
