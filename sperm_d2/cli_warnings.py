"""Imported first by every ``tools/*.py``: hides the known-harmless library warnings listed in
:mod:`sperm_d2.warnings_filter` before torch and detectron2 load (most fire at import time).

Importing this module is what it does, so that it can stand above the tool's other imports
(isort keeps it first: ``force_to_top`` in ``setup.cfg``); worker processes started by ``spawn``
re-import the tool and get the same filters.
"""

from sperm_d2.warnings_filter import filter_known_warnings

filter_known_warnings()
