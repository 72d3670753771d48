"""Work queues that carry object notifications to workers: SQS and NATS JetStream.

Each module declares one ``Component`` of kind ``"queue"`` (see ``logferry.registry``);
``open_queue(url)`` finds it by the URL's scheme. The contract is in ``base.py``.
"""

from __future__ import annotations

from logferry.queues.base import Message, QueueError, QueueOptions, WorkQueue, open_queue

__all__ = ["Message", "QueueError", "QueueOptions", "WorkQueue", "open_queue"]
