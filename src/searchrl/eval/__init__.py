"""Evaluation methods, metric tables and the HTML report."""
