"""The agents: thin handlers that decode, decide (pure) and call a port."""
