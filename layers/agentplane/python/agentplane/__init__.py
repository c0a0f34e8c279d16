"""agentplane: the shared domain of every agentplane function (models, logic, store, auth)."""

__version__ = "0.1.0"
