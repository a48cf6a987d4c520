"""The advisor model: grounded financial-advice chat (knowledge base, retrieval, safety, LLM)."""
