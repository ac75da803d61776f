"""The untyped JSON codecs, one reused instance each (msgspec's advice), for every module.

Below the records, so the checks a record's constructor runs can use them; the
record-typed decoders are in :mod:`eventstore._codec`. A module with a private
struct of its own (the manifest, the batch marker) keeps that struct's decoder
beside it.
"""

from __future__ import annotations

import msgspec

__all__ = ("decode", "encode", "encode_into", "encode_sorted")

_encoder = msgspec.json.Encoder()
_sorted_encoder = msgspec.json.Encoder(order="sorted")
_decoder = msgspec.json.Decoder()

#: ``encode(obj) -> bytes``: compact JSON of a record, a payload, any struct.
encode = _encoder.encode
#: ``encode_into(obj, buffer, offset)``: :data:`encode` into a ``bytearray``.
encode_into = _encoder.encode_into
#: ``encode_sorted(obj) -> bytes``: :data:`encode` with object keys sorted (for comparing).
encode_sorted = _sorted_encoder.encode
#: ``decode(bytes) -> Any``: plain JSON values; raises ``msgspec.DecodeError``.
decode = _decoder.decode
