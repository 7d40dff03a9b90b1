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
from portal.invalidation import NOTIFY_SQL, PeerNotice
from portal.keys import PATTERN as KEY_PATTERN

# `fragments.encode` in SQL: the widget fields, a newline, the attempts array ordered by id.
# The date is `isoformat(timespec="milliseconds")` of the UTC time: to_char's MS truncates to the
# millisecond as `data._epoch_ms` does. The keys come back as they were asked ("007:1" stays so).
# For each key of the relation k(key), over the attempts of the relation named where {attempts} is.
_FRAGMENTS = """\
SELECT k.key, '"attempt_count":' || count(*)
    || ',"best_score":' || max(a.score)
    || ',"last_attempt_id":' || max(a.id)
    || E'\\n[' || string_agg(
        '{"id":' || a.id || ',"exam_id":' || a.exam_id || ',"score":' || a.score
        || ',"submitted_at":"'
        || to_char(a.submitted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"+00:00"') || '"}',
        ',' ORDER BY a.id) || ']' AS fragment
FROM k
JOIN {attempts} AS a
  ON a.student_id = split_part(k.key, ':', 1)::integer AND a.series_id = split_part(k.key, ':', 2)::integer
GROUP BY k.key"""
_KEYS_PARAM = "k AS (SELECT unnest(string_to_array(%s, ',')) AS key)"

_MANY = f"WITH {_KEYS_PARAM}\n" + _FRAGMENTS.replace("{attempts}", "attempts")

# The group's INSERT and, in the same statement, the fragments of the keys to read back: the table
# as the statement found it (its snapshot does not hold the rows it inserts) and the rows inserted.
# Rows: (id, NULL) per attempt inserted, (key, fragment) per key read back with attempts.
_INSERTED = "id, student_id, series_id, exam_id, score, submitted_at"
_READ_BACK_CTES = (
    f"WITH inserted AS ({data.INSERT_POSTGRESQL.replace('RETURNING id', 'RETURNING ' + _INSERTED)}),"
    f" {_KEYS_PARAM},"
    f" seen AS (SELECT {_INSERTED} FROM attempts"
    " WHERE (student_id, series_id) IN"
    " (SELECT split_part(key, ':', 1)::integer, split_part(key, ':', 2)::integer FROM k)"
    " UNION ALL SELECT * FROM inserted),"
    f" rendered AS ({_FRAGMENTS.replace('{attempts}', 'seen')})"
)
_READ_BACK_ROWS = "SELECT id::text, NULL FROM inserted UNION ALL SELECT key, fragment FROM rendered"
_INSERT_READING_BACK = f"{_READ_BACK_CTES}\n{_READ_BACK_ROWS}"
# The same, with the NOTIFY that tells the other workers (`portal.invalidation`) and a last row
# (NULL, their count).
_INSERT_READING_BACK_NOTIFYING = (
    f"{_READ_BACK_CTES}, notified AS (SELECT {NOTIFY_SQL})\n"
    f"{_READ_BACK_ROWS} UNION ALL SELECT NULL, peers::text FROM notified"
)

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
    joined = _joined(keys)
    rows = data.retried(lambda: driver.fetch_all(engine, _MANY, (joined,)))
    found = dict.fromkeys(keys, EMPTY)
    for key, fragment in rows:
        found[key] = fragment.encode()
    return found


def insert_reading_back(
    engine: Engine, attempts: Sequence[data.NewAttempt], keys: Sequence[str], notice: PeerNotice | None = None
) -> data.Inserted:
    """`data.record_attempts` (with `notice`, `data.record_attempts_notifying`) that also reads back `keys`.

    One statement, in autocommit: each key's fragment holds every attempt committed
    before it and the attempts it inserted, not the attempts of writes it overlapped.

    :raise ValueError: a key is not `"<student_id>:<series_id>"`.
    """
    keys = list(dict.fromkeys(keys))
    params = (*data.insert_params(attempts), _joined(keys) if keys else "")
    if notice is None:
        rows = driver.fetch_all(engine, _INSERT_READING_BACK, params)
    else:
        rows = driver.fetch_all(engine, _INSERT_READING_BACK_NOTIFYING, (*params, *notice.params))
    ids: list[int] = []
    found = dict.fromkeys(keys, EMPTY)
    peers = 0
    for first, second in rows:
        if second is None:
            ids.append(int(first))
        elif first is None:
            peers = int(second)
        else:
            found[first] = second.encode()
    return data.Inserted(data.attempt_rows(sorted(ids), attempts), found, peers)


def _joined(keys: Sequence[str]) -> str:
    """The keys as one comma-separated parameter. :raise ValueError: a key is not an attempts key."""
    joined = ",".join(keys)
    # One pattern over all the keys; a comma inside a key would add one to their count.
    if not _KEYS.fullmatch(joined) or joined.count(",") != len(keys) - 1:
        bad = next(key for key in keys if not _KEY.fullmatch(key))
        raise ValueError(f"not an attempts key: {bad!r}")
    return joined
