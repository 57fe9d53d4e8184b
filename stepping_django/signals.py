"""Signals sent by the applier, after its transaction has ended.

- `view_applied(sender=IncrementalView, using, keys, time)`: a batch of captured keys was
  applied and committed.
- `view_failed(sender=IncrementalView, using, error)`: applying raised; the view is marked
  failed and its pending changes are kept.
"""

from django.dispatch import Signal

view_applied = Signal()
view_failed = Signal()
