"""Index folders on disk: what every backend's folder shares, and making whole folders.

* ``store`` — ``passages.sqlite``, the passage store every index folder holds, read by row.
* ``index`` — ``manifest.json``: reading and checking it, and loading a folder as a retriever.
* ``build`` — a corpus streamed into a new folder (store, then BM25 and/or dense files), resumably.
* ``importer`` — a folder around a prebuilt faiss index in Search-R1's layout, without re-encoding.

The backends' own file formats stay with the backends (:mod:`searchrl.retrieval.bm25_stream`,
:mod:`searchrl.retrieval.dense`); corpus file formats, which are input rather than index, are
:mod:`searchrl.retrieval.corpus`'s. This package file imports nothing.
"""
