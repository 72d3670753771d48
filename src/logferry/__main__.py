"""``python -m logferry``."""

from logferry.cli.main import main

main()
