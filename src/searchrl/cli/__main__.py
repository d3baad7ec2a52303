"""``python -m searchrl.cli``."""

from searchrl.cli import main

main()
