"""The chaos suite: ingestion killed, its database restarted, then retried; nothing lost or loaded twice.

``make chaos`` (``python -m tests.chaos``) runs many trials and prints a table of trials, faults
injected, reports expected, lost and duplicated; tests/chaos/RESULTS.md is that table, committed.
tests/test_crash_recovery.py runs a few of the same trials inside ``make test``.
"""
