"""differentiate (D): the change between iterations. DBSP Definition 2.17.

D(a)[t] = a[t] - a[t-1] = a - z^-1(a); the inverse of integrate.
"""

from __future__ import annotations

from typing import Any

from stepping_django.engine.operators.add import add
from stepping_django.engine.operators.delay import delay
from stepping_django.engine.operators.neg import neg


def differentiate(a: Any) -> Any:
    return add(a, neg(delay(a)))
