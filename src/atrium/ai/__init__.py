"""The AI service: providers, agents, the tool loop, conversations (issue 13)."""
