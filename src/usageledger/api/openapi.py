"""What the OpenAPI schema says of ingest beyond what the models give: the enforced caps.

The wire models (``wire.py``) are deliberately loose where the server gives a rule its own
error code (``bucket_start``: BUCKET_START_INVALID, ``source``: UNKNOWN_SOURCE, the model
name's length: a setting), and the Idempotency-Key header is checked by the ledger. A client
reading the schema should still see every cap, so they are declared here, from the same
constants and settings the server checks with. The read routes declare theirs beside their
parameters (``api/read.py``).

Rules a schema cannot state (the token equalities, a half-hour's alignment, the floor and the
future skew, the registry of sources an operator extended, printable Unicode) stay 422s.
"""

from __future__ import annotations

from typing import Any

from usageledger.config import Settings
from usageledger.ledger.receipts import MAX_IDEMPOTENCY_KEY

#: RFC 3339 ``date-time`` with an offset, ASCII digits only (as ``buckets.parse_rfc3339``).
BUCKET_START = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
#: A registered source's spelling (``source_registry.SOURCE_NAME``).
SOURCE = r"^[a-z][a-z0-9_-]{0,31}$"
#: Printable Latin-1 (what a header can carry), no space at either end (HTTP strips it).
_KEY_CHAR = r"\x21-\x7e\xa1-\xac\xae-\xff"
IDEMPOTENCY_KEY = rf"^[{_KEY_CHAR}]([{_KEY_CHAR} ]*[{_KEY_CHAR}])?$"


def declare_caps(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """``schema`` with the ingest caps of ``settings`` declared (changed in place)."""
    ingest = schema["paths"]["/v1/ingest"]["post"]
    for parameter in ingest.get("parameters", []):
        if parameter["name"] == "Idempotency-Key":
            parameter["schema"] = {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_IDEMPOTENCY_KEY,
                "pattern": IDEMPOTENCY_KEY,
                "description": parameter["schema"].get("description", ""),
            }
    components = schema["components"]["schemas"]
    for name in ("IngestV1", "IngestV2", "IngestV3"):
        buckets = components[name]["properties"]["buckets"]
        buckets["maxItems"] = settings.max_buckets
    for name in ("BucketV1", "BucketV2", "BucketV3"):
        fields = components[name]["properties"]
        fields["bucket_start"].setdefault("format", "date-time")
        fields["bucket_start"].setdefault("pattern", BUCKET_START)
        fields["source"].update(maxLength=32, pattern=SOURCE)
        fields["model"]["maxLength"] = settings.max_model_length
    return schema
