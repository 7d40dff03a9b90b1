"""The batched read on PostgreSQL: the fragments (`portal.fragments`) rendered by the database itself.

A cold MyTestSeries page loads its 12 keys in one statement. Read as rows and
encoded in Python, a 12-key read cost 550-730 us of the worker's CPU, most of
it rendering dates and building JSON per attempt and dumping the key arrays as
parameters; with PostgreSQL writing each key's fragment (and the keys passed as
one text parameter) it costs 210-370 us, and the work the database does instead
runs outside the worker's GIL, on the other core. The statement writes exactly
the bytes `fragments.encode` writes for the same rows, which
`tests/portal/test_pgfragments.py` checks over generated attempts, so an
optimized page stays byte for byte the direct one.

Keys with no attempts get no row back; they map to `fragments.encode(())`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import Engine

from portal import data, driver, fragments
from portal.keys import PATTERN as KEY_PATTERN

# `fragments.encode` in SQL: the widget fields, a newline, the attempts array ordered by id.
# The date is `isoformat(timespec="milliseconds")` of the UTC time: to_char's MS truncates to the
# millisecond as `data._epoch_ms` does. The keys come back as they were asked ("007:1" stays so).
_MANY = """\
SELECT k.key, '"attempt_count":' || count(*)
    || ',"best_score":' || max(a.score)
    || ',"last_attempt_id":' || max(a.id)
    || E'\\n[' || string_agg(
        '{"id":' || a.id || ',"exam_id":' || a.exam_id || ',"score":' || a.score
        || ',"submitted_at":"'
        || to_char(a.submitted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"+00:00"') || '"}',
        ',' ORDER BY a.id) || ']'
FROM unnest(string_to_array(%s, ',')) AS k(key)
JOIN attempts AS a
  ON a.student_id = split_part(k.key, ':', 1)::integer AND a.series_id = split_part(k.key, ':', 2)::integer
GROUP BY k.key"""

_KEY = re.compile(KEY_PATTERN)
_KEYS = re.compile(f"{KEY_PATTERN}(?:,{KEY_PATTERN})*")

EMPTY = fragments.encode(())


def read_many(engine: Engine, keys: Sequence[str]) -> dict[str, fragments.AttemptsFragment]:
    """The fragment of every key, in one statement; retried once on a lost connection.

    :raise ValueError: a key is not `"<student_id>:<series_id>"`.
    """
    keys = list(dict.fromkeys(keys))  # a key asked twice would join its attempts twice
    if not keys:
        return {}
    joined = ",".join(keys)
    # One pattern over all the keys; a comma inside a key would add one to their count.
    if not _KEYS.fullmatch(joined) or joined.count(",") != len(keys) - 1:
        bad = next(key for key in keys if not _KEY.fullmatch(key))
        raise ValueError(f"not an attempts key: {bad!r}")
    rows = data.retried(lambda: driver.fetch_all(engine, _MANY, (joined,)))
    found = dict.fromkeys(keys, EMPTY)
    for key, fragment in rows:
        found[key] = fragment.encode()
    return found
