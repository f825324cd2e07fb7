"""fdsl.train."""
