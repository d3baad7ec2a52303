"""Retrieval: the Retriever protocol, BM25 and dense indexes, the HTTP server and client, web search."""
