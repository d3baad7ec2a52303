"""A run folder as one static HTML page: config, training curves, evaluation tables, trajectories.

The page is self-contained (inline CSS, SVG charts drawn here, a small inline script for the
trajectory filters), so it opens offline. All text from the run is HTML-escaped: model output is full
of tags. Unreadable JSON lines are skipped and counted on the page instead of failing the report.

``load`` reads the run folder, ``page`` holds the shared HTML pieces (CSS, page shell, escaping, SVG
chart), ``viewer`` the trajectory viewer, ``render`` puts the run page together and writes it.
"""

from searchrl.report.load import Example, RunData, load_run
from searchrl.report.page import esc, html_page
from searchrl.report.render import plot_keys, render_report, write_report

__all__ = ["Example", "RunData", "esc", "html_page", "load_run", "plot_keys", "render_report", "write_report"]
