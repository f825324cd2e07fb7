"""fdsl.render."""
