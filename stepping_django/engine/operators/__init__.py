"""One operator per module, each with its incremental rule in its docstring."""
