"""Running shoal's work on Ray: a safe private local Ray, or a cluster to join.

- :mod:`.ray_runtime`: starting or joining Ray from an orchestrator or a batch driver.
- :mod:`.curve`: the CurveZMQ keys that guard the mailbox on TCP.
"""
