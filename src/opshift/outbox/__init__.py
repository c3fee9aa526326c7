"""Outbox: accept a ping or alert at once, keep it, and deliver it in the background.

    outbox = Outbox(OpShift(), path="/var/lib/app/opshift-outbox.sqlite3")
    outbox.alert("deploy-failures", title="Deploy failed", severity="sev1")  # returns at once

Items wait in memory (``path=None``) or in a SQLite file that survives crashes and
restarts and may be shared by many processes. One daemon thread per outbox delivers
them until OpShift takes them. A *destination* is one ping token's or webhook's request
path; a *sender* is one outbox's thread (or a flush running without one).

The rules the outbox keeps:

Rule 1 (enqueue). ``ping()`` and ``alert()`` validate, then return without touching the
network. With a file they return once the item is committed, or, if the file is not
writable within ``ENQUEUE_WAIT`` (0.25 s), once it is kept in memory (Rule 8).

Rule 2 (FIFO per destination). A destination's items are sent in the order they reached
the store (for a shared file: the order of their commits). A retryable failure ends its
batch, so nothing queued after an item goes out before it; an item OpShift refuses for
good is dropped and the next one goes on. Destinations are independent: a pass claims
the ready destination whose oldest item is oldest, then the next.

Rule 3 (one claimer per destination). A sender claims a destination as a whole, with its
oldest 200 items, and no other sender takes it until the claim ends. In memory the claim
lasts until it is released; in a file it is a lease (``lease_until`` and ``owner``),
taken under ``BEGIN IMMEDIATE``. Expiry (Rule 6) and a full queue (Rule 7) leave a
claimed destination's items alone.

Rule 4 (lease renewal). A lease lasts ``max(60, 3 * client.timeout)`` seconds by the
outbox's ``clock``. Its holder renews it, committing what it has delivered so far, before
a send once a third of the lease has passed since the last renewal, and after every 100
delivered items or 1 second, whichever comes first; it releases it, with the
destination's backoff, when the batch ends, however it ends. A commit the file will not
take (locked by another writer, disk full) is tried again for up to 2 s within the pass;
if it still fails, the result is kept in memory and written first by the next pass,
which releases the lease then: nothing delivered is sent again by this process, and the
destination does not wait out its lease. A send is bounded by the client's timeout, so
a running sender renews in time; one that was paused past its lease (SIGSTOP, a
suspended VM, a clock that jumped) finds the lease taken at its next renewal and stops
sending that destination.

Rule 5 (expiry of a lease). A lease ends at ``lease_until``, or at once when a sender on
the same host, boot and process namespace finds before a claim that the owner's process
is gone. Any other owner's lease (another container or host) only expires.

Rule 6 (expiry of items). At the start of each pass over a store, an ``up`` ping older
than ``ping_ttl`` and any item older than ``max_age`` (by ``clock``) is dropped unsent,
backoff or not, counted in ``dropped_expired`` and logged once per pass. A batch already
claimed is sent whatever its age. An item dated after now (the clock stepped back) is
first dated now, so an age never goes negative: after a backward step items age from
the first pass that sees it.

Rule 7 (bounded). Each store holds at most ``max_pending`` items: the file counts every
process's items, the memory spill (Rule 8) its own. When full, the oldest ``up`` ping of
an unclaimed destination makes room; if there is none, the new item is dropped and its id
is 0. Either way it is counted in ``dropped_full``; nothing raises, and neither scans
the queue (a count kept as items come and go, up pings kept or indexed apart).

Rule 8 (spill order). When the file cannot take an item (locked for ``ENQUEUE_WAIT``, disk
full, read-only, damaged), it is kept in memory (logged once per streak), and so is every
later item while any is kept there, so none overtakes another. Each pass first appends
the unclaimed items kept in memory to the file, oldest first, in one transaction, and
forgets them only once that commits. Until then they are sent from memory, except to a
destination with older items waiting in the file; if the file cannot even be read, they
are sent anyway: delivery beats order.

Rule 9 (backoff). Per destination: a retryable failure (network, 5xx, 429, 408, a proxy's
407, a redirect, a 4xx without OpShift's JSON error) sets the next attempt ``backoff``
doubled per consecutive failure, at most ``backoff_max``, times a random factor, later;
a delivery resets it. A flush's first pass ignores backoff. The next attempt is a
wall-clock time (stored, in a file); each pass ends any that lies more than
``backoff_max`` ahead (a clock stepped back) at ``now + backoff_max``.

Rule 10 (at least once). An item is removed only after OpShift answered it (taken, or
refused for good), in the commit that renews or releases its claim. An item is sent again
if its sender dies before that commit (made at each renewal, so a killed sender repeats
at most 100 items or about a second of sends per destination), if a connection drops
after OpShift read the request, or if its lease was lost (Rule 4).

Rule 11 (what survives what).

- Normal interpreter exit (``sys.exit``, the end of ``main``, an uncaught exception): the
  open outboxes flush side by side, each for at most its ``exit_timeout`` from the start
  of the exit: one budget, which an ``AlertHandler`` closing its own outbox at
  ``logging.shutdown`` shares (the exit flush runs first). The sender thread is a daemon
  and never keeps the process alive. What is left stays in the file; in memory it is
  lost. Either is reported ("3 items lost (in memory)", "3 items kept in PATH for the
  next run"): logged if a handler other than an ``AlertHandler`` would show the
  ``opshift`` logger's record, else printed on stderr (``_report``).
- ``close()``: the same, bounded by its ``timeout``, and the loss in memory is reported.
- SIGTERM with Python's default handling, SIGKILL, out of memory, ``os._exit``: no flush.
  Memory items (``path=None``, and any kept in memory by Rule 8) are lost; committed file
  items survive, and the dead sender's batch is sent again once its lease ends (Rule 5).
  An application that turns SIGTERM into ``SystemExit`` gets a normal exit.
- Power loss or an OS crash: the file runs WAL with ``synchronous=NORMAL``, so the last
  few commits may be lost: items queued just before (lost), removals of items just
  delivered (sent again).
- The next ``Outbox`` on a file that holds items starts delivering them at once.
- A path that is not an outbox (another application's database) is refused before
  anything in it changes; a damaged file (``PRAGMA quick_check`` fails when it is
  opened) is a ``ConfigurationError`` naming it and saying to move it aside.
- ``fork()``: a memory outbox is empty in the child (the parent delivers its own items);
  a file is shared, with the child's own thread, locks, connections and lease owner.

The modules, from the bottom up (each imports only those above it in this list):

- ``_store``: the ``Store`` protocol, ``Item``, ``Work`` (a claim), ``Finish`` (its end);
- ``_lease``: who owns a lease, and whether that process is provably gone;
- ``_memory``: ``MemoryStore``;
- ``_schema``: the file's schema and migrations, and opening it safely;
- ``_sqlite``: ``SQLiteStore``, and ``read_summary`` for ``opshift outbox``;
- ``_delivery``: one delivery pass (expire, claim, send, back off, count, log);
- ``_report``: what an outbox leaves behind, said where someone sees it;
- ``_sender``: the sender thread, flush and stop;
- ``_process``: the exit flush and the fork hooks;
- ``_outbox``: the ``Outbox`` class (enqueue and state).
"""

from ._outbox import Outbox, OutboxStats

__all__ = ["Outbox", "OutboxStats"]
