"""The memory service the tools and commands call."""
