"""Use cases, one module per domain.

Transactions: store functions take an `AsyncConnection`; the service function owns it
(`async with ctx.db.begin() as conn:`), so every write of one use case commits or fails
together and a later audit row can join it. The hot-path exceptions, store functions that
open their own transaction, are exactly these:

- `store.hosts.mark_seen`: the seen-time flush of `SeenBuffer`, a batch of many hosts'
  check-ins with no use case (and no caller transaction) behind it.
- `store.hosts.enroll`: retries its whole transaction when a concurrent enrollment of the
  same host or a deadlock makes it fail, which only the owner of the transaction can do.
"""

# The list above, checked against the store's signatures by tests/unit/test_transactions.py.
OWN_TRANSACTION = frozenset({"fleet.store.hosts.enroll", "fleet.store.hosts.mark_seen"})
