"""Imported only as the extraction forkserver's preload (sitrep.workers): warms it up once.

Importing this module runs one tiny page through ``build_report``, which loads trafilatura, the
language model and the gazetteer (its cache is built on first use). Workers fork from the warm
forkserver, so they share those pages copy-on-write and start in milliseconds instead of seconds.
"""

from sitrep.workers import _warm_up

_warm_up()
