"""The `sunlight` commands, one module per command group; `streams.cli` assembles the parser."""
