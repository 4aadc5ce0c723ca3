"""SQL persistence (SQLAlchemy Core, async): one module per domain, the schema, migrations.

The transaction rule:

- A store function takes the `AsyncConnection` its caller opened and never commits, begins
  or opens one itself, so any number of store calls (and, later, the activity that records
  them) share one transaction.
- The service owns the unit of work: `async with ctx.db.begin() as conn:` for writes (it
  commits on success, rolls back on an exception), `async with ctx.db.connect() as conn:`
  for reads.
- Dialect helpers (`upsert`, `insert_ignore`, `duplicate_raises` in `db.py`) read the
  dialect off the connection (`conn.dialect.name`), so no store function needs the
  `Database` too.
- Store functions return domain types (`fleet.core`), never SQLAlchemy rows, and translate
  the database errors they can explain (a duplicate key -> `AlreadyExists`) themselves.

The only exceptions are on the agent hot path (the seen-time flush, the enrollment retry
loop), listed in `fleet.service.OWN_TRANSACTION`.
"""
