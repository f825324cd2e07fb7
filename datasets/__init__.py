"""fdsl.datasets."""
