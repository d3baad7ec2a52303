#!/usr/bin/env bash
# A side environment for benchmarks/retrieval_bm25_pyserini.py: pyserini 0.22.1 (Anserini 0.22.1, the last
# line that runs on Java 11-17) without its dependencies (only the Lucene searcher is used), pyjnius and numpy,
# in .pyserini-venv, so searchrl's own requirements.lock is untouched. Java: Debian 12's OpenJDK 17.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v java >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless; else
    echo "pyserini needs Java 17: sudo apt-get install openjdk-17-jre-headless" >&2; exit 1; fi
fi
python3 -m venv .pyserini-venv
.pyserini-venv/bin/pip install -q --no-deps pyserini==0.22.1 pyjnius==1.6.1 numpy==2.4.6
.pyserini-venv/bin/python -c "from pyserini.pyclass import autoclass; autoclass('io.anserini.search.SimpleSearcher'); print('pyserini ok')"
