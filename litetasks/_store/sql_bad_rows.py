"""The SQL for job rows litetasks cannot claim or read (written by other code, or grown too big).

Such a job fails without running (``rowlimits.py`` for a row too big to claim, ``malformed.py``
for values that cannot be read), or, when even that cannot be written, is set aside. Kept apart
from ``sql.py``, whose statements serve rows as litetasks writes them.
"""

from __future__ import annotations

from .sql import ERRORS_OK, append_error

__all__ = ["DROP_HOOKS", "FAIL_MALFORMED", "FAIL_TOO_BIG", "SET_ASIDE", "TOO_BIG_SIZES"]

# A job whose row is too big to claim (it has no room for a worker id) fails without running.
# Its error must fit in a row with no room left: the arguments make way for it and, when that is
# not enough (errors of earlier attempts fill the row), the earlier errors too.
FAIL_TOO_BIG = f"""
UPDATE jobs
SET state = 'FAILED',
    owner = NULL,
    finished_at = :now,
    args = '[]',
    kwargs = '{{}}',
    errors = CASE WHEN :keep AND {ERRORS_OK}
                  THEN json_insert(errors, '$[#]', json(:error))
                  ELSE json_array(json(:error)) END
WHERE seq = :seq AND state = 'READY'
RETURNING CAST(job_id AS BLOB), CAST(task_path AS BLOB), typeof(hooks), CAST(hooks AS BLOB)
"""
# The size of a row's arguments, and how many errors it holds, for FAIL_TOO_BIG.
TOO_BIG_SIZES = f"""
SELECT length(CAST(args AS BLOB)) + length(CAST(kwargs AS BLOB)),
       CASE WHEN {ERRORS_OK} THEN json_array_length(errors) ELSE 0 END
FROM jobs WHERE seq = ?
"""

# A claimed job whose row holds values litetasks cannot read fails without running (rows.py):
# ``{repairs}`` is filled with constant SET clauses, one per bad column, which replace them.
FAIL_MALFORMED = (
    """
UPDATE jobs
SET {repairs}
    state = 'FAILED',
    owner = NULL,
    finished_at = :now,
    errors = CASE WHEN :keep AND """
    + ERRORS_OK
    + """
                  THEN json_insert(errors, '$[#]', json(:error))
                  ELSE json_array(json(:error)) END
WHERE seq = :seq AND state = 'RUNNING' AND owner = :worker_id
RETURNING seq
"""
)

# A finished job whose hooks cannot be read (rows.py): none is enqueued, and its errors say so.
DROP_HOOKS = f"""
UPDATE jobs
SET hooks = NULL,
    errors = {append_error(":error")}
WHERE job_id = :job_id
"""

# A job whose row cannot be read and cannot be repaired either (see rows.py): FAILED, and so
# never claimed again, with nothing else written (the row only shrinks).
SET_ASIDE = """
UPDATE jobs SET state = 'FAILED', owner = NULL WHERE seq = :seq
"""
