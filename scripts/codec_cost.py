"""Cost and size of the payload codec chains (docs/security.md), per payload, on this
machine: `python scripts/codec_cost.py`. For judging the price of encryption; not a
test, and no result is asserted."""

from __future__ import annotations

import os
import timeit
from functools import partial
from typing import Any

from engine.codec import MsgpackCodec, PayloadCodec
from engine.codec_chain import AesGcmCodec, CompressionCodec

SMALL: Any = [3, "order-3"]
LARGE: Any = {
    "items": [{"sku": f"sku-{i}", "qty": i, "note": "extra cheese please"} for i in range(40)]
}


def chains() -> list[tuple[str, PayloadCodec]]:
    def key() -> dict[str, bytes]:
        return {"k1": os.urandom(32)}

    return [
        ("msgpack", MsgpackCodec()),
        ("zlib", CompressionCodec(MsgpackCodec())),
        ("aesgcm", AesGcmCodec(MsgpackCodec(), keys=key(), active="k1")),
        ("zlib+aesgcm", AesGcmCodec(CompressionCodec(MsgpackCodec()), keys=key(), active="k1")),
    ]


def main(number: int = 20000) -> None:
    for name, codec in chains():
        for label, value in (("small", SMALL), ("large", LARGE)):
            data = codec.encode(value)
            encode = timeit.timeit(partial(codec.encode, value), number=number) / number
            decode = timeit.timeit(partial(codec.decode, data), number=number) / number
            print(
                f"{name:12s} {label:5s} {len(data):5d} bytes  "
                f"encode {encode * 1e6:6.1f} us  decode {decode * 1e6:6.1f} us"
            )


if __name__ == "__main__":
    main()
