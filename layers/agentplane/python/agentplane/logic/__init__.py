"""Business rules, one module per family. Handlers call these; these call the store."""
