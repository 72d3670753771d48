"""CloudWatch Logs: browse, get and follow, a resumable download daemon, and its status.

The pieces share one client wrapper (:mod:`.client`: a token-bucket rate limiter per API and
retries with backoff and jitter) and one per-stream reader (:mod:`.reader`: forward tokens).
"""
