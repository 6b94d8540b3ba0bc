"""``python -m roadvision.cli``: same as the ``roadvision`` command."""

from roadvision.cli import main

main()
