"""Helpers shared by several test files and by ``tests/dist_worker.py``.

Imported as ``helpers.<module>``: pytest puts ``tests/`` on ``sys.path`` (this suite has no
``tests/__init__.py``), and so does Python for a script run from ``tests/``. Test files import from
here, never from one another.
"""
