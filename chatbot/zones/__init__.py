"""Zones: device work inside each private network zone, on Celery workers.

The bot sits in the DMZ and may not open sessions into the private zones. A device
whose inventory entry carries `zone` has its work sent, as a signed task message
through the broker in the DMZ, to a worker inside that zone (`chatbot worker --zone
NAME`), which connects outbound to the broker, holds that zone's credentials, checks
the request again against its own allowlist and inventory, runs the same task code and
sends the structured result back. Devices without a zone run in the bot's process.

- wire.py: what travels (a request of plain data, a Result as plain data)
- celery_app.py: the Celery app both sides build from [workers]
- store.py: the small Redis keys beside it (worker presence, leases, progress, cancels)
- dispatch.py: the bot's side (split by zone, send, wait, progress, cancel)
- merge.py: one Result from the results of several zones
- worker.py: the worker's side (validate, run, answer)
"""
