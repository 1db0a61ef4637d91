"""Vendor-neutral verification: what every verify path shares, whichever verifier answers.

:mod:`.ledger` is the memory of every verdict paid for (the one place that decides whether an address
must be sent again).
"""
