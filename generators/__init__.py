"""fdsl.generators."""
