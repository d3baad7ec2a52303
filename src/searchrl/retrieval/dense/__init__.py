"""Dense retrieval: everything that turns passages into vectors and searches them.

Layered so that each module imports only the ones above it in this list, never the other way:

* ``encoder`` — the sentence-transformers model, its query/passage prefixes, batch encoding (the leaf).
* ``shards`` — a whole passage store encoded shard by shard to disk, resumably.
* ``exact_rescore`` — a compressed index's candidates rescored exactly from float32 vectors on disk.
* ``faiss_index`` — faiss indexes from factory strings, built from shards, searched with set knobs.
* ``retriever`` — :class:`~searchrl.retrieval.dense.retriever.DenseRetriever`, the retriever itself.

Index folders (manifest, passage store, building, importing) are :mod:`searchrl.retrieval.ondisk`'s.
This package file imports nothing, so importing one module does not load faiss or the encoder.
"""
