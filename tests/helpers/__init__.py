"""Scripts the tests start as real child processes (crash, concurrency and reader-isolation tests)."""
