"""The web page for the people behind the agents, served at ``/ui`` by the HTTP transports: see, search and
correct what the agents remember, through the same tools, tokens and audit log as the agents."""
