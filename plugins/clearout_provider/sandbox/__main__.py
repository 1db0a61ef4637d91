"""``python -m clearout_provider.sandbox`` — same as the ``clearout-sandbox`` console script."""

from clearout_provider.sandbox.cli import main

main()
