"""Experiments as files: arms x seeds on a synthetic world, held-out evaluation, a findings page.

``spec`` reads and validates the YAML file, ``runner`` trains and evaluates every arm x seed
(resumable), ``findings`` writes the page (claims and verdicts, intervals, curves), ``curves`` the SVGs.
"""
