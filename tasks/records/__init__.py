"""Records from users' files: read row by row (`reader`), checked and mapped field by field (`fields`)."""
